"""The staged Adam-then-SGD recipe of Won et al. (SMC 2020) as data.

Won, Ferraro, Bogdanov & Serra, "Evaluation of CNN-based automatic music
tagging models" (SMC 2020), reference code
minzwon/sota-music-tagging-models, training/solver.py (`opt_schedule`):
Adam (lr 1e-4), then SGD with Nesterov momentum 0.9 at 1e-3, 1e-4 and
1e-5, each with torch's coupled weight decay 1e-4; every switch reloads the
best model so far. The schedule is an `mcl.fit.Recipe`: a tuple of
`Stage`s with the shared optimizer settings and the budget.

Where `mcl.fit` differs from solver.py: solver.py never resets
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

from mcl import fit


def won_2020(eval_every: int, max_evals: int = 200) -> fit.Recipe:
  """The schedule of solver.py (batch 16 is the data's business).

  Args:
    eval_every: training steps per epoch (one validation pass per epoch).
    max_evals: epochs.

  Returns:
    Adam 1e-4 for 80 passes, Nesterov SGD 1e-3 and 1e-4 for 20 passes each,
    then SGD 1e-5 until the budget; weight decay 1e-4, momentum 0.9; stage
    lengths fixed as in the reference.
  """
  return fit.Recipe(
    stages=(
      fit.Stage("adam", 1e-4, 80),
      fit.Stage("sgd", 1e-3, 20),
      fit.Stage("sgd", 1e-4, 20),
      fit.Stage("sgd", 1e-5, max_evals),
    ),
    weight_decay=1e-4,
    momentum=0.9,
    eval_every=eval_every,
    max_evals=max_evals,
    patience_resets_on_improvement=False,
  )
