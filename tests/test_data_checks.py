"""What the continual runner checks before it trains, on real audio."""

import os

import pytest

from mcl.configs import test as test_config
from mcl.datasets import from_config
from mcl.runtime import errors
from tests import forks


def _config(source_dir, data_dir, tasks):
  config = test_config.get_config()
  config.data.source_dir = str(source_dir)
  config.data.data_dir = str(data_dir)
  config.tasks = tasks
  return config


@pytest.fixture
def pop_with_two_clips(gtzan_dir, tmp_path):
  """blues, classical, metal: 5 clips; pop: 2 (folds 0 and 1 only)."""
  root = tmp_path / "audio"
  for genre, count in (
    ("blues", 5),
    ("classical", 5),
    ("metal", 5),
    ("pop", 2),
  ):
    os.makedirs(root / genre)
    for i in range(count):
      name = f"{genre}.{i:05d}.wav"
      os.symlink(os.path.join(gtzan_dir, genre, name), root / genre / name)
  return root


@pytest.mark.parametrize(
  "tasks, message",
  [
    ((("blues", "jazz"),), r"task 0: unknown classes \['jazz'\]"),
    ((("blues",), ("metal", "pop")), "task 0 needs at least two classes"),
  ],
)
def test_task_mistakes_are_user_errors_before_any_record(
  pop_with_two_clips, tmp_path, tasks, message
):
  data_dir = tmp_path / "tfds"
  with pytest.raises(errors.UserError, match=message):
    from_config.build(_config(pop_with_two_clips, data_dir, tasks))
  assert not data_dir.exists()  # Nothing was built.


def test_a_class_without_training_clips_is_named_before_training(
  pop_with_two_clips, tmp_path
):
  config = _config(
    pop_with_two_clips,
    tmp_path / "tfds",
    (("blues", "classical"), ("metal", "pop")),
  )
  # Test fold 0, validation fold 1, training folds 2-4: pop has none.
  with pytest.raises(errors.UserError) as info:
    from_config.build(config)
  message = str(info.value)
  assert "'pop' (task 1) has no train clip (fold2+fold3+fold4)" in message
  assert "validation" not in message.split(".")[0]  # Only what is empty.
  assert "allow_empty_classes=True" in message

  config.data.fold = 2  # Test fold 2 (no pop), validation fold 3 (none).
  with pytest.raises(errors.UserError) as info:
    from_config.build(config)
  assert "'pop' (task 1) has no validation clip (fold3)" in str(info.value)
  assert "'pop' (task 1) has no test clip (fold2)" in str(info.value)

  config.data.allow_empty_classes = True  # Proceeds, with a warning.
  task_data = from_config.build(config)
  assert [t.class_names for t in task_data.tasks][1] == ("metal", "pop")


def test_main_prints_a_one_line_error_without_traceback(
  pop_with_two_clips, tmp_path, forked
):
  done = forked.run(
    forks.cli("mcl.main"),
    [
      "--config=configs/test.py",
      f"--config.data.source_dir={pop_with_two_clips}",
      f"--config.data.data_dir={tmp_path / 'tfds'}",
      "--config.tasks=(('blues',),)", f"--workdir={tmp_path / 'run'}",
    ],
  )  # fmt: skip
  assert done.returncode == 2
  assert "Traceback" not in done.stderr
  last = done.stderr.strip().splitlines()[-1]
  assert (
    last
    == (  # Caught by mcl.experiments.config_checks, before any record.
      "error: tasks=(('blues',),): task 0 ('blues',) has 1 class(es); each "
      "task needs at least 2"
    )
  )
  assert not os.path.exists(tmp_path / "tfds")
