"""A hyper-parameter protocol: a grid per method, chosen on validation.

Every method with hyper-parameters gets the same number K of declared
configurations (`Protocol.grids`). The protocol is nested over the folds:
for each test fold f, each configuration is trained once (the tuning
seed) on the run of fold f (training folds f+2..f+4, validation fold f+1,
`mcl.datasets.tasks.fold_split`) and scored by its validation figures only; the
configuration with the best score on fold f is the one whose test figures
fold f reports. So no test fold decides the configuration that is tested
on it.

Criterion (declared before any run): the final average validation
accuracy, i.e. the mean over tasks of the last row of
`validation_accuracy_matrix` (Lopez-Paz & Ranzato 2017's ACC, on the
validation fold); ties are broken by fewer nonzero parameters
(`total_nonzero_params`), then by the declared order of the grid.

When the tuning seed is also a final seed, the selected configuration's
tuning run is that seed's final run (the same overrides and seed, so a
rerun would be bit-identical): the final folder links to it. That run won
its selection on validation, so whatever luck of the seed also helps on
the test fold comes with it; final seeds other than the tuning seed are
free of that optimism. The other seeds, and the variants that take a
grid's selection with extra overrides (DEN's ablations), are new runs.

Layout under a root: `tuning/<grid>_c<i>/fold<f>_seed<s>/`,
`final/<variant>/fold<f>_seed<s>/`, `selection.json`, `selection.md`.
"""

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mcl.analysis import sweep
from mcl.runtime import atomic_files, errors, provenance


@dataclasses.dataclass(frozen=True)
class Variant:
  """A row of the final table.

  Attributes:
    grid: the grid whose per-fold selection this row uses.
    overrides: config overrides on top of the selection (e.g. an
      ablation switch); empty for the grid's own row.
  """

  grid: str
  overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Grids, final rows, folds and seeds on one base config.

  Attributes:
    config: the base config file (e.g. configs/gtzan.py).
    budget: overrides of every run (the training budget).
    grids: {grid label: K configurations}, each a dict of config
      overrides that includes `method`.
    variants: {final row label: Variant}.
    folds: test folds (`data.fold`).
    seeds: seeds of the final runs.
    tuning_seed: seed of the tuning runs.
    reference: the row every other row is compared with (paired.md).
    rows: {variant: (table row, tag)} for variants pooled into one row
      of the final table, each run named `<tag>/<run>` there (e.g. one
      method's runs in three task orders); a variant not named is a row
      of its own.

  Raises:
    mcl.runtime.errors.UserError: a variant names an unknown grid, a grid is
      empty, the grids with more than one configuration differ in size,
      or no seed.
  """

  config: str
  budget: Mapping[str, object]
  grids: Mapping[str, Sequence[Mapping[str, object]]]
  variants: Mapping[str, Variant]
  folds: Sequence[int]
  seeds: Sequence[int]
  tuning_seed: int = 0
  reference: str = "den"
  rows: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    unknown = {v.grid for v in self.variants.values()} - set(self.grids)
    if unknown:
      raise errors.UserError(f"variants name unknown grids: {sorted(unknown)}")
    sizes = {g: len(c) for g, c in self.grids.items()}
    if 0 in sizes.values():
      empty = [g for g, n in sizes.items() if not n]
      raise errors.UserError(f"empty grids: {empty}")
    if len({n for n in sizes.values() if n > 1}) > 1:
      raise errors.UserError(
        f"grids of methods with hyper-parameters differ: {sizes}"
      )
    if not self.seeds:
      raise errors.UserError("a protocol needs at least one seed")


def _run_name(fold: int, seed: int) -> str:
  return f"fold{fold}_seed{seed}"


def tuning_run(
  protocol: Protocol, grid: str, index: int, fold: int
) -> sweep.Run:
  """The tuning run of configuration `index` of `grid` on test fold
  `fold`: `tuning/<grid>_c<index>/fold<fold>_seed<tuning seed>`."""
  seed = protocol.tuning_seed
  return sweep.Run(
    f"tuning/{grid}_c{index}",
    _run_name(fold, seed),
    {
      **protocol.budget,
      **protocol.grids[grid][index],
      "data.fold": fold,
      "seed": seed,
    },
  )


def tuning_runs(protocol: Protocol) -> list[sweep.Run]:
  """Every tuning run, fold-major so a stopped sweep has whole folds."""
  return [
    tuning_run(protocol, grid, i, fold)
    for fold in protocol.folds
    for grid, configurations in protocol.grids.items()
    for i in range(len(configurations))
  ]


def validation_figures(results: Mapping) -> tuple[float, int]:
  """(final average validation accuracy, nonzero parameters) of a run.

  The only fields of a results.json the selection reads.

  Raises:
    ValueError: the run has no validation row.
  """
  rows = [
    [v for v in row if v is not None]
    for row in results["validation_accuracy_matrix"]
  ]
  rows = [row for row in rows if row]
  if not rows:
    raise ValueError("results.json has no validation accuracy row")
  return float(np.mean(rows[-1])), int(results["total_nonzero_params"])


@dataclasses.dataclass(frozen=True)
class Selection:
  """The chosen configuration of every grid on every fold.

  Attributes:
    chosen: {grid: {fold: configuration index}}.
    scores: {grid: {fold: [validation score per configuration]}}.
    params: {grid: {fold: [nonzero parameters per configuration]}}.
  """

  chosen: Mapping[str, Mapping[int, int]]
  scores: Mapping[str, Mapping[int, Sequence[float]]]
  params: Mapping[str, Mapping[int, Sequence[int]]]


def choose(scores: Sequence[float], params: Sequence[int]) -> int:
  """Index of the best configuration on one fold.

  Args:
    scores: validation score per configuration (compared to 9 decimals).
    params: nonzero parameters per configuration.

  Returns:
    The highest score's index; among equal scores the fewest parameters',
    then the first declared.
  """
  return min(
    range(len(scores)), key=lambda i: (-round(scores[i], 9), params[i], i)
  )


def _load(root: str, run: sweep.Run) -> dict:
  with open(os.path.join(sweep.workdir(root, run), "results.json")) as f:
    return json.load(f)


def select(protocol: Protocol, root: str) -> Selection:
  """Chooses every grid's configuration per fold from the tuning runs.

  Reads only `validation_figures` of each tuning run's results.json.

  Raises:
    mcl.runtime.errors.UserError: a tuning run has not finished (names some).
  """
  missing = [
    sweep.workdir(root, r)
    for r in tuning_runs(protocol)
    if not sweep.finished(root, r)
  ]
  if missing:
    raise errors.UserError(
      f"{len(missing)} tuning runs have not finished, e.g. {missing[:3]}"
    )
  chosen, scores, params = {}, {}, {}
  for grid, configurations in protocol.grids.items():
    chosen[grid], scores[grid], params[grid] = {}, {}, {}
    for fold in protocol.folds:
      figures = [
        validation_figures(_load(root, tuning_run(protocol, grid, i, fold)))
        for i in range(len(configurations))
      ]
      scores[grid][fold] = [s for s, _ in figures]
      params[grid][fold] = [p for _, p in figures]
      chosen[grid][fold] = choose(scores[grid][fold], params[grid][fold])
  return Selection(chosen, scores, params)


@dataclasses.dataclass(frozen=True)
class FinalPlan:
  """The final table's runs.

  Attributes:
    runs: runs to execute, labelled `final/<variant>`.
    links: {final run folder: its selected tuning run's folder}, the
      first-seed runs of each grid's own row.
  """

  runs: Sequence[sweep.Run]
  links: Mapping[str, str]


def final_plan(
  protocol: Protocol, selection: Selection, root: str
) -> FinalPlan:
  """The final runs of every variant, fold and seed, seed-major.

  A grid's own row on the tuning seed is a link to the selected tuning
  run, every other (row, fold, seed) a run to execute.
  """
  runs, links = [], {}
  for seed in protocol.seeds:
    for fold in protocol.folds:
      for label, variant in protocol.variants.items():
        index = selection.chosen[variant.grid][fold]
        tuned = tuning_run(protocol, variant.grid, index, fold)
        run = sweep.Run(
          f"final/{label}",
          _run_name(fold, seed),
          {**tuned.overrides, **variant.overrides, "seed": seed},
        )
        if seed == protocol.tuning_seed and not variant.overrides:
          links[sweep.workdir(root, run)] = sweep.workdir(root, tuned)
        else:
          runs.append(run)
  return FinalPlan(runs, links)


def make_links(links: Mapping[str, str]) -> None:
  """Creates (or repoints) each final folder as a relative symlink.

  Args:
    links: {final run folder: tuning run folder}.

  Raises:
    mcl.runtime.errors.UserError: a final folder exists as a real folder.
  """
  for path, target in links.items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    relative = os.path.relpath(target, os.path.dirname(path))
    if os.path.islink(path):
      if os.readlink(path) == relative:
        continue
      os.remove(path)
    elif os.path.exists(path):
      raise errors.UserError(
        f"{path}: a folder where the protocol needs a link"
      )
    os.symlink(relative, path)


def _describe(configuration: Mapping[str, object]) -> str:
  return (
    ", ".join(f"{k}={v}" for k, v in configuration.items() if k != "method")
    or "(base config)"
  )


def write_selection(
  protocol: Protocol, selection: Selection, root: str
) -> None:
  """Writes `<root>/selection.json` (grids, choices, validation scores,
  parameters, the distinct provenances of the tuning runs) and
  `<root>/selection.md` (one row per configuration, the
  chosen fold's score in bold)."""
  content = {
    "criterion": "final average validation accuracy; ties: fewer nonzero"
    " parameters, then grid order",
    "tuning_seed": protocol.tuning_seed,
    "grids": {g: [dict(c) for c in cs] for g, cs in protocol.grids.items()},
    "chosen": selection.chosen,
    "validation_scores": selection.scores,
    "nonzero_params": selection.params,
    "provenance": provenance.distinct(
      _load(root, r) for r in tuning_runs(protocol)
    ),
  }
  atomic_files.write_json(os.path.join(root, "selection.json"), content)
  folds = list(protocol.folds)
  lines = [
    "| method | configuration | validation accuracy (mean over folds) | "
    + " | ".join(f"fold {f}" for f in folds)
    + " | chosen on folds |",
    "|---|---|---|" + "---|" * len(folds) + "---|",
  ]
  for grid, configurations in protocol.grids.items():
    for i, configuration in enumerate(configurations):
      per_fold = [selection.scores[grid][f][i] for f in folds]
      marks = [
        f"**{s:.3f}**" if selection.chosen[grid][f] == i else f"{s:.3f}"
        for f, s in zip(folds, per_fold, strict=True)
      ]
      won = [str(f) for f in folds if selection.chosen[grid][f] == i]
      lines.append(
        f"| {grid} | c{i}: {_describe(configuration)} | "
        f"{np.mean(per_fold):.3f} | "
        + " | ".join(marks)
        + f" | {', '.join(won) or '–'} |"
      )
  atomic_files.write_text(
    os.path.join(root, "selection.md"), "\n".join(lines) + "\n"
  )


def run(
  protocol: Protocol,
  root: str,
  execute: Callable[[Sequence[sweep.Run]], int],
) -> tuple[Selection | None, int]:
  """Runs the protocol under `root`: tuning, selection, final runs.

  Finished runs (complete results.json) are never handed to `execute`,
  so a protocol stopped at any point continues where it stopped.

  Args:
    protocol: the protocol.
    root: its output folder.
    execute: runs the given runs (`launch/sweep.py` hands them to worker
      processes) and returns how many failed.

  Returns:
    (the selection, failures); the selection is None when a tuning run
    failed, since no fold can be chosen without all of its runs.
  """
  pending = [r for r in tuning_runs(protocol) if not sweep.finished(root, r)]
  failures = execute(pending) if pending else 0
  if failures:
    return None, failures
  selection, plan = prepare_final(protocol, root)
  pending = [r for r in plan.runs if not sweep.finished(root, r)]
  return selection, execute(pending) if pending else 0


def prepare_final(protocol: Protocol, root: str) -> tuple[Selection, FinalPlan]:
  """Selects on the finished tuning runs, writes selection.json and .md,
  links the first-seed final runs; returns the selection and the plan.

  Raises:
    mcl.runtime.errors.UserError: a tuning run has not finished.
  """
  selection = select(protocol, root)
  write_selection(protocol, selection, root)
  plan = final_plan(protocol, selection, root)
  make_links(plan.links)
  return selection, plan
