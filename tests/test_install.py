"""mcl as an installed library: a wheel of the repository, installed into
a fresh virtual environment, trains a built-in config from a folder
outside the repository through its console scripts.

The fresh environment gets mcl from the wheel alone (`--no-deps`); its
dependencies are those of the test's own environment, reached through a
path entry (the same wheels a `pip install` would fetch, without the
download). The repository is nowhere on its path.
"""

import glob
import json
import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kwargs):
  done = subprocess.run(args, capture_output=True, text=True, **kwargs)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(bin folder, a folder outside the repository) of the installed wheel."""
  root = tmp_path_factory.mktemp("installed")
  wheels = root / "wheels"
  _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
        "--no-build-isolation", "--wheel-dir", str(wheels), ROOT])  # fmt: skip
  (wheel,) = glob.glob(str(wheels / "mcl-*.whl"))
  venv = root / "venv"
  _run([sys.executable, "-m", "venv", str(venv)])
  python = str(venv / "bin" / "python")
  purelib = _run(
    [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
  ).stdout.strip()
  # The test environment's packages, but not its editable mcl: a path
  # entry's own .pth files are not run.
  deps = sysconfig.get_paths()["purelib"]
  with open(os.path.join(purelib, "deps.pth"), "w") as f:
    f.write(deps + "\n")
  _run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel])
  outside = root / "elsewhere"
  outside.mkdir()
  return venv / "bin", outside


def test_the_wheel_trains_the_tiny_config_outside_the_repository(
  installed, tiny_audio_dir, tiny_data_dir
):
  """On the suite's tiny audio folder and its records (built once per
  session), so the run's own cost is training, not decoding."""
  bin_dir, outside = installed
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  where = _run(
    [str(bin_dir / "python"), "-c", "import mcl; print(mcl.__file__)"],
    cwd=outside, env=env,
  ).stdout  # fmt: skip
  assert not where.startswith(ROOT), where
  workdir = outside / "run"
  _run(
    [str(bin_dir / "mcl-train"), "--config=test", f"--workdir={workdir}",
     f"--config.data.source_dir={tiny_audio_dir}",
     f"--config.data.data_dir={tiny_data_dir}"],
    cwd=outside, env=env,
  )  # fmt: skip
  with open(workdir / "results.json") as f:
    results = json.load(f)
  assert results["method"] == "den" and results["finished_tasks"] == 2
  assert None not in results["accuracy_matrix"][1]
  # Installed from a wheel, not a checkout: no revision to record.
  assert results["provenance"]["revision"] == {"commit": None, "dirty": None}
  assert results["provenance"]["packages"]["mcl"] == "0.1.0"
  report = _run(
    [str(bin_dir / "mcl-inspect"), f"--workdir={workdir}"],
    cwd=outside, env=env,
  ).stdout  # fmt: skip
  assert report.startswith("after task 1")
  clip = sorted(glob.glob(os.path.join(tiny_audio_dir, "metal", "*")))[0]
  predicted = _run(
    [str(bin_dir / "mcl-predict"), f"--workdir={workdir}", clip],
    cwd=outside, env=env,
  ).stdout  # fmt: skip
  assert "metal" in predicted or "pop" in predicted
  printed = _run(
    [str(bin_dir / "mcl-sweep"), "--sweep=permuted_digits", "--print_only",
     f"--root={outside / 'sweep'}"],
    cwd=outside, env=env,
  ).stdout  # fmt: skip
  assert "--config=permuted_digits" in printed


def test_an_unknown_config_name_is_one_line(installed):
  bin_dir, outside = installed
  done = subprocess.run(
    [str(bin_dir / "mcl-train"), "--config=nope", "--workdir=w"],
    capture_output=True, text=True, cwd=outside,
  )  # fmt: skip
  assert done.returncode == 2
  assert (
    done.stderr.strip()
    .splitlines()[-1]
    .startswith(
      "error: config 'nope': no such file, nor a built-in config; built-in: "
    )
  )
  assert "Traceback" not in done.stderr
