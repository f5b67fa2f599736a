"""docs/tutorial.ipynb runs end to end (nbclient), so it cannot rot."""

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUDIO = os.path.join(ROOT, os.pardir, "shared", "data", "gtzan_excerpts")


def test_the_tutorial_runs_end_to_end(tmp_path, monkeypatch):
  if not os.path.isdir(AUDIO):
    pytest.skip("../shared/data/gtzan_excerpts is absent")
  monkeypatch.setenv("MCL_AUDIO_DIR", AUDIO)
  monkeypatch.setenv("MCL_WORKDIR", str(tmp_path))
  with open(os.path.join(ROOT, "docs", "tutorial.ipynb")) as f:
    notebook = nbformat.read(f, as_version=4)
  NotebookClient(
    notebook, timeout=900, kernel_name="python3",
    resources={"metadata": {"path": str(tmp_path)}},
  ).execute()  # fmt: skip
  for method in ("den", "finetune"):
    with open(tmp_path / method / "results.json") as f:
      assert json.load(f)["finished_tasks"] == 2
  assert (tmp_path / "accuracy_matrices.png").stat().st_size > 0
  printed = "".join(
    out.get("text", "")
    for cell in notebook.cells
    if cell.cell_type == "code"
    for out in cell.outputs
  )
  assert "all [(" in printed  # The clip's scores over every class.
