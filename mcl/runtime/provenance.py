"""What produced a result: package versions, devices, XLA flags, revision.

Every results.json carries `collect()` under the key "provenance"
(`mcl.experiments.outputs.write_results`), and the sweep's reports list
the distinct provenances of the runs they aggregate (`distinct`), so a
figure can be traced to the install, the machine kind and the code that
gave it. The installs themselves come from the lock files of
`launch/setup.sh` (refreshed by `launch/lock.sh`).
"""

import functools
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata

import jax

# Distributions whose versions move the figures. Each key is the name
# recorded; its value the distributions that provide it, first found wins
# (TensorFlow is installed as tensorflow-cpu here, tensorflow elsewhere).
PACKAGES = {
  "mcl": ("mcl",),
  "jax": ("jax",),
  "jaxlib": ("jaxlib",),
  "flax": ("flax",),
  "optax": ("optax",),
  "orbax-checkpoint": ("orbax-checkpoint",),
  "numpy": ("numpy",),
  "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos"),
  "tensorflow-datasets": ("tensorflow-datasets",),
  "librosa": ("librosa",),
  "scikit-learn": ("scikit-learn",),
}
# Environment variables that change what XLA and TensorFlow compute or how
# many threads they use.
ENVIRONMENT = ("XLA_FLAGS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS")
# The package's folder; its parent is the checkout when run from one.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_versions() -> dict[str, str | None]:
  """{name: installed version, or None when not installed} of `PACKAGES`,
  plus "python"."""
  versions = {"python": platform.python_version()}
  for name, distributions in PACKAGES.items():
    versions[name] = None
    for distribution in distributions:
      try:
        versions[name] = metadata.version(distribution)
        break
      except metadata.PackageNotFoundError:
        continue
  return versions


def devices() -> dict:
  """The JAX devices: platform, kind (e.g. "cpu", "NVIDIA H100 80GB HBM3"),
  local and global counts, process count."""
  local = jax.local_devices()
  return {
    "platform": local[0].platform,
    "kind": local[0].device_kind,
    "local_count": len(local),
    "count": jax.device_count(),
    "process_count": jax.process_count(),
    "host_cpu_count": os.cpu_count(),
  }


def _git(*args: str) -> str | None:
  try:
    done = subprocess.run(
      ["git", "-C", os.path.dirname(_PACKAGE), *args],
      capture_output=True,
      text=True,
      timeout=30,
      check=False,
    )
  except (OSError, subprocess.TimeoutExpired):
    return None
  return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def revision() -> dict:
  """The code revision when mcl runs from a git checkout.

  Returns:
    {"commit": full hash, "dirty": whether `git status --porcelain` lists
    anything (tracked changes or untracked files)}; {"commit": None,
    "dirty": None} for an installed wheel or where git is missing. Read
    once per process: a run's revision is the one it started with.
  """
  top = _git("rev-parse", "--show-toplevel")
  if top is None or os.path.realpath(top) != os.path.realpath(
    os.path.dirname(_PACKAGE)
  ):
    return {"commit": None, "dirty": None}
  status = _git("status", "--porcelain")
  return {
    "commit": _git("rev-parse", "HEAD"),
    "dirty": None if status is None else bool(status),
  }


def collect() -> dict:
  """What produced a result, JSON-ready.

  Returns:
    {"packages": `package_versions()`, "devices": `devices()`,
    "jax_config": the numerics settings (x64, default matmul precision),
    "environment": {variable: value or None} for `ENVIRONMENT`,
    "revision": `revision()`}.
  """
  return {
    "packages": package_versions(),
    "devices": devices(),
    "jax_config": {
      "jax_enable_x64": bool(jax.config.jax_enable_x64),
      "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
    },
    "environment": {k: os.environ.get(k) for k in ENVIRONMENT},
    "revision": revision(),
  }


def distinct(results: Iterable[Mapping]) -> list[dict]:
  """The distinct provenances of many results.json, with their run counts.

  Args:
    results: results.json contents; those without "provenance" (written
      before it was recorded) count as provenance None.

  Returns:
    [{"runs": n, "provenance": p}, ...], most frequent first.
  """
  counts: dict[str, int] = {}
  for r in results:
    key = json.dumps(r.get("provenance"), sort_keys=True)
    counts[key] = counts.get(key, 0) + 1
  ordered = sorted(counts.items(), key=lambda item: -item[1])
  return [{"runs": n, "provenance": json.loads(k)} for k, n in ordered]


def markdown(results: Iterable[Mapping]) -> str:
  """A "Produced by" section for a report: one line per distinct
  provenance of `results` (packages, devices, XLA flags, revision)."""
  lines = ["## Produced by", ""]
  for entry in distinct(results):
    p = entry["provenance"]
    if p is None:
      lines.append(f"- {entry['runs']} runs: not recorded (older runs)")
      continue
    packages = ", ".join(f"{k} {v}" for k, v in p["packages"].items() if v)
    d = p["devices"]
    rev = p["revision"]
    commit = (
      "not a checkout"
      if rev["commit"] is None
      else rev["commit"][:12] + (" (dirty)" if rev["dirty"] else "")
    )
    flags = p["environment"].get("XLA_FLAGS") or "none"
    lines.append(
      f"- {entry['runs']} runs: {packages}; {d['count']} x {d['kind']}"
      f" ({d['platform']}); XLA_FLAGS {flags}; revision {commit}"
    )
  return "\n".join(lines) + "\n"
