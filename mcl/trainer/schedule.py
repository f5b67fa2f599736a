"""Where a fit stands between validation passes, and what a pass decides.

The stage and patience rule of `mcl.trainer.fit.fit`, as plain data and
pure functions (no JAX, nothing on a device), so a recipe change is read
and tested here: after every validation pass, `advance` records the pass,
keeps the best one (the lowest validation loss), and moves the drop
counter; when the counter reaches the stage's patience the fit moves to
the next stage (restarting from the best variables, which the fit does)
or, after the last stage, stops. `running` says whether another pass is
due: the budget of passes (`max_evals`) and of steps (`step_budget`) are
both honoured.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # The recipe is only read; importing it would pull optax.
  from mcl.trainer.recipe import Recipe


@dataclasses.dataclass(frozen=True)
class PassRecord:
  """One validation pass.

  Attributes:
    index: 0-based pass number over the fit.
    step: optimizer steps done after the pass, over all stages.
    stage: index of the stage that trained it.
    learning_rate: that stage's step size.
    train_loss: mean training loss over the pass's steps.
    validation_loss: clip-level validation loss.
    scores: the evaluation's other figures.
    improved: the validation loss was the lowest so far.
  """

  index: int
  step: int
  stage: int
  learning_rate: float
  train_loss: float
  validation_loss: float
  scores: dict
  improved: bool


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where a fit stands between passes; saved as the checkpoint metadata.

  Attributes:
    passes: validation passes done.
    stage: index of the stage the next pass trains in.
    drop_counter: passes since the counter was last reset (by an
      improvement when the recipe resets on improvement, or a new stage).
    best_pass: index of the best pass (-1: the initial variables or none).
    best_loss: its validation loss (inf when none).
    best_scores: its other figures.
    initial_loss: validation loss of the starting variables, when scored.
    stopped: the last stage's patience ran out.
    history: every pass so far.
  """

  passes: int = 0
  stage: int = 0
  drop_counter: int = 0
  best_pass: int = -1
  best_loss: float = math.inf
  best_scores: dict = dataclasses.field(default_factory=dict)
  initial_loss: float | None = None
  stopped: bool = False
  history: tuple[PassRecord, ...] = ()

  @classmethod
  def from_json(cls, metadata: dict) -> Progress:
    """The progress saved by `dataclasses.asdict` (extra keys ignored)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    progress = cls(**{k: v for k, v in metadata.items() if k in fields})
    history = tuple(PassRecord(**r) for r in progress.history)
    return dataclasses.replace(progress, history=history)

  def scored_initial(self, loss: float, scores: dict) -> Progress:
    """The starting variables scored as pass -1 (the best until beaten)."""
    return dataclasses.replace(
      self, initial_loss=loss, best_loss=loss, best_scores=dict(scores)
    )


def running(progress: Progress, step: int, recipe: Recipe) -> bool:
  """Whether another pass is due after `step` optimizer steps."""
  return (
    progress.passes < recipe.max_evals
    and not progress.stopped
    and step < recipe.step_budget
  )


def pass_steps(step: int, recipe: Recipe) -> int:
  """Steps the next pass takes: `eval_every`, or what the budget leaves."""
  return min(recipe.eval_every, recipe.step_budget - step)


def advance(progress: Progress, record: PassRecord, recipe: Recipe) -> Progress:
  """The progress after `record`'s pass: best, drop counter, stage, stop.

  Args:
    progress: before the pass (`record.index == progress.passes`).
    record: the pass; `record.improved` decides whether it is the best.
    recipe: the stages' patience and `patience_resets_on_improvement`.

  Returns:
    The new progress; `stage` is one more when the pass ended its stage
    (the drop counter then restarts at 0), `stopped` when it ended the
    last one.
  """
  best = {}
  if record.improved:
    best = {
      "best_pass": record.index,
      "best_loss": record.validation_loss,
      "best_scores": dict(record.scores),
    }
  reset = record.improved and recipe.patience_resets_on_improvement
  drops = 0 if reset else progress.drop_counter + 1
  stage, stopped = progress.stage, False
  if drops >= recipe.stages[stage].patience:
    if stage + 1 == len(recipe.stages):
      stopped = True
    else:
      stage, drops = stage + 1, 0
  return dataclasses.replace(
    progress,
    **best,
    passes=progress.passes + 1,
    stage=stage,
    drop_counter=drops,
    stopped=stopped,
    history=progress.history + (record,),
  )
