"""Task sequences and data splits for continual learning.

A task is an ordered group of class names; its head predicts among them
(task-incremental scenario: the task id is known at test time). A dataset
in folds (GTZAN) is split into test (one fold), validation (the next fold,
cyclically) and training (the rest), so validation clips always come from
the training folds and never from the test fold; a dataset with a standard
split (MagnaTagATune) uses its own train/valid/test.
"""

import dataclasses
from collections.abc import Sequence

from mcl.runtime import errors

GTZAN_GENRE_PAIRS = (
  ("blues", "classical"),
  ("country", "disco"),
  ("hiphop", "jazz"),
  ("metal", "pop"),
  ("reggae", "rock"),
)
# FMA medium's 16 top genres in 8 pairs (`configs/fma_den.py`).
FMA_GENRE_PAIRS = (
  ("Rock", "Electronic"),
  ("Hip-Hop", "Folk"),
  ("Experimental", "Instrumental"),
  ("Pop", "International"),
  ("Classical", "Old-Time / Historic"),
  ("Jazz", "Country"),
  ("Soul-RnB", "Spoken"),
  ("Blues", "Easy Listening"),
)
# Yoon et al. 2018's MagnaTagATune scenario: five pairs of the genre tags
# (`mcl.datasets.magnatagatune.GENRES`), single-label clips.
MTAT_GENRE_PAIRS = (
  ("classical", "techno"),
  ("rock", "pop"),
  ("ambient", "indian"),
  ("metal", "country"),
  ("opera", "new age"),
)
# The three orders of GTZAN's five genre pairs of the ISMIR 2024 study
# ("Continual learning for music classification"; `config.order`): its
# class-incremental figures are means over them.
GTZAN_ORDERS = {
  "s1": (
    ("metal", "pop"),
    ("country", "disco"),
    ("reggae", "rock"),
    ("blues", "classical"),
    ("hiphop", "jazz"),
  ),
  "s2": (
    ("jazz", "rock"),
    ("classical", "hiphop"),
    ("reggae", "country"),
    ("metal", "blues"),
    ("pop", "disco"),
  ),
  "s3": (
    ("hiphop", "metal"),
    ("reggae", "pop"),
    ("classical", "rock"),
    ("disco", "blues"),
    ("country", "jazz"),
  ),
}


def task_groups(config) -> tuple[tuple[str, ...], ...]:
  """The class names of each task of an experiment config.

  `config.order` (a key of `GTZAN_ORDERS`), when the config has it and it
  is not "", names the sequence and replaces `config.tasks`.

  Raises:
    mcl.runtime.errors.UserError: an unknown order.
  """
  order = config.get("order", "")
  if not order:
    return tuple(tuple(group) for group in config.tasks)
  if order not in GTZAN_ORDERS:
    raise errors.UserError(
      f"order={order!r}: known orders are {sorted(GTZAN_ORDERS)} or ''"
    )
  return GTZAN_ORDERS[order]


@dataclasses.dataclass(frozen=True)
class Task:
  """One task of the sequence.

  Attributes:
    index: position in the sequence, 0-based (the DEN timestamp).
    class_names: the task's labels, in head output order.
    class_ids: the same labels as dataset label ids.
  """

  index: int
  class_names: tuple[str, ...]
  class_ids: tuple[int, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class DataSplit:
  """TFDS split expressions that train, validate and test, e.g. 'fold0'."""

  train: str
  validation: str
  test: str


STANDARD_SPLIT = DataSplit(train="train", validation="valid", test="test")


def _folds(folds: Sequence[int]) -> str:
  return "+".join(f"fold{k}" for k in sorted(folds))


def make_tasks(
  groups: Sequence[Sequence[str]], label_names: Sequence[str]
) -> list[Task]:
  """Resolves groups of class names against the dataset's labels.

  Args:
    groups: one sequence of class names per task, in task order.
    label_names: the dataset's label names; position = label id.

  Returns:
    The tasks, in order.

  Raises:
    mcl.runtime.errors.UserError: an unknown class name, a task with fewer than
      two distinct classes, a class twice in one task, or a class in more
      than one task.
  """
  ids = {name: i for i, name in enumerate(label_names)}
  seen = set()
  tasks = []
  for index, group in enumerate(groups):
    group = tuple(group)
    unknown = [name for name in group if name not in ids]
    if unknown:
      raise errors.UserError(
        f"task {index}: unknown classes {unknown}; the dataset has "
        f"{list(label_names)} (change config.tasks)"
      )
    if len(group) < 2:
      raise errors.UserError(
        f"task {index} needs at least two classes, got {group} "
        "(change config.tasks)"
      )
    twice = sorted({name for name in group if group.count(name) > 1})
    if twice:
      # Two heads for one label: the task is trivially "solved" (accuracy
      # 1.0) while learning nothing.
      raise errors.UserError(
        f"task {index} {group}: class {', '.join(map(repr, twice))} given "
        "twice (change config.tasks)"
      )
    repeated = seen.intersection(group)
    if repeated:
      raise errors.UserError(
        f"task {index}: {sorted(repeated)} already in an earlier task "
        "(change config.tasks)"
      )
    seen.update(group)
    tasks.append(Task(index, group, tuple(ids[name] for name in group)))
  return tasks


def fold_split(test_fold: int, num_folds: int) -> DataSplit:
  """Test fold, the next fold for validation, the others for training.

  Args:
    test_fold: the held-out fold, 0 <= test_fold < num_folds.
    num_folds: total number of folds, at least 3.

  Returns:
    The split over the TFDS splits `fold<k>`.

  Raises:
    mcl.runtime.errors.UserError: out-of-range fold or fewer than three folds.
  """
  if num_folds < 3:
    raise errors.UserError(f"need at least 3 folds, got {num_folds}")
  if not 0 <= test_fold < num_folds:
    raise errors.UserError(
      f"test fold {test_fold} not in [0, {num_folds}) (config.data.fold)"
    )
  validation = (test_fold + 1) % num_folds
  train = tuple(k for k in range(num_folds) if k not in (test_fold, validation))
  return DataSplit(
    train=_folds(train),
    validation=_folds([validation]),
    test=_folds([test_fold]),
  )
