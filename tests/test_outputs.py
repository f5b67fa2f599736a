"""What a continual run writes beside its checkpoints: metrics.csv,
TensorBoard hparams, and a W&B run when wandb is there."""

import glob
import os
import sys
import types

import pandas as pd
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from mcl import experiments
from mcl.datasets import arrays
from mcl.experiments import outputs
from tests import test_arrays


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
