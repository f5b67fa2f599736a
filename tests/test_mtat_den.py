"""DEN on MagnaTagATune genre tasks: configs/mtat_den.py on the runner,
over real GTZAN recordings laid out as MTAT (`mtat_from_gtzan` fixture).
"""

from mcl.configs import mtat_den
from mcl.configs import test as test_config
from mcl.datasets import from_config
from mcl.experiments.continual import runner
from tests import conftest


def test_den_learns_mtat_genre_tasks(mtat_from_gtzan, tmp_path):
  config = test_config.tiny(mtat_den.get_config())
  assert config.data.source == "magnatagatune"
  config.data.manual_dir = mtat_from_gtzan
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.genres = conftest.MTAT_GENRES
  config.features.min_seconds = 3.0  # GTZAN excerpts are 15-20 s.
  config.tasks = (("classical", "metal"), ("pop", "rock"))
  results = runner.run(config, str(tmp_path / "run"))

  accuracy = results["accuracy_matrix"]
  assert accuracy[0][1] is None and accuracy[1][1] is not None
  assert results["tasks"] == [["classical", "metal"], ["pop", "rock"]]
  assert len(results["units_per_layer"]) == 2
  builder, split = from_config.audio_builder(config)
  assert split.test == "test" and split.validation == "valid"
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert sizes == {"train": 24, "valid": 8, "test": 8}
  # Two test clips per genre: accuracies are multiples of 1/4.
  assert all((4 * a) % 1 == 0 for row in accuracy for a in row if a)
