"""The `TaskContext`: what a continual method sees while it learns a task.

The continual runner builds one per task and hands it to the method's
`learn_task` (`mcl.continual.phase.Context` is the interface): the task,
its seeded training stream, every task's validation clips, the budget of
a phase, the TensorBoard writer and `phase`, which trains one masked,
early-stopped fit (`mcl.continual.phase.fit_phase`) and keeps the run's
step count and progress line. Streams are seeded by (seed, task), so a
resumed run draws what an uninterrupted one would.
"""

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import flax.linen as nn
import numpy as np
from clu import metric_writers

from mcl.continual import phase as phases
from mcl.datasets import task_data, tasks
from mcl.trainer import fit, progress, train


@dataclasses.dataclass
class TaskContext:
  """One task's side of the run (see the module docstring).

  Attributes:
    task: the task being learnt.
    data: the run's task data (`mcl.datasets.task_data.TaskData`).
    validation_sets: every task's validation batches (on the devices).
    fit_config: the budget of a phase.
    writer: TensorBoard scalars of every phase at the run's global step.
    model: params -> the module that applies them (the method's).
    progress: the run's progress line.
    seed: the run's seed; task j's stream is seeded by seed * 1000 + j.
    step_offset: the run's optimizer steps before this task.
    on_diverge: called with (task index, phase tag, error) before a
      `NonFiniteLossError` propagates (saves the diverged parameters).
    fitter: trains a phase: `mcl.trainer.fit.fit`, or a replica group's
      (`mcl.experiments.continual.replica_group`).
    steps: optimizer steps of this task's phases so far.
  """

  task: tasks.Task
  data: task_data.TaskData
  validation_sets: Sequence[list[dict]]
  fit_config: phases.FitConfig
  writer: metric_writers.MetricWriter
  model: Callable[[dict], nn.Module]
  progress: progress.RunProgress
  seed: int
  step_offset: int
  on_diverge: Callable[[int, str, train.NonFiniteLossError], None]
  fitter: Callable[..., fit.FitResult] = fit.fit
  steps: int = 0
  stream: Iterator[dict[str, np.ndarray]] = dataclasses.field(init=False)

  def __post_init__(self):
    self.stream = self.batches(self.task.index)

  @property
  def global_step(self) -> int:
    """The run's optimizer steps so far (x axis of TensorBoard)."""
    return self.step_offset + self.steps

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
  ) -> fit.FitResult:
    """`mcl.continual.phase.fit_phase` on this task unless told otherwise.

    `batches` default to the task's stream, `heads` to its head,
    `validation` to its validation clips, `fit_config` to the run's.

    Raises:
      mcl.trainer.train.NonFiniteLossError: the phase diverged (after
        `on_diverge`).
    """
    index = self.task.index
    tag = f"task{index}/{name}"
    fit_config = fit_config or self.fit_config
    on_step = self.progress.start_phase(name, fit_config.max_steps)
    try:
      result = phases.fit_phase(
        self.model(params), params, trainable,
        heads or (index,),
        self.stream if batches is None else batches,
        validation or {index: self.validation_sets[index]},
        fit_config,
        writer=self.writer, step_offset=self.global_step, name=tag,
        on_step=on_step, fitter=self.fitter, **kwargs,
      )  # fmt: skip
    except train.NonFiniteLossError as e:
      self.on_diverge(index, tag, e)
      raise
    self.steps += result.steps
    self.progress.end_phase(result.steps)
    return result

  def batches(self, task: int) -> Iterator[dict[str, np.ndarray]]:
    """A fresh seeded stream of task `task`'s training chunks."""
    stream = self.data.train_batches(task, seed=self.seed * 1000 + task)
    return task_data.with_task(stream, task)

  def joint_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """Chunks drawn uniformly from all tasks' training clips."""
    return self.data.joint_batches(seed=self.seed * 1000 + len(self.data.tasks))

  def validation(self, task: int) -> list[dict]:
    """Task `task`'s validation batches."""
    return self.validation_sets[task]

  def training_clips(self, task: int, num_chunks: int) -> list[dict]:
    """Task `task`'s training clips as evenly spaced chunks (eval layout)."""
    return self.data.eval_batches(task, "train", num_chunks)
