import pytest

from mcl.datasets import tasks
from mcl.runtime import errors

LABELS = ["blues", "classical", "country", "disco", "hiphop"]


def test_tasks_resolve_names_to_label_ids_in_head_order():
  task_list = tasks.make_tasks(
    [["disco", "blues"], ["hiphop", "country"]], LABELS
  )
  assert [t.class_ids for t in task_list] == [(3, 0), (4, 2)]
  assert [t.index for t in task_list] == [0, 1]
  assert task_list[1].num_classes == 2


@pytest.mark.parametrize(
  "groups, message",
  [
    ([["blues", "techno"]], "unknown classes"),
    ([["blues"]], "at least two"),
    ([["blues", "disco"], ["disco", "country"]], "already in an earlier task"),
    ([["blues", "blues"]], "class 'blues' given twice"),
  ],
)
def test_bad_task_groups_are_clear_errors(groups, message):
  with pytest.raises(ValueError, match=message):
    tasks.make_tasks(groups, LABELS)


@pytest.mark.parametrize(
  "groups",
  [
    [["disco", "country"], ["blues", "blues"]],
    [["disco", "country"], ["hiphop", "blues", "blues"]],
  ],
)
def test_a_class_twice_in_a_task_is_a_user_error(groups):
  # Two heads of one label score accuracy 1.0 while learning nothing.
  with pytest.raises(errors.UserError) as info:
    tasks.make_tasks(groups, LABELS)
  message = str(info.value)
  assert message.startswith("task 1 (") and "'blues' given twice" in message
  assert "\n" not in message


@pytest.mark.parametrize("test_fold", range(5))
def test_fold_split_keeps_test_out_of_training_and_validation(test_fold):
  split = tasks.fold_split(test_fold, 5)
  assert split.test == f"fold{test_fold}"
  train = split.train.split("+")
  assert len(train) == 3 and split.test not in train + [split.validation]
  assert split.validation not in train
  folds = sorted(train + [split.test, split.validation])
  assert folds == [f"fold{k}" for k in range(5)]


def test_fold_split_rejects_bad_folds():
  with pytest.raises(ValueError):
    tasks.fold_split(5, 5)
  with pytest.raises(ValueError):
    tasks.fold_split(0, 2)
