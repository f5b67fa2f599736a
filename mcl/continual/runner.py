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
from mcl.continual import den, surgery
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
  if config.method not in METHODS:
    raise ValueError(
      f"unknown method {config.method!r}; known: {sorted(METHODS)}"
    )
  learn_task = METHODS[config.method]
  model_class = models.get_model_class(config.model.name)
  os.makedirs(workdir, exist_ok=True)

  builder = build_dataset(config)
  task_list = tasks.make_tasks(
    config.tasks, builder.info.features["label"].names
  )
  split = tasks.fold_split(config.data.fold, config.data.num_folds)
  frames = chunk_frames(config)

  def eval_set(folds, task):
    return input_pipeline.eval_batches(
      builder,
      folds,
      task.class_ids,
      chunk_frames=frames,
      num_chunks=config.data.eval_chunks,
      batch_size=config.train.eval_batch_size,
    )

  test_sets = [eval_set(split.test, task) for task in task_list]
  fit_config = train.FitConfig(**config.train.fit)
  den_config = den.DENConfig(**config.den)
  checkpoints = checkpointing.TaskCheckpoints(
    os.path.join(workdir, "checkpoints")
  )
  abstract = checkpointing.abstract_params(
    model_class, (1, frames, config.features.n_mels)
  )
  writer = metric_writers.create_default_writer(
    workdir, just_logging=jax.process_index() > 0
  )

  done = checkpoints.tasks()
  if done:
    params, metadata = checkpoints.restore(done[-1], abstract)
    timestamps = {
      k: np.asarray(v, np.int32) for k, v in metadata["timestamps"].items()
    }
    step_offset = metadata["global_step"]
    logging.info("Resuming after task %d from %s", done[-1], workdir)
  else:
    model = model_class(
      **config.model.widths, head_sizes=(task_list[0].num_classes,)
    )
    params = jax.device_get(
      model.init(
        jax.random.key(config.seed),
        jnp.zeros((1, frames, config.features.n_mels)),
      )["params"]
    )
    timestamps = {
      name: np.zeros(params[name]["bias"].shape, np.int32)
      for name in model.hidden_layers
    }
    step_offset = 0
  layers = tuple(timestamps)

  for task in task_list[len(done) :]:
    start = time.time()
    train_iter = input_pipeline.train_batches(
      builder,
      split.train,
      task.class_ids,
      chunk_frames=frames,
      batch_size=config.train.batch_size,
      seed=config.seed * 1000 + task.index,
    )
    validation = eval_set(split.validation, task)
    steps_done = [step_offset]

    def phase(
      params,
      trainable,
      name,
      task=task,
      train_iter=train_iter,
      validation=validation,
      steps_done=steps_done,
      **kwargs,
    ):
      model = model_class.from_params(params)
      tag = f"task{task.index}/{name}"
      try:
        result = train.fit(
          model,
          params,
          trainable,
          task.index,
          train_iter,
          validation,
          fit_config,
          writer=writer,
          step_offset=steps_done[0],
          name=tag,
          **kwargs,
        )
      except train.NonFiniteLossError as e:
        checkpointing.TaskCheckpoints(os.path.join(workdir, "nonfinite")).save(
          task.index,
          e.params,
          {
            "phase": tag,
            "step": e.step,
            "architecture": checkpointing.architecture(
              model_class.from_params(e.params)
            ),
          },
        )
        logging.error("%s: %s; state saved in %s/nonfinite", tag, e, workdir)
        raise
      steps_done[0] += result.steps
      return result

    params, timestamps, record = learn_task(
      phase,
      params,
      timestamps,
      layers,
      task.index,
      task.num_classes,
      den_config,
      fit_config.learning_rate,
      np.random.default_rng([config.seed, task.index]),
    )
    step_offset = steps_done[0]

    accuracy_row, auroc_row = [], []
    for seen in task_list[: task.index + 1]:
      sub = surgery.timestamped_params(
        params,
        timestamps,
        layers,
        model_class.from_params(params).heads,
        seen.index,
      )
      result = train.evaluate(
        model_class.from_params(sub), sub, seen.index, test_sets[seen.index]
      )
      accuracy_row.append(result.accuracy)
      auroc_row.append(metrics.roc_auc(result.probabilities, result.labels))
    seconds = time.time() - start
    logging.info(
      "Task %d %s done in %.0f s: test accuracy row %s, units %s",
      task.index,
      task.class_names,
      seconds,
      np.round(accuracy_row, 3).tolist(),
      surgery.widths(params, layers),
    )
    checkpoints.save(
      task.index,
      params,
      {
        "task": task.index,
        "architecture": checkpointing.architecture(
          model_class.from_params(params)
        ),
        "timestamps": {k: v.tolist() for k, v in timestamps.items()},
        "units_per_layer": surgery.widths(params, layers),
        "accuracy_row": accuracy_row,
        "auroc_row": auroc_row,
        "seconds": seconds,
        "global_step": step_offset,
        "record": record,
      },
    )
    results = _results(
      task_list, checkpoints, params, timestamps, layers, model_class, config
    )
    _write_json(os.path.join(workdir, "results.json"), results)
  writer.flush()
  results = _results(
    task_list, checkpoints, params, timestamps, layers, model_class, config
  )
  _write_json(os.path.join(workdir, "results.json"), results)
  checkpoints.close()
  return results


def _results(
  task_list, checkpoints, params, timestamps, layers, model_class, config
):
  finished = checkpoints.tasks()
  heads = model_class.from_params(params).heads
  params_per_task = []
  for j in finished:
    sub = surgery.timestamped_params(params, timestamps, layers, heads, j)
    params_per_task.append(
      surgery.count_parameters(sub, list(layers) + [heads[j]])
    )
  return assemble_results(
    task_list,
    [checkpoints.metadata(j) for j in finished],
    params_per_task,
    config,
  )
