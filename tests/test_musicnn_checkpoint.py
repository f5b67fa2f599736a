"""The Flax port of the musicnn package's four checkpoints against the
package's own TF1 graphs, on the same log-mel patches of the real MTAT
clip."""

import csv
import json
import os

import jax
import numpy as np
import pytest

from mcl.features import audio, logmel
from mcl.models import musicnn_checkpoint, pons_musicnn
from tests import forks
from tests.conftest import MTAT_CLIP

tf = pytest.importorskip("tensorflow")
pytest.importorskip("musicnn")

# Graph tensors of the shipped .meta files (musicnn's extractor.py).
INPUT = "model/Placeholder:0"
TRAINING = "model/Placeholder_2:0"
TAGGRAM = "model/Sigmoid:0"
MUSICNN_PENULTIMATE = "model/batch_normalization_10/batchnorm/add_1:0"
VGG_POOL5 = "model/max_pooling2d_4/MaxPool:0"


@pytest.fixture(scope="module")
def patches():
  """float32 [3, 187, 96]: the first three 3 s patches of the MTAT clip,
  computed once so both networks see identical inputs."""
  if not os.path.exists(MTAT_CLIP):
    pytest.skip(f"real audio not found at {MTAT_CLIP}")
  waveform = audio.load_audio(MTAT_CLIP, logmel.MUSICNN_SAMPLE_RATE)
  spectrogram = logmel.musicnn_log_mel(waveform)
  frames = pons_musicnn.PATCH_FRAMES
  return np.stack(
    [spectrogram[i * frames : (i + 1) * frames] for i in range(3)]
  )


def run_graph(folder: str, patches: np.ndarray, feature: str):
  """The shipped graph's taggram and `feature` tensor for `patches`.

  The `.meta` graphs were saved by TF 1.12 with `_output_shapes`
  attributes that today's importer rejects (an inconsistent
  FusedBatchNormGrad shape); they are dropped before import.
  """
  meta = tf.compat.v1.MetaGraphDef()
  with open(os.path.join(folder, ".meta"), "rb") as f:
    meta.ParseFromString(f.read())
  for node in meta.graph_def.node:
    node.attr.pop("_output_shapes", None)
  graph = tf.Graph()
  with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
    saver.restore(session, folder + os.sep)
    return session.run([TAGGRAM, feature], {INPUT: patches, TRAINING: False})


@pytest.mark.parametrize("name", musicnn_checkpoint.CHECKPOINTS)
def test_port_equals_shipped_graph(name, patches):
  pretrained = musicnn_checkpoint.load(name)
  vgg = name.endswith("vgg")
  taggram, feature = run_graph(
    pretrained.folder, patches, VGG_POOL5 if vgg else MUSICNN_PENULTIMATE
  )
  logits, state = pretrained.model.apply(
    pretrained.variables, patches, train=False, mutable=["intermediates"]
  )
  ours = np.asarray(jax.nn.sigmoid(logits))
  embedding = np.asarray(state["intermediates"][pretrained.embedding][0])
  assert ours.shape == taggram.shape == (3, 50)
  assert np.max(np.abs(ours - taggram)) < 1e-4
  assert embedding.shape == feature.shape
  assert np.max(np.abs(embedding - feature)) < 1e-4
  # The patches differ, so a port that ignored its input would fail here.
  assert np.max(np.abs(taggram[0] - taggram[1])) > 1e-3


@pytest.mark.parametrize("name", musicnn_checkpoint.CHECKPOINTS)
def test_parameter_count_equals_checkpoint(name):
  pretrained = musicnn_checkpoint.load(name)
  ours = sum(
    np.size(leaf) for leaf in jax.tree.leaves(pretrained.variables["params"])
  )
  assert ours == musicnn_checkpoint.trainable_count(pretrained.folder)
  fresh = pretrained.model.init(
    jax.random.key(0), np.zeros((1, 187, 96), np.float32), train=False
  )
  assert jax.tree.map(np.shape, fresh["params"]) == jax.tree.map(
    np.shape, pretrained.variables["params"]
  )


def test_msd_vgg_pools_differ_from_package_models_py():
  mtt = musicnn_checkpoint.graph_pools(
    musicnn_checkpoint.checkpoint_folder("MTT_vgg")
  )
  msd = musicnn_checkpoint.graph_pools(
    musicnn_checkpoint.checkpoint_folder("MSD_vgg")
  )
  assert mtt[0] == ((4, 1), (2, 2))
  assert msd[:2] == (((4, 1), (4, 1)), ((1, 4), (1, 4)))


def test_musicnn_parameter_counts():
  """Pons & Serra's figures: 787,159 (musicnn), 605,748 (vgg)."""
  counts = {
    name: musicnn_checkpoint.trainable_count(
      musicnn_checkpoint.checkpoint_folder(name)
    )
    for name in ("MTT_musicnn", "MSD_vgg")
  }
  assert counts == {"MTT_musicnn": 787_159, "MSD_vgg": 605_748}


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match="MTT_musicnn, MSD_musicnn"):
    musicnn_checkpoint.load("MTT_big")


def test_pretrained_predict_tags_the_mtat_clip_techno_and_skips_a_broken_file(
  tmp_path, forked
):
  if not os.path.exists(MTAT_CLIP):
    pytest.skip(f"real audio not found at {MTAT_CLIP}")
  broken = tmp_path / "broken.mp3"
  broken.write_bytes(b"not an mp3 at all")
  output = str(tmp_path / "tags")
  done = forked.run(
    forks.cli("mcl.predict"),
    [
      "--pretrained=MTT_musicnn",
      "--top_k=5",
      f"--output={output}",
      MTAT_CLIP,
      str(broken),
    ],
  )
  assert done.returncode == 0, done.stderr
  rows = [line.split() for line in done.stdout.splitlines()]
  clip_row = next(r for r in rows if r[0] == MTAT_CLIP)
  assert clip_row[1] == "techno"
  assert any(
    line.startswith(f"skipped {broken}:") for line in done.stdout.splitlines()
  )
  with open(output + ".json") as f:
    content = json.load(f)
  assert content["workdir"] == "pretrained:MTT_musicnn"
  (scored,) = content["predictions"]
  tags = scored["scores"]["tags"]
  assert len(tags) == 50 and scored["predicted"]["tags"] == "techno"
  # The mean over the clip's nine patches of the port's taggram.
  waveform = audio.load_audio(MTAT_CLIP, logmel.MUSICNN_SAMPLE_RATE)
  spectrogram = logmel.musicnn_log_mel(waveform)
  count = spectrogram.shape[0] // pons_musicnn.PATCH_FRAMES
  pretrained = musicnn_checkpoint.load("MTT_musicnn")
  logits = pretrained.model.apply(
    pretrained.variables,
    spectrogram[: count * 187].reshape(count, 187, 96),
    train=False,
  )
  expected = np.asarray(jax.nn.sigmoid(logits)).mean(axis=0)
  got = np.array([tags[t] for t in pretrained.tags])
  np.testing.assert_allclose(got, expected, atol=1e-6)
  with open(output + ".csv") as f:
    assert len(list(csv.DictReader(f))) == 50
  assert [s["path"] for s in content["skipped"]] == [str(broken)]
