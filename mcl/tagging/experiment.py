"""One zoo model on the MagnaTagATune top-50 benchmark (Won et al. 2020).

Builds (or reuses) the `top50` records of the manual download, trains the
model with the staged recipe (`mcl.fit.fit`: batch of random
chunks, one validation pass per epoch, best variables by validation loss),
then scores those best variables on the test split (16 evenly spaced chunks
per clip, clip probabilities averaged) and writes `<workdir>/results.json`.
A re-run with the same workdir resumes from the last validation pass.
"""

import dataclasses
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from clu import metric_writers

from mcl import (
  audio,
  errors,
  evaluation,
  fit,
  input_pipeline,
  models,
  parallel,
  progress,
  train,
)
from mcl import recipe as recipes
from mcl.datasets import magnatagatune
from mcl.models import inputs


def build_dataset(config: ml_collections.ConfigDict):
  """The prepared `top50` builder of `config.data` for `config.input`."""
  return magnatagatune.build(
    config.data.manual_dir,
    config.data.data_dir,
    magnatagatune.make_config(
      "top50",
      audio.FeatureConfig(**config.features),
      waveform=config.input.feature == "waveform",
      num_tags=config.data.num_tags,
    ),
  )


def make_recipe(
  config: ml_collections.ConfigDict, train_clips: int
) -> recipes.Recipe:
  """The recipe of `config.train` (Won et al. 2020's by default).

  Args:
    config: reads `train.stages` ((optimizer, learning rate, epochs before
      the next stage), ...), `weight_decay`, `momentum`, `max_epochs`,
      `patience_resets`, `batch_size` and `steps_per_epoch` (0: one pass
      over the training clips, ceil(train_clips / batch_size) steps).
    train_clips: clips in the training split.

  Returns:
    The recipe, validating once per epoch.

  Raises:
    ValueError: a stage with an unknown optimizer, or an empty budget.
  """
  steps_per_epoch = config.train.steps_per_epoch or math.ceil(
    train_clips / config.train.batch_size
  )
  return recipes.Recipe(
    stages=tuple(recipes.Stage(*stage) for stage in config.train.stages),
    weight_decay=config.train.weight_decay,
    momentum=config.train.momentum,
    eval_every=steps_per_epoch,
    max_evals=config.train.max_epochs,
    patience_resets_on_improvement=config.train.patience_resets,
  )


def load_pretrained(config: ml_collections.ConfigDict, model, variables):
  """`variables` with published weights, if `config.model.pretrained`
  names a folder (`models.PRETRAINED` of the model reads it).

  Raises:
    mcl.errors.UserError: weights for a model that takes none, or none for
      a model that needs them (`model.needs_pretrained`: a frozen part).
    mcl.errors.MissingDataError: files missing from the folder.
  """
  if not config.model.pretrained:
    if getattr(model, "needs_pretrained", False):
      raise errors.UserError(
        f"{config.model.name}: the frozen part needs pretrained weights; "
        "set --config.model.pretrained=DIR (README, VGGish)"
      )
    return variables
  if config.model.name not in models.PRETRAINED:
    raise errors.UserError(
      f"{config.model.name} takes no pretrained weights; models that do: "
      f"{sorted(models.PRETRAINED)}"
    )
  return models.PRETRAINED[config.model.name](
    variables, config.model.pretrained
  )


def frozen(model) -> tuple[tuple[str, ...], ...]:
  """Parameter paths the model asks not to train (`frozen_groups`)."""
  return tuple(getattr(model, "frozen_groups", ()))


def trainable_mask(model, params):
  """0./1. tree like `params`: 0 under every path of `frozen(model)`, or
  None when nothing is frozen."""
  groups = frozen(model)
  if not groups:
    return None

  def mask(path, leaf):
    keys = tuple(getattr(k, "key", k) for k in path)
    hit = any(keys[: len(g)] == g for g in groups)
    return jnp.zeros_like(leaf) if hit else jnp.ones_like(leaf)

  return jax.tree_util.tree_map_with_path(mask, params)


def _figures(result: evaluation.TagEvaluation) -> dict:
  return {
    "loss": result.loss,
    "roc_auc": result.roc_auc,
    "pr_auc": result.pr_auc,
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and tests `config.model` on MagnaTagATune top-50.

  Args:
    config: see `configs/mtat_tagging.py`.
    workdir: output folder: checkpoints (latest/, best/), TensorBoard
      events, results.json.

  Returns:
    The content of `<workdir>/results.json`: validation and test loss,
    macro ROC-AUC and PR-AUC, parameter count, steps, best pass.

  Raises:
    mcl.errors.MissingDataError: the manual download or the pretrained
      weights are incomplete (checked before any record is built).
    ValueError: unknown model, or a bad data or recipe setting.
    mcl.train.NonFiniteLossError: training diverged (state saved under
      `<workdir>/nonfinite`).
  """
  os.makedirs(workdir, exist_ok=True)
  spec = inputs.InputSpec(**config.input)
  model = models.get_model_class(config.model.name)(
    **config.model.widths, num_classes=config.data.num_tags
  )
  init_rng, fit_rng = jax.random.split(jax.random.key(config.seed))
  variables = model.init(
    {"params": init_rng, "dropout": init_rng},
    jnp.zeros((1, *spec.shape)),
    train=False,
  )
  # Before the records: a missing download stops the run at once.
  variables = load_pretrained(config, model, variables)
  builder = build_dataset(config)
  num_params = sum(np.size(p) for p in jax.tree.leaves(variables["params"]))
  train_clips = builder.info.splits["train"].num_examples
  logging.info(
    "%s (%d params) on %s, %d train clips",
    config.model.name,
    num_params,
    spec,
    train_clips,
  )

  # Each process reads its own shard of the training records and yields
  # its rows of every global batch (`mcl.parallel`).
  rows = parallel.process_rows(config.train.batch_size)
  train_split = (
    tfds.split_for_jax_process("train") if jax.process_count() > 1 else "train"
  )

  def train_batches(pass_index: int):
    return input_pipeline.tagging_train_batches(
      builder,
      train_split,
      feature=spec.feature,
      chunk_length=spec.length,
      batch_size=rows.stop - rows.start,
      seed=config.seed * 1_000_003 + pass_index,
      shuffle_buffer=config.train.shuffle_buffer,
    )

  def eval_batches(split: str):
    return input_pipeline.tagging_eval_batches(
      builder,
      split,
      feature=spec.feature,
      chunk_length=spec.length,
      num_chunks=config.train.eval_chunks,
      batch_size=config.train.eval_batch_size,
    )

  writer = metric_writers.create_default_writer(
    workdir, just_logging=jax.process_index() > 0
  )

  def validate(variables):
    result = evaluation.evaluate_tags(model, variables, eval_batches("valid"))
    return fit.Evaluation(
      result.loss, {"roc_auc": result.roc_auc, "pr_auc": result.pr_auc}
    )

  recipe = make_recipe(config, train_clips)
  run_progress = progress.RunProgress(num_tasks=1)
  run_progress.start_task(0)
  result = fit.fit(
    model,
    variables,
    train_batches,
    validate,
    recipe,
    loss=train.TagBinaryCrossEntropy(),
    trainable=trainable_mask(model, variables["params"]),
    rng=fit_rng,
    workdir=workdir,
    writer=writer,
    name="train",
    on_step=run_progress.start_phase("train", recipe.step_budget),
  )
  run_progress.end_phase(result.steps)
  test = evaluation.evaluate_tags(model, result.variables, eval_batches("test"))
  out = {
    "model": config.model.name,
    "input": dict(config.input),
    "params": int(num_params),
    "tags": list(builder.info.metadata["tags"]),
    "clips": {k: v.num_examples for k, v in builder.info.splits.items()},
    "skipped_clips": len(builder.info.metadata.get("skipped", [])),
    "steps": result.steps,
    "best_pass": result.best_pass,
    "validation": {"loss": result.validation_loss, **result.scores},
    "test": _figures(test),
    "history": [dataclasses.asdict(record) for record in result.history],
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(out, f, indent=1)
  writer.flush()
  logging.info(
    "%s test ROC-AUC %s, PR-AUC %s (best pass %d of %d steps)",
    config.model.name,
    test.roc_auc,
    test.pr_auc,
    result.best_pass,
    result.steps,
  )
  return out
