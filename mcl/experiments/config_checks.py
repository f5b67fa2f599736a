"""The ranges of an experiment config's settings, checked at the boundary.

`validate(config)` runs first in `mcl.experiments.run`, before a workdir
file is written, a record built or a step taken: a setting out of its
range is one `mcl.runtime.errors.UserError` line naming the key, the value and
what is allowed, e.g. `train.batch_size=0: must be an integer >= 1`,
instead of a traceback from TensorFlow, optax or the fit loop after
minutes of work (or a run that silently computes nonsense).

The schema is declarative: per experiment (`SCHEMAS`, keyed like
`mcl.experiments.EXPERIMENTS`) a table {dotted key: rule}, each rule a
small frozen dataclass whose fields are the allowed range. A key the
config does not have is not checked (permuted digits have no `tasks`, FMA
configs no `data.fold`), so one table serves every config of its kind.
Names are checked against the registries that use them (`registry.METHODS`,
`MODELS`, `SOURCES`, ...), never a copy of their keys.

What needs data stays where the data is read: unknown class names
(`mcl.datasets.tasks.make_tasks`, against the dataset's labels), classes without
clips and chunks longer than the shortest clip (`mcl.datasets.task_data`).
The library's own guards (`tasks.fold_split`, `recipe.Stage`, `DENConfig`)
stay too, for callers that do not come through `validate`.
"""

import dataclasses
import math
import numbers
from collections.abc import Collection, Mapping
from typing import Protocol

import jax
import ml_collections

from mcl import models
from mcl.continual import den, registry
from mcl.datasets import task_data as continual_data
from mcl.features import audio
from mcl.models import inputs
from mcl.runtime import errors
from mcl.trainer import optimizer

_MISSING = object()
# The form `tasks` takes, shown when it has another.
_TASKS_EXAMPLE = "(('blues', 'jazz'), ...)"
# tasks.make_tasks: a head of one class learns nothing.
MIN_CLASSES = 2
# tasks.fold_split: a test fold, the next for validation, >= 1 to train.
MIN_FOLDS = 3


class Rule(Protocol):
  """What values one setting may take."""

  def problem(self, value, config: ml_collections.ConfigDict) -> str | None:
    """None if `value` is allowed, else what is, in words (`config`: for
    ranges that depend on other keys)."""
    ...


def _is_integer(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
  return (
    isinstance(value, numbers.Real)
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def _lookup(config: ml_collections.ConfigDict, key: str):
  """The value at dotted `key`, or `_MISSING`."""
  node = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return _MISSING
    node = node[part]
  return node


@dataclasses.dataclass(frozen=True)
class Integer:
  """An integer >= `at_least`.

  Attributes:
    at_least: the smallest value.
    below: a key whose (integer) value is an exclusive upper bound.
    over_devices: also a multiple of `jax.device_count()`: a global batch
      sharded on its leading axis over every device (`mcl.trainer.parallel`).
  """

  at_least: int
  below: str | None = None
  over_devices: bool = False

  def problem(self, value, config):
    bound = None if self.below is None else _lookup(config, self.below)
    if not _is_integer(bound):  # None, or a bad value its own rule reports.
      bound = None
    ok = _is_integer(value) and value >= self.at_least
    if bound is not None and not (ok and value < bound):
      return f"must be an integer in [{self.at_least}, {bound}) " + (
        f"({self.below}={bound})"
      )
    if not ok:
      return f"must be an integer >= {self.at_least}"
    if self.over_devices and value % jax.device_count():
      return (
        f"must be a multiple of the {jax.device_count()} devices (batches "
        "are split evenly over them)"
      )
    return None


@dataclasses.dataclass(frozen=True)
class Real:
  """A finite number, optionally bounded (None: no bound on that side).

  Attributes:
    above: exclusive lower bound.
    at_least: inclusive lower bound.
    below: exclusive upper bound.
    at_most: inclusive upper bound.
  """

  above: float | None = None
  at_least: float | None = None
  below: float | None = None
  at_most: float | None = None

  def problem(self, value, config):
    del config
    ok = _is_real(value)
    bounds = []
    if self.above is not None:
      ok = ok and value > self.above
      bounds.append(f"> {self.above:g}")
    if self.at_least is not None:
      ok = ok and value >= self.at_least
      bounds.append(f">= {self.at_least:g}")
    if self.below is not None:
      ok = ok and value < self.below
      bounds.append(f"< {self.below:g}")
    if self.at_most is not None:
      ok = ok and value <= self.at_most
      bounds.append(f"<= {self.at_most:g}")
    if ok:
      return None
    return " ".join(["must be a finite number", " and ".join(bounds)]).strip()


@dataclasses.dataclass(frozen=True)
class Name:
  """A key of a registry (or a member of a tuple of names).

  Attributes:
    known: the registry itself, e.g. `mcl.continual.registry.METHODS`.
  """

  known: Collection[str]

  def problem(self, value, config):
    del config
    if isinstance(value, str) and value in self.known:
      return None
    return f"must be one of {sorted(self.known)}"


@dataclasses.dataclass(frozen=True)
class Widths:
  """A tuple of layer widths, each an integer >= 1 (empty allowed)."""

  def problem(self, value, config):
    del config
    if isinstance(value, tuple | list) and all(
      _is_integer(w) and w >= 1 for w in value
    ):
      return None
    return "must be a tuple of integers >= 1, e.g. (32, 16)"


@dataclasses.dataclass(frozen=True)
class ChunkSeconds:
  """Seconds of a log-mel chunk: finite, and at least one frame long
  (`features.hop_length / features.sample_rate` s)."""

  def problem(self, value, config):
    hop = _lookup(config, "features.hop_length")
    rate = _lookup(config, "features.sample_rate")
    frame = hop / rate if _is_integer(hop) and _is_integer(rate) else None
    if not (_is_real(value) and value > 0):
      return "must be a finite number of seconds > 0"
    if frame is not None and value < frame:
      return (
        f"must be at least one frame, {frame:g} s "
        "(features.hop_length / features.sample_rate)"
      )
    return None


@dataclasses.dataclass(frozen=True)
class TaskGroups:
  """A non-empty tuple of tasks, each a tuple of >= `MIN_CLASSES` class
  names (whether the dataset has them is `tasks.make_tasks`'s business)."""

  def problem(self, value, config):
    del config
    form = f"must be a tuple of tuples of class names, e.g. {_TASKS_EXAMPLE}"
    if not isinstance(value, tuple | list):
      return form
    if not value:
      return f"must name at least one task, e.g. {_TASKS_EXAMPLE}"
    for index, group in enumerate(value):
      if not isinstance(group, tuple | list) or not all(
        isinstance(name, str) for name in group
      ):
        return form
      if len(group) < MIN_CLASSES:
        return (
          f"task {index} {tuple(group)} has {len(group)} class(es); each "
          f"task needs at least {MIN_CLASSES}"
        )
    return None


@dataclasses.dataclass(frozen=True)
class Folds:
  """A non-empty tuple of distinct test folds in [0, `data.num_folds`)."""

  def problem(self, value, config):
    count = _lookup(config, "data.num_folds")
    if not _is_integer(count):
      return None  # Its own rule reports it.
    if (
      isinstance(value, tuple | list)
      and value
      and len(set(value)) == len(value)
      and all(_is_integer(f) and 0 <= f < count for f in value)
    ):
      return None
    return (
      f"must be a non-empty tuple of distinct folds in [0, {count}) "
      f"(data.num_folds={count})"
    )


@dataclasses.dataclass(frozen=True)
class Stages:
  """`mcl.trainer.recipe.Stage`s as (optimizer, learning rate, epochs): at least
  one, the optimizer a `mcl.trainer.optimizer.DIRECTIONS` name, the rate finite
  and > 0, the epochs (patience) an integer >= 1."""

  def problem(self, value, config):
    del config
    if not isinstance(value, tuple | list) or not value:
      return "must be a non-empty tuple of (optimizer, learning rate, epochs)"
    for index, stage in enumerate(value):
      ok = (
        isinstance(stage, tuple | list)
        and len(stage) == 3
        and stage[0] in optimizer.DIRECTIONS
        and _is_real(stage[1])
        and stage[1] > 0
        and _is_integer(stage[2])
        and stage[2] >= 1
      )
      if not ok:
        return (
          f"stage {index} {stage!r} must be (optimizer, learning rate, "
          f"epochs): one of {list(optimizer.DIRECTIONS)}, a finite number "
          "> 0, an integer >= 1"
        )
    return None


def _replayed_batches(config: ml_collections.ConfigDict) -> str | None:
  """Replay joins `replay.batch_size` memory chunks to every batch of
  `train.batch_size`; the sum is what is split over the devices."""
  if _lookup(config, "method") != "replay":
    return None
  size = _lookup(config, "train.batch_size")
  extra = _lookup(config, "replay.batch_size")
  if not (_is_integer(size) and _is_integer(extra)):
    return None  # Their own rules report them.
  if (size + extra) % jax.device_count() == 0:
    return None
  return (
    f"train.batch_size={size} + replay.batch_size={extra}: the replayed "
    f"batch must be a multiple of the {jax.device_count()} devices"
  )


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
  "method": Name(registry.METHODS),
  # Recorded only: each method builds its own module.
  "model.name": Name(models.MODELS),
  "model.widths.conv_widths": Widths(),
  "model.widths.dense_widths": Widths(),
  "tasks": TaskGroups(),
  "data.source": Name(continual_data.SOURCES),
  "data.num_folds": Integer(at_least=MIN_FOLDS),
  "data.fold": Integer(at_least=0, below="data.num_folds"),
  "data.chunk_seconds": ChunkSeconds(),
  "data.eval_chunks": Integer(at_least=1),
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
  "train.eval_chunks": Integer(at_least=1),
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
JOINT_RULES = {"continual": (_replayed_batches,)}


def problems(config: ml_collections.ConfigDict) -> list[str]:
  """Every setting of `config` out of its range, one phrase each.

  Args:
    config: an experiment config.

  Returns:
    ["<key>=<value>: <what is allowed>", ...], empty when all is well;
    the table's order.
  """
  experiment = _lookup(config, "experiment")
  if experiment not in SCHEMAS:
    shown = "(missing)" if experiment is _MISSING else repr(experiment)
    return [f"experiment={shown}: must be one of {sorted(SCHEMAS)}"]
  found = []
  for key, rule in SCHEMAS[experiment].items():
    value = _lookup(config, key)
    if value is _MISSING:
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
