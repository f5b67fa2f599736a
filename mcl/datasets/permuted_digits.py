"""Permuted digits: DEN's permuted-MNIST benchmark, in memory, in numpy.

Yoon et al. (ICLR 2018) evaluate DEN on permuted MNIST: T tasks, each the
same ten-digit classification with the pixels shuffled by a fixed random
permutation; task 0 keeps the identity permutation, as is customary. The
scenario is task-incremental: one 10-way head per task, labels the digits
0..9. Two image sources share the code:

- scikit-learn's bundled 8x8 digits (1,797 images, no download), split
  per digit at random (seeded by `data.split_seed`) into train, validation
  and test (`data.validation_fraction`, `data.test_fraction`);
- MNIST (28x28) through the TFDS `mnist` builder: its test split as test,
  the last 10,000 training images as validation, the rest as train.

Pixels are scaled to [0, 1]. The permutations are drawn from
`data.permutation_seed` alone, not from the run seed, so that runs with
different seeds (initialisation and batch order) learn the same tasks.

An image is stored under the key "inputs" as a [rows, columns] array that
the models read as [frames, bins]: the continual runner, the trainer,
replay and EWC need no image-specific path. See `mcl.datasets.task_data` for
the batch layouts.
"""

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets

from mcl.datasets import tasks

NUM_CLASSES = 10
DIGITS = tuple(str(d) for d in range(NUM_CLASSES))
MNIST_VALIDATION = 10_000  # Last training images held out for validation.


@dataclasses.dataclass(frozen=True)
class Images:
  """Labelled grey-scale images of one split.

  Attributes:
    image: float32 [N, rows, columns], pixels in [0, 1].
    label: int32 [N], the digit 0..9.
  """

  image: np.ndarray
  label: np.ndarray


def stratified_split(
  label: np.ndarray,
  validation_fraction: float,
  test_fraction: float,
  seed: int,
) -> dict[str, np.ndarray]:
  """Seeded random split of example indices, stratified by label.

  Within each class, the examples are shuffled; the first
  round(test_fraction * n) go to test, the next round(validation_fraction
  * n) to validation, the rest to train.

  Args:
    label: int [N] class of every example.
    validation_fraction: share of each class for validation.
    test_fraction: share of each class for test.
    seed: fixes the split.

  Returns:
    {"train", "validation", "test"}: sorted int64 index arrays, disjoint,
    covering 0..N-1.

  Raises:
    ValueError: fractions outside (0, 1) or summing to 1 or more.
  """
  fractions = (validation_fraction, test_fraction)
  if not all(0 < f < 1 for f in fractions) or sum(fractions) >= 1:
    raise ValueError(
      f"validation and test fractions must be in (0, 1) and leave training "
      f"data, got {validation_fraction} and {test_fraction}"
    )
  rng = np.random.default_rng(seed)
  parts = {"train": [], "validation": [], "test": []}
  for c in np.unique(label):
    members = rng.permutation(np.flatnonzero(label == c))
    n_test = int(round(test_fraction * members.size))
    n_validation = int(round(validation_fraction * members.size))
    parts["test"].append(members[:n_test])
    parts["validation"].append(members[n_test : n_test + n_validation])
    parts["train"].append(members[n_test + n_validation :])
  return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def load_digits(
  validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, Images]:
  """scikit-learn's 8x8 digits (pixel values 0..16), split by `seed`.

  Returns:
    {"train", "validation", "test"} -> `Images` of shape [N, 8, 8].

  Raises:
    ValueError: see `stratified_split`.
  """
  digits = sk_datasets.load_digits()
  image = (digits.images / 16.0).astype(np.float32)
  label = digits.target.astype(np.int32)
  split = stratified_split(label, validation_fraction, test_fraction, seed)
  return {k: Images(image[i], label[i]) for k, i in split.items()}


def _tfds_images(data_dir: str | None, split: str) -> Images:
  ds = tfds.load("mnist", split=split, data_dir=data_dir)
  image, label = [], []
  for batch in tfds.as_numpy(ds.batch(10_000)):
    image.append(batch["image"][..., 0])
    label.append(batch["label"])
  return Images(
    (np.concatenate(image) / 255.0).astype(np.float32),
    np.concatenate(label).astype(np.int32),
  )


def load_mnist(
  data_dir: str | None, validation_size: int = MNIST_VALIDATION
) -> dict[str, Images]:
  """MNIST from TFDS (downloaded into `data_dir` on first use).

  Args:
    data_dir: TFDS data directory (None: the TFDS default).
    validation_size: the last images of the training split that form the
      validation split.

  Returns:
    {"train", "validation", "test"} -> `Images` of shape [N, 28, 28].

  Raises:
    ValueError: `validation_size` leaves no training image.
  """
  train = _tfds_images(data_dir, "train")
  n = train.label.size - validation_size
  if validation_size < 1 or n < 1:
    raise ValueError(
      f"validation_size {validation_size} must be in [1, {train.label.size})"
    )
  return {
    "train": Images(train.image[:n], train.label[:n]),
    "validation": Images(train.image[n:], train.label[n:]),
    "test": _tfds_images(data_dir, "test"),
  }


def permutations(num_tasks: int, num_pixels: int, seed: int) -> np.ndarray:
  """One pixel permutation per task; task 0's is the identity.

  Args:
    num_tasks: T >= 1.
    num_pixels: pixels per image (rows * columns).
    seed: fixes the permutations of tasks 1..T-1.

  Returns:
    int64 [T, num_pixels]; row t maps output pixel i to input pixel
    row[i] (`permute`).

  Raises:
    ValueError: num_tasks < 1.
  """
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
  rng = np.random.default_rng(seed)
  rows = [np.arange(num_pixels)]
  rows += [rng.permutation(num_pixels) for _ in range(num_tasks - 1)]
  return np.stack(rows)


def permute(image: np.ndarray, permutation: np.ndarray) -> np.ndarray:
  """Images with their pixels reordered: out.flat[i] = image.flat[perm[i]].

  Args:
    image: [N, rows, columns].
    permutation: int [rows * columns].

  Returns:
    [N, rows, columns], same dtype.
  """
  n = image.shape[0]
  return image.reshape(n, -1)[:, permutation].reshape(image.shape)


def _index_stream(size: int, batch_size: int, seed: int) -> Iterator:
  """Endless batches of indices into 0..size-1: a fresh seeded shuffle per
  epoch, epochs concatenated (a batch may straddle two epochs)."""
  rng = np.random.default_rng(seed)
  pending = np.zeros([0], np.int64)
  while True:
    while pending.size < batch_size:
      pending = np.concatenate([pending, rng.permutation(size)])
    yield pending[:batch_size]
    pending = pending[batch_size:]


class _EvalBatches(Sequence):
  """A task's evaluation batches, permuted on demand (the permuted copies
  of every task and split would not all fit in memory for MNIST)."""

  def __init__(self, images: Images, permutation, batch_size: int):
    self._images = images
    self._permutation = permutation
    self._batch_size = batch_size

  def __len__(self) -> int:
    return -(-self._images.label.size // self._batch_size)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    if i < 0:
      i += len(self)
    if not 0 <= i < len(self):
      raise IndexError(i)
    b = self._batch_size
    image = permute(self._images.image[i * b : (i + 1) * b], self._permutation)
    label = self._images.label[i * b : (i + 1) * b]
    pad = b - label.size
    return {
      "inputs": np.pad(image, [(0, pad), (0, 0), (0, 0)])[:, None],
      "label": np.pad(label, [(0, pad)]),
      "mask": np.pad(np.ones(label.size, np.float32), [(0, pad)]),
    }


class PermutedImages:
  """`mcl.datasets.task_data.TaskData` of the permuted-image tasks.

  Attributes:
    splits: the unpermuted images, {"train", "validation", "test"}.
    permutations: int [T, rows * columns], task t's pixel order.
    tasks: T tasks, each the ten digits (class ids 0..9).
    input_shape: (1, rows, columns).
  """

  def __init__(
    self,
    splits: dict[str, Images],
    permutations: np.ndarray,
    batch_size: int,
    eval_batch_size: int,
  ):
    """Args: the splits; the permutations; training and evaluation batch
    sizes (images).

    Raises:
      ValueError: a split is missing or empty, a permutation's length is
        not the pixel count, or a batch size is below 1.
    """
    if set(splits) != {"train", "validation", "test"}:
      raise ValueError(f"need train, validation and test, got {list(splits)}")
    empty = [k for k, v in splits.items() if v.label.size == 0]
    if empty:
      raise ValueError(f"empty splits {empty}")
    rows, columns = splits["train"].image.shape[1:]
    if permutations.shape[1] != rows * columns:
      raise ValueError(
        f"permutations of {permutations.shape[1]} pixels for "
        f"{rows}x{columns} images"
      )
    if batch_size < 1 or eval_batch_size < 1:
      raise ValueError(
        f"batch sizes must be positive, got {batch_size}, {eval_batch_size}"
      )
    self.splits = splits
    self.permutations = permutations
    self.tasks = [
      tasks.Task(t, DIGITS, tuple(range(NUM_CLASSES)))
      for t in range(permutations.shape[0])
    ]
    self.input_shape = (1, rows, columns)
    self._batch_size = batch_size
    self._eval_batch_size = eval_batch_size

  def train_batches(self, task, seed):
    train = self.splits["train"]
    for index in _index_stream(train.label.size, self._batch_size, seed):
      yield {
        "inputs": permute(train.image[index], self.permutations[task]),
        "label": train.label[index],
      }

  def eval_batches(self, task, split, num_chunks=None):
    del num_chunks  # An image is one chunk.
    if split not in self.splits:
      raise ValueError(f"unknown split {split!r}; known: {list(self.splits)}")
    return _EvalBatches(
      self.splits[split], self.permutations[task], self._eval_batch_size
    )

  def joint_batches(self, seed):
    train = self.splits["train"]
    size, num_tasks = train.label.size, len(self.tasks)
    flat = train.image.reshape(size, -1)
    for pick in _index_stream(size * num_tasks, self._batch_size, seed):
      task, index = pick // size, pick % size
      # Row b takes pixel permutations[task[b], i] of image index[b].
      pixels = flat[index[:, None], self.permutations[task]]
      yield {
        "inputs": pixels.reshape((-1, *self.input_shape[1:])),
        "label": train.label[index],
        "task": task.astype(np.int32),
      }
