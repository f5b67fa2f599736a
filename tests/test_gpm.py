"""Gradient Projection Memory (Saha et al. 2021) on a tiny ConvClassifier."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcl.continual import gpm, masks, surgery
from mcl.models import ConvClassifier
from mcl.trainer import optimizer, train

CONV = dict(conv=(3, 4), dense=(5,))
MLP = dict(conv=(), dense=(6, 5))


def _network(conv, dense, frames=16, bins=8, heads=(2,)):
  model = ConvClassifier(conv, dense, heads)
  variables = model.init(jax.random.key(0), jnp.zeros((1, frames, bins)))
  return model, jax.tree.map(np.array, variables["params"])


def _batch(seed, shape=(8, 16, 8)):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _matrix(layer):
  """[kernel.reshape(-1, out); bias] as float64 [rows, out]."""
  kernel = np.asarray(layer["kernel"], np.float64)
  bias = np.asarray(layer["bias"], np.float64)
  return np.concatenate([kernel.reshape(-1, kernel.shape[-1]), bias[None]])


def _all_inputs(params, x, layers):
  return gpm.layer_inputs(params, x, layers, np.random.default_rng(0), None)


def _pre_activations(params, x):
  """Every hidden layer's pre-activation on x (from its inputs) and the
  logits of every head."""
  model = ConvClassifier.from_params(params)
  inputs = _all_inputs(params, x, model.hidden_layers)
  out = {n: inputs[n] @ _matrix(params[n]) for n in model.hidden_layers}
  logits = model.apply({"params": params}, x)
  return out | {
    h: np.asarray(z) for h, z in zip(model.heads, logits, strict=True)
  }


def _adam(params, x, proximal, trainable=None, steps=5, learning_rate=1e-2):
  """A few `train.train_step`s on x with random labels of task 0."""
  model = ConvClassifier.from_params(params)
  state = train.TrainState.create(
    model, {"params": params}, optimizer.direction("adam")
  )
  labels = np.random.default_rng(1).integers(0, 2, x.shape[0])
  batch = {
    "inputs": jnp.asarray(x),
    "label": jnp.asarray(labels, jnp.int32),
    "task": jnp.zeros(x.shape[0], jnp.int32),
  }
  phase = train.Phase(
    learning_rate=jnp.float32(learning_rate),
    trainable=None if trainable is None else jax.tree.map(jnp.array, trainable),
    proximal=proximal,
    loss=train.TaskCrossEntropy((0,)),
  )
  for _ in range(steps):
    state, _ = train.train_step(state, batch, phase, jax.random.key(0))
  return jax.tree.map(np.array, jax.device_get(state.params))


def _frozen_heads(params):
  """All hidden layers trainable, every head frozen."""
  return {
    name: {k: np.full(v.shape, float(not name.startswith("head_")), np.float32)
           for k, v in group.items()}
    for name, group in params.items()
  }  # fmt: skip


def _max_relative_change(before, after):
  return max(
    np.max(np.abs(after[k] - before[k])) / np.max(np.abs(before[k]))
    for k in before
  )


@pytest.mark.parametrize("widths", [CONV, MLP], ids=["conv", "mlp"])
def test_layer_inputs_times_the_layer_is_its_pre_activation(widths):
  model, params = _network(**widths)
  x = _batch(0)
  inputs = _all_inputs(params, x, model.hidden_layers)
  _, state = model.apply(
    {"params": params}, x, capture_intermediates=True, mutable=["intermediates"]
  )
  for name in model.hidden_layers:
    kernel = params[name]["kernel"]
    assert inputs[name].dtype == np.float32
    assert inputs[name].shape[1] == gpm.layer_rows(kernel.shape)
    np.testing.assert_array_equal(inputs[name][:, -1], 1.0)
    pre = np.asarray(state["intermediates"][name]["__call__"][0])
    np.testing.assert_allclose(
      inputs[name] @ _matrix(params[name]),
      pre.reshape(-1, kernel.shape[-1]),
      atol=1e-5,
    )


def test_layer_inputs_subsample_reproducibly_in_order():
  model, params = _network(**CONV)
  x = _batch(0)
  full = _all_inputs(params, x, ("conv_1",))["conv_1"]
  first, second = (
    gpm.layer_inputs(
      params, x, model.hidden_layers, np.random.default_rng(7), 50
    )
    for _ in range(2)
  )
  assert first["conv_1"].shape == (50, 9 * 3 + 1)
  assert first["dense_0"].shape == (8, 4 + 1)  # fewer examples than the cap
  np.testing.assert_array_equal(first["conv_1"], second["conv_1"])
  # Kept samples are rows of the full representation, in their order.
  index = [
    np.flatnonzero((full == row).all(axis=1))[0] for row in first["conv_1"]
  ]
  assert np.all(np.diff(index) > 0)


def test_layer_inputs_refuses_an_unknown_layer():
  _, params = _network(**MLP)
  with pytest.raises(ValueError, match="conv_0"):
    gpm.layer_inputs(params, _batch(0), ("conv_0",), np.random.default_rng(0))


def _energy(basis, representation):
  r = np.asarray(representation, np.float64).T
  return np.sum((basis.astype(np.float64).T @ r) ** 2) / np.sum(r**2)


def test_update_bases_is_orthonormal_and_captures_the_threshold():
  model, params = _network(**CONV)
  layers = model.hidden_layers
  rng = np.random.default_rng(0)
  first = gpm.layer_inputs(params, _batch(0), layers, rng, 64)
  bases = gpm.update_bases({}, first, 0.9)
  second = gpm.layer_inputs(params, _batch(1), layers, rng, 64)
  grown = gpm.update_bases(bases, second, {n: 0.97 for n in layers})
  for name in layers:
    for basis in (bases[name], grown[name]):
      assert basis.dtype == np.float32
      np.testing.assert_allclose(
        basis.T @ basis, np.eye(basis.shape[1]), atol=1e-5
      )
    assert _energy(bases[name], first[name]) >= 0.9
    # The fewest vectors: one less would not reach the threshold.
    assert _energy(bases[name][:, :-1], first[name]) < 0.9
    assert _energy(grown[name], second[name]) >= 0.97
    k = bases[name].shape[1]
    np.testing.assert_allclose(grown[name][:, :k], bases[name], atol=1e-5)
  full = gpm.update_bases(bases, second, 1.0)
  for name in layers:
    assert _energy(full[name], second[name]) >= 1 - 1e-6
  # A memory that already captures the threshold is not grown.
  assert gpm.update_bases(full, second, 0.5)["conv_1"].shape == (
    full["conv_1"].shape
  )
  with pytest.raises(ValueError, match="pad_bases"):
    gpm.update_bases({"conv_1": bases["conv_1"][:-1]}, second, 0.9)
  with pytest.raises(ValueError, match="threshold"):
    gpm.update_bases({}, second, 1.5)


@pytest.mark.parametrize("widths", [CONV, MLP], ids=["conv", "mlp"])
def test_projected_adam_steps_are_orthogonal_to_the_memory(widths):
  model, params = _network(**widths)
  layers = model.hidden_layers
  reps = gpm.layer_inputs(
    params, _batch(0), layers, np.random.default_rng(0), 64
  )
  bases = gpm.update_bases({}, reps, 0.9)
  assert all(bases[n].shape[1] < bases[n].shape[0] for n in layers)
  term = gpm.projection(bases, params, layers)
  trained = _adam(params, _batch(1), term)
  for name in layers:
    delta = _matrix(trained[name]) - _matrix(params[name])
    assert np.linalg.norm(delta) > 1e-3
    residual = np.linalg.norm(bases[name].T @ delta) / np.linalg.norm(delta)
    assert residual < 1e-5, name


@pytest.mark.parametrize(
  "widths, shape",
  [(CONV, (2, 4, 4)), (MLP, (4, 16, 8))],
  ids=["conv", "mlp"],
)
def test_a_full_memory_keeps_the_batch_outputs_that_plain_adam_moves(
  widths, shape
):
  _, params = _network(**widths, frames=shape[1], bins=shape[2])
  layers = ConvClassifier.from_params(params).hidden_layers
  x = _batch(0, shape)
  bases = gpm.update_bases({}, _all_inputs(params, x, layers), 1.0)
  # Every layer keeps some freedom, so the test is not of a frozen network.
  assert any(bases[n].shape[1] < bases[n].shape[0] for n in layers)
  trainable = _frozen_heads(params)
  before = _pre_activations(params, x)
  projected = _adam(
    params, _batch(1, shape), gpm.projection(bases, params, layers), trainable
  )
  plain = _adam(params, _batch(1, shape), None, trainable)
  assert _max_relative_change(before, _pre_activations(projected, x)) < 1e-4
  assert _max_relative_change(before, _pre_activations(plain, x)) > 1e-2


def test_projection_within_a_selective_retraining_mask_is_exact():
  model, params = _network(**CONV)
  layers = model.hidden_layers
  reps = gpm.layer_inputs(
    params, _batch(0), layers, np.random.default_rng(0), 64
  )
  bases = gpm.update_bases({}, reps, 0.9)
  selected = {
    "conv_0": np.array([True, False, True]),
    "conv_1": np.array([True, True, False, True]),
    "dense_0": np.array([True, False, True, True, True]),
  }
  trainable = masks.subnetwork_mask(params, layers, selected, "head_0")
  term = gpm.projection(bases, params, layers, trainable)
  trained = _adam(params, _batch(1), term, trainable)
  for name in layers:
    for key in ("kernel", "bias"):
      frozen = trainable[name][key] == 0
      np.testing.assert_array_equal(
        trained[name][key][frozen], params[name][key][frozen]
      )
    delta = _matrix(trained[name]) - _matrix(params[name])
    assert np.linalg.norm(delta) > 1e-3
    residual = np.linalg.norm(bases[name].T @ delta) / np.linalg.norm(delta)
    assert residual < 1e-5, name


def _prefix(params, like):
  """The sub-tree of the units `like` has (units are only appended)."""
  return jax.tree.map(
    lambda v, w: v[tuple(slice(0, n) for n in w.shape)], params, like
  )


def test_padded_memory_keeps_the_old_network_after_growth():
  _, params = _network(**CONV, frames=4, bins=4)
  layers = ConvClassifier.from_params(params).hidden_layers
  x = _batch(0, (2, 4, 4))
  bases = gpm.update_bases({}, _all_inputs(params, x, layers), 1.0)
  stamps = {n: np.zeros(params[n]["bias"].shape, np.int32) for n in layers}
  grown, _ = surgery.grow(
    params, stamps, layers, ("head_0",), 2, 1, np.random.default_rng(0), 1.0
  )
  padded = gpm.pad_bases(bases, grown, layers)
  for name in layers:
    old, new = _matrix(params[name]), _matrix(grown[name])
    assert padded[name].shape == (new.shape[0], bases[name].shape[1])
    # Same coordinates on the old weights: the new input rows are zero.
    np.testing.assert_allclose(
      padded[name].T @ new[:, : old.shape[1]], bases[name].T @ old, atol=1e-6
    )
  before = _pre_activations(params, x)
  trained = _adam(
    grown,
    _batch(1, (2, 4, 4)),
    gpm.projection(padded, grown, layers),
    _frozen_heads(grown),
  )
  after = _pre_activations(_prefix(trained, params), x)
  assert _max_relative_change(before, after) < 1e-4
  with pytest.raises(ValueError, match="pad_bases"):
    gpm.projection(bases, grown, layers)
  with pytest.raises(ValueError, match="does not fit"):
    gpm.pad_bases(padded, params, layers)
