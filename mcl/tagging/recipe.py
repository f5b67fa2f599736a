"""The staged Adam-then-SGD recipe of Won et al. (SMC 2020) as data.

Won, Ferraro, Bogdanov & Serra, "Evaluation of CNN-based automatic music
tagging models" (SMC 2020), reference code
minzwon/sota-music-tagging-models, training/solver.py (`opt_schedule`):
Adam (lr 1e-4), then SGD with Nesterov momentum 0.9 at 1e-3, 1e-4 and
1e-5, each with torch's coupled weight decay 1e-4; every switch reloads the
best model so far. A `Recipe` is a tuple of `Stage`s with the shared
optimizer settings and the budget, so other schedules are data too.

Where `mcl.tagging.train` differs from solver.py: solver.py never resets
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
from collections.abc import Callable

import optax


def _adam(
  learning_rate: float, momentum: float
) -> optax.GradientTransformation:
  del momentum  # Adam keeps torch's default betas (0.9, 0.999), eps 1e-8.
  return optax.adam(learning_rate)


def _sgd_nesterov(
  learning_rate: float, momentum: float
) -> optax.GradientTransformation:
  return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


# (learning rate, momentum) -> optimizer without weight decay.
OPTIMIZERS: dict[
  str, Callable[[float, float], optax.GradientTransformation]
] = {
  "adam": _adam,
  "sgd": _sgd_nesterov,
}


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of the recipe.

  Attributes:
    optimizer: a key of `OPTIMIZERS`: "adam" or "sgd" (Nesterov momentum).
    learning_rate: step size.
    patience: drop-counter value (validation passes) that ends the stage.
  """

  optimizer: str
  learning_rate: float
  patience: int

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(
        f"unknown optimizer {self.optimizer!r}; known: {sorted(OPTIMIZERS)}"
      )
    if self.learning_rate < 0 or self.patience < 1:
      raise ValueError(f"need learning_rate >= 0 and patience >= 1: {self}")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The staged schedule and budget of a run.

  Attributes:
    stages: run in order; the last one ends the run when its patience runs
      out.
    weight_decay: coupled L2 coefficient, added to the gradient.
    momentum: SGD momentum (Nesterov).
    eval_every: training steps per validation pass (at most; a pass ends
      early when its batch iterator runs out).
    max_evals: budget of validation passes over all stages.
    patience_resets_on_improvement: True: the drop counter counts passes
      since the last improvement; False: passes since the stage began, as
      in solver.py (fixed stage lengths).
  """

  stages: tuple[Stage, ...]
  weight_decay: float
  momentum: float
  eval_every: int
  max_evals: int
  patience_resets_on_improvement: bool = True

  def __post_init__(self):
    # A tuple keeps the recipe hashable when given a list.
    object.__setattr__(self, "stages", tuple(self.stages))
    if not self.stages or self.eval_every < 1 or self.max_evals < 1:
      raise ValueError(
        f"need a stage, eval_every >= 1 and max_evals >= 1: {self}"
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


def stage_optimizer(
  stage: Stage, recipe: Recipe
) -> optax.GradientTransformation:
  """The stage's optimizer with torch-style weight decay.

  torch's `weight_decay` adds wd * theta to the gradient before Adam's
  moments or SGD's momentum buffer; `optax.add_decayed_weights` placed
  first in the chain does the same (unlike AdamW's decoupled decay).
  """
  return optax.chain(
    optax.add_decayed_weights(recipe.weight_decay),
    OPTIMIZERS[stage.optimizer](stage.learning_rate, recipe.momentum),
  )
