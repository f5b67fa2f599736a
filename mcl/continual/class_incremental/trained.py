"""Class-incremental methods that train the network on the task's data only.

- `FineTune`: each task's clips, the cross-entropy among all seen classes;
  nothing protects old classes (the lower bound).
- `Joint`: every task's clips at once, all classes (the oracle); T times a
  phase's budget, early-stopped on every task's validation clips.
- `LwF`: fine-tuning plus distillation of the old classes' outputs of the
  network before the task (Li & Hoiem 2016, on one growing head, as the
  class-incremental literature runs it; no warm-up phase).
- `EWC`: fine-tuning plus Elastic Weight Consolidation (Kirkpatrick et
  al. 2017), the diagonal Fisher of the head over the seen classes.

Every method early-stops on the new task's validation clips scored among
all seen classes (no old class's clips: they would act as a memory);
the joint oracle on every task's.
"""

import dataclasses

import numpy as np

from mcl.continual import baselines, method, regularisers
from mcl.continual.class_incremental import head


class FineTune(head.ClassIncremental):
  """Train everything on each task in turn."""

  def penalty(self, params, state, task):
    """The regulariser of task `task` (> 0), or None."""
    del params, state, task
    return None

  def learn_task(self, context, params, state, task, rng):
    del rng
    penalty = self.penalty(params, state, task) if task.index else None
    kwargs = {} if penalty is None else {"penalty": penalty}
    stream = self.stream(
      context.batches(task.index), self.seen_classes(task.index)
    )
    result = self.train_phase(context, params, task, "train", stream, **kwargs)
    return result.params, state, method.phase_record(train=result)


class Joint(head.ClassIncremental):
  """Every task's clips and classes in one phase (called once, at the end)."""

  joint = True

  def learn_task(self, context, params, state, task, rng):
    del rng
    tasks = tuple(range(task.index + 1))
    result = self.train_phase(
      context,
      params,
      task,
      "joint",
      self.stream(context.joint_batches(), self.num_classes),
      validation_tasks=tasks,
      fit_config=dataclasses.replace(
        context.fit_config,
        max_steps=context.fit_config.max_steps * len(tasks),
      ),
    )
    return result.params, state, method.phase_record(joint=result)


class LwF(FineTune):
  """Fine-tuning with the old classes' outputs distilled."""

  section, settings_class = "lwf", baselines.LwFSettings

  def penalty(self, params, state, task):
    del state
    return self.distillation(params, task)


class EWC(FineTune):
  """Fine-tuning with the EWC penalty; the state keeps anchors and Fishers
  (`ewc/anchor_t`, `ewc/fisher_t` after task t)."""

  section, settings_class = "ewc", baselines.EWCSettings

  def penalty(self, params, state, task):
    del params
    ewc = state["ewc"]
    return regularisers.ewc_penalty(
      {j: ewc[f"anchor_{j}"] for j in range(task.index)},
      {j: ewc[f"fisher_{j}"] for j in range(task.index)},
      self.settings.strength,
    )

  def init(self, key, task):
    params, state = super().init(key, task)
    return params, {**state, "ewc": {}}

  def learn_task(self, context, params, state, task, rng):
    params, state, record = super().learn_task(
      context, params, state, task, rng
    )
    stream = context.batches(task.index)
    # Masked, the unseen classes have p = 0: no term of the Fisher's sum.
    fisher = regularisers.diagonal_fisher(
      self.model(params),
      self.masked(params, self.seen_classes(task.index)),
      0,
      (next(stream) for _ in range(self.settings.fisher_batches)),
    )
    leaves = [v.ravel() for g in fisher.values() for v in g.values()]
    record["fisher_mean"] = float(np.mean(np.concatenate(leaves)))
    ewc = dict(state["ewc"])
    ewc[f"anchor_{task.index}"] = params
    ewc[f"fisher_{task.index}"] = fisher
    return params, {**state, "ewc": ewc}, record
