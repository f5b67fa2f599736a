"""VGGish transfer: the checkpoint converter against a TF computation,
AutoPool, the frozen embedding, and VGGish's front end in the MTAT builder;
the Harmonic CNN's front end against librosa and the reference's centres."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import tensorflow as tf

from mcl.datasets import magnatagatune
from mcl.experiments import tagging as experiment
from mcl.features import audio, logmel
from mcl.models import harmonic_cnn, vggish, vggish_checkpoint
from mcl.runtime import errors
from tests import conftest
from tests.test_magnatagatune import manual_dir  # noqa: F401 - fixture

TINY = dict(conv_widths=(4, 4, 8, 8, 8, 8), fc_widths=(16, 16))
EMBEDDING = 128  # The PCA is 128 x 128 in the release.


def _tf_variables(conv_widths, fc_widths, rng):
  """{TF name: random value} with the release's names and layouts."""
  shapes, channels = {}, 1
  for name, width in zip(vggish.CONV_NAMES, conv_widths, strict=True):
    shapes[name] = ((3, 3, channels, width), (width,))
    channels = width
  units = 6 * 4 * channels  # 96 x 64 after four 2x2 pools.
  for name, width in zip(
    (*vggish.FC_NAMES, "fc2"), (*fc_widths, EMBEDDING), strict=True
  ):
    shapes[name] = ((units, width), (width,))
    units = width
  out = {}
  for name, (kernel, bias) in shapes.items():
    scope = vggish_checkpoint.scope(name)
    scale = 1.0 / np.sqrt(np.prod(kernel[:-1]))
    out[f"{scope}/weights"] = (rng.normal(size=kernel) * scale).astype(
      np.float32
    )
    out[f"{scope}/biases"] = rng.normal(size=bias).astype(np.float32) * 0.1
  return out


def _tf_embeddings(values, patches):
  """The release's network (vggish_slim.py) in TF ops, on `patches`."""
  h = tf.constant(patches[..., None])
  for name in vggish.CONV_NAMES:
    scope = vggish_checkpoint.scope(name)
    h = tf.nn.conv2d(h, values[f"{scope}/weights"], 1, "SAME")
    h = tf.nn.relu(h + values[f"{scope}/biases"])
    if name in ("conv1", "conv2", "conv3_2", "conv4_2"):
      h = tf.nn.max_pool2d(h, 2, 2, "SAME")
  h = tf.reshape(h, [h.shape[0], -1])
  for name in (*vggish.FC_NAMES, "fc2"):
    scope = vggish_checkpoint.scope(name)
    h = tf.matmul(h, values[f"{scope}/weights"]) + values[f"{scope}/biases"]
    if name != "fc2":
      h = tf.nn.relu(h)
  return h.numpy()


def _write_release(directory, values, rng):
  """A TF-Slim checkpoint in the release's V1 single-file format
  (tf.compat.v1 Saver) and the PCA npz."""
  graph = tf.Graph()
  with graph.as_default():
    variables = [
      tf.compat.v1.get_variable(name, initializer=value)
      for name, value in values.items()
    ]
    saver = tf.compat.v1.train.Saver(
      variables, write_version=tf.compat.v1.train.SaverDef.V1
    )
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      saver.save(session, os.path.join(directory, vggish_checkpoint.CHECKPOINT))
  eigen = np.linalg.qr(rng.normal(size=(EMBEDDING, EMBEDDING)))[0]
  means = rng.normal(size=(EMBEDDING, 1))
  np.savez(
    os.path.join(directory, vggish_checkpoint.PCA_PARAMS),
    pca_eigen_vectors=eigen,
    pca_means=means,
  )
  return eigen, means


def test_checkpoint_round_trips_to_the_tf_embeddings(tmp_path):
  rng = np.random.default_rng(0)
  values = _tf_variables(TINY["conv_widths"], TINY["fc_widths"], rng)
  eigen, means = _write_release(str(tmp_path), values, rng)
  patches = rng.normal(size=(3, 96, 64)).astype(np.float32)

  network = vggish.VGGish(**TINY)
  init = network.init(jax.random.key(0), jnp.zeros((1, 96, 64)))
  variables = vggish_checkpoint.into(init, str(tmp_path), path=())
  ours = np.asarray(network.apply(variables, patches))

  raw = _tf_embeddings(values, patches)
  # The release's postprocessor before its 8-bit quantisation.
  expected = np.clip((eigen @ (raw.T - means)).T, -2.0, 2.0)
  assert np.std(raw) > 0.05 and np.std(expected) > 0.1  # Not trivial.
  np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
  raw_ours = vggish.VGGish(**TINY, postprocess=False).apply(
    {
      "params": {k: v for k, v in variables["params"].items() if "pca" not in k}
    },
    patches,
  )
  assert np.abs(np.asarray(raw_ours) - raw).max() < 1e-4


def test_release_variable_count():
  """72,141,184 parameters in the release's graph (no values needed)."""
  graph = tf.Graph()
  with graph.as_default():
    for name, value in _tf_variables(
      (64, 128, 256, 256, 512, 512), (4096, 4096), _ShapeOnly()
    ).items():
      tf.compat.v1.get_variable(name, shape=value.shape)
    total = sum(int(np.prod(v.shape)) for v in tf.compat.v1.global_variables())
  assert total == 72_141_184
  ours = jax.eval_shape(
    lambda: vggish.VGGish(postprocess=False).init(
      jax.random.key(0), jnp.zeros((1, 96, 64))
    )
  )
  assert sum(x.size for x in jax.tree.leaves(ours)) == total


class _ShapeOnly:
  """A stand-in generator whose arrays are zero-stride views (shape only)."""

  def normal(self, size):
    return np.broadcast_to(np.float32(0), size)


def test_missing_release_says_where_to_download(tmp_path):
  init = vggish.VGGish(**TINY).init(jax.random.key(0), jnp.zeros((1, 96, 64)))
  with pytest.raises(errors.MissingDataError) as info:
    vggish_checkpoint.into(init, str(tmp_path), path=())
  message = str(info.value)
  assert "storage.googleapis.com/audioset/vggish_model.ckpt" in message
  assert "vggish_pca_params.npz" in message
  assert isinstance(info.value, FileNotFoundError)


def test_widths_unlike_the_release_are_refused(tmp_path):
  rng = np.random.default_rng(1)
  values = _tf_variables(TINY["conv_widths"], TINY["fc_widths"], rng)
  _write_release(str(tmp_path), values, rng)
  other = vggish.VGGish(conv_widths=(4, 4, 8, 8, 8, 16), fc_widths=(16, 16))
  init = other.init(jax.random.key(0), jnp.zeros((1, 96, 64)))
  with pytest.raises(errors.UserError, match="conv4_2"):
    vggish_checkpoint.into(init, str(tmp_path), path=())


def _pool(alpha, logits):
  pool = vggish.AutoPool(logits.shape[-1])
  return pool.apply({"params": {"alpha": jnp.asarray(alpha)}}, logits)


def test_autopool_interpolates_mean_and_max():
  logits = jax.random.normal(jax.random.key(0), (2, 7, 3)) * 3
  p = jax.nn.sigmoid(logits)
  mean = jax.nn.sigmoid(_pool(np.zeros(3, np.float32), logits))
  np.testing.assert_allclose(mean, p.mean(axis=1), atol=1e-6)
  # Larger alpha: closer to the max (or, negative, to the min).
  gaps = [
    np.abs(jax.nn.sigmoid(_pool(np.full(3, a, np.float32), logits)) - p.max(1))
    for a in (10.0, 1e3, 1e5)
  ]
  assert gaps[0].max() > gaps[1].max() > gaps[2].max()
  assert gaps[2].max() < 1e-5
  small = jax.nn.sigmoid(_pool(np.full(3, -1e5, np.float32), logits))
  np.testing.assert_allclose(small, p.min(axis=1), atol=1e-5)
  # A saturated instance gives a finite clip logit.
  assert np.all(np.isfinite(_pool(np.ones(3), logits.at[0, 0].set(200.0))))


def test_autopool_alpha_is_learnt():
  logits = jax.random.normal(jax.random.key(1), (4, 5, 2)) * 2
  target = jnp.array([[1.0, 0.0]] * 4)  # Class 0 present: favours max.

  def loss(alpha):
    z = _pool(alpha, logits)
    return -jnp.mean(
      target * jax.nn.log_sigmoid(z) + (1 - target) * jax.nn.log_sigmoid(-z)
    )

  alpha = jnp.zeros(2)
  start = loss(alpha)
  for _ in range(20):
    alpha = alpha - 1.0 * jax.grad(loss)(alpha)
  assert loss(alpha) < start
  assert alpha[0] > 0.1 and alpha[1] < -0.1  # Towards max, towards min.


def test_frozen_vggish_gets_no_gradient_and_a_zero_mask():
  model = vggish.VGGishAutoPool(num_classes=3, hidden=8, **TINY)
  x = jax.random.normal(jax.random.key(0), (2, 2 * 96, 64))
  variables = model.init(jax.random.key(1), x, train=False)

  def loss(params):
    z, _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x, train=True, rngs={"dropout": jax.random.key(2)},
      mutable=["batch_stats"],
    )  # fmt: skip
    return jnp.mean(z**2)

  grads = jax.grad(loss)(variables["params"])
  assert all(not np.any(g) for g in jax.tree.leaves(grads["vggish"]))
  assert any(np.any(g) for g in jax.tree.leaves(grads["dense_0"]))
  mask = experiment.trainable_mask(model, variables["params"])
  assert all(not np.any(m) for m in jax.tree.leaves(mask["vggish"]))
  assert all(np.all(m == 1) for m in jax.tree.leaves(mask["autopool"]))
  tuned = dataclasses.replace(model, fine_tune=True)
  mask = experiment.trainable_mask(tuned, variables["params"])
  assert np.all(mask["vggish"]["conv1"]["kernel"] == 1)
  assert not np.any(mask["vggish"]["pca_eigen_vectors"])  # PCA stays fixed.
  with pytest.raises(ValueError, match="vggish"):
    model.init(jax.random.key(1), x[:, :100], train=False)


def test_harmonic_front_end_matches_librosa_and_the_reference():
  centres, level = harmonic_cnn.harmonic_centres(16_000, 6, 2)
  assert level == 128 and centres.shape == (768,)
  # The reference's initialize_filterbank(16000, 6, 2), printed with torch.
  np.testing.assert_allclose(
    centres[:3], [32.70319566, 33.66147244, 34.64782887], rtol=1e-6
  )
  np.testing.assert_allclose(centres[-1], 7685.84880541, rtol=1e-6)
  x = np.random.default_rng(0).normal(size=(2, 4000)).astype(np.float32)
  ours = np.asarray(harmonic_cnn.power_stft(jnp.asarray(x), 512))
  reference = np.abs(
    librosa.stft(x, n_fft=512, hop_length=256, window="hann", center=True,
                 pad_mode="reflect")
  ) ** 2  # fmt: skip
  np.testing.assert_allclose(ours, np.swapaxes(reference, 1, 2), rtol=2e-4,
                             atol=1e-3)  # fmt: skip


def test_builder_stores_vggish_frames_of_the_real_clip(
  manual_dir,  # noqa: F811 - the imported fixture
  tmp_path,
):
  features = dataclasses.replace(
    magnatagatune.FEATURES,
    front_end="vggish",
    n_mels=logmel.VGGISH_BANDS,
  )
  builder = magnatagatune.build(
    manual_dir,
    str(tmp_path / "tfds"),
    magnatagatune.make_config("top50", features),
    num_workers=1,
  )
  (clip,) = builder.as_dataset(split="test").as_numpy_iterator()
  waveform = audio.load_audio(conftest.MTAT_CLIP, 16_000)
  # 465,984 samples: 1 + (465,984 - 400) // 160 = 2,910 frames, 30 patches.
  assert clip["log_mel"].shape == (2910, 64)
  np.testing.assert_allclose(
    clip["log_mel"], logmel.vggish_log_mel(waveform), atol=1e-5
  )
  assert builder.builder_config.name != "top50"  # Its own config.
  with pytest.raises(errors.UserError, match="n_mels 64"):
    dataclasses.replace(features, n_mels=96)
