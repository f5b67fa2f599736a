"""What a continual run writes beside its checkpoints: metrics.csv,
TensorBoard hparams, a W&B run when wandb is there, and the provenance in
results.json."""

import glob
import json
import os
import shutil
import subprocess
import sys
import types
from importlib import metadata

import flax
import jax
import jaxlib.version
import librosa
import numpy as np
import optax
import pandas as pd
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from mcl import experiments
from mcl.datasets import arrays
from mcl.experiments import outputs
from mcl.runtime import provenance
from tests import test_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, name="run"):
  x, y, split = test_arrays._separable((12,))
  data = arrays.from_arrays(x, y, [[0, 1], [2, 3]], split)
  config = test_arrays._config("finetune")
  config.train.fit.max_steps = 6
  config.train.fit.eval_every = 3
  workdir = str(tmp_path / name)
  return workdir, experiments.run(config, workdir, data=data)


def test_metrics_csv_rows_equal_results_json(tmp_path):
  workdir, results = _run(tmp_path)
  table = pd.read_csv(os.path.join(workdir, "metrics.csv"))
  assert list(table.columns) == ["after_task", "task", "metric", "value"]
  for key, metric in outputs.MATRICES.items():
    rows = table[table.metric == metric]
    assert len(rows) == 3  # (0, 0), (1, 0), (1, 1).
    for r in rows.itertuples():
      assert r.value == results[key][r.after_task][int(r.task)]
  ci = table[table.metric == "class_incremental_accuracy"]
  assert ci.value.tolist() == results["class_incremental_accuracy"]
  assert ci.task.isna().all()


def _hparams(workdir) -> dict:
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        plugin = value.metadata.plugin_data
        if plugin.plugin_name != "hparams":
          continue
        data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
        if data.HasField("session_start_info"):
          return {
            k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
            for k, v in data.session_start_info.hparams.items()
          }
  return {}


def test_tensorboard_shows_the_config_as_hparams(tmp_path):
  workdir, _ = _run(tmp_path)
  shown = _hparams(workdir)
  assert shown["method"] == "finetune"
  assert shown["train.fit.max_steps"] == 6
  assert shown["model.widths.dense_widths"] == "(32, 16)"


def test_a_wandb_run_gets_the_scalars_when_wandb_is_installed(
  tmp_path, monkeypatch
):
  logged, configs, finished = [], [], []

  class Run:
    config = types.SimpleNamespace(
      update=lambda values, allow_val_change: configs.append(values)
    )

    def log(self, values, step):
      logged.append((step, values))

    def finish(self):
      finished.append(True)

  fake = types.ModuleType("wandb")
  fake.init = lambda project, dir, name: Run()  # noqa: A002
  monkeypatch.setitem(sys.modules, "wandb", fake)
  monkeypatch.setenv(outputs.WANDB_PROJECT, "mcl-test")
  _run(tmp_path, "with_wandb")
  assert configs and configs[0]["method"] == "finetune"
  keys = {k for _, values in logged for k in values}
  assert "continual/average_accuracy" in keys
  assert any(k.startswith("task1/train/") for k in keys)
  assert finished == [True]  # The W&B run is finished with the run.


def _git(*args) -> str:
  return subprocess.run(
    ["git", "-C", ROOT, *args], capture_output=True, text=True, check=True
  ).stdout.strip()


def test_results_json_says_what_produced_it(tmp_path, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
  provenance.revision.cache_clear()
  workdir, results = _run(tmp_path)
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)["provenance"]
  assert on_disk == results["provenance"]
  packages = on_disk["packages"]
  assert packages["jax"] == jax.__version__
  assert packages["jaxlib"] == jaxlib.version.__version__
  assert packages["flax"] == flax.__version__
  assert packages["optax"] == optax.__version__
  assert packages["numpy"] == np.__version__
  assert packages["tensorflow"] == tf.__version__
  assert packages["librosa"] == librosa.__version__
  assert packages["orbax-checkpoint"] == metadata.version("orbax-checkpoint")
  devices = on_disk["devices"]
  assert devices["kind"] == jax.devices()[0].device_kind
  assert devices["count"] == jax.device_count()
  environment = on_disk["environment"]
  assert environment["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
  if shutil.which("git") is None or not os.path.isdir(
    os.path.join(ROOT, ".git")
  ):
    pytest.skip("not a git checkout")
  assert on_disk["revision"] == {
    "commit": _git("rev-parse", "HEAD"),
    "dirty": bool(_git("status", "--porcelain")),
  }
