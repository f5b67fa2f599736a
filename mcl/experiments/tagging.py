"""One zoo model on the MagnaTagATune top-50 benchmark (Won et al. 2020),
or on FMA's top genres (Kim & Nam 2019).

Builds (or reuses) the records of the manual download (`benchmark`),
trains the model with the staged recipe (`mcl.trainer.fit.fit`: batches of
random chunks, one validation pass per epoch, best variables by validation
loss), then scores those best variables on the test split (evenly spaced chunks
per clip, clip probabilities averaged: sigmoids for tags, softmaxes for a
genre, i.e. track-level prediction from segment predictions) and writes
`<workdir>/results.json`. A re-run with the same workdir resumes from the
last validation pass.
"""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from mcl import models
from mcl.datasets import fma, from_config, input_pipeline
from mcl.experiments import outputs
from mcl.models import inputs, vggish_checkpoint
from mcl.runtime import errors
from mcl.trainer import evaluation, fit, progress, train
from mcl.trainer import recipe as recipes

# Model name -> (variables, folder) -> variables with published weights
# (here, not in the model registry: the converter reads TF checkpoints).
PRETRAINED = {"vggish": vggish_checkpoint.into}


@dataclasses.dataclass(frozen=True)
class Benchmark(from_config.TaggingRecords):
  """What the zoo trains on (the records' fields) and how it is scored.

  Attributes:
    loss: the training loss (`mcl.trainer.train`).
  """

  loss: object

  @property
  def multi_label(self) -> bool:
    return self.target == "tags"

  def evaluate(self, model, variables, batches) -> fit.Evaluation:
    """Clip-level loss and scores: ROC-AUC and PR-AUC (tags) or
    accuracy (a class per clip)."""
    if self.multi_label:
      r = evaluation.evaluate_tags(model, variables, batches)
      return fit.Evaluation(r.loss, {"roc_auc": r.roc_auc, "pr_auc": r.pr_auc})
    r = evaluation.evaluate_labels(model, variables, batches)
    return fit.Evaluation(r.loss, {"accuracy": r.accuracy})


def benchmark(config: ml_collections.ConfigDict) -> Benchmark:
  """The records of `config.data.source` for `config.input`, built once
  (`mcl.datasets.from_config.tagging_records`), and their loss: binary
  cross-entropy per tag, or softmax cross-entropy over the genres.

  Raises:
    mcl.runtime.errors.MissingDataError: the manual download is incomplete.
    mcl.runtime.errors.UserError: an unknown source.
  """
  records = from_config.tagging_records(config)
  loss = (
    train.TagBinaryCrossEntropy()
    if records.target == "tags"
    else train.CrossEntropy()
  )
  fields = dataclasses.fields(records)  # asdict would deep-copy the builder.
  return Benchmark(
    **{f.name: getattr(records, f.name) for f in fields}, loss=loss
  )


def build_dataset(config: ml_collections.ConfigDict):
  """The prepared builder of `config.data` (see `benchmark`)."""
  return benchmark(config).builder


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
  names a folder (`PRETRAINED` of the model reads it).

  Raises:
    mcl.runtime.errors.UserError: weights for a model that takes none, or none
      for a model that needs them (`model.needs_pretrained`: a frozen part).
    mcl.runtime.errors.MissingDataError: files missing from the folder.
  """
  if not config.model.pretrained:
    if getattr(model, "needs_pretrained", False):
      raise errors.UserError(
        f"{config.model.name}: the frozen part needs pretrained weights; "
        "set --config.model.pretrained=DIR (README, VGGish)"
      )
    return variables
  if config.model.name not in PRETRAINED:
    raise errors.UserError(
      f"{config.model.name} takes no pretrained weights; models that do: "
      f"{sorted(PRETRAINED)}"
    )
  return PRETRAINED[config.model.name](variables, config.model.pretrained)


def trainable_mask(model, params):
  """0./1. tree like `params`: 0 under every path the model asks not to
  train (its `frozen_groups`, if any), or None when nothing is frozen."""
  groups = tuple(getattr(model, "frozen_groups", ()))
  if not groups:
    return None

  def mask(path, leaf):
    keys = tuple(getattr(k, "key", k) for k in path)
    hit = any(keys[: len(g)] == g for g in groups)
    return jnp.zeros_like(leaf) if hit else jnp.ones_like(leaf)

  return jax.tree_util.tree_map_with_path(mask, params)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and tests `config.model` on MagnaTagATune top-50 or FMA genres.

  Args:
    config: see `configs/mtat_tagging.py`.
    workdir: output folder: checkpoints (latest/, best/), TensorBoard
      events, results.json.

  Returns:
    The content of `<workdir>/results.json`: validation and test loss,
    macro ROC-AUC and PR-AUC, parameter count, steps, best pass.

  Raises:
    mcl.runtime.errors.MissingDataError: the manual download or the pretrained
      weights are incomplete (checked before any record is built).
    mcl.runtime.errors.UserError: FMA's subset has another number of genres than
      `config.data.num_tags` (also before any record).
    ValueError: unknown model, or a bad data or recipe setting.
    mcl.trainer.train.NonFiniteLossError: training diverged (state saved under
      `<workdir>/nonfinite`).
  """
  os.makedirs(workdir, exist_ok=True)
  spec = inputs.InputSpec(**config.input)
  init_rng, fit_rng = jax.random.split(jax.random.key(config.seed))
  model, variables = _model(config, init_rng)
  bench = benchmark(config)
  train_name, valid_name, test_name = bench.splits
  num_params = sum(np.size(p) for p in jax.tree.leaves(variables["params"]))
  train_clips = bench.builder.info.splits[train_name].num_examples
  logging.info(
    "%s (%d params) on %s, %d train clips",
    config.model.name,
    num_params,
    spec,
    train_clips,
  )
  train_batches, eval_batches = _streams(config, bench, spec)
  writer = outputs.writer(workdir, config)
  recipe = make_recipe(config, train_clips)
  run_progress = progress.RunProgress(num_tasks=1)
  run_progress.start_task(0)
  result = fit.fit(
    model,
    variables,
    train_batches,
    lambda v: bench.evaluate(model, v, eval_batches(valid_name)),
    recipe,
    loss=bench.loss,
    trainable=trainable_mask(model, variables["params"]),
    rng=fit_rng,
    workdir=workdir,
    writer=writer,
    name="train",
    on_step=run_progress.start_phase("train", recipe.step_budget),
  )
  run_progress.end_phase(result.steps)
  test = bench.evaluate(model, result.variables, eval_batches(test_name))
  out = _results(config, bench, num_params, result, test)
  out = outputs.write_results(workdir, out)
  writer.close()
  logging.info(
    "%s test %s (best pass %d of %d steps)",
    config.model.name,
    test.scores,
    result.best_pass,
    result.steps,
  )
  return out


def model_of(config: ml_collections.ConfigDict, rng: jax.Array):
  """`config.model` and its initial variables (nothing read, no weights).

  Raises:
    mcl.runtime.errors.UserError: an unknown model name.
  """
  spec = inputs.InputSpec(**config.input)
  model = models.get_model_class(config.model.name)(
    **config.model.widths, num_classes=config.data.num_tags
  )
  # Jitted: one compilation instead of one per operation (a full-size
  # model initialises about 2x faster on CPU).
  variables = jax.jit(model.init, static_argnames="train")(
    {"params": rng, "dropout": rng}, jnp.zeros((1, *spec.shape)), train=False
  )
  return model, variables


def _model(config, rng: jax.Array):
  """The model and its initial (or published) variables.

  Before the records: a missing download or a wrong class count stops
  the run at once.
  """
  model, variables = model_of(config, rng)
  variables = load_pretrained(config, model, variables)
  if config.data.source == "fma":
    names = fma.label_names(config.data.manual_dir, config.data.subset)
    if len(names) != config.data.num_tags:
      raise errors.UserError(
        f"FMA {config.data.subset} has {len(names)} top genres, the model "
        f"config.data.num_tags={config.data.num_tags} outputs"
      )
  return model, variables


def _streams(config, bench: Benchmark, spec: inputs.InputSpec):
  """(pass index -> training batches, split -> evaluation batches).

  Each process reads its own shard of the training records and yields
  its rows of every global batch.
  """
  rows = input_pipeline.process_slice(
    config.train.batch_size, jax.process_index(), jax.process_count()
  )
  train_name = bench.splits[0]
  train_split = (
    tfds.split_for_jax_process(train_name)
    if jax.process_count() > 1
    else train_name
  )

  def train_batches(pass_index: int):
    return input_pipeline.tagging_train_batches(
      bench.builder,
      train_split,
      feature=spec.feature,
      chunk_length=spec.length,
      batch_size=rows.stop - rows.start,
      seed=config.seed * 1_000_003 + pass_index,
      shuffle_buffer=config.train.shuffle_buffer,
      target=bench.target,
    )

  def eval_batches(split: str):
    return input_pipeline.tagging_eval_batches(
      bench.builder,
      split,
      feature=spec.feature,
      chunk_length=spec.length,
      num_chunks=config.data.eval_chunks,
      batch_size=config.train.eval_batch_size,
      target=bench.target,
    )

  return train_batches, eval_batches


def _results(config, bench: Benchmark, num_params, result, test) -> dict:
  """results.json: the fit's best validation figures and their test."""
  builder = bench.builder
  return {
    "model": config.model.name,
    "input": dict(config.input),
    "params": int(num_params),
    ("tags" if bench.multi_label else "labels"): bench.names,
    "clips": {k: v.num_examples for k, v in builder.info.splits.items()},
    "skipped_clips": len(builder.info.metadata.get("skipped", [])),
    "steps": result.steps,
    "best_pass": result.best_pass,
    "validation": {"loss": result.validation_loss, **result.scores},
    "test": {"loss": test.loss, **test.scores},
    "history": [dataclasses.asdict(record) for record in result.history],
  }
