"""The rule types of the config schema (`mcl.experiments.config_checks`).

A rule is a small frozen dataclass whose fields are a setting's allowed
range; `problem(value, config)` says in words what is allowed when `value`
is not (None when it is). `lookup` reads a dotted key of a config, for
rules whose range depends on another setting.
"""

import dataclasses
import math
import numbers
from collections.abc import Collection
from typing import Protocol

import jax
import ml_collections

from mcl.trainer import optimizer

# `lookup`'s value of a key the config does not have.
MISSING = object()
# The form `tasks` takes, shown when it has another.
_TASKS_EXAMPLE = "(('blues', 'jazz'), ...)"
# tasks.make_tasks: a head of one class learns nothing.
MIN_CLASSES = 2


class Rule(Protocol):
  """What values one setting may take."""

  def problem(self, value, config: ml_collections.ConfigDict) -> str | None:
    """None if `value` is allowed, else what is, in words (`config`: for
    ranges that depend on other keys)."""
    ...


def is_integer(value) -> bool:
  """An integer, not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
  """A finite real number, not a bool."""
  return (
    isinstance(value, numbers.Real)
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def lookup(config: ml_collections.ConfigDict, key: str):
  """The value at dotted `key`, or `MISSING`."""
  node = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return MISSING
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
    bound = None if self.below is None else lookup(config, self.below)
    if not is_integer(bound):  # None, or a bad value its own rule reports.
      bound = None
    ok = is_integer(value) and value >= self.at_least
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
    ok = is_real(value)
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
      is_integer(w) and w >= 1 for w in value
    ):
      return None
    return "must be a tuple of integers >= 1, e.g. (32, 16)"


@dataclasses.dataclass(frozen=True)
class ChunkSeconds:
  """Seconds of a log-mel chunk: finite, and at least one frame long
  (`features.hop_length / features.sample_rate` s)."""

  def problem(self, value, config):
    hop = lookup(config, "features.hop_length")
    rate = lookup(config, "features.sample_rate")
    frame = hop / rate if is_integer(hop) and is_integer(rate) else None
    if not (is_real(value) and value > 0):
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
    count = lookup(config, "data.num_folds")
    if not is_integer(count):
      return None  # Its own rule reports it.
    if (
      isinstance(value, tuple | list)
      and value
      and len(set(value)) == len(value)
      and all(is_integer(f) and 0 <= f < count for f in value)
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
        and is_real(stage[1])
        and stage[1] > 0
        and is_integer(stage[2])
        and stage[2] >= 1
      )
      if not ok:
        return (
          f"stage {index} {stage!r} must be (optimizer, learning rate, "
          f"epochs): one of {list(optimizer.DIRECTIONS)}, a finite number "
          "> 0, an integer >= 1"
        )
    return None
