"""Runs a continual-learning method over a task sequence and scores it.

For each task the runner lets the method add the task's head or column
(`begin_task`), scores that untrained network on the task (the zero-shot
score of forward transfer), lets the method train (`learn_task`), then
scores every task seen so far on the test and validation splits, saves an
Orbax checkpoint (parameters, method state, JSON metadata with everything
results.json needs) and rewrites `<workdir>/results.json`. A re-run with the
same workdir resumes after the last checkpointed task; every random stream
is derived from (seed, task), so a resumed run equals an uninterrupted one.

What a user sees: a progress line per phase (`mcl.trainer.progress`: task i/T,
steps/s, the whole run's ETA); in TensorBoard, besides every phase's
losses (x: global step), after each task i (x: i) the test accuracy of
every task so far (`continual/test_accuracy/task<j>`, column j of the
accuracy matrix), the average accuracy, BWT, class-incremental accuracy,
the parameters of each task's network, and the matrix as text; at the end,
`accuracy_matrix.png` and `capacity.png` beside results.json
(`mcl.analysis.report.plot_run`).
"""

import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers

from mcl import models
from mcl.analysis import report
from mcl.continual import capacity, method, results, scoring
from mcl.continual.registry import METHODS
from mcl.datasets import task_data as data
from mcl.datasets import tasks
from mcl.runtime import atomic_files, errors
from mcl.trainer import checkpointing, evaluation, progress, train


class _Experiment:
  """One run's data, tasks and outputs; the `method.Context` of its tasks."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    if config.method not in METHODS:
      raise errors.UserError(
        f"unknown method {config.method!r}; known: {sorted(METHODS)}"
      )
    self.config = config
    self.workdir = workdir
    self.data = data.build(config)
    self.tasks = self.data.tasks
    self.input_shape = self.data.input_shape
    # Which records the run reads (audio sources): their name holds the
    # data's content key, so a changed folder is not resumed on.
    builder = getattr(self.data, "builder", None)
    self.records = builder and (
      f"{builder.name}/{builder.builder_config.name}/{builder.version}"
    )
    self.method = METHODS[config.method].from_config(
      config, self.input_shape, tuple(t.num_classes for t in self.tasks)
    )
    self.fit_config = method.FitConfig(**config.train.fit)
    # Read after every phase and task: kept on the devices.
    self.test_sets = [
      evaluation.to_device(self.data.eval_batches(t.index, "test"))
      for t in self.tasks
    ]
    self.validation_sets = [
      evaluation.to_device(self.data.eval_batches(t.index, "validation"))
      for t in self.tasks
    ]
    self.checkpoints = checkpointing.TaskCheckpoints(
      os.path.join(workdir, "checkpoints")
    )
    # Every finished task's checkpoint metadata, by task: results.json is
    # assembled from it while the last checkpoint is still being written.
    self.finished = {}
    self.writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0
    )
    self.task = None  # The task being learnt, and its training stream.
    self.task_stream = None
    self.global_step = 0
    self.progress = progress.RunProgress(len(self.tasks))

  # The method.Context interface.

  def batches(self, task: int):
    return data.with_task(
      self.data.train_batches(task, seed=self.config.seed * 1000 + task), task
    )

  def joint_batches(self):
    """Chunks drawn uniformly from all tasks' training clips."""
    return self.data.joint_batches(
      seed=self.config.seed * 1000 + len(self.tasks)
    )

  def validation(self, task: int):
    return self.validation_sets[task]

  def training_clips(self, task: int, num_chunks: int):
    return self.data.eval_batches(task, "train", num_chunks)

  def phase(
    self,
    params,
    trainable,
    name,
    *,
    batches=None,
    heads=None,
    validation=None,
    fit_config=None,
    **kwargs,
  ):
    task = self.task
    if batches is None:
      batches = self.task_stream
    tag = f"task{task.index}/{name}"
    model = models.get_model_class(self.method.model_name).from_params(params)
    fit_config = fit_config or self.fit_config
    on_step = self.progress.start_phase(name, fit_config.max_steps)
    try:
      result = method.fit_phase(
        model, params, trainable,
        heads or (task.index,),
        batches,
        validation or {task.index: self.validation_sets[task.index]},
        fit_config,
        writer=self.writer, step_offset=self.global_step, name=tag,
        on_step=on_step, **kwargs,
      )  # fmt: skip
    except train.NonFiniteLossError as e:
      self.save_diverged(task, tag, e)
      raise
    self.global_step += result.steps
    self.progress.end_phase(result.steps)
    return result

  # Running.

  def save_diverged(self, task, tag, error: train.NonFiniteLossError):
    model_class = models.get_model_class(self.method.model_name)
    directory = os.path.join(self.workdir, "nonfinite")
    saved = checkpointing.TaskCheckpoints(directory)
    if task.index not in saved.tasks():  # A re-run diverges the same way.
      saved.save(
        task.index,
        error.params,
        {
          "phase": tag,
          "step": error.step,
          "model": self.method.model_name,
          "architecture": checkpointing.architecture(
            model_class.from_params(error.params)
          ),
        },
      )
    saved.close()
    logging.error("%s: %s; state saved in %s", tag, error, directory)

  def initial_state(self):
    """(params, state, next task) to start from: fresh or resumed."""
    abstract = checkpointing.abstract_params(
      models.get_model_class(self.method.model_name), self.input_shape
    )
    last = self.checkpoints.resumable(abstract, with_state=True)
    if last is not None:
      params, metadata = self.checkpoints.restore(last, abstract)
      if metadata.get("records", self.records) != self.records:
        raise errors.UserError(
          f"{self.workdir} was trained on records {metadata['records']}, "
          f"but its data now gives {self.records} (the folder changed); "
          "re-run with --fresh to start anew on the new data"
        )
      logging.info("Resuming after task %d from %s", last, self.workdir)
      self.finished = {
        j: self.checkpoints.metadata(j) for j in self.checkpoints.tasks()
      }
      self.global_step = metadata["global_step"]
      return params, self.checkpoints.state(last), last + 1
    params, state = self.method.init(
      jax.random.key(self.config.seed), self.tasks[0]
    )
    return params, state, 0

  def random_init_accuracy(self, task: tasks.Task) -> float:
    """b_j: task j's test accuracy of the method's random-init reference."""
    network = self.method.random_init_network(
      task, jax.random.key(self.config.seed)
    )
    return scoring.evaluate(network, self.test_sets[task.index]).accuracy

  def networks(self, params, state, upto: int, scoring: bool = False):
    """Tasks 0..upto's networks (`scoring`: in the run's fixed shapes)."""
    network = self.method.scoring_network if scoring else self.method.network
    return [network(params, state, j) for j in range(upto + 1)]

  def write_results(self, params, state) -> dict:
    """Rebuilds results.json from the tasks' metadata and the final
    network."""
    done = sorted(self.finished)
    out = results.assemble(
      self.tasks,
      [self.finished[j] for j in done],
      capacity.capacity(self.networks(params, state, done[-1]), params),
      self.config,
      joint=self.method.joint,
    )
    if jax.process_index() == 0:  # Every process holds the same figures.
      atomic_files.write_json(os.path.join(self.workdir, "results.json"), out)
    return out

  def summarise(self, out: dict, task: int) -> None:
    """TensorBoard figures of results.json after `task` (x axis: task)."""
    row = out["accuracy_matrix"][task]
    scalars = {
      f"continual/test_accuracy/task{j}": v
      for j, v in enumerate(row)
      if v is not None
    }
    scalars.update(
      {
        "continual/average_accuracy": out["average_accuracy"],
        "continual/bwt": out["bwt"],
        "continual/class_incremental_accuracy": (
          out["final_class_incremental_accuracy"]
        ),
        "continual/total_params": out["total_params"],
        "continual/total_nonzero_params": out["total_nonzero_params"],
      }
    )
    for j, n in enumerate(out["params_per_task"][: task + 1]):
      scalars[f"continual/params/task{j}"] = n
    self.writer.write_scalars(
      task, {k: v for k, v in scalars.items() if v is not None}
    )
    lines = ["| after task | " + " | ".join(map(str, range(len(row)))) + " |"]
    lines.append("|---" * (len(row) + 1) + "|")
    for i, r in enumerate(out["accuracy_matrix"][: task + 1]):
      cells = ["" if v is None else f"{v:.3f}" for v in r]
      lines.append(f"| {i} | " + " | ".join(cells) + " |")
    self.writer.write_texts(
      task, {"continual/accuracy_matrix": "\n".join(lines)}
    )

  def zero_shot(self, params, state, task: tasks.Task) -> dict:
    """The untrained network of `task` (new head or column; for task 0 the
    initialisation): test accuracy (forward transfer; None for task 0)
    and validation loss (the bar a learnt task must get under)."""
    network = self.method.scoring_network(params, state, task.index)

    def evaluate(clips):
      return scoring.evaluate(network, clips)

    return {
      "accuracy": (
        evaluate(self.test_sets[task.index]).accuracy if task.index else None
      ),
      "validation_loss": evaluate(self.validation_sets[task.index]).loss,
    }

  def learnt(self, params, state, task: tasks.Task, zero_shot: dict) -> dict:
    """Whether `task` was learnt: its validation loss right after training
    is below its untrained network's (`zero_shot`); logged when not."""
    network = self.method.scoring_network(params, state, task.index)
    loss = scoring.evaluate(network, self.validation_sets[task.index]).loss
    if loss >= zero_shot["validation_loss"]:
      logging.warning(
        "Task %d %s NOT LEARNT: validation loss %.4f after training, "
        "%.4f untrained",
        task.index,
        task.class_names,
        loss,
        zero_shot["validation_loss"],
      )
    return {
      "validation_loss": loss,
      "zero_shot_validation_loss": zero_shot["validation_loss"],
      "learnt": bool(loss < zero_shot["validation_loss"]),
    }

  def learn(self, params, state, task: tasks.Task, rng, zero_shot):
    """Trains `task`, scores it and checkpoints it.

    `zero_shot` is `self.zero_shot` of the untrained network, or None for
    a joint run (which learns every task at once).
    """
    start = time.time()
    self.task = task
    self.task_stream = self.batches(task.index)
    params, state, record = self.method.learn_task(
      self.method.context(self), params, state, task, rng
    )
    learnt = (
      {} if zero_shot is None else self.learnt(params, state, task, zero_shot)
    )
    metadata = {
      "task": task.index,
      "model": self.method.model_name,
      "input_shape": list(self.input_shape),
      "records": self.records,
      "architecture": checkpointing.architecture(
        models.get_model_class(self.method.model_name).from_params(params)
      ),
      **scoring.after_task(
        self.networks(params, state, task.index, scoring=True),
        self.tasks[: task.index + 1],
        self.test_sets,
        self.validation_sets,
      ),
      "zero_shot_accuracy": zero_shot and zero_shot["accuracy"],
      **learnt,
      # b_j is read by forward transfer only: tasks 1.., sequential runs.
      "random_init_accuracy": (
        self.random_init_accuracy(task)
        if task.index and not self.method.joint
        else None
      ),
      "global_step": self.global_step,
      "record": record,
    }
    metadata.update(self.method.architecture_record(params, state))
    metadata["seconds"] = time.time() - start
    logging.info(
      "Task %d %s done in %.0f s: test accuracy row %s",
      task.index,
      task.class_names,
      metadata["seconds"],
      np.round(metadata["accuracy_row"], 3).tolist(),
    )
    self.checkpoints.save(task.index, params, metadata, state)
    # As read back from disk (lists, not tuples), so that a resumed run's
    # results.json equals an uninterrupted one's.
    self.finished[task.index] = json.loads(json.dumps(metadata))
    return params, state


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Learns the task sequence of `config` in `workdir`, resuming if possible.

  Args:
    config: an experiment config (see `configs/gtzan.py`);
      `config.method` picks the method from `mcl.continual.registry.METHODS`.
    workdir: output folder: checkpoints/, TensorBoard events, results.json.

  Returns:
    The content of `<workdir>/results.json`.

  Raises:
    mcl.runtime.errors.UserError: unknown method or model, or a bad task or data
      setting.
    train.NonFiniteLossError: training diverged; the state at that point
      is saved under `<workdir>/nonfinite`.
  """
  os.makedirs(workdir, exist_ok=True)
  experiment = _Experiment(config, workdir)
  learner = experiment.method
  params, state, start = experiment.initial_state()
  last = experiment.tasks[-1]
  for task in experiment.tasks[start:]:
    rng = np.random.default_rng([config.seed, task.index])
    experiment.progress.start_task(task.index)
    if task.index > 0:
      params, state = learner.begin_task(params, state, task, rng)
    zero_shot = (
      None if learner.joint else experiment.zero_shot(params, state, task)
    )
    if learner.joint and task is not last:
      continue
    params, state = experiment.learn(params, state, task, rng, zero_shot)
    experiment.progress.end_task()
    experiment.summarise(experiment.write_results(params, state), task.index)
  out = experiment.write_results(params, state)
  experiment.writer.flush()
  experiment.checkpoints.close()
  if jax.process_index() == 0:
    report.plot_run(out, workdir)
  logging.info(
    "Average accuracy %.3f, BWT %s, params per task %s",
    out["average_accuracy"],
    out["bwt"],
    out["params_per_task"],
  )
  return out
