"""docs/tutorial.ipynb runs end to end (nbclient), so it cannot rot."""

import json
import os

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_tutorial_runs_end_to_end(
  tmp_path, monkeypatch, tiny_audio_dir, tiny_data_dir
):
  """On the suite's tiny audio folder and its records (built once per
  session); the notebook's defaults are the 100 excerpts and records of
  its own."""
  monkeypatch.setenv("MCL_AUDIO_DIR", tiny_audio_dir)
  monkeypatch.setenv("MCL_DATA_DIR", tiny_data_dir)
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
