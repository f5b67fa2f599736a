"""Sweep definitions: runs of `mcl.main` as (label, name, config overrides).

A sweep file (e.g. `configs/sweeps/gtzan_den.py`) defines
`get_sweep() -> Sweep`. `grid` expands variants x folds x seeds; any list
of `Run`s works as well. `launch/sweep.py` runs, prints and aggregates.
"""

import dataclasses
import json
import os
import shlex
from collections.abc import Mapping, Sequence

from mcl.runtime import errors


@dataclasses.dataclass(frozen=True)
class Run:
  """One `mcl.main` run: `<root>/<label>/<name>` with config overrides."""

  label: str
  name: str
  overrides: Mapping[str, object]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A base config file and the runs on it."""

  config: str
  runs: Sequence[Run]


def grid(
  variants: Mapping[str, Mapping[str, object]],
  folds: Sequence[int] | None,
  seeds: Sequence[int],
) -> list[Run]:
  """variants x folds x seeds: run `<label>/fold<f>_seed<s>`.

  Ordered seed-major, then fold, then variant, so that a sweep stopped
  early has every variant on the same folds.

  Args:
    variants: {label: config overrides}, e.g. {"ewc": {"method": "ewc"}}.
    folds: test folds (`data.fold`); None for a dataset without folds
      (e.g. permuted digits): runs `<label>/seed<s>`, no fold override.
    seeds: `seed` values.
  """
  if folds is None:
    return [
      Run(label, f"seed{s}", {**overrides, "seed": s})
      for s in seeds
      for label, overrides in variants.items()
    ]
  return [
    Run(label, f"fold{f}_seed{s}", {**overrides, "data.fold": f, "seed": s})
    for s in seeds
    for f in folds
    for label, overrides in variants.items()
  ]


# The overrides in which the runs of one replica group may differ
# (`mcl.experiments.continual.replica_group.REPLICA_KEYS`).
REPLICA_OVERRIDES = ("seed", "data.fold")


def replica_groups(runs: Sequence[Run], size: int) -> list[list[Run]]:
  """The runs as replica groups: runs of one label and one grid point
  (equal overrides but for `REPLICA_OVERRIDES`), `size` at most per group
  (0: all of a grid point), in the order of their first run.

  Raises:
    ValueError: a negative size.
  """
  if size < 0:
    raise ValueError(f"replica group size {size} < 0")
  points: dict = {}
  for run in runs:
    rest = sorted(
      (k, repr(v))
      for k, v in run.overrides.items()
      if k not in REPLICA_OVERRIDES
    )
    points.setdefault((run.label, tuple(rest)), []).append(run)
  groups = []
  for members in points.values():
    step = size or len(members)
    groups += [members[i : i + step] for i in range(0, len(members), step)]
  first = {(run.label, run.name): i for i, run in enumerate(runs)}
  return sorted(groups, key=lambda g: first[g[0].label, g[0].name])


def workdir(root: str, run: Run) -> str:
  """The run's output folder, `<root>/<label>/<name>`."""
  return os.path.join(root, run.label, run.name)


def command(run: Run, config: str, root: str, python: str = "python") -> list:
  """The `mcl.main` command line of `run` (argv list)."""
  argv = [python, "-m", "mcl.main", f"--config={config}"]
  argv.append(f"--workdir={workdir(root, run)}")
  for key, value in run.overrides.items():
    argv.append(f"--config.{key}={value}")
  return argv


def shell_line(argv: Sequence[str]) -> str:
  """`argv` as one shell-quoted command line (for `--print_only`)."""
  return " ".join(shlex.quote(a) for a in argv)


def finished(root: str, run: Run) -> bool:
  """True when the run's results.json has every task done.

  Raises:
    mcl.runtime.errors.UserError: the folder holds a run of another config (an
      override differs from the config stored in its results.json), e.g. a root
      reused with another budget or an edited grid.
  """
  path = os.path.join(workdir(root, run), "results.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    results = json.load(f)
  stored = results.get("config")
  for key, value in run.overrides.items() if stored else ():
    found = stored
    for part in key.split("."):
      found = found.get(part) if isinstance(found, dict) else None
    if found != value:
      raise errors.UserError(
        f"{path}: ran with {key}={found!r}, this sweep asks for {value!r};"
        " use another --root or remove the folder"
      )
  return results["finished_tasks"] == len(results["tasks"])
