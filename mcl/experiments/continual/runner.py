"""Runs a continual-learning method over a task sequence and scores it.

For each task the runner lets the method add the task's head or column
(`begin_task`), scores that untrained network on the task (the zero-shot
score of forward transfer), lets the method train (`learn_task`), then
scores every task seen so far on the test and validation splits, saves an
Orbax checkpoint (parameters, method state, JSON metadata with everything
results.json needs) and rewrites `<workdir>/results.json`. A re-run with the
same workdir resumes after the last checkpointed task; every random stream
is derived from (seed, task), so a resumed run equals an uninterrupted one.

The method learns through a `TaskContext` (`context.py`); what a task
produced is a `TaskRecord` (`record.py`), saved as its checkpoint's
metadata, and results.json is assembled from the records (`results.py`).

What a user sees: a progress line per phase (`mcl.trainer.progress`: task
i/T, steps/s, the whole run's ETA); in TensorBoard, besides every phase's
losses (x: global step), after each task i (x: i) the test accuracy of
every task so far (`continual/test_accuracy/task<j>`, column j of the
accuracy matrix), the average accuracy, BWT, class-incremental accuracy,
the parameters of each task's network, and the matrix as text; at the end,
`accuracy_matrix.png`, `capacity.png` and `confusion_matrix.png`
beside results.json
(`mcl.analysis.run_plots.plot_run`).
"""

import os
import threading
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from mcl.analysis import run_plots
from mcl.continual import capacity, phase, registry, scoring
from mcl.datasets import from_config, tasks
from mcl.experiments import outputs
from mcl.experiments.continual import results
from mcl.experiments.continual.context import TaskContext
from mcl.experiments.continual.record import TaskRecord
from mcl.runtime import errors
from mcl.trainer import checkpointing, evaluation, fit, progress

# The runs of a replica group start in threads of one process; records
# are built (or found built) by one at a time, so two folds of one
# dataset never write its records at once.
_BUILDING = threading.Lock()


class _Run:
  """One run's data, method, evaluation sets, checkpoints and records."""

  def __init__(
    self, config: ml_collections.ConfigDict, workdir: str, data, fitter
  ):
    method_class = registry.method_class(config)
    self.config = config
    self.workdir = workdir
    if data is None:
      with _BUILDING:
        data = from_config.build(config)
    self.data = data
    self.tasks = self.data.tasks
    # Which records the run reads (audio sources, arrays): their name holds
    # the data's content key, so changed data is not resumed on.
    builder = getattr(self.data, "builder", None)
    self.records = getattr(self.data, "records", None) or (
      builder
      and f"{builder.name}/{builder.builder_config.name}/{builder.version}"
    )
    self.method = method_class.from_config(
      config, self.data.input_shape, tuple(t.num_classes for t in self.tasks)
    )
    # Read after every phase and task: kept on the devices.
    self.test_sets, self.validation_sets = (
      [
        evaluation.to_device(self.data.eval_batches(t.index, split))
        for t in self.tasks
      ]
      for split in ("test", "validation")
    )
    self.checkpoints = checkpointing.TaskCheckpoints(
      os.path.join(workdir, "checkpoints")
    )
    # Every finished task's record: results.json is assembled from them.
    self.finished: dict[int, TaskRecord] = {}
    self.writer = outputs.writer(workdir, config)
    self.fitter = fitter
    self.global_step = 0
    self.progress = progress.RunProgress(len(self.tasks))

  def context(self, task: tasks.Task) -> TaskContext:
    """What the method sees while it learns `task`."""
    return TaskContext(
      task=task,
      data=self.data,
      validation_sets=self.validation_sets,
      fit_config=phase.FitConfig(**self.config.train.fit),
      writer=self.writer,
      model=self.method.model,
      progress=self.progress,
      seed=self.config.seed,
      step_offset=self.global_step,
      on_diverge=self.save_diverged,
      fitter=self.fitter,
    )

  def save_diverged(self, task: int, tag: str, error):
    """The parameters of a diverged phase (`error`, a
    `NonFiniteLossError`), under `<workdir>/nonfinite`."""
    directory = os.path.join(self.workdir, "nonfinite")
    saved = checkpointing.TaskCheckpoints(directory)
    if task not in saved.tasks():  # A re-run diverges the same way.
      saved.save(
        task,
        error.params,
        {
          "phase": tag,
          "step": error.step,
          "model": self.method.model_name,
          "architecture": checkpointing.architecture(
            self.method.model(error.params)
          ),
        },
      )
    saved.close()
    logging.error("%s: %s; state saved in %s", tag, error, directory)

  def initial_state(self):
    """(params, state, next task) to start from: fresh or resumed."""
    abstract = checkpointing.abstract_params(
      self.method.model_class, self.data.input_shape
    )
    last = self.checkpoints.resumable(abstract, with_state=True)
    if last is None:
      params, state = self.method.init(
        jax.random.key(self.config.seed), self.tasks[0]
      )
      return params, state, 0
    params, metadata = self.checkpoints.restore(last, abstract)
    record = TaskRecord.from_json(metadata)
    if (record.records or self.records) != self.records:
      raise errors.UserError(
        f"{self.workdir} was trained on records {record.records}, "
        f"but its data now gives {self.records} (the folder changed); "
        "re-run with --fresh to start anew on the new data"
      )
    logging.info("Resuming after task %d from %s", last, self.workdir)
    self.finished = {
      j: TaskRecord.from_json(self.checkpoints.metadata(j))
      for j in self.checkpoints.tasks()
    }
    self.global_step = record.global_step
    return params, self.checkpoints.state(last), last + 1

  def zero_shot(self, params, state, task: tasks.Task) -> dict:
    """The untrained network of `task` (new head or column; for task 0 the
    initialisation): test accuracy (forward transfer; None for task 0
    and in the class-incremental scenario) and validation loss (the bar
    a learnt task must get under)."""
    accuracy = None
    if task.index and self.method.scenario != scoring.CLASS_INCREMENTAL:
      network = self.method.scoring_network(params, state, task.index)
      accuracy = scoring.evaluate(network, self.test_sets[task.index]).accuracy
    return {
      "accuracy": accuracy,
      "validation_loss": self.validation_loss(params, state, task),
    }

  def validation_loss(self, params, state, task: tasks.Task) -> float:
    """`task`'s clip-level validation loss (`scoring.validation_loss`)."""
    return scoring.validation_loss(
      self.method,
      params,
      state,
      self.tasks[: task.index + 1],
      self.validation_sets,
    )

  def learnt(self, params, state, task: tasks.Task, zero_shot: dict) -> dict:
    """Whether `task` was learnt: its validation loss right after training
    is below its untrained network's (`zero_shot`); logged when not."""
    loss = self.validation_loss(params, state, task)
    untrained = zero_shot["validation_loss"]
    if loss >= untrained:
      logging.warning(
        "Task %d %s NOT LEARNT: validation loss %.4f after training, "
        "%.4f untrained",
        task.index,
        task.class_names,
        loss,
        untrained,
      )
    return {
      "validation_loss": loss,
      "zero_shot_validation_loss": untrained,
      "learnt": bool(loss < untrained),
    }

  def random_init_accuracy(self, task: tasks.Task) -> float | None:
    """b_j: task j's test accuracy of the method's random-init reference;
    read by forward transfer only (tasks 1.., sequential runs)."""
    if (
      not task.index
      or self.method.joint
      or self.method.scenario == scoring.CLASS_INCREMENTAL
    ):
      return None
    network = self.method.random_init_network(
      task, jax.random.key(self.config.seed)
    )
    return scoring.evaluate(network, self.test_sets[task.index]).accuracy

  def learn(self, params, state, task: tasks.Task, rng, zero_shot):
    """Trains `task`, scores it and checkpoints its `TaskRecord`.

    `zero_shot` is `self.zero_shot` of the untrained network, or None for
    a joint run (which learns every task at once).
    """
    start = time.time()
    context = self.context(task)
    params, state, method_record = self.method.learn_task(
      self.method.context(context), params, state, task, rng
    )
    self.global_step = context.global_step
    learnt = (
      self.learnt(params, state, task, zero_shot)
      if zero_shot
      else dict.fromkeys(("validation_loss", "zero_shot_validation_loss"))
    )
    record = TaskRecord(
      task=task.index,
      model=self.method.model_name,
      input_shape=list(self.data.input_shape),
      records=self.records,
      architecture=checkpointing.architecture(self.method.model(params)),
      **scoring.after_task(
        self.method,
        params,
        state,
        self.tasks[: task.index + 1],
        self.test_sets,
        self.validation_sets,
      ),
      zero_shot_accuracy=zero_shot and zero_shot["accuracy"],
      random_init_accuracy=self.random_init_accuracy(task),
      learnt=learnt.pop("learnt", None),
      **learnt,
      global_step=self.global_step,
      record=method_record,
      network=self.method.architecture_record(params, state),
      seconds=time.time() - start,
    )
    logging.info(
      "Task %d %s done in %.0f s: test accuracy row %s",
      task.index,
      task.class_names,
      record.seconds,
      np.round(record.accuracy_row, 3).tolist(),
    )
    metadata = record.to_json()
    self.checkpoints.save(task.index, params, metadata, state)
    # As read back from disk (lists, not tuples), so that a resumed run's
    # results.json equals an uninterrupted one's.
    self.finished[task.index] = TaskRecord.from_json(metadata)
    return params, state

  def write_results(self, params, state) -> dict:
    """Rebuilds results.json from the records and the final network."""
    done = sorted(self.finished)
    networks = [
      self.method.network(params, state, j) for j in range(done[-1] + 1)
    ]
    out = results.assemble(
      self.tasks,
      [self.finished[j] for j in done],
      capacity.capacity(networks, params),
      self.config,
      joint=self.method.joint,
      scenario=self.method.scenario,
    )
    out = outputs.write_results(self.workdir, out)
    outputs.write_metrics_csv(self.workdir, out)
    return out


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  data=None,
  fitter: Callable[..., fit.FitResult] = fit.fit,
) -> dict:
  """Learns the task sequence of `config` in `workdir`, resuming if possible.

  Args:
    config: an experiment config (see `configs/gtzan.py`);
      `config.scenario` and `config.method` pick the method
      (`mcl.continual.registry.method_class`).
    workdir: output folder: checkpoints/, TensorBoard events, results.json.
    data: a `mcl.datasets.task_data.TaskData` to learn instead of
      `config.data`'s (e.g. `mcl.datasets.arrays.from_arrays`).
    fitter: trains each phase: `mcl.trainer.fit.fit`, or a replica
      group's, which trains it with the other runs of the group
      (`mcl.experiments.continual.replica_group`).

  Returns:
    The content of `<workdir>/results.json`.

  Raises:
    mcl.runtime.errors.UserError: unknown method or model, or a bad task
      or data setting.
    train.NonFiniteLossError: training diverged; the state at that point
      is saved under `<workdir>/nonfinite`.
  """
  os.makedirs(workdir, exist_ok=True)
  experiment = _Run(config, workdir, data, fitter)
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
    out = experiment.write_results(params, state)
    results.summarise(experiment.writer, out, task.index)
  out = experiment.write_results(params, state)
  experiment.writer.close()
  experiment.checkpoints.close()
  if jax.process_index() == 0:
    run_plots.plot_run(out, workdir)
  logging.info(
    "Average accuracy %.3f, BWT %s, params per task %s",
    out["average_accuracy"],
    out["bwt"],
    out["params_per_task"],
  )
  return out
