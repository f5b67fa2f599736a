"""A training phase of a continual method, and what a method trains through.

A phase is one early-stopped fit (`mcl.trainer.fit.fit`, a one-stage Adam
recipe of `FitConfig`'s budget) under a 0/1 mask of trainable entries,
scored on the mean clip-level validation loss of the task heads it trains.
A method learns a task through a `Context` (the experiment's side: the
task's stream, the validation clips, the budget, `phase`); the continual
experiment hands it `mcl.experiments.continual.context.TaskContext`.
"""

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

import flax.linen as nn
import jax
import numpy as np

from mcl.datasets import input_pipeline
from mcl.trainer import evaluation, fit, train
from mcl.trainer import recipe as recipes

Params = dict


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Budget of one training phase (`mcl.trainer.recipe.continual`).

  Attributes:
    learning_rate: Adam step size.
    max_steps: upper bound on optimizer steps.
    eval_every: steps between validation passes (and loss checks).
    patience: validation passes without improvement before stopping.
  """

  learning_rate: float
  max_steps: int
  eval_every: int
  patience: int

  def recipe(self) -> recipes.Recipe:
    return recipes.continual(
      self.learning_rate, self.max_steps, self.eval_every, self.patience
    )


class Context(Protocol):
  """The runner's side: training data and the phase loop of one task."""

  fit_config: FitConfig

  def phase(
    self,
    params: Params,
    trainable: Params,
    name: str,
    *,
    penalty: train.Term | None = None,
    proximal: train.Term | None = None,
    batches: Iterator[dict[str, np.ndarray]] | None = None,
    heads: tuple[int, ...] | None = None,
    validation: Mapping[int, Sequence[dict]] | None = None,
    fit_config: FitConfig | None = None,
    loss: Callable | None = None,
    evaluate: Callable[[dict], fit.Evaluation] | None = None,
  ) -> fit.FitResult:
    """`fit.fit` of the current task (defaults) or of given streams.

    `batches` default to the current task's stream, `heads` to its head,
    `validation` to its validation clips, `fit_config` to the run's;
    `loss` and `evaluate` are `fit_phase`'s.
    """
    ...

  def batches(self, task: int) -> Iterator[dict[str, np.ndarray]]:
    """A fresh seeded stream of task `task`'s training chunks."""
    ...

  def joint_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """A seeded stream of chunks from every task's training clips."""
    ...

  def validation(self, task: int) -> list[dict]:
    """Task `task`'s validation batches."""
    ...

  def training_clips(self, task: int, num_chunks: int) -> list[dict]:
    """Task `task`'s training clips as evenly spaced chunks (eval layout)."""
    ...


def fit_phase(
  model: nn.Module,
  params: Params,
  trainable: Params,
  heads: tuple[int, ...],
  batches: Iterator[dict[str, np.ndarray]],
  validation: Mapping[int, Sequence[dict]],
  fit_config: FitConfig,
  *,
  penalty: train.Term | None = None,
  proximal: train.Term | None = None,
  loss: Callable | None = None,
  evaluate: Callable[[dict], fit.Evaluation] | None = None,
  fitter: Callable[..., fit.FitResult] = fit.fit,
  **kwargs,
) -> fit.FitResult:
  """One phase: a one-stage Adam fit under a mask, early-stopped on the
  mean clip-level validation loss over `validation`'s heads.

  Args:
    model: the network, widths matching `params`.
    params: starting parameters; they count as the best pass until a
      pass improves on their validation loss.
    trainable: 0./1. mask like `params`.
    heads: task ids that occur in the training batches.
    batches: global training batches {"inputs", "label", "task"}, the same
      stream in every process (each takes its rows).
    validation: {head: its validation batches}.
    fit_config: the budget.
    penalty: added to the loss, or None.
    proximal: applied after every update, or None.
    loss: `loss(outputs, batch) -> scalar`; None: each example's
      cross-entropy on its own task's head (`train.TaskCrossEntropy`).
    evaluate: variables -> `fit.Evaluation` of a validation pass; None:
      the mean over `validation`'s heads (class-incremental methods score
      among all seen classes instead).
    fitter: `fit.fit`, or a callable of its signature that trains the
      phase with other runs' (`mcl.experiments.continual.replica_group`).
    **kwargs: `fit.fit`'s writer, step_offset and name.

  Returns:
    The best parameters (`result.params`), with validation loss and
    "accuracy" (means over the heads) before and after.

  Raises:
    mcl.trainer.train.NonFiniteLossError: the training loss became NaN or
      infinite.
  """

  def by_heads(variables):
    results = [
      evaluation.evaluate_labels(model, variables, clips, head)
      for head, clips in validation.items()
    ]
    return fit.Evaluation(
      float(np.mean([r.loss for r in results])),
      {"accuracy": float(np.mean([r.accuracy for r in results]))},
    )

  stream = input_pipeline.process_rows(
    batches, jax.process_index(), jax.process_count()
  )
  return fitter(
    model,
    {"params": params},
    lambda _: stream,
    evaluate or by_heads,
    fit_config.recipe(),
    loss=loss or train.TaskCrossEntropy(tuple(heads)),
    rng=jax.random.key(0),
    trainable=trainable,
    penalty=penalty,
    proximal=proximal,
    score_initial=True,
    **kwargs,
  )
