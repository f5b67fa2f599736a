"""The user-defined method of docs/own_method.md registers and runs."""

import os
import re

import numpy as np

from mcl.continual import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_documented_method_registers_and_runs(tmp_path, monkeypatch):
  with open(os.path.join(ROOT, "docs", "own_method.md")) as f:
    (code,) = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  assert len(code.strip().splitlines()) < 40
  monkeypatch.chdir(ROOT)  # The page loads configs/ from the repository.
  code = code.replace('"runs/head_first"', repr(str(tmp_path / "run")))
  scope = {"__name__": "users_notebook"}
  exec(compile(code, "docs/own_method.md", "exec"), scope)  # noqa: S102
  assert registry.METHODS["head_first"] is scope["HeadFirst"]
  results = scope["results"]
  assert results["method"] == "head_first"
  final = results["accuracy_matrix"][-1]
  assert len(final) == 3 and np.mean(final) > 0.5  # Learnt, not chance.
  record = results["task_records"][1]["phases"]
  assert set(record) == {"head", "train"}
