"""Faults a run must survive: kill -9, damaged checkpoints, a full disk,
a busy or foreign workdir, concurrent record builds.

Every check compares with the uninterrupted tiny DEN run (`finished_run`,
tests/conftest.py): a run that survived a fault must end with the same
results, bit for bit where the figures are computed the same way.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time

import pytest

from mcl import experiments, models
from mcl.datasets import from_config
from mcl.experiments import prediction
from mcl.runtime import atomic_files, errors
from mcl.runtime import workdir as run_folder
from mcl.trainer import checkpoint_seals, checkpointing
from tests import forks

# Figures of results.json that a resumed run must reproduce exactly.
FIGURES = (
  "accuracy_matrix",
  "auroc_matrix",
  "validation_accuracy_matrix",
  "validation_loss",
  "params_per_task",
  "nonzero_params_per_task",
  "units_per_layer",
)


def _figures(results: dict) -> dict:
  return {key: results[key] for key in FIGURES}


def _copy(workdir: str, tmp_path) -> str:
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  return copy


def _usage(run, *args) -> tuple[int, str]:
  """(exit status, stderr) of `run(*args)` behind the entry points'
  error handling."""
  main = errors.usage_errors(lambda argv: run(*args))
  try:
    main([])
  except SystemExit as e:
    return e.code, ""
  return 0, ""


# A run's identity.


def test_the_readme_rerun_into_a_finished_workdir_names_the_changed_keys(
  finished_run, tmp_path, capsys
):
  config, workdir, _ = finished_run
  copy = _copy(workdir, tmp_path)
  with open(os.path.join(copy, "results.json")) as f:
    before = f.read()
  changed = config.copy_and_resolve_references()
  changed.data.fold, changed.den.k, changed.seed = 2, 8, 1
  status, _ = _usage(experiments.run, changed, copy)
  lines = capsys.readouterr().err.strip().splitlines()
  assert status == 2 and len(lines) == 1
  assert lines[0].startswith("error: ")
  for key in ("data.fold (0 -> 2)", "den.k (2 -> 8)", "seed (0 -> 1)"):
    assert key in lines[0]
  assert "den.l1" not in lines[0]  # Only what differs.
  with open(os.path.join(copy, "results.json")) as f:
    assert f.read() == before


def test_fresh_moves_the_old_run_aside(finished_run, tmp_path):
  config, workdir, _ = finished_run
  copy = _copy(workdir, tmp_path)
  changed = config.copy_and_resolve_references()
  changed.seed = 3
  with run_folder.open_run(changed, copy, fresh=True):
    assert not run_folder.has_run_state(copy)
  (moved,) = [p for p in os.listdir(tmp_path) if p.startswith("copy.")]
  assert os.path.exists(tmp_path / moved / "results.json")
  with open(os.path.join(copy, "config.json")) as f:
    assert json.load(f)["seed"] == 3


def test_a_workdir_path_that_cannot_be_a_folder_is_one_line(
  tiny_config, tmp_path, capsys
):
  a_file = tmp_path / "file"
  a_file.write_text("")
  for workdir, problem in (
    (str(a_file), "is a file"),
    (str(a_file / "below"), "cannot be created"),
  ):
    status, _ = _usage(experiments.run, tiny_config, workdir)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and problem in line and workdir in line


def test_a_bad_config_json_is_replaced_before_a_run_and_refused_after(
  tiny_config, finished_run, tmp_path
):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "config.json").write_text("")  # A full disk's 0-byte file.
  with run_folder.open_run(tiny_config, str(empty)):
    pass
  with open(empty / "config.json") as f:
    assert json.load(f)["seed"] == tiny_config.seed
  copy = _copy(finished_run[1], tmp_path)
  with open(os.path.join(copy, "config.json"), "w") as f:
    f.write("{garbage")
  with pytest.raises(errors.UserError, match="config.json: unreadable"):
    with run_folder.open_run(tiny_config, copy):
      pass


def test_a_busy_workdir_is_refused_and_a_dead_holders_lock_taken_over(
  tiny_config, tmp_path, capsys
):
  workdir = str(tmp_path / "busy")
  os.makedirs(workdir)
  lock = os.path.join(workdir, run_folder.LOCK_FILE)
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import fcntl, sys, time\n"
      f"f = open({lock!r}, 'a')\n"
      "fcntl.flock(f, fcntl.LOCK_EX)\n"
      "f.write('pid holder on test\\n'); f.flush()\n"
      "print('held', flush=True)\n"
      "time.sleep(60)\n",
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    status, _ = _usage(experiments.run, tiny_config, workdir)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and "in use by pid holder on test" in line
    assert not run_folder.has_run_state(workdir)
  finally:
    holder.kill()
    holder.wait()
  with run_folder.open_run(tiny_config, workdir):  # The dead one's lock.
    with open(lock) as f:
      assert f.read().startswith(f"pid {os.getpid()} ")
    with pytest.raises(errors.UserError, match="in use"):  # Also in-process.
      with run_folder.open_run(tiny_config, workdir):
        pass


def test_stale_temporaries_are_removed_when_a_run_starts(tiny_config, tmp_path):
  workdir = tmp_path / "stale"
  workdir.mkdir()
  stale = workdir / f"results.json.1234{atomic_files.TEMPORARY_SUFFIX}"
  stale.write_text("{half")
  with run_folder.open_run(tiny_config, str(workdir)):
    assert not stale.exists()


# Damaged checkpoints.


def _flip_a_byte(folder):
  (name,) = [
    os.path.join(folder, "params", "ocdbt.process_0", "d", n)
    for n in sorted(
      os.listdir(os.path.join(folder, "params/ocdbt.process_0/d"))
    )
  ][-1:]
  with open(name, "r+b") as f:
    f.seek(os.path.getsize(name) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x10]))


def _truncate(folder):
  path = os.path.join(folder, "params", "manifest.ocdbt")
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _garbage_metadata(folder):
  with open(os.path.join(folder, "metadata", "metadata"), "w") as f:
    f.write("{not json")


def _wider_architecture_resealed(folder):
  path = os.path.join(folder, "metadata", "metadata")
  with open(path) as f:
    metadata = json.load(f)
  metadata["architecture"]["dense_widths"] = [99]
  with open(path, "w") as f:
    json.dump(metadata, f)
  checkpoint_seals.seal(folder)  # Sealed, yet not the recorded architecture.


DAMAGES = {
  "a flipped byte in params": (_flip_a_byte, "does not match its checksum"),
  "a truncated params manifest": (_truncate, "does not match its checksum"),
  "the state item deleted": (
    lambda folder: shutil.rmtree(os.path.join(folder, "state")),
    "is missing",
  ),
  "garbage metadata": (_garbage_metadata, "does not match its checksum"),
  "the seal deleted": (
    lambda folder: os.remove(os.path.join(folder, checkpoint_seals.CHECKSUMS)),
    "not sealed",
  ),
  "params of another architecture": (
    _wider_architecture_resealed,
    "params unreadable|shapes",
  ),
}


def _abstract(config):
  frames = from_config.chunk_frames(config)
  return checkpointing.abstract_params(
    models.get_model_class("conv_classifier"),
    (1, frames, config.features.n_mels),
  )


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_checkpoint_is_named_and_moved_aside(
  finished_run, tmp_path, damage, tiny_audio_dir
):
  config, workdir, _ = finished_run
  copy = _copy(workdir, tmp_path)
  folder = os.path.join(copy, "checkpoints", "1")
  apply, problem = DAMAGES[damage]
  apply(folder)
  checkpoints = checkpointing.TaskCheckpoints(os.path.join(copy, "checkpoints"))
  with pytest.raises(checkpoint_seals.CheckpointError, match=problem) as e:
    checkpoints.restore(1, _abstract(config))
    checkpoints.state(1)
  assert folder in str(e.value)
  checkpoints.close()
  clip = os.path.join(tiny_audio_dir, "blues", "blues.00000.wav")
  with pytest.raises(checkpoint_seals.CheckpointError, match=problem):
    prediction.predict(copy, [clip])  # Refused, not scored with bad weights.
  checkpoints = checkpointing.TaskCheckpoints(os.path.join(copy, "checkpoints"))
  assert checkpoints.resumable(_abstract(config), with_state=True) == 0
  assert checkpoints.tasks() == [0]
  checkpoints.close()
  (moved,) = os.listdir(os.path.join(copy, "checkpoints.damaged"))
  assert moved.startswith("1.")


def test_a_run_resumes_before_its_damaged_checkpoint(finished_run, tmp_path):
  config, workdir, results = finished_run
  copy = _copy(workdir, tmp_path)
  _flip_a_byte(os.path.join(copy, "checkpoints", "1"))
  again = experiments.run(config, copy)
  assert _figures(again) == _figures(results)


# kill -9 at random moments, and during saves.


def _argv(config, workdir):
  """mcl.main's command line for the tiny run of `config` in `workdir`."""
  return [
    "--config=configs/test.py",
    f"--workdir={workdir}",
    f"--config.data.source_dir={config.data.source_dir}",
    f"--config.data.data_dir={config.data.data_dir}",
  ]


def _saving(workdir) -> bool:
  """Whether a checkpoint or a results file is being written."""
  if any(
    n.endswith(atomic_files.TEMPORARY_SUFFIX) for n in os.listdir(workdir)
  ):
    return True
  folder = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(folder):
    return False
  return any(
    "tmp" in n or not os.path.exists(os.path.join(folder, n, "checksums.json"))
    for n in os.listdir(folder)
  )


def _running(child, workdir) -> bool:
  """Past its start: the process holds the workdir's lock."""
  try:
    with open(os.path.join(workdir, run_folder.LOCK_FILE)) as f:
      return f.read().startswith(f"pid {child.pid} ")
  except FileNotFoundError:
    return False


def test_kill_9_at_random_moments_then_resume_equals_the_uninterrupted_run(
  finished_run, tmp_path, forked
):
  """Each attempt is a real `mcl.main` process, forked from one that has
  imported it (the `forked` fixture, tests/forks.py), killed with SIGKILL
  after it took the workdir's lock: at a random moment, or every third
  time while a checkpoint or results file is being written."""
  config, _, results = finished_run
  workdir = str(tmp_path / "killed")
  os.makedirs(workdir)
  rng = random.Random(0)
  kills, during_saves = 0, 0
  for attempt in range(12):
    if kills >= 10:
      break
    child = forked.start(forks.cli("mcl.main"), _argv(config, workdir))
    wait_for_save = attempt % 3 == 2
    deadline = time.time() + 120
    while child.running() and not _running(child, workdir):
      time.sleep(0.005)
    kill_at = time.time() + rng.uniform(0.0, 3.0)
    while child.running() and time.time() < deadline:
      saving = _saving(workdir)
      if (wait_for_save and saving) or (
        not wait_for_save and time.time() >= kill_at
      ):
        child.kill()
        kills += 1
        during_saves += saving
        break
      time.sleep(0.002)
    child.wait()
  assert kills >= 10 and during_saves >= 1, (kills, during_saves)
  again = experiments.run(config, workdir)
  assert _figures(again) == _figures(results)
  leftovers = [
    n for n in os.listdir(workdir) if n.endswith(atomic_files.TEMPORARY_SUFFIX)
  ]
  assert not leftovers


# A full disk.


def _mount_tmpfs(path, size):
  os.makedirs(path, exist_ok=True)
  done = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
    capture_output=True,
    text=True,
    check=False,
  )
  if done.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_a_full_disk_is_one_line_and_a_rerun_with_space_ends_the_same(
  finished_run, tmp_path, capsys
):
  config, _, results = finished_run
  if os.geteuid() != 0 or shutil.which("mount") is None:
    pytest.skip("mounting a tmpfs needs root and mount(8)")
  mount = tmp_path / "small"
  _mount_tmpfs(mount, "200k")  # Room for task 0's checkpoint, not task 1's.
  try:
    workdir = str(mount / "run")
    status, _ = _usage(experiments.run, config, workdir)
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2, lines
    assert lines[-1].startswith(f"error: {workdir}")
    assert "no space left" in lines[-1]
    assert not [
      n
      for n in os.listdir(workdir)
      if n.endswith(atomic_files.TEMPORARY_SUFFIX)
    ]
    subprocess.run(["mount", "-o", "remount,size=20m", str(mount)], check=True)
    again = experiments.run(config, workdir)
    assert _figures(again) == _figures(results)
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False)


# Records built by two processes at once.


def test_two_processes_building_the_same_records_agree(
  tiny_audio_dir, tmp_path, forked
):
  source = tmp_path / "clips"
  for genre in ("blues", "pop"):
    (source / genre).mkdir(parents=True)
    for name in sorted(os.listdir(os.path.join(tiny_audio_dir, genre)))[:3]:
      os.symlink(
        os.path.join(tiny_audio_dir, genre, name), source / genre / name
      )
  script = (
    "import sys\n"
    "from mcl.features import audio\n"
    "from mcl.datasets import labelled_folders\n"
    "b = labelled_folders.build(sys.argv[1], sys.argv[2],"
    " audio.FeatureConfig(n_mels=32), num_folds=3)\n"
    "print(b.info.splits.total_num_examples, b.data_dir)\n"
  )
  records = str(tmp_path / "records")
  builders = [forked.start(script, [str(source), records]) for _ in range(2)]
  statuses = [b.wait(timeout=300) for b in builders]
  assert statuses == [0, 0], [b.stderr()[-3000:] for b in builders]
  answers = {b.stdout().strip().splitlines()[-1] for b in builders}
  assert len(answers) == 1  # The same records, in the same folder.
  (answer,) = answers
  assert answer.startswith("6 ")


def test_a_run_is_not_resumed_on_records_of_a_changed_folder(
  finished_run, tmp_path
):
  config, workdir, _ = finished_run
  copy = _copy(workdir, tmp_path)
  shutil.rmtree(os.path.join(copy, "checkpoints", "1"))  # Killed in task 1.
  folder = os.path.join(copy, "checkpoints", "0")
  path = os.path.join(folder, "metadata", "metadata")
  with open(path) as f:
    metadata = json.load(f)
  assert metadata["records"].startswith("labelled_folders/")
  # As if the clips had changed since task 0: other records' name.
  metadata["records"] = "labelled_folders/tiny_0000000000/1.2.0"
  with open(path, "w") as f:
    json.dump(metadata, f)
  checkpoint_seals.seal(folder)
  with pytest.raises(errors.UserError, match="the folder changed"):
    experiments.run(config, copy)
