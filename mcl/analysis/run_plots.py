"""The figures of one continual run, written beside its results.json.

pyplot's figures are process-global state: the runs of a replica group
plot from their own threads, one at a time (`_PYPLOT`).
"""

import os
import threading

import numpy as np

from mcl.analysis import report
from mcl.runtime import atomic_files


def plot_confusion(results: dict, path: str) -> None:
  """The class-incremental confusion matrix of results.json `results`
  (rows: true class, columns: predicted, among every class seen after
  the last finished task; each row as shares of its clips), as a PNG."""
  counts = np.asarray(results["confusion_matrix"], np.float64)
  shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  names = results["classes"][: len(counts)]
  plt = report.pyplot()
  fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(names),) * 2)
  ax.imshow(shares, vmin=0.0, vmax=1.0, cmap="viridis")
  for (i, j), v in np.ndenumerate(counts):
    if v:
      ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=7)
  ticks = range(len(names))
  ax.set_xticks(ticks, names, rotation=90, fontsize=7)
  ax.set_yticks(ticks, names, fontsize=7)
  ax.set(xlabel="predicted", ylabel="true", title=f"{results['method']}")
  atomic_files.save_figure(fig, path, dpi=100, bbox_inches="tight")
  plt.close(fig)


_PYPLOT = threading.Lock()


def plot_run(results: dict, out_dir: str) -> list[str]:
  """One run's figures beside its results.json; returns their paths.

  - `accuracy_matrix.png`: the test accuracy matrix (`plot_matrix`);
  - `capacity.png`: parameters (all and nonzero) of each task's network
    in the final model, and the units of every hidden layer after each
    task (DEN's growth; flat for fixed-size methods);
  - `confusion_matrix.png`: the last task's class-incremental confusion
    matrix (`plot_confusion`), when results.json has one.
  """
  with _PYPLOT:
    return _plot_run(results, out_dir)


def _plot_run(results: dict, out_dir: str) -> list[str]:
  paths = [os.path.join(out_dir, "accuracy_matrix.png")]
  report.plot_matrix(
    report.mean_matrix({"run": results}), f"{results['method']}", paths[0]
  )
  plt = report.pyplot()
  fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
  tasks = np.arange(len(results["params_per_task"]))
  for offset, key, label in (
    (-0.2, "params_per_task", "all"),
    (0.2, "nonzero_params_per_task", "nonzero"),
  ):
    values = [np.nan if v is None else v for v in results[key]]
    left.bar(tasks + offset, values, width=0.4, label=label)
  left.set(xlabel="task", ylabel="parameters of its network", xticks=tasks)
  left.legend(fontsize=7)
  units = [u for u in results["units_per_layer"] if u is not None]
  for layer in units[0] if units else {}:
    right.plot(
      range(len(units)), [u[layer] for u in units], marker="o", label=layer
    )
  right.set(xlabel="after task", ylabel="units", xticks=range(len(units)))
  if units:
    right.legend(fontsize=7)
  else:  # Columns (STL, progressive) have no per-layer unit count.
    right.set_title("no unit timestamps", fontsize=8)
  fig.suptitle(results["method"])
  paths.append(os.path.join(out_dir, "capacity.png"))
  atomic_files.save_figure(fig, paths[-1], dpi=100, bbox_inches="tight")
  plt.close(fig)
  if results.get("confusion_matrix"):
    paths.append(os.path.join(out_dir, "confusion_matrix.png"))
    plot_confusion(results, paths[-1])
  return paths
