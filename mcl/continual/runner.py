"""Runs a continual-learning method over a task sequence and scores it.

After every task the runner evaluates each task seen so far on the test
fold through its timestamped network, saves an Orbax checkpoint whose JSON
metadata holds everything results.json needs, and rewrites
`<workdir>/results.json` from the checkpoints. A re-run with the same
workdir resumes after the last checkpointed task; every random stream is
derived from (seed, task), so a resumed run equals an uninterrupted one.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers

from mcl import (
  audio,
  checkpointing,
  input_pipeline,
  metrics,
  models,
  tasks,
  train,
)
from mcl.continual import den, surgery, timestamped
from mcl.datasets import labelled_folders

METHODS = {"den": den.learn_task}


def _write_json(path: str, content: dict) -> None:
  """Atomic write: a killed run never leaves a half-written file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(content, f, indent=1)
  os.replace(tmp, path)


def build_dataset(config: ml_collections.ConfigDict):
  """The prepared labelled-folder builder named by `config.data`."""
  return labelled_folders.build(
    config.data.source_dir,
    config.data.data_dir,
    audio.FeatureConfig(**config.features),
    num_folds=config.data.num_folds,
  )


def chunk_frames(config: ml_collections.ConfigDict) -> int:
  """Training/evaluation chunk length in frames."""
  return int(
    round(
      config.data.chunk_seconds
      * config.features.sample_rate
      / config.features.hop_length
    )
  )


def assemble_results(
  task_list: list[tasks.Task],
  checkpoint_metadata: list[dict],
  params_per_task: list[int],
  config: ml_collections.ConfigDict,
) -> dict:
  """results.json from the finished tasks' checkpoint metadata.

  Matrices are T x T (T = tasks in the sequence): row i after task i,
  None where task j was not seen yet or task i not trained yet. Summary
  metrics cover the finished tasks.
  """
  n, t = len(checkpoint_metadata), len(task_list)

  def matrix(key):
    rows = [m[key] + [None] * (t - len(m[key])) for m in checkpoint_metadata]
    return rows + [[None] * t for _ in range(t - n)]

  accuracy = matrix("accuracy_row")
  square = [row[:n] for row in accuracy[:n]]
  return {
    "method": config.method,
    "tasks": [list(task.class_names) for task in task_list],
    "finished_tasks": n,
    "accuracy_matrix": accuracy,
    "auroc_matrix": matrix("auroc_row"),
    "validation_accuracy_matrix": matrix("validation_accuracy_row"),
    "average_accuracy": metrics.average_accuracy(square) if n else None,
    "mean_diagonal_accuracy": (
      float(np.mean([square[j][j] for j in range(n)])) if n else None
    ),
    "bwt": metrics.backward_transfer(square) if n else None,
    "forgetting": metrics.forgetting(square) if n else None,
    "params_per_task": params_per_task,
    "units_per_layer": [m["units_per_layer"] for m in checkpoint_metadata],
    "seconds_per_task": [m["seconds"] for m in checkpoint_metadata],
    "task_records": [m["record"] for m in checkpoint_metadata],
    "config": config.to_dict(),
  }


class _Experiment:
  """What every task of one run shares: data, tasks, model, outputs."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    if config.method not in METHODS:
      raise ValueError(
        f"unknown method {config.method!r}; known: {sorted(METHODS)}"
      )
    self.config = config
    self.workdir = workdir
    self.model_class = models.get_model_class(config.model.name)
    self.builder = build_dataset(config)
    self.tasks = tasks.make_tasks(
      config.tasks, self.builder.info.features["label"].names
    )
    self.split = tasks.fold_split(config.data.fold, config.data.num_folds)
    self.frames = chunk_frames(config)
    self.fit_config = train.FitConfig(**config.train.fit)
    self.test_sets = [self.eval_set(self.split.test, t) for t in self.tasks]
    self.validation_sets = [
      self.eval_set(self.split.validation, t) for t in self.tasks
    ]
    self.checkpoints = checkpointing.TaskCheckpoints(
      os.path.join(workdir, "checkpoints")
    )
    self.writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0
    )

  def eval_set(self, folds, task: tasks.Task):
    return input_pipeline.eval_batches(
      self.builder,
      folds,
      task.class_ids,
      chunk_frames=self.frames,
      num_chunks=self.config.data.eval_chunks,
      batch_size=self.config.train.eval_batch_size,
    )

  def initial_state(self):
    """(params, timestamps, global step) to start from: fresh or resumed."""
    done = self.checkpoints.tasks()
    if done:
      params, metadata = self.checkpoints.restore(
        done[-1],
        checkpointing.abstract_params(
          self.model_class, (1, self.frames, self.config.features.n_mels)
        ),
      )
      logging.info("Resuming after task %d from %s", done[-1], self.workdir)
      timestamps = checkpointing.timestamps(metadata)
      return params, timestamps, metadata["global_step"]
    model = self.model_class(
      **self.config.model.widths, head_sizes=(self.tasks[0].num_classes,)
    )
    inputs = jnp.zeros((1, self.frames, self.config.features.n_mels))
    params = jax.device_get(
      model.init(jax.random.key(self.config.seed), inputs)["params"]
    )
    timestamps = {
      name: np.zeros(params[name]["bias"].shape, np.int32)
      for name in model.hidden_layers
    }
    return params, timestamps, 0

  def phase_fn(self, task: tasks.Task, step_offset: int):
    """A `den.PhaseFn` on `task`'s data, and a counter of its steps."""
    train_iter = input_pipeline.train_batches(
      self.builder,
      self.split.train,
      task.class_ids,
      chunk_frames=self.frames,
      batch_size=self.config.train.batch_size,
      seed=self.config.seed * 1000 + task.index,
    )
    validation = self.validation_sets[task.index]
    steps = [step_offset]

    def phase(params, trainable, name, **kwargs):
      tag = f"task{task.index}/{name}"
      model = self.model_class.from_params(params)
      try:
        result = train.fit(
          model, params, trainable, task.index, train_iter, validation,
          self.fit_config, writer=self.writer, step_offset=steps[0],
          name=tag, **kwargs,
        )  # fmt: skip
      except train.NonFiniteLossError as e:
        self.save_diverged(task, tag, e)
        raise
      steps[0] += result.steps
      return result

    return phase, steps

  def save_diverged(self, task, tag, error: train.NonFiniteLossError):
    model = self.model_class.from_params(error.params)
    directory = os.path.join(self.workdir, "nonfinite")
    checkpointing.TaskCheckpoints(directory).save(
      task.index,
      error.params,
      {
        "phase": tag,
        "step": error.step,
        "architecture": checkpointing.architecture(model),
      },
    )
    logging.error("%s: %s; state saved in %s", tag, error, directory)

  def score_row(self, params, timestamps, task: tasks.Task, eval_sets):
    """Accuracy and ROC-AUC of tasks 0..task, each on its own network.

    Args:
      params: the network after training `task`.
      timestamps: its units' timestamps.
      task: the task just trained.
      eval_sets: evaluation batches per task (test or validation).

    Returns:
      (accuracies, ROC-AUCs), one entry per task 0..task.
    """
    layers = tuple(timestamps)
    heads = self.model_class.from_params(params).heads
    accuracy, auroc = [], []
    for seen in self.tasks[: task.index + 1]:
      sub = timestamped.timestamped_params(
        params, timestamps, layers, heads, seen.index
      )
      result = train.evaluate(
        self.model_class.from_params(sub),
        sub,
        seen.index,
        eval_sets[seen.index],
      )
      accuracy.append(result.accuracy)
      auroc.append(metrics.roc_auc(result.probabilities, result.labels))
    return accuracy, auroc

  def write_results(self, params, timestamps) -> dict:
    """Rebuilds results.json from the checkpoints and the final network."""
    heads = self.model_class.from_params(params).heads
    results = assemble_results(
      self.tasks,
      [self.checkpoints.metadata(j) for j in self.checkpoints.tasks()],
      timestamped.parameters_per_task(params, timestamps, heads),
      self.config,
    )
    _write_json(os.path.join(self.workdir, "results.json"), results)
    return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Learns the task sequence of `config` in `workdir`, resuming if possible.

  Args:
    config: an experiment config (see `configs/gtzan_den.py`).
    workdir: output folder: checkpoints/, TensorBoard events, results.json.

  Returns:
    The content of `<workdir>/results.json`.

  Raises:
    ValueError: unknown method or model, or a bad task or data setting.
    train.NonFiniteLossError: training diverged; the state at that point
      is saved under `<workdir>/nonfinite`.
  """
  os.makedirs(workdir, exist_ok=True)
  experiment = _Experiment(config, workdir)
  learn_task = METHODS[config.method]
  den_config = den.DENConfig(**config.den)
  params, timestamps, global_step = experiment.initial_state()
  layers = tuple(timestamps)
  results = None
  for task in experiment.tasks[len(experiment.checkpoints.tasks()) :]:
    start = time.time()
    phase, steps = experiment.phase_fn(task, global_step)
    params, timestamps, record = learn_task(
      phase,
      params,
      timestamps,
      layers,
      task.index,
      task.num_classes,
      den_config,
      experiment.fit_config.learning_rate,
      np.random.default_rng([config.seed, task.index]),
    )
    global_step = steps[0]
    accuracy_row, auroc_row = experiment.score_row(
      params, timestamps, task, experiment.test_sets
    )
    validation_row, _ = experiment.score_row(
      params, timestamps, task, experiment.validation_sets
    )
    seconds = time.time() - start
    logging.info(
      "Task %d %s done in %.0f s: test accuracy row %s, units %s",
      task.index,
      task.class_names,
      seconds,
      np.round(accuracy_row, 3).tolist(),
      surgery.widths(params, layers),
    )
    experiment.checkpoints.save(
      task.index,
      params,
      {
        "task": task.index,
        "model": config.model.name,
        "input_shape": [1, experiment.frames, config.features.n_mels],
        "architecture": checkpointing.architecture(
          experiment.model_class.from_params(params)
        ),
        "timestamps": {k: v.tolist() for k, v in timestamps.items()},
        "units_per_layer": surgery.widths(params, layers),
        "accuracy_row": accuracy_row,
        "auroc_row": auroc_row,
        "validation_accuracy_row": validation_row,
        "seconds": seconds,
        "global_step": global_step,
        "record": record,
      },
    )
    results = experiment.write_results(params, timestamps)
  if results is None:  # Every task was already done.
    results = experiment.write_results(params, timestamps)
  experiment.writer.flush()
  experiment.checkpoints.close()
  return results
