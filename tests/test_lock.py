"""The lock files launch/setup.sh installs from agree with setup.cfg."""

import configparser
import os
import re

import pytest
from packaging import requirements, utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCKS = {
  "run": os.path.join(ROOT, "launch", "requirements.lock"),
  "test": os.path.join(ROOT, "launch", "requirements-test.lock"),
  "tools": os.path.join(ROOT, "launch", "requirements-tools.lock"),
}
# `name==version \` opens a pinned entry; its hashes follow.
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def _pins(path: str) -> dict[str, tuple[str, int]]:
  """{normalised name: (version, number of hashes)} of a lock file."""
  pins, current = {}, None
  with open(path) as f:
    for line in f:
      match = _PIN.match(line)
      if match:
        current = utils.canonicalize_name(match[1])
        assert current not in pins, f"{path}: {current} pinned twice"
        pins[current] = (match[2], 0)
      elif line.strip().startswith("--hash=sha256:") and current:
        version, hashes = pins[current]
        pins[current] = (version, hashes + 1)
      elif line.strip() and not line.lstrip().startswith("#"):
        pytest.fail(f"{path}: unexpected line {line!r}")
  return pins


def _declared(extra: str | None) -> list[requirements.Requirement]:
  config = configparser.ConfigParser()
  config.read(os.path.join(ROOT, "setup.cfg"))
  text = config["options"]["install_requires"]
  if extra:
    text += "\n" + config["options.extras_require"][extra]
  return [
    requirements.Requirement(line.strip())
    for line in text.splitlines()
    if line.strip() and not line.strip().startswith("#")
  ]


@pytest.mark.parametrize("name,extra", [("run", None), ("test", "test")])
def test_every_declared_range_is_pinned_and_satisfied(name, extra):
  pins = _pins(LOCKS[name])
  for requirement in _declared(extra):
    key = utils.canonicalize_name(requirement.name)
    assert key in pins, f"{LOCKS[name]}: {requirement} is not pinned"
    version, _ = pins[key]
    assert requirement.specifier.contains(version, prereleases=True), (
      f"{LOCKS[name]}: {key}=={version} is outside setup.cfg's {requirement}"
    )


def test_every_pin_is_hashed_and_the_test_lock_extends_the_run_lock():
  run, test = _pins(LOCKS["run"]), _pins(LOCKS["test"])
  tools = _pins(LOCKS["tools"])
  assert list(tools) == ["uv"]  # The installer, alone.
  for pins in (run, test, tools):
    assert all(hashes >= 1 for _, hashes in pins.values())
  # The musicnn wheel (installed --no-deps) is locked in both.
  assert run["musicnn"][0] == test["musicnn"][0] == "0.1.0"
  for key, (version, _) in run.items():
    assert test.get(key, (None,))[0] == version, key
  for key in ("pytest", "chex", "ruff", "nbclient"):
    assert key in test and key not in run


@pytest.mark.parametrize(
  "script,locks",
  [
    ("setup.sh", ("requirements", "requirements-test")),
    ("tools.sh", ("requirements-tools",)),
  ],
)
def test_the_installs_read_the_locks_by_hash_without_resolving(script, locks):
  with open(os.path.join(ROOT, "launch", script)) as f:
    lines = [x for x in f if not x.lstrip().startswith("#")]
  code = "".join(lines)
  for lock in locks:
    assert f"launch/{lock}.lock" in code
  assert "--require-hashes" in code and "--no-deps" in code
  assert ">=" not in code
