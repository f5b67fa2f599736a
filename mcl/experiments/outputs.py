"""What an experiment writes into its workdir besides its checkpoints.

- `write_results`: `<workdir>/results.json`, one writer for the continual,
  tagging and feature experiments, with what produced it under
  "provenance" (`mcl.runtime.provenance`): replaced atomically
  (`mcl.runtime.atomic_files`: a killed run leaves the previous file or
  none) and by process 0 only, as every process holds the same figures;
- `write_metrics_csv`: a continual run's `<workdir>/metrics.csv` in long
  format, one row per (after task, task, metric) as Avalanche's CSV logger
  or FACIL write them, for pandas;
- `writer`: the run's metric writer: TensorBoard (clu) with the config as
  hparams (`hparams`), and a Weights & Biases run beside it when `wandb`
  is installed and `MCL_WANDB` names a project (never a dependency).
"""

import csv
import os
from collections.abc import Mapping

import jax
import ml_collections
from clu import metric_writers

from mcl.runtime import atomic_files, provenance

RESULTS = "results.json"
METRICS = "metrics.csv"
# results.json matrix -> metric name of its metrics.csv rows.
MATRICES = {
  "accuracy_matrix": "accuracy",
  "auroc_matrix": "auroc",
  "pr_auc_matrix": "pr_auc",
  "validation_accuracy_matrix": "validation_accuracy",
}
# results.json list over "after task" -> metric (rows without a task).
PER_TASK = {"class_incremental_accuracy": "class_incremental_accuracy"}
WANDB_PROJECT = "MCL_WANDB"


def write_results(workdir: str, results: dict) -> dict:
  """Writes `results` (JSON-ready) and its provenance to
  `<workdir>/results.json` (by process 0 only).

  Returns:
    What was written: `results` with "provenance" set to
    `mcl.runtime.provenance.collect()` (package versions, devices, XLA
    flags, code revision). `results` itself is not changed.

  Raises:
    mcl.runtime.errors.UserError: the write failed (e.g. a full disk),
      naming the path.
  """
  out = {**results, "provenance": provenance.collect()}
  if jax.process_index() == 0:
    atomic_files.write_json(os.path.join(workdir, RESULTS), out)
  return out


def metric_rows(results: dict) -> list[dict]:
  """A continual results.json as long-format rows.

  Returns:
    {"after_task": i, "task": j, "metric": name, "value": v} for every
    reached entry of the score matrices (`MATRICES`), and rows with an
    empty task for the per-step figures (`PER_TASK`).
  """
  rows = []
  for key, metric in MATRICES.items():
    for i, row in enumerate(results[key]):
      for j, value in enumerate(row):
        if j <= i and value is not None:
          rows.append(
            {"after_task": i, "task": j, "metric": metric, "value": value}
          )
  for key, metric in PER_TASK.items():
    for i, value in enumerate(results[key]):
      if value is not None:
        rows.append(
          {"after_task": i, "task": "", "metric": metric, "value": value}
        )
  return rows


def write_metrics_csv(workdir: str, results: dict) -> str:
  """`metric_rows(results)` to `<workdir>/metrics.csv` (process 0,
  atomically); returns the path."""
  path = os.path.join(workdir, METRICS)
  if jax.process_index() == 0:
    with atomic_files.replace(path) as f:
      table = csv.DictWriter(
        f, ["after_task", "task", "metric", "value"], lineterminator="\n"
      )
      table.writeheader()
      table.writerows(metric_rows(results))
  return path


def hparams(config: ml_collections.ConfigDict) -> dict:
  """The config flattened to dotted keys with TensorBoard's value types
  (bool, int, float, str; sequences and None as their text)."""
  flat = {}

  def walk(prefix, node):
    for key, value in node.items():
      name = f"{prefix}{key}"
      if isinstance(value, Mapping | ml_collections.ConfigDict):
        walk(f"{name}.", value)
      elif isinstance(value, bool | int | float | str):
        flat[name] = value
      else:
        flat[name] = str(value)

  walk("", config)
  return flat


class _Wandb(metric_writers.MetricWriter):
  """Scalars, texts and the config of a run to a Weights & Biases run."""

  def __init__(self, module, project: str, workdir: str):
    self._run = module.init(
      project=project, dir=workdir, name=os.path.basename(workdir)
    )

  def write_scalars(self, step, scalars):
    self._run.log(dict(scalars), step=step)

  def write_texts(self, step, texts):
    self._run.log(dict(texts), step=step)

  def write_hparams(self, hparams):
    self._run.config.update(dict(hparams), allow_val_change=True)

  def write_summaries(self, step, values, metadata=None):
    del step, values, metadata

  def write_images(self, step, images):
    del step, images

  def write_videos(self, step, videos):
    del step, videos

  def write_audios(self, step, audios, *, sample_rate):
    del step, audios, sample_rate

  def write_histograms(self, step, arrays, num_buckets=None):
    del step, arrays, num_buckets

  def flush(self):
    pass

  def close(self):
    self._run.finish()


def writer(
  workdir: str, config: ml_collections.ConfigDict
) -> metric_writers.MetricWriter:
  """The run's metric writer, the config written as its hparams.

  TensorBoard events in `workdir` (process 0; other processes log only);
  with `wandb` importable and the environment variable `MCL_WANDB` set to
  a project name, the same scalars also go to a W&B run of that project.
  """
  main = jax.process_index() == 0
  writers = [
    metric_writers.create_default_writer(workdir, just_logging=not main)
  ]
  project = os.environ.get(WANDB_PROJECT)
  if main and project:
    try:
      import wandb  # noqa: PLC0415 (optional, never a dependency)
    except ImportError:
      wandb = None
    if wandb is not None:
      writers.append(_Wandb(wandb, project, workdir))
  out = metric_writers.MultiWriter(writers)
  out.write_hparams(hparams(config))
  return out
