"""Sweep expansion and aggregation on hand-made results.json files."""

import copy
import json
import math
import os

import jax
import numpy as np
import pytest
from scipy import stats

from mcl.analysis import report, sweep
from mcl.runtime import provenance


def _results(accuracy, bwt, nonzero, tasks=2):
  return {
    "tasks": [["a", "b"]] * tasks,
    "finished_tasks": tasks,
    "accuracy_matrix": [[accuracy, None], [accuracy, accuracy]],
    "average_accuracy": accuracy,
    "mean_diagonal_accuracy": accuracy,
    "bwt": bwt,
    "fwt": None,
    "forgetting": [-bwt],
    "final_auroc": 0.9,
    "final_pr_auc": 0.8,
    "final_class_incremental_accuracy": 0.5,
    "total_nonzero_params": nonzero,
    "seconds_per_task": [30.0, 30.0],
  }


def _write(root, label, name, results):
  os.makedirs(os.path.join(root, label, name))
  with open(os.path.join(root, label, name, "results.json"), "w") as f:
    json.dump(results, f)


def test_aggregation_computes_mean_and_sample_std(tmp_path):
  root = str(tmp_path)
  _write(root, "stl", "fold0_seed0", _results(1.0, 0.0, 1000))
  _write(root, "stl", "fold1_seed0", _results(0.9, 0.0, 2000))
  _write(root, "den", "fold0_seed0", _results(0.6, -0.2, 500))
  _write(root, "den", "fold1_seed0", _results(0.8, -0.4, 500))
  unfinished = _results(0.1, 0.0, 1)
  unfinished["finished_tasks"] = 1
  _write(root, "den", "fold2_seed0", unfinished)  # Not counted.

  table = report.write_report(root, order=["stl", "den"])
  den = table["den"]
  assert den["runs"] == 2
  mean, std, n, low, high = den["average_accuracy"]
  assert (mean, n) == (pytest.approx(0.7), 2)
  # Resampled means of two runs: 0.6, 0.7 or 0.8.
  assert (low, high) == (pytest.approx(0.6), pytest.approx(0.8))
  assert std == pytest.approx(math.sqrt(0.02))  # ddof=1: (0.1^2*2)/1
  assert den["bwt"][:2] == (pytest.approx(-0.3), pytest.approx(math.sqrt(0.02)))
  # Capacity against the STL run of the same fold: 500/1000 and 500/2000.
  assert den["capacity_vs_stl"][0] == pytest.approx(0.375)
  assert den["minutes"][0] == pytest.approx(1.0)
  assert math.isnan(den["fwt"][0]) and den["fwt"][2] == 0

  with open(os.path.join(root, "results.md")) as f:
    lines = f.read().splitlines()
  assert lines[2].startswith("| stl | 2 | 0.950 ± 0.071 [0.900, 1.000] |")
  assert lines[3].startswith("| den | 2 | 0.700 ± 0.141 [0.600, 0.800] |")
  with open(os.path.join(root, "results.csv")) as f:
    rows = f.read().splitlines()
  assert rows[0].startswith("method,runs,average_accuracy_mean")
  for name in (
    "matrix_den.png",
    "per_task_accuracy.png",
    "accuracy_vs_params.png",
  ):
    assert os.path.getsize(os.path.join(root, name)) > 0
  with open(os.path.join(root, "paired.md")) as f:
    lines = f.read().splitlines()
  # den minus stl over fold0 and fold1: accuracy -0.4 and -0.1.
  assert lines[0].startswith("| den minus | accuracy (final avg) |")
  # One row: Holm leaves p alone; Nadeau-Bengio's t over d = (-0.4, -0.1):
  # -0.25 / sqrt((1/2 + 1/3) * 0.045) = -1.291 with 1 degree of freedom.
  nb = 2 * stats.t.sf(0.25 / np.sqrt((1 / 2 + 1 / 3) * 0.045), 1)
  assert lines[2].startswith(
    f"| stl | -0.250 [-0.400, -0.100] p=0.500 p_Holm=0.500 p_NB={nb:.3f} (2) |"
  )


def test_the_report_lists_the_distinct_provenances_of_its_runs(tmp_path):
  root = str(tmp_path)
  produced = provenance.collect()
  other = copy.deepcopy(produced)
  other["packages"]["jax"] = "0.0.1"
  other["environment"]["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  for name, p in (("f0", produced), ("f1", produced), ("f2", other)):
    _write(root, "stl", name, {**_results(1.0, 0.0, 10), "provenance": p})
  _write(root, "den", "f0", _results(0.5, 0.0, 10))  # Written before.
  report.write_report(root)
  with open(os.path.join(root, "results.md")) as f:
    text = f.read()
  section = text[text.index("## Produced by") :].splitlines()[2:]
  assert len(section) == 3
  assert section[0].startswith("- 2 runs: ")
  assert f"jax {jax.__version__}," in section[0]
  assert "XLA_FLAGS none" in section[0] or "XLA_FLAGS --" in section[0]
  older = "- 1 runs: not recorded (older runs)"
  assert older in section[1:]
  (line,) = [x for x in section[1:] if x != older]
  assert line.startswith("- 1 runs: ") and "jax 0.0.1," in line
  assert "XLA_FLAGS --xla_force_host_platform_device_count=2" in line


def test_grid_expands_variants_folds_and_seeds_and_skips_finished(tmp_path):
  runs = sweep.grid({"a": {"method": "stl"}, "b": {"den.k": 8}}, [0, 1], [3])
  assert [(r.label, r.name) for r in runs] == [
    ("a", "fold0_seed3"), ("b", "fold0_seed3"),
    ("a", "fold1_seed3"), ("b", "fold1_seed3"),
  ]  # fmt: skip
  argv = sweep.command(runs[3], "configs/gtzan.py", "out")
  assert argv[3:] == [
    "--config=configs/gtzan.py",
    "--workdir=out/b/fold1_seed3",
    "--config.den.k=8",
    "--config.data.fold=1",
    "--config.seed=3",
  ]
  root = str(tmp_path)
  _write(root, "a", "fold0_seed3", _results(1.0, 0.0, 1))
  assert sweep.finished(root, runs[0]) and not sweep.finished(root, runs[1])
