"""Kim & Nam's raw-waveform CRNN and TF-CRNN: the feedback path, the
zero-initialised GRU, parameter counts, BatchNorm statistics carried step
by step, and a few training steps on 2.5 s of a real clip."""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mcl.features import audio
from mcl.models import feedback_crnn
from tests import conftest, few_steps

NUM_CLASSES = 16
BATCH = 4
TRAIN_STEPS = 6
# Stem + 3 blocks of 8 channels: a window pools 3,200 -> 1,067 -> 355 ->
# 118 -> 39 steps before the max over time.
TINY = dict(widths=(8, 8, 8, 8), gru_width=8, num_classes=NUM_CLASSES)
# 4 windows (hop 1,600): enough steps for the feedback to act.
SHORT = 8_000

# Default models (num_classes=16), counted by hand from the layers: conv
# in*out*k + out, BatchNorm 2C, flax GRUCell 3*in*h + 3*h*h + 4h (ir, iz,
# in with bias; hr, hz without; hn with), dense in*out + out.
#   stem    1*128*3 + 128 + 2*128                     =     768
#   block_0 128*128*3 + 128 + 2*128                   =  49,536
#   block_1 same                                      =  49,536
#   block_2 128*256*3 + 256 + 2*256                   =  99,072
#   block_3 256*256*3 + 256 + 2*256                   = 197,376
#   block_4 same                                      = 197,376
#   block_5 256*512*3 + 512 + 2*512                   = 394,752
#   gru     3*512*256 + 3*256*256 + 4*256             = 590,848
#   dense   256*16 + 16                               =   4,112
#   CRNN total                                        = 1,583,376
#   feedback_i: 256*C_i + C_i for C = 128, 128, 256, 256, 256, 512:
#     2*32,896 + 3*65,792 + 131,584                   = 394,752
#   TF-CRNN total                                     = 1,978,128
HAND_COUNT = {
  feedback_crnn.WaveformCRNN: 768
  + 2 * 49_536
  + 99_072
  + 2 * 197_376
  + 394_752
  + 590_848
  + 4_112,
}
HAND_COUNT[feedback_crnn.TemporalFeedbackCRNN] = (
  HAND_COUNT[feedback_crnn.WaveformCRNN] + 2 * 32_896 + 3 * 65_792 + 131_584
)


def count_params(variables) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def noise(samples: int, seed: int = 0) -> jnp.ndarray:
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(-1, 1, (2, samples)), jnp.float32)


def randomise(tree, seed: int, scale: float = 0.5):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten(
    [
      scale * jax.random.normal(k, x.shape)
      for k, x in zip(keys, leaves, strict=True)
    ]
  )


@pytest.mark.parametrize(
  "cls", [feedback_crnn.WaveformCRNN, feedback_crnn.TemporalFeedbackCRNN]
)
def test_default_param_count_matches_hand_count(cls):
  model = cls()
  x = jax.ShapeDtypeStruct((2, feedback_crnn.SEGMENT), jnp.float32)
  variables = jax.eval_shape(
    functools.partial(model.init, train=False), jax.random.key(0), x
  )
  print(cls.__name__, count_params(variables))
  assert count_params(variables) == HAND_COUNT[cls]
  logits = jax.eval_shape(
    functools.partial(model.apply, train=False), variables, x
  )
  assert logits.shape == (2, NUM_CLASSES)
  assert feedback_crnn.num_steps(feedback_crnn.SEGMENT) == 24
  assert feedback_crnn.pooled_length(feedback_crnn.WINDOW, 6) == 1


def test_short_input_is_a_clear_error():
  model = feedback_crnn.TemporalFeedbackCRNN(**TINY)
  with pytest.raises(ValueError, match="shorter than"):
    model.init(jax.random.key(0), noise(3_199), train=False)
  deep = feedback_crnn.WaveformCRNN(widths=(8,) * 9)
  with pytest.raises(ValueError, match="pools to nothing"):
    deep.init(jax.random.key(0), noise(SHORT), train=False)


@pytest.mark.parametrize("train", [False, True])
def test_feedback_path_changes_the_output(train):
  x = noise(SHORT)
  tf_crnn = feedback_crnn.TemporalFeedbackCRNN(**TINY)
  crnn = feedback_crnn.WaveformCRNN(**TINY)
  variables = tf_crnn.init(jax.random.key(0), x, train=False)
  params = jax.tree.map(lambda p: p, variables["params"])
  # A zero GRU keeps h = 0 and the output constant: use a random one.
  params["recurrence"]["gru"] = randomise(params["recurrence"]["gru"], 1)
  blocks = len(TINY["widths"]) - 1
  names = [f"feedback_{i}" for i in range(blocks)]
  crnn_params = dict(params)
  crnn_params["recurrence"] = {
    k: v for k, v in params["recurrence"].items() if k not in names
  }
  crnn_shapes = jax.eval_shape(
    functools.partial(crnn.init, train=False), jax.random.key(0), x
  )["params"]
  assert jax.tree.structure(crnn_params) == jax.tree.structure(crnn_shapes)

  # One compiled program per model, shared by both feedback settings.
  @functools.partial(jax.jit, static_argnums=0)
  def run(model, params):
    out = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x,
      train=train,
      rngs={"dropout": jax.random.key(2)},
      mutable=["batch_stats"] if train else False,
    )
    return out if train else (out, None)

  # sigmoid(30) rounds to 1.0 in float32: every scale is the identity.
  identity = dict(params)
  identity["recurrence"] = dict(params["recurrence"])
  for name in names:
    dense = params["recurrence"][name]
    identity["recurrence"][name] = {
      "kernel": jnp.zeros_like(dense["kernel"]),
      "bias": jnp.full_like(dense["bias"], 30.0),
    }
  plain, plain_stats = run(crnn, crnn_params)
  scaled, scaled_stats = run(tf_crnn, identity)
  np.testing.assert_allclose(scaled, plain, rtol=1e-6, atol=1e-7)
  if train:
    for a, b in zip(
      jax.tree.leaves(scaled_stats), jax.tree.leaves(plain_stats), strict=True
    ):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

  random = dict(params)
  random["recurrence"] = dict(params["recurrence"])
  for i, name in enumerate(names):
    random["recurrence"][name] = randomise(params["recurrence"][name], 10 + i)
  fed_back, _ = run(tf_crnn, random)
  assert np.all(np.isfinite(fed_back))
  assert np.max(np.abs(fed_back - plain)) > 1e-3


def test_gru_starts_at_zero_and_learns_from_the_first_step():
  model = feedback_crnn.TemporalFeedbackCRNN(**TINY)
  x = noise(SHORT)
  variables = model.init(jax.random.key(0), x, train=False)
  gru = variables["params"]["recurrence"]["gru"]
  assert set(gru) == {"ir", "iz", "in", "hr", "hz", "hn"}
  for leaf in jax.tree.leaves(gru):
    np.testing.assert_array_equal(leaf, 0.0)
  logits = model.apply(variables, x, train=False)
  assert np.all(np.isfinite(logits))
  # h stays 0, so every input gets the output layer's bias.
  np.testing.assert_array_equal(logits[0], logits[1])
  np.testing.assert_array_equal(logits[0], variables["params"]["dense"]["bias"])

  labels = jnp.asarray([3, 7])

  def loss_fn(params):
    logits = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x,
      train=False,
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

  grads = jax.grad(loss_fn)(variables["params"])["recurrence"]["gru"]
  # The candidate state's input kernel moves at once; recurrent kernels
  # only once h != 0.
  assert np.any(np.asarray(grads["in"]["kernel"]) != 0)
  np.testing.assert_array_equal(grads["hr"]["kernel"], 0.0)


def test_batch_norm_statistics_are_updated_once_per_window():
  model = feedback_crnn.WaveformCRNN(**TINY)
  x = noise(SHORT)
  variables = model.init(jax.random.key(0), x, train=False)
  _, updates = model.apply(
    variables,
    x,
    train=True,
    rngs={"dropout": jax.random.key(1)},
    mutable=["batch_stats"],
  )
  conv = nn.Conv(TINY["widths"][0], (3,), (3,), ((1, 1),))
  conv_params = variables["params"]["recurrence"]["stem"]["conv"]
  expected = np.zeros(TINY["widths"][0], np.float32)
  for t in range(feedback_crnn.num_steps(SHORT)):
    start = t * feedback_crnn.HOP
    window = x[:, start : start + feedback_crnn.WINDOW, None]
    y = conv.apply({"params": conv_params}, window)
    expected = 0.9 * expected + 0.1 * np.asarray(y.mean(axis=(0, 1)))
  np.testing.assert_allclose(
    updates["batch_stats"]["recurrence"]["stem"]["bn"]["mean"],
    expected,
    rtol=1e-4,
    atol=1e-6,
  )


@pytest.fixture(scope="module")
def mtat_segments():
  """BATCH evenly spaced 2.5 s crops of the real clip: [BATCH, 40,000]."""
  if not os.path.exists(conftest.MTAT_CLIP):
    pytest.skip(f"real MTAT clip not found at {conftest.MTAT_CLIP}")
  waveform = audio.load_audio(conftest.MTAT_CLIP, 16_000)
  length = feedback_crnn.SEGMENT
  starts = np.linspace(0, waveform.shape[0] - length, BATCH).astype(int)
  return jnp.asarray(np.stack([waveform[s : s + length] for s in starts]))


@pytest.mark.parametrize(
  "cls", [feedback_crnn.WaveformCRNN, feedback_crnn.TemporalFeedbackCRNN]
)
def test_tiny_model_trains_on_real_audio(cls, mtat_segments):
  model = cls(**TINY)
  labels = jnp.asarray(np.random.default_rng(0).integers(0, NUM_CLASSES, BATCH))

  def loss(logits):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return ce.mean()

  initial, params, _, losses, final_loss = few_steps.train(
    model, mtat_segments, loss, TRAIN_STEPS
  )
  initial = initial["params"]
  losses = np.asarray(losses)
  assert np.all(np.isfinite(losses)) and np.isfinite(final_loss), losses
  np.testing.assert_allclose(losses[0], np.log(NUM_CLASSES), rtol=1e-6)
  assert final_loss < losses[0], (losses, final_loss)
  # Every layer has left its initial values, the GRU's zeros included.
  for name in params["recurrence"]:
    moved = jax.tree.map(
      lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
      params["recurrence"][name],
      initial["recurrence"][name],
    )
    assert any(jax.tree.leaves(moved)), name
