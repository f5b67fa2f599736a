"""Training schedules as data: stages, budgets, and the two in use.

A `Recipe` is a tuple of `Stage`s (update direction, learning rate,
patience) with the shared optimizer settings and the budget;
`mcl.trainer.fit.fit` runs it. A continual phase is `continual(...)`: one Adam
stage, early stopped. Won et al.'s tagging schedule is `won_2020`.

Won, Ferraro, Bogdanov & Serra, "Evaluation of CNN-based automatic music
tagging models" (SMC 2020), reference code
minzwon/sota-music-tagging-models, training/solver.py (`opt_schedule`):
Adam (lr 1e-4), then SGD with Nesterov momentum 0.9 at 1e-3, 1e-4 and
1e-5, each with torch's coupled weight decay 1e-4; every switch reloads the
best model so far.

Where `mcl.trainer.fit` differs from solver.py: solver.py never resets
its drop counter on improvement, so its stages are fixed lengths (80 Adam
epochs, 20 + 20 SGD epochs, then SGD at 1e-5 until epoch 200); set
`Recipe.patience_resets_on_improvement=False` for that. Its SGD momentum
buffers carry over the two learning-rate drops (only the rate changes, the
weights are reloaded); here every stage starts a fresh optimizer state. Its
validation loss is the BCE of every chunk against the clip's tags (mean over
chunks); here it is the BCE of the clip probabilities. It keeps a checkpoint
only when that loss is below 1 (score 1 - loss > 0); here any improvement
counts.
"""

import dataclasses

import optax

from mcl.trainer import optimizer


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a recipe.

  Attributes:
    optimizer: an `mcl.trainer.optimizer.direction` name: "adam" or "sgd"
      (Nesterov momentum).
    learning_rate: step size.
    patience: drop-counter value (validation passes) that ends the stage.
  """

  optimizer: str
  learning_rate: float
  patience: int

  def __post_init__(self):
    if self.optimizer not in optimizer.DIRECTIONS:
      raise ValueError(
        f"unknown optimizer {self.optimizer!r}; known: "
        f"{sorted(optimizer.DIRECTIONS)}"
      )
    if self.learning_rate < 0 or self.patience < 1:
      raise ValueError(f"need learning_rate >= 0 and patience >= 1: {self}")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The staged schedule and budget of a fit.

  Attributes:
    stages: run in order; the last one ends the fit when its patience runs
      out.
    weight_decay: coupled L2 coefficient, added to the gradient.
    momentum: SGD momentum (Nesterov).
    eval_every: training steps per validation pass (at most; a pass ends
      early when its batch iterator runs out or the step budget is spent).
    max_evals: budget of validation passes over all stages.
    patience_resets_on_improvement: True: the drop counter counts passes
      since the last improvement; False: passes since the stage began.
    max_steps: budget of optimizer steps, or None for
      max_evals * eval_every.
  """

  stages: tuple[Stage, ...]
  weight_decay: float
  momentum: float
  eval_every: int
  max_evals: int
  patience_resets_on_improvement: bool = True
  max_steps: int | None = None

  def __post_init__(self):
    # A tuple keeps the recipe hashable when given a list.
    object.__setattr__(self, "stages", tuple(self.stages))
    if not self.stages or self.eval_every < 1 or self.max_evals < 1:
      raise ValueError(
        f"need a stage, eval_every >= 1 and max_evals >= 1: {self}"
      )

  @property
  def step_budget(self) -> int:
    if self.max_steps is None:
      return self.max_evals * self.eval_every
    return self.max_steps


def continual(
  learning_rate: float, max_steps: int, eval_every: int, patience: int
) -> Recipe:
  """A continual phase: Adam, early stopping after `patience` passes
  without improvement, at most `max_steps` steps (the last pass may be
  shorter)."""
  return Recipe(
    stages=(Stage("adam", learning_rate, patience),),
    weight_decay=0.0,
    momentum=0.9,
    eval_every=eval_every,
    max_evals=-(-max_steps // eval_every),
    max_steps=max_steps,
  )


def stage_direction(
  stage: Stage, recipe: Recipe
) -> optax.GradientTransformation:
  """The stage's `mcl.trainer.optimizer.direction` with the recipe's decay (one
  cached object per kind, so stages of one kind share a compiled step)."""
  return optimizer.direction(
    stage.optimizer, recipe.weight_decay, recipe.momentum
  )


def won_2020(eval_every: int, max_evals: int = 200) -> Recipe:
  """The schedule of solver.py (batch 16 is the data's business).

  Args:
    eval_every: training steps per epoch (one validation pass per epoch).
    max_evals: epochs.

  Returns:
    Adam 1e-4 for 80 passes, Nesterov SGD 1e-3 and 1e-4 for 20 passes each,
    then SGD 1e-5 until the budget; weight decay 1e-4, momentum 0.9; stage
    lengths fixed as in the reference.
  """
  return Recipe(
    stages=(
      Stage("adam", 1e-4, 80),
      Stage("sgd", 1e-3, 20),
      Stage("sgd", 1e-4, 20),
      Stage("sgd", 1e-5, max_evals),
    ),
    weight_decay=1e-4,
    momentum=0.9,
    eval_every=eval_every,
    max_evals=max_evals,
    patience_resets_on_improvement=False,
  )
