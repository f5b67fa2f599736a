"""The continual runner's `TaskData` of frozen-encoder records, held in
memory.

A clip's record is its patch embeddings [patches, D]
(`mcl.datasets.encoded_folders`): the whole GTZAN excerpt set is under a
megabyte, and a run's tf.data pipelines over it cost more than its MLP
steps. So the clips of the run's splits are read once per process and
batched with numpy, with `AudioTaskData`'s layouts and semantics: a
training example is one uniformly drawn patch of a clip, the clips
shuffled afresh every pass (seeded); an evaluation clip is
`input_pipeline.evenly_spaced_chunks` of its patches (the function
`mcl.predict` scores a new clip with), in fixed-shape batches padded
with mask-0 clips.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from mcl.datasets import input_pipeline, task_data, tasks

# (records folder, split expression) -> (embeddings, labels) of its clips.
_LOADED: dict[tuple[str, str], tuple[list[np.ndarray], np.ndarray]] = {}


def load(builder, split: str) -> tuple[list[np.ndarray], np.ndarray]:
  """Every clip of a split expression: ([float32 [patches, D]], int64
  labels [clips]), in record order, read once per process."""
  key = (builder.data_dir, split)
  if key not in _LOADED:
    rows = tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))
    clips, labels = [], []
    for row in rows:
      clips.append(np.asarray(row["embedding"], np.float32))
      labels.append(int(row["label"]))
    _LOADED[key] = (clips, np.asarray(labels, np.int64))
  return _LOADED[key]


class ClipTaskData:
  """`task_data.TaskData` of prepared `encoded_folders` records.

  Attributes:
    builder: the prepared records (their name keys a resumed run).
    split: their train/validation/test split expressions.
    tasks: the task sequence.
    input_shape: (1, 1, D): one patch embedding.
  """

  def __init__(
    self,
    builder,
    split: tasks.DataSplit,
    task_list: Sequence[tasks.Task],
    batch_size: int,
    eval_batch_size: int,
    eval_chunks: int,
  ):
    """Args: the records and split; the tasks; patches per training
    batch, clips per evaluation batch, evenly spaced patches per
    evaluation clip."""
    self.builder, self.split, self.tasks = builder, split, list(task_list)
    dim = builder.info.features["embedding"].shape[-1]
    self.input_shape = (1, 1, dim)
    self._batch_size = batch_size
    self._eval_batch_size = eval_batch_size
    self._eval_chunks = eval_chunks

  def _clips(self, split: str, class_ids: Sequence[int]):
    """The split's clips of `class_ids`, labels as positions in them."""
    clips, labels = load(self.builder, dataclasses.asdict(self.split)[split])
    local = {c: i for i, c in enumerate(class_ids)}
    keep = [i for i, label in enumerate(labels) if label in local]
    return [clips[i] for i in keep], np.asarray(
      [local[labels[i]] for i in keep], np.int32
    )

  def _stream(self, clips, labels, seed):
    """Endless batches of one random patch per clip, clips reshuffled
    every pass."""
    rng = np.random.default_rng(seed)
    order = np.empty(0, np.int64)
    while True:
      while order.size < self._batch_size:
        order = np.concatenate([order, rng.permutation(len(clips))])
      pick, order = order[: self._batch_size], order[self._batch_size :]
      rows = [clips[i][rng.integers(clips[i].shape[0])] for i in pick]
      yield {"inputs": np.stack(rows)[:, None, :], "label": labels[pick]}

  def train_batches(self, task, seed):
    clips, labels = self._clips("train", self.tasks[task].class_ids)
    if not clips:
      raise ValueError(f"no training clips of task {task}")
    return self._stream(clips, labels, seed)

  def eval_batches(self, task, split, num_chunks=None):
    task_data.check_split(split)
    clips, labels = self._clips(split, self.tasks[task].class_ids)
    if not clips:
      raise ValueError(f"no {split} clips of task {task}")
    k = num_chunks or self._eval_chunks
    inputs = np.stack(
      [np.asarray(input_pipeline.evenly_spaced_chunks(c, 1, k)) for c in clips]
    )
    size, out = self._eval_batch_size, []
    for start in range(0, len(clips), size):
      x, y = inputs[start : start + size], labels[start : start + size]
      pad = size - len(y)
      out.append(
        {
          "inputs": np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)),
          "label": np.pad(y, (0, pad)),
          "mask": np.pad(np.ones(len(y), np.float32), (0, pad)),
        }
      )
    return out

  def joint_batches(self, seed):
    ids = [c for t in self.tasks for c in t.class_ids]
    task_of = np.concatenate(
      [np.full(t.num_classes, t.index) for t in self.tasks]
    ).astype(np.int32)
    local = np.concatenate(
      [np.arange(t.num_classes) for t in self.tasks]
    ).astype(np.int32)
    clips, labels = self._clips("train", ids)
    for batch in self._stream(clips, labels, seed):
      yield {
        "inputs": batch["inputs"],
        "label": local[batch["label"]],
        "task": task_of[batch["label"]],
      }
