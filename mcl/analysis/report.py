"""Aggregates the results.json of a sweep into tables and plots.

A sweep's runs live in `<root>/<label>/<run>/results.json` (label: a
method or ablation, run: e.g. `fold0_seed0`). For every label, each metric
is reduced to mean ± sample standard deviation (ddof=1; 0 for one run)
over its runs, with a 95 % bootstrap interval of the mean
(`mcl.analysis.statistics`). Capacity is reported relative to STL: a run's
nonzero parameters divided by those of the `stl` run with the same run name.
`paired.md` compares DEN with every other label on the runs both have
(paired differences, Wilcoxon signed-rank p-values).
"""

import csv
import dataclasses
import glob
import json
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from mcl.analysis import statistics
from mcl.runtime import atomic_files, provenance

# (results.json key or derived name, column title).
METRICS = (
  ("average_accuracy", "accuracy (final avg)"),
  ("mean_diagonal_accuracy", "accuracy (just learnt)"),
  ("bwt", "BWT"),
  ("fwt", "FWT"),
  ("mean_forgetting", "forgetting"),
  ("final_auroc", "ROC-AUC"),
  ("final_pr_auc", "PR-AUC"),
  ("final_class_incremental_accuracy", "class-IL accuracy"),
  ("capacity_vs_stl", "params / STL"),
  ("total_nonzero_params", "nonzero params"),
  ("minutes", "minutes"),
)


def load_runs(root: str) -> dict[str, dict[str, dict]]:
  """{label: {run: results}} of every finished run under `root`.

  A run counts as finished when its results.json has every task done.
  """
  runs: dict[str, dict[str, dict]] = {}
  for path in sorted(glob.glob(os.path.join(root, "*", "*", "results.json"))):
    with open(path) as f:
      results = json.load(f)
    if results["finished_tasks"] != len(results["tasks"]):
      continue
    run_dir = os.path.dirname(path)
    label = os.path.basename(os.path.dirname(run_dir))
    runs.setdefault(label, {})[os.path.basename(run_dir)] = results
  return runs


def pool(
  runs: dict[str, dict[str, dict]], rows: Mapping[str, tuple[str, str]]
) -> dict[str, dict[str, dict]]:
  """`runs` with the labels of `rows` ({label: (row, tag)}) pooled: run
  `r` of label `l` becomes run `<tag>/r` of its row (runs of two rows
  pair by that name); other labels are kept."""
  pooled: dict[str, dict[str, dict]] = {}
  for label, by_run in runs.items():
    row, tag = rows.get(label, (label, None))
    for name, results in by_run.items():
      pooled.setdefault(row, {})[f"{tag}/{name}" if tag else name] = results
  return pooled


def _derived(results: dict, stl: dict | None) -> dict:
  forgetting = results.get("forgetting")
  seconds = [s for s in results["seconds_per_task"] if s is not None]
  return {
    **results,
    "mean_forgetting": float(np.mean(forgetting)) if forgetting else None,
    "capacity_vs_stl": (
      results["total_nonzero_params"] / stl["total_nonzero_params"]
      if stl
      else None
    ),
    "minutes": sum(seconds) / 60.0,
  }


class Summary(NamedTuple):
  """A metric over a label's runs: mean, sample std (ddof=1; 0 for one
  run), count of defined values, and the 95 % bootstrap interval of the
  mean (`mcl.analysis.statistics`)."""

  mean: float
  std: float
  n: int
  low: float
  high: float


def summarise(values: Sequence[float | None]) -> Summary:
  """The Summary of the non-None `values`; nan figures (n 0) when every
  value is None."""
  x = np.asarray([v for v in values if v is not None], np.float64)
  if x.size == 0:
    nan = float("nan")
    return Summary(nan, nan, 0, nan, nan)
  std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
  low, high = statistics.bootstrap_interval(x)
  return Summary(float(np.mean(x)), std, int(x.size), low, high)


def _rows(runs: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
  """{label: {run: results with the derived metrics}}."""
  stl = runs.get("stl", {})
  return {
    label: {name: _derived(r, stl.get(name)) for name, r in by_run.items()}
    for label, by_run in runs.items()
  }


def aggregate(runs: dict[str, dict[str, dict]]) -> dict[str, dict]:
  """{label: {metric: summarise(...)}, plus "runs": count}."""
  table = {}
  for label, by_run in _rows(runs).items():
    rows = list(by_run.values())
    table[label] = {
      key: summarise([r[key] for r in rows]) for key, _ in METRICS
    }
    table[label]["runs"] = len(rows)
  return table


def _cell(stat: Summary) -> str:
  if stat.n == 0:
    return "–"
  if abs(stat.mean) >= 100:
    return f"{stat.mean:,.0f} ± {stat.std:,.0f}"
  if stat.n < 2:
    return f"{stat.mean:.3f} ± {stat.std:.3f}"
  return f"{stat.mean:.3f} ± {stat.std:.3f} [{stat.low:.3f}, {stat.high:.3f}]"


def markdown(table: dict[str, dict], order: Sequence[str] = ()) -> str:
  """The table as Markdown, labels in `order` first."""
  labels = [x for x in order if x in table] + sorted(
    x for x in table if x not in order
  )
  header = ["method", "runs"] + [title for _, title in METRICS]
  lines = [
    "| " + " | ".join(header) + " |",
    "|" + "---|" * len(header),
  ]
  for label in labels:
    cells = [label, str(table[label]["runs"])]
    cells += [_cell(table[label][key]) for key, _ in METRICS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_csv(table: dict[str, dict], path: str) -> None:
  """One row per label: runs, then mean, std, n and the interval of every
  metric."""
  with atomic_files.replace(path, newline="") as f:
    writer = csv.writer(f)
    header = ["method", "runs"]
    for key, _ in METRICS:
      header += [f"{key}_{x}" for x in ("mean", "std", "n", "low", "high")]
    writer.writerow(header)
    for label in sorted(table):
      row = [label, table[label]["runs"]]
      for key, _ in METRICS:
        row += list(table[label][key])
      writer.writerow(row)


# Metrics of the paired comparison (keys of METRICS).
PAIRED_METRICS = (
  "average_accuracy",
  "bwt",
  "final_auroc",
  "final_class_incremental_accuracy",
  "capacity_vs_stl",
)


def paired(
  runs: dict[str, dict[str, dict]],
  reference: str = "den",
  test_train_ratio: float = statistics.FOLD_RATIO,
) -> dict[str, dict[str, statistics.PairedDifference]]:
  """{label: {metric: reference minus label}} over the runs both have
  where both figures are defined (e.g. joint has no BWT); each metric's
  Wilcoxon p-values Holm-corrected over the rows with a test (one family
  a metric); `test_train_ratio` of the corrected resampled t-test."""
  rows = _rows(runs)
  differences = {}
  for label in rows:
    if label == reference:
      continue
    differences[label] = {}
    for key in PAIRED_METRICS:
      names = [
        n
        for n in sorted(set(rows[reference]) & set(rows[label]))
        if rows[reference][n][key] is not None
        and rows[label][n][key] is not None
      ]
      differences[label][key] = statistics.paired_difference(
        [rows[reference][n][key] for n in names],
        [rows[label][n][key] for n in names],
        test_train_ratio=test_train_ratio,
      )
  for key in PAIRED_METRICS:
    labels = [x for x in differences if differences[x][key].n > 1]
    adjusted = statistics.holm([differences[x][key].p_value for x in labels])
    for label, p in zip(labels, adjusted, strict=True):
      differences[label][key] = dataclasses.replace(
        differences[label][key], holm_p_value=p
      )
  return differences


def paired_markdown(
  differences: dict[str, dict], reference: str, order: Sequence[str] = ()
) -> str:
  """The paired differences as Markdown: mean [95 % interval], Wilcoxon p,
  its Holm-corrected p, the corrected resampled t-test's p (n)."""
  labels = [x for x in order if x in differences] + sorted(
    x for x in differences if x not in order
  )
  titles = dict(METRICS)
  header = [f"{reference} minus"] + [titles[key] for key in PAIRED_METRICS]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for label in labels:
    cells = [label]
    for key in PAIRED_METRICS:
      d = differences[label][key]
      if d.n == 0:
        cells.append("–")
      elif d.n == 1:
        cells.append(f"{d.mean:+.3f} (1)")
      else:
        cells.append(
          f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] p={d.p_value:.3f}"
          f" p_Holm={d.holm_p_value:.3f} p_NB={d.corrected_p_value:.3f}"
          f" ({d.n})"
        )
    lines.append("| " + " | ".join(cells) + " |")
  lines.append(
    f"\nMean of {reference} minus the row over the (fold, seed) runs both"
    " have (count in brackets), 95 % bootstrap interval, two-sided Wilcoxon"
    " signed-rank p and p_Holm, Holm-corrected over the column's rows"
    " with a test. Runs of one fold share its clips, so the interval and p"
    " are optimistic; p_NB is Nadeau & Bengio's corrected resampled t-test"
    " (n_test / n_train of a split: 1/3 for one test fold over three"
    " training folds), which allows for it."
  )
  return "\n".join(lines) + "\n"


def mean_matrix(by_run: dict[str, dict]) -> np.ndarray:
  """Mean test accuracy matrix over runs, NaN where undefined."""
  stack = [
    [[np.nan if v is None else v for v in row] for row in r["accuracy_matrix"]]
    for r in by_run.values()
  ]
  stack = np.asarray(stack, np.float64)
  count = np.sum(~np.isnan(stack), axis=0)
  total = np.sum(np.nan_to_num(stack), axis=0)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pyplot():
  import matplotlib  # noqa: PLC0415 - only the plots need it

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # noqa: PLC0415

  return plt


def plot_matrix(matrix: np.ndarray, title: str, path: str) -> None:
  """Heatmap of an accuracy matrix (R[i, j]: task j after task i; NaN
  where undefined) with its values, written as a PNG to `path`."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(4, 3.5))
  image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
  for (i, j), v in np.ndenumerate(matrix):
    if not np.isnan(v):
      ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
  ax.set(title=title, xlabel="task evaluated", ylabel="after task")
  fig.colorbar(image, ax=ax)
  atomic_files.save_figure(fig, path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def plot(runs: dict[str, dict[str, dict]], table: dict, out_dir: str) -> list:
  """Writes the sweep's figures as PNG files; returns their paths.

  - `matrix_<label>.png`: mean accuracy matrix heatmap per label;
  - `per_task_accuracy.png`: accuracy on each task after each task;
  - `accuracy_vs_params.png`: final average accuracy against nonzero
    parameters relative to STL.
  """
  plt = pyplot()
  paths = []
  for label, by_run in runs.items():
    paths.append(os.path.join(out_dir, f"matrix_{label}.png"))
    plot_matrix(mean_matrix(by_run), label, paths[-1])

  sequential = [x for x in runs if x != "joint"]
  cols = len(sequential)
  fig, axes = plt.subplots(
    1, cols, figsize=(2.2 * cols, 2.6), sharey=True, squeeze=False
  )
  for ax, label in zip(axes[0], sequential, strict=True):
    m = mean_matrix(runs[label])
    for j in range(m.shape[1]):
      ax.plot(range(j, m.shape[0]), m[j:, j], marker="o", label=f"task {j}")
    ax.set(title=label, xlabel="after task", ylim=(0, 1.05))
  axes[0][0].set_ylabel("test accuracy")
  axes[0][-1].legend(fontsize=6)
  paths.append(os.path.join(out_dir, "per_task_accuracy.png"))
  atomic_files.save_figure(fig, paths[-1], dpi=100, bbox_inches="tight")
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(5, 4))
  for label, row in table.items():
    x, y = row["capacity_vs_stl"].mean, row["average_accuracy"].mean
    if not (np.isnan(x) or np.isnan(y)):
      ax.errorbar(
        x, y, yerr=row["average_accuracy"].std, xerr=row["capacity_vs_stl"].std,
        marker="o", capsize=2,
      )  # fmt: skip
      ax.annotate(label, (x, y), fontsize=7)
  ax.set(xlabel="nonzero parameters / STL", ylabel="final average accuracy")
  paths.append(os.path.join(out_dir, "accuracy_vs_params.png"))
  atomic_files.save_figure(fig, paths[-1], dpi=100, bbox_inches="tight")
  plt.close(fig)
  return paths


def write_report(
  root: str,
  order: Sequence[str] = (),
  out_dir: str | None = None,
  reference: str = "den",
  rows: Mapping[str, tuple[str, str]] | None = None,
) -> dict:
  """results.md (the table, then the distinct provenances of its runs:
  `mcl.runtime.provenance.markdown`), results.csv, paired.md
  (`reference` minus every other label, when `reference` is among
  others) and the plots of the sweep under `root`, written to `out_dir`
  (default `root`); labels pooled into rows by `rows` (`pool`).

  Raises:
    ValueError: no run under `root` has finished.
  """
  out_dir = out_dir or root
  runs = pool(load_runs(root), rows or {})
  if not runs:
    raise ValueError(f"{root}: no finished run (no complete results.json)")
  table = aggregate(runs)
  every_run = [r for by_run in runs.values() for r in by_run.values()]
  text = markdown(table, order) + "\n" + provenance.markdown(every_run)
  atomic_files.write_text(os.path.join(out_dir, "results.md"), text)
  paired_path = os.path.join(out_dir, "paired.md")
  if reference in runs and len(runs) > 1:
    atomic_files.write_text(
      paired_path, paired_markdown(paired(runs, reference), reference, order)
    )
  elif os.path.exists(paired_path):
    os.remove(paired_path)  # Another sweep's, left in this folder.
  write_csv(table, os.path.join(out_dir, "results.csv"))
  plot(runs, table, out_dir)
  return table
