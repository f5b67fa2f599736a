"""DEN on MagnaTagATune genre tasks: configs/mtat_den.py on the runner.

The full MTAT is not at hand, so real GTZAN recordings stand in for MTAT
clips: they are laid out as `mp3/<folder>/<clip>.mp3` (libsndfile reads
them by content) with an `annotations_final.csv` that tags each with its
genre, so the genre selection, the folder split and the continual runner
all run on real music.
"""

import os

import pytest

from configs import mtat_den
from configs import test as test_config
from mcl.continual import runner
from mcl.datasets import magnatagatune

GENRES = ("classical", "metal", "pop", "rock")
# Clip index -> MTAT folder: 6 train, 2 valid, 2 test clips per genre.
FOLDERS = ("0", "3", "5", "7", "9", "b", "c", "c", "d", "f")


@pytest.fixture(scope="module")
def manual_dir(gtzan_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("mtat_from_gtzan")
  tags = ["guitar", *GENRES]
  lines = ["\t".join(["clip_id", *tags, "mp3_path"])]
  for g, genre in enumerate(GENRES):
    for i, folder in enumerate(FOLDERS):
      path = f"{folder}/{genre}.{i:05d}.mp3"
      os.makedirs(root / "mp3" / folder, exist_ok=True)
      os.symlink(
        os.path.join(gtzan_dir, genre, f"{genre}.{i:05d}.wav"),
        root / "mp3" / path,
      )
      values = ["1" if t in ("guitar", genre) else "0" for t in tags]
      lines.append("\t".join([str(100 * g + i), *values, path]))
  # Two genre tags: not single-label, never decoded.
  lines.append("\t".join(["999", "0", "1", "1", "0", "0", "0/both.mp3"]))
  (root / magnatagatune.ANNOTATIONS).write_text("\n".join(lines) + "\n")
  return str(root)


def test_den_learns_mtat_genre_tasks(manual_dir, tmp_path):
  config = test_config.tiny(mtat_den.get_config())
  assert config.data.source == "magnatagatune"
  config.data.manual_dir = manual_dir
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.genres = GENRES
  config.features.min_seconds = 3.0  # GTZAN excerpts are 15-20 s.
  config.tasks = (("classical", "metal"), ("pop", "rock"))
  results = runner.run(config, str(tmp_path / "run"))

  accuracy = results["accuracy_matrix"]
  assert accuracy[0][1] is None and accuracy[1][1] is not None
  assert results["tasks"] == [["classical", "metal"], ["pop", "rock"]]
  assert len(results["units_per_layer"]) == 2
  builder, split = runner.build_dataset(config)
  assert split.test == "test" and split.validation == "valid"
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert sizes == {"train": 24, "valid": 8, "test": 8}
  # Two test clips per genre: accuracies are multiples of 1/4.
  assert all((4 * a) % 1 == 0 for row in accuracy for a in row if a)
