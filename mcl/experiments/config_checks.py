"""The ranges of an experiment config's settings, checked at the boundary.

`validate(config)` runs first in `mcl.experiments.run`, before a workdir
file is written, a record built or a step taken: a setting out of its
range is one `mcl.runtime.errors.UserError` line naming the key, the value and
what is allowed, e.g. `train.batch_size=0: must be an integer >= 1`,
instead of a traceback from TensorFlow, optax or the fit loop after
minutes of work (or a run that silently computes nonsense).

The schema is declarative: per experiment (`SCHEMAS`, keyed like
`mcl.experiments.EXPERIMENTS`) a table {dotted key: rule}, each rule a
small frozen dataclass whose fields are the allowed range
(`mcl.experiments.config_rules`). A key the config does not have is not
checked (permuted digits have no `tasks`, FMA configs no `data.fold`), so
one table serves every config of its kind.
Names are checked against the registries that use them (`registry.SCENARIOS`,
`MODELS`, `SOURCES`, ...), never a copy of their keys.

What needs data stays where the data is read: unknown class names
(`mcl.datasets.tasks.make_tasks`, against the dataset's labels), classes without
clips and chunks longer than the shortest clip (`mcl.datasets.task_data`).
The library's own guards (`tasks.fold_split`, `recipe.Stage`, `DENConfig`)
stay too, for callers that do not come through `validate`.
"""

from collections.abc import Mapping

import jax
import ml_collections

from mcl import models
from mcl.continual import den, method, registry
from mcl.continual.class_incremental import closed_form
from mcl.datasets import from_config, tasks
from mcl.experiments.config_rules import (
  MISSING,
  ChunkSeconds,
  Folds,
  Integer,
  Name,
  Real,
  Rule,
  Stages,
  TaskGroups,
  Widths,
  is_integer,
  lookup,
)
from mcl.features import audio
from mcl.models import encoders, inputs
from mcl.runtime import errors

# tasks.fold_split: a test fold, the next for validation, >= 1 to train.
MIN_FOLDS = 3


# Methods that join `<method>.batch_size` memory chunks to every batch.
_REHEARSING = ("replay", "icarl", "derpp")
# Class-incremental methods solved on a frozen input.
_CLOSED_FORM = ("ncm", "ranpac")
# Sources whose records are log-mel chunks unless data.encoder is set.
_AUDIO_SOURCES = ("labelled_folders", "magnatagatune", "fma")


def _method_of_scenario(config: ml_collections.ConfigDict) -> str | None:
  """`method` names a method of `scenario` (`registry.method_class`)."""
  if lookup(config, "method") is MISSING:
    return None
  try:
    registry.method_class(config)
  except errors.UserError as e:
    return str(e)
  return None


def _closed_form_input(config: ml_collections.ConfigDict) -> str | None:
  """ncm and ranpac solve a head on fixed features: frozen-encoder
  embeddings, a user's arrays or images, never audio log-mels."""
  name = lookup(config, "method")
  if lookup(config, "scenario") != "class_incremental" or name not in (
    _CLOSED_FORM
  ):
    return None
  log_mels = lookup(config, "data.source") in _AUDIO_SOURCES and (
    lookup(config, "data.encoder") in (MISSING, "none")
  )
  if log_mels or lookup(config, "model.fine_tune_encoder") is True:
    return (
      f"method={name!r}: a closed-form head on frozen-encoder records; set "
      "data.encoder (configs/gtzan_musicnn_cil.py) and "
      "model.fine_tune_encoder=False"
    )
  return None


def _replayed_batches(config: ml_collections.ConfigDict) -> str | None:
  """A rehearsing method joins `<method>.batch_size` memory chunks to
  every batch of `train.batch_size`; the sum is split over the devices."""
  section = lookup(config, "method")
  if section not in _REHEARSING:
    return None
  size = lookup(config, "train.batch_size")
  extra = lookup(config, f"{section}.batch_size")
  if not (is_integer(size) and is_integer(extra)):
    return None  # Their own rules report them.
  if (size + extra) % jax.device_count() == 0:
    return None
  return (
    f"train.batch_size={size} + {section}.batch_size={extra}: the replayed "
    f"batch must be a multiple of the {jax.device_count()} devices"
  )


def _mlp_trunk(config: ml_collections.ConfigDict) -> str | None:
  """model.name="mlp" is the trunk without conv blocks."""
  if lookup(config, "model.name") != "mlp":
    return None
  if not lookup(config, "model.widths.conv_widths"):
    return None
  return (
    f"model.name='mlp' with model.widths.conv_widths="
    f"{lookup(config, 'model.widths.conv_widths')!r}: an MLP has no conv "
    "blocks; set conv_widths=() or model.name='conv_classifier'"
  )


def _encoder_records(config: ml_collections.ConfigDict) -> str | None:
  """Encoder records are built from a labelled folder's musicnn log-mels,
  with a layer the encoder has."""
  name = lookup(config, "data.encoder")
  if name in (MISSING, "none") or name not in encoders.ENCODERS:
    return None  # Its own rule reports an unknown name.
  if lookup(config, "data.source") != "labelled_folders":
    return (
      f"data.encoder={name!r}: encoder records are built from "
      "data.source='labelled_folders'"
    )
  if lookup(config, "features.front_end") != "musicnn":
    return (
      f"data.encoder={name!r}: needs features.front_end='musicnn' "
      "(16 kHz, 96 bands; configs/gtzan_musicnn.py)"
    )
  try:
    encoders.resolve_layer(name, lookup(config, "data.encoder_layer"))
  except errors.UserError as e:
    return str(e)
  return None


def _fine_tuned_encoder(config: ml_collections.ConfigDict) -> str | None:
  """model.fine_tune_encoder trains a musicnn checkpoint's trunk, on its
  own front end, under a method that does not grow units."""
  if lookup(config, "model.fine_tune_encoder") is not True:
    return None
  name = lookup(config, "data.encoder")
  if name not in ("MSD_musicnn", "MTT_musicnn"):
    return (
      f"model.fine_tune_encoder=True with data.encoder={name!r}: the "
      "trunk is a musicnn checkpoint (MSD_musicnn or MTT_musicnn)"
    )
  if lookup(config, "features.front_end") != "musicnn":
    return "model.fine_tune_encoder=True: needs features.front_end='musicnn'"
  if lookup(config, "method") == "den":
    return (
      "model.fine_tune_encoder=True with method='den': DEN's surgery grows "
      "conv and dense units, not a pretrained trunk; use another method"
    )
  return None


# Every experiment reads these.
COMMON: dict[str, Rule] = {
  "seed": Integer(at_least=0),
  "train.batch_size": Integer(at_least=1, over_devices=True),
}
# Evaluation pads its batches to a multiple of the devices.
EVALUATION: dict[str, Rule] = {"train.eval_batch_size": Integer(at_least=1)}
# The log-mel front end (`mcl.features.audio.FeatureConfig`).
FEATURES: dict[str, Rule] = {
  "features.front_end": Name(audio.FRONT_ENDS),
  "features.sample_rate": Integer(at_least=1),
  "features.n_fft": Integer(at_least=1),
  "features.hop_length": Integer(at_least=1),
  "features.n_mels": Integer(at_least=1),
  "features.f_min": Real(at_least=0),
  "features.f_max": Real(above=0),
  "features.top_db": Real(at_least=0),
  "features.min_seconds": Real(at_least=0),
  "features.silence_db": Real(),
}
# A one-stage early-stopped fit (`mcl.trainer.recipe.continual`).
FIT: dict[str, Rule] = {
  "train.fit.learning_rate": Real(above=0),
  "train.fit.max_steps": Integer(at_least=1),
  "train.fit.eval_every": Integer(at_least=1),
  "train.fit.patience": Integer(at_least=1),
}
CONTINUAL: dict[str, Rule] = {
  **COMMON,
  **EVALUATION,
  **FEATURES,
  **FIT,
  # The method is checked against its scenario's (`_method_of_scenario`).
  "scenario": Name(registry.SCENARIOS),
  "order": Name(("", *tasks.GTZAN_ORDERS)),
  # Each method builds its own module; "mlp" has no conv blocks.
  "model.name": Name(method.TRUNKS),
  "model.widths.conv_widths": Widths(),
  "model.widths.dense_widths": Widths(),
  "tasks": TaskGroups(),
  "data.source": Name(from_config.SOURCES),
  "data.num_folds": Integer(at_least=MIN_FOLDS),
  "data.fold": Integer(at_least=0, below="data.num_folds"),
  "data.chunk_seconds": ChunkSeconds(),
  "data.eval_chunks": Integer(at_least=1),
  # Frozen-encoder records (`mcl.datasets.encoded_folders`).
  "data.encoder": Name(encoders.ENCODERS),
  "data.patch_hop_seconds": Real(above=0),
  # Permuted digits and MNIST.
  "data.num_tasks": Integer(at_least=1),
  "data.permutation_seed": Integer(at_least=0),
  "data.split_seed": Integer(at_least=0),
  "data.validation_fraction": Real(above=0, below=1),
  "data.test_fraction": Real(above=0, below=1),
  # DEN (`mcl.continual.den.DENConfig`); k = 0: expansions add nothing.
  "den.k": Integer(at_least=0),
  "den.l1": Real(at_least=0),
  "den.l2": Real(at_least=0),
  "den.group_lasso": Real(at_least=0),
  "den.tau": Real(at_least=0),
  "den.sigma": Real(at_least=0),
  "den.outgoing_scale": Real(at_least=0),
  "den.expansion": Name(den.EXPANSIONS),
  "den.shared_units": Name(den.SHARED_UNITS),
  "den.drift_reference": Name(den.DRIFT_REFERENCES),
  "den.split_top_k": Integer(at_least=0),
  "den.projection": Name(den.PROJECTIONS),
  "den.gpm_threshold": Real(above=0, at_most=1),
  "den.capacity": Real(at_least=1),
  # The baselines (`mcl.continual.baselines`, `replay`).
  "l2.strength": Real(at_least=0),
  "ewc.strength": Real(at_least=0),
  "ewc.fisher_batches": Integer(at_least=1),
  "lwf.strength": Real(at_least=0),
  "lwf.temperature": Real(above=0),
  # An empty memory has nothing to replay (and drawing from it fails).
  "replay.memory_clips": Integer(at_least=1),
  "replay.chunks_per_clip": Integer(at_least=1),
  "replay.batch_size": Integer(at_least=1),
  # The class-incremental methods (`mcl.continual.class_incremental`).
  "icarl.memory_clips": Integer(at_least=1),
  "icarl.chunks_per_clip": Integer(at_least=1),
  "icarl.batch_size": Integer(at_least=1),
  "icarl.strength": Real(at_least=0),
  "icarl.temperature": Real(above=0),
  "derpp.memory_clips": Integer(at_least=1),
  "derpp.chunks_per_clip": Integer(at_least=1),
  "derpp.batch_size": Integer(at_least=1),
  "derpp.alpha": Real(at_least=0),
  "derpp.beta": Real(at_least=0),
  "ncm.distance": Name(closed_form.DISTANCES),
  "ranpac.projection_dim": Integer(at_least=1),
}
TAGGING: dict[str, Rule] = {
  **COMMON,
  **EVALUATION,
  **FEATURES,
  "model.name": Name(models.MODELS),
  "input.feature": Name(inputs.FEATURES),
  "input.length": Integer(at_least=1),
  "data.num_tags": Integer(at_least=1),
  "train.shuffle_buffer": Integer(at_least=1),
  "data.eval_chunks": Integer(at_least=1),
  "train.stages": Stages(),
  "train.weight_decay": Real(at_least=0),
  "train.momentum": Real(at_least=0, below=1),
  "train.max_epochs": Integer(at_least=1),
  # 0: one pass over the training clips.
  "train.steps_per_epoch": Integer(at_least=0),
}
TRACK_FEATURES: dict[str, Rule] = {
  **COMMON,
  **FIT,
  "data.num_folds": Integer(at_least=MIN_FOLDS),
  "data.test_folds": Folds(),
  "model.hidden": Widths(),
  "model.dropout_rate": Real(at_least=0, below=1),
}
# config.experiment -> its table (the keys of mcl.experiments.EXPERIMENTS).
SCHEMAS: Mapping[str, Mapping[str, Rule]] = {
  "continual": CONTINUAL,
  "tagging": TAGGING,
  "feature_dnn": TRACK_FEATURES,
}
# Rules over several keys at once, per experiment.
JOINT_RULES = {
  "continual": (
    _method_of_scenario,
    _closed_form_input,
    _replayed_batches,
    _mlp_trunk,
    _encoder_records,
    _fine_tuned_encoder,
  )
}


def problems(config: ml_collections.ConfigDict) -> list[str]:
  """Every setting of `config` out of its range, one phrase each.

  Args:
    config: an experiment config.

  Returns:
    ["<key>=<value>: <what is allowed>", ...], empty when all is well;
    the table's order.
  """
  experiment = lookup(config, "experiment")
  if experiment not in SCHEMAS:
    shown = "(missing)" if experiment is MISSING else repr(experiment)
    return [f"experiment={shown}: must be one of {sorted(SCHEMAS)}"]
  found = []
  for key, rule in SCHEMAS[experiment].items():
    value = lookup(config, key)
    if value is MISSING:
      continue
    problem = rule.problem(value, config)
    if problem is not None:
      found.append(f"{key}={value!r}: {problem}")
  for joint_rule in JOINT_RULES.get(experiment, ()):
    problem = joint_rule(config)
    if problem is not None:
      found.append(problem)
  return found


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every setting of `config` against `SCHEMAS`.

  Call after `mcl.experiments.start_process` (batch sizes are checked
  against `jax.device_count()`) and before anything is written.

  Args:
    config: an experiment config (`configs/*.py` with overrides).

  Raises:
    mcl.runtime.errors.UserError: an unknown experiment, or settings out of
      their range; one line that names each with its value and what is allowed,
      e.g. "train.batch_size=0: must be an integer >= 1".
  """
  found = problems(config)
  if found:
    raise errors.UserError("; ".join(found))
