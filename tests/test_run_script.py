"""launch/run.sh without its data: guidance and a non-zero exit, no run."""

import os
import subprocess

import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_script(tmp_path, **env):
  return subprocess.run(
    ["bash", os.path.join(_REPO, "launch", "run.sh")],
    env={**os.environ, "WORKDIR": str(tmp_path / "run"), **env},
    capture_output=True,
    text=True,
    check=False,
    timeout=60,
  )


def test_a_missing_audio_folder_prints_where_to_get_gtzan(tmp_path):
  result = _run_script(tmp_path, AUDIO_DIR=str(tmp_path / "no_such_folder"))
  assert result.returncode == 2
  assert f"no audio folder at {tmp_path / 'no_such_folder'}" in result.stderr
  assert "<label>/<clip>" in result.stderr and "AUDIO_DIR=" in result.stderr
  assert not os.path.exists(tmp_path / "run")  # Nothing ran.


@pytest.mark.parametrize(
  "config", ["configs/mtat_fcn.py", "configs/mtat_den.py"]
)
def test_a_missing_magnatagatune_folder_says_what_to_download(tmp_path, config):
  result = _run_script(tmp_path, CONFIG=config, MTAT_DIR=str(tmp_path))
  assert result.returncode == 2
  assert "annotations_final.csv missing" in result.stderr
  assert "MTAT_DIR=" in result.stderr


@pytest.mark.parametrize(
  "config", ["configs/fma_tf_crnn.py", "configs/fma_den.py"]
)
def test_a_missing_fma_folder_says_what_to_download(tmp_path, config):
  result = _run_script(tmp_path, CONFIG=config, FMA_DIR=str(tmp_path))
  assert result.returncode == 2
  assert "fma_metadata/tracks.csv missing" in result.stderr
  assert "FMA_DIR=" in result.stderr
