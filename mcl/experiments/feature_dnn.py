"""Genre classification from FMA's 518 track features: a fully connected
network (`mcl.models.feature_dnn`) beside scikit-learn references.

`config.experiment = "feature_dnn"`, two sources
(`config.data.source`):

- "labelled_folders": the features of a `<label>/<clip>` folder come from
  `mcl.datasets.track_table` (computed once, cached), split by folds: for
  each test fold f in `config.data.test_folds`, validation is fold f + 1
  and training the rest (`mcl.datasets.tasks.fold_split`);
- "fma": FMA's own precomputed features (`fma_metadata/features.csv`, the
  `<subset>_features` config of `mcl.datasets.fma`) in the dataset's
  train/validation/test split.

Inputs are
standardised with the training split's mean and standard deviation. The
network trains with the one fit (`mcl.trainer.fit.fit`, Adam, early stopping on
the validation loss) and the best variables are tested. The references,
fitted on the same standardised training split: scikit-learn's
`MLPClassifier` (logistic hidden units, the same widths, Adam for 500
epochs with its default L2 of 1e-4; its own early stopping needs a
held-out tenth of the training split, too small on small folders) and an
RBF `SVC` (C = 1), as in the FMA paper's baselines.
`<workdir>/results.json` holds the test accuracy of the three on every
fold (FMA: one split) and their means.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from sklearn import neural_network, svm

from mcl.datasets import feature_tables
from mcl.experiments import outputs
from mcl.features import track_features
from mcl.models import feature_dnn
from mcl.runtime import errors
from mcl.trainer import evaluation, fit, recipe, train


def _batches(x, y, batch_size: int, seed: int):
  """Endless shuffled minibatches {"inputs", "label"}, seeded.

  Raises:
    mcl.runtime.errors.UserError: fewer training clips than one batch.
  """
  if len(y) < batch_size:
    raise errors.UserError(
      f"{len(y)} training clips, fewer than a batch of {batch_size}; lower "
      "config.train.batch_size"
    )
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(len(y))
    for start in range(0, len(y) - batch_size + 1, batch_size):
      rows = order[start : start + batch_size]
      yield {"inputs": x[rows], "label": y[rows]}


def _clips(x, y):
  """Evaluation batches of single-chunk clips: inputs [clips, 1, 518]."""
  return [{"inputs": x[:, None], "label": y, "mask": np.ones(len(y))}]


def model_of(config: ml_collections.ConfigDict, num_classes: int, key):
  """The network of `config.model` and its initial variables (inputs:
  FMA's 518 features)."""
  model = feature_dnn.FeatureDNN(
    hidden=tuple(config.model.hidden),
    num_classes=num_classes,
    dropout_rate=config.model.dropout_rate,
  )
  inputs = jnp.zeros((1, len(track_features.columns())))
  return model, model.init(key, inputs, train=False)


def train_and_test(config, splits, num_classes: int, index: int, workdir):
  """Trains and tests the network and the references on one split.

  Args:
    config: the experiment config.
    splits: ((x, y) train, (x, y) validation, (x, y) test); x float32
      [clips, 518] raw features, y int32 [clips].
    num_classes: genres.
    index: seeds this split's initialisation and stream.
    workdir: the fit's resumable checkpoints.

  Returns:
    {"dnn", "mlp", "svm": test accuracy; "validation_loss", "steps"}.
  """
  (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
  mean, std = x_train.mean(axis=0), x_train.std(axis=0)
  std = np.where(std > 1e-8, std, 1.0)
  x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))

  key = jax.random.key(config.seed * 1000 + index)
  model, variables = model_of(config, num_classes, key)

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
    workdir=workdir,
    writer=metric_writers.create_default_writer(workdir, just_logging=True),
    name=os.path.basename(workdir),
  )
  test = evaluation.evaluate_labels(
    model, result.variables, _clips(x_test, y_test)
  )
  mlp = neural_network.MLPClassifier(
    hidden_layer_sizes=tuple(config.model.hidden),
    activation="logistic",
    max_iter=500,
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
    config: see `configs/gtzan_feature_dnn.py`, `configs/fma_feature_dnn.py`.
    workdir: output folder (a resumable fit per split, results.json).

  Returns:
    {"labels", "clips", "skipped", "chance", "folds": {name: per-split
    figures}, "mean": {"dnn", "mlp", "svm"}}.

  Raises:
    mcl.runtime.errors.UserError: a bad data setting (missing folder, folds).
    mcl.runtime.errors.MissingDataError: FMA's metadata is not in place.
  """
  labels, clips, skipped, splits = feature_tables.track_feature_splits(config)
  folds = {
    name: train_and_test(
      config, arrays, len(labels), i, os.path.join(workdir, name)
    )
    for i, (name, arrays) in enumerate(splits.items())
  }
  out = {
    "labels": labels,
    "clips": clips,
    "skipped": skipped,
    "chance": 1.0 / len(labels),
    "folds": folds,
    "mean": {
      k: float(np.mean([r[k] for r in folds.values()]))
      for k in ("dnn", "mlp", "svm")
    },
  }
  out = outputs.write_results(workdir, out)
  logging.info("Test accuracy, mean over folds: %s", out["mean"])
  return out
