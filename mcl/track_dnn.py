"""Genre classification from FMA's 518 track features: a fully connected
network (`mcl.models.feature_dnn`) beside scikit-learn references.

`config.experiment = "track_features"`. The features of a labelled folder
come from `mcl.datasets.track_table` (computed once, cached), split by
folds: for each test fold f in `config.data.test_folds`, validation is
fold f + 1 and training the rest (`mcl.tasks.fold_split`). Inputs are
standardised with the training split's mean and standard deviation. The
network trains with the one fit (`mcl.fit.fit`, Adam, early stopping on
the validation loss) and the best variables are tested. The references,
fitted on the same standardised training split: scikit-learn's
`MLPClassifier` (logistic hidden units, the same widths, early stopping
on a held-out tenth of the training split) and an RBF `SVC` (C = 1), as
in the FMA paper's baselines. `<workdir>/results.json` holds every fold's
test accuracy of the three and their means.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from sklearn import neural_network, svm

from mcl import evaluation, fit, recipe, tasks, train
from mcl.datasets import track_table
from mcl.models import feature_dnn


def _folds(expression: str) -> list[int]:
  """'fold2+fold3' -> [2, 3]."""
  return [int(part[len("fold") :]) for part in expression.split("+")]


def _batches(x, y, batch_size: int, seed: int):
  """Endless shuffled minibatches {"inputs", "label"}, seeded."""
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(len(y))
    for start in range(0, len(y) - batch_size + 1, batch_size):
      rows = order[start : start + batch_size]
      yield {"inputs": x[rows], "label": y[rows]}


def _clips(x, y):
  """Evaluation batches of single-chunk clips: inputs [clips, 1, 518]."""
  return [{"inputs": x[:, None], "label": y, "mask": np.ones(len(y))}]


def fold(config, table: track_table.TrackTable, test_fold: int, workdir):
  """Trains and tests the network and the references on one test fold.

  Returns:
    {"dnn", "mlp", "svm": test accuracy; "validation_loss", "steps"}.
  """
  split = tasks.fold_split(test_fold, config.data.num_folds)
  (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
    table.split(_folds(e)) for e in (split.train, split.validation, split.test)
  )
  mean, std = x_train.mean(axis=0), x_train.std(axis=0)
  std = np.where(std > 1e-8, std, 1.0)
  x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))

  model = feature_dnn.FeatureDNN(
    hidden=tuple(config.model.hidden),
    num_classes=len(table.label_names),
    dropout_rate=config.model.dropout_rate,
  )
  key = jax.random.key(config.seed * 1000 + test_fold)
  variables = model.init(key, jnp.zeros((1, x_train.shape[1])), train=False)

  def validate(variables):
    result = evaluation.evaluate_labels(model, variables, _clips(x_val, y_val))
    return fit.Evaluation(result.loss, {"accuracy": result.accuracy})

  budget = config.train.fit
  result = fit.fit(
    model,
    variables,
    lambda p: _batches(
      x_train, y_train, config.train.batch_size, config.seed * 1000 + p
    ),
    validate,
    recipe.continual(
      budget.learning_rate, budget.max_steps, budget.eval_every, budget.patience
    ),
    loss=train.CrossEntropy(),
    rng=key,
    workdir=os.path.join(workdir, f"fold{test_fold}"),
    writer=metric_writers.create_default_writer(workdir, just_logging=True),
    name=f"fold{test_fold}",
  )
  test = evaluation.evaluate_labels(
    model, result.variables, _clips(x_test, y_test)
  )
  mlp = neural_network.MLPClassifier(
    hidden_layer_sizes=tuple(config.model.hidden),
    activation="logistic",
    early_stopping=True,
    max_iter=2000,
    random_state=config.seed,
  ).fit(x_train, y_train)
  svc = svm.SVC(kernel="rbf", C=1.0).fit(x_train, y_train)
  return {
    "dnn": test.accuracy,
    "mlp": float(mlp.score(x_test, y_test)),
    "svm": float(svc.score(x_test, y_test)),
    "validation_loss": result.validation_loss,
    "steps": result.steps,
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Every test fold of `config.data.test_folds`; writes results.json.

  Args:
    config: see `configs/gtzan_features_dnn.py`.
    workdir: output folder (a resumable fit per fold, results.json).

  Returns:
    {"labels", "clips", "skipped", "chance", "folds": {f: per-fold
    figures}, "mean": {"dnn", "mlp", "svm"}}.

  Raises:
    mcl.errors.UserError: a bad data setting (missing folder, folds).
  """
  table = track_table.build(
    config.data.source_dir, config.data.data_dir, config.data.num_folds
  )
  folds = {
    int(f): fold(config, table, int(f), workdir) for f in config.data.test_folds
  }
  out = {
    "labels": table.label_names,
    "clips": len(table.labels),
    "skipped": table.skipped,
    "chance": 1.0 / len(table.label_names),
    "folds": folds,
    "mean": {
      k: float(np.mean([r[k] for r in folds.values()]))
      for k in ("dnn", "mlp", "svm")
    },
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f, indent=1)
  logging.info("Test accuracy, mean over folds: %s", out["mean"])
  return out
