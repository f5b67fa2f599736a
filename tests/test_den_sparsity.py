"""DEN's proximal steps in Adam's metric and its phases' masks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcl.continual import den, masks, sparsity, surgery
from mcl.models import ConvClassifier, head_name
from mcl.trainer import fit, optimizer, train

FRAMES, MELS = 16, 8


def _adam_prox_steps(params, grad_fn, proximal, steps, learning_rate):
  """`steps` of Adam followed by `proximal` in its metric, all trainable."""
  tx = optimizer.direction("adam")
  opt_state = tx.init(params)
  trainable = jax.tree.map(jnp.ones_like, params)
  history = []
  for _ in range(steps):
    direction, opt_state = tx.update(grad_fn(params), opt_state, params)
    params = jax.tree.map(lambda p, d: p - learning_rate * d, params, direction)
    params = proximal(
      params, trainable, optimizer.adam_metric(opt_state, learning_rate)
    )
    history.append(np.asarray(params["layer"]["kernel"]))
  return np.stack(history)


def test_l1_lets_a_weight_with_a_consistent_gradient_leave_zero():
  lam = 1e-3
  # Gradients: 10 lambda (consistent), none, lambda / 10 (too weak).
  grads = jnp.array([-10 * lam, 0.0, -lam / 10])
  params = {"layer": {"kernel": jnp.array([0.0, 0.5, 0.3]), "bias": 0.0}}

  def grad_fn(p):
    return {"layer": {"kernel": grads, "bias": jnp.zeros(())}}

  history = _adam_prox_steps(params, grad_fn, sparsity.l1(lam), 10, 1e-2)

  # Leaves zero at once and keeps moving at about Adam's step, less the
  # threshold lambda / |g| = 1/10 of it.
  assert np.all(history[:, 0] > 0)
  assert history[-1, 0] == pytest.approx(10 * 1e-2 * 0.9, rel=1e-3)
  # No gradient: v = 0, infinite step size, zero after one step.
  assert np.all(history[:, 1] == 0)
  # A gradient below lambda: net shrinkage of 9 Adam steps (0.09) per
  # step, 0.3 -> 0.21 -> 0.12 -> 0.03 -> 0, then it stays zero.
  np.testing.assert_allclose(history[:3, 2], [0.21, 0.12, 0.03], atol=1e-4)
  assert np.all(history[3:, 2] == 0)


def test_a_gradient_below_lambda_never_leaves_zero():
  # In gradient units a zero weight stays zero only when lambda exceeds
  # its gradient (the old lr * lambda threshold did this to every weight
  # whatever its gradient, since Adam's step is about lr).
  lam = 1.0
  params = {"layer": {"kernel": jnp.zeros(1), "bias": 0.0}}

  def grad_fn(p):
    return {"layer": {"kernel": jnp.array([-0.5]), "bias": jnp.zeros(())}}

  history = _adam_prox_steps(params, grad_fn, sparsity.l1(lam), 5, 1e-2)
  assert np.all(history == 0)


def _conv_network(conv=(3, 4), dense=(5,), heads=(2,)):
  model = ConvClassifier(conv, dense, heads)
  params = model.init(jax.random.key(0), jnp.zeros((1, FRAMES, MELS)))
  return model, jax.tree.map(np.array, params["params"])


def test_connection_group_step_zeroes_a_slice_and_the_search_drops_it():
  model, params = _conv_network()
  layers = model.hidden_layers
  # conv_0 channel 1 feeds conv_1 only through a weak slice into channel 2.
  params["conv_1"]["kernel"][:, :, 1, :] = 0.0
  params["conv_1"]["kernel"][:, :, 1, 2] = 1e-3
  before = masks.select_subnetwork(params, layers, "head_0")
  assert before["conv_0"][1]

  trainable = jax.tree.map(np.ones_like, params)
  metric = optimizer.AdamMetric(
    jnp.float32(1.0), jax.tree.map(jnp.ones_like, params)
  )
  # Threshold 0.01 * sqrt(9) = 0.03 per slice, with unit step sizes.
  out = jax.device_get(
    sparsity.connection_groups(0.01, layers)(params, trainable, metric)
  )

  assert np.all(out["conv_1"]["kernel"][:, :, 1, 2] == 0)
  strong = np.linalg.norm(params["conv_1"]["kernel"][:, :, 0, 0])
  assert np.linalg.norm(out["conv_1"]["kernel"][:, :, 0, 0]) == pytest.approx(
    strong - 0.03, rel=1e-4
  )
  # Dense kernels are not connection groups.
  np.testing.assert_array_equal(
    out["dense_0"]["kernel"], params["dense_0"]["kernel"]
  )
  after = masks.select_subnetwork(out, layers, "head_0")
  assert not after["conv_0"][1]
  assert after["conv_0"][[0, 2]].all()


@dataclasses.dataclass
class _SyntheticContext:
  """A `phase.Context` that trains a few Adam steps on a learnable toy
  task and records every phase's input, mask and output."""

  learning_rate: float = 1e-2
  steps: int = 8
  phases: dict = dataclasses.field(default_factory=dict)

  def phase(self, params, trainable, name, *, penalty=None, proximal=None):
    model = ConvClassifier.from_params(params)
    task = len(model.heads) - 1
    state = train.TrainState.create(
      model, {"params": params}, optimizer.direction("adam")
    )
    phase = train.Phase(
      learning_rate=jnp.float32(self.learning_rate),
      trainable=jax.tree.map(jnp.asarray, trainable),
      penalty=penalty,
      proximal=proximal,
      loss=train.TaskCrossEntropy((task,)),
    )
    for step in range(self.steps):
      x = jax.random.normal(jax.random.key(step), (8, FRAMES, MELS))
      label = (x[:, :, 0].mean(axis=1) > 0).astype(jnp.int32)
      batch = {"inputs": x, "label": label, "task": jnp.full(8, task)}
      state, _ = train.train_step(state, batch, phase, jax.random.key(0))
    out = jax.device_get(state.params)
    self.phases[name] = (params, trainable, out)
    return fit.FitResult(
      variables={"params": out, "batch_stats": {}},
      validation_loss=0.5,
      scores={"accuracy": 1.0},
      best_pass=0,
      steps=self.steps,
      history=(),
      initial_validation_loss=1.0,
    )


def _den_config(**overrides):
  return den.DENConfig(
    **{
      "l1": 1e-4,
      "l2": 0.1,
      "group_lasso": 1e-4,
      "k": 2,
      "tau": 0.1,
      "sigma": 1e-3,
      **overrides,
    }
  )


def _after_task_0(context, config):
  model, params = _conv_network(dense=(6,))
  stamps = {
    n: np.zeros(params[n]["bias"].shape, np.int32) for n in model.hidden_layers
  }
  rng = np.random.default_rng(0)
  params, state, record = den.learn_task(
    context, params, {"timestamps": stamps}, 0, config, rng
  )
  params = surgery.add_head(params, "dense_0", head_name(1), 2, rng)
  return params, state, record


def test_selective_retraining_trains_inside_s_only_and_can_grow_weights():
  context = _SyntheticContext()
  config = _den_config()
  params, state, _ = _after_task_0(context, config)
  params, state, record = den.learn_task(
    context, params, state, 1, config, np.random.default_rng(1)
  )
  # S's dense_0 units are those head 1 reads after its L1 phase.
  head = context.phases["head"][2][head_name(1)]["kernel"]
  reads = np.any(head != 0, axis=1)
  assert record["selected_units"]["dense_0"] == int(reads.sum())
  before, trainable, after = context.phases["selective"]
  grew = 0
  for name in before:
    for key in before[name]:
      outside = trainable[name][key] == 0
      np.testing.assert_array_equal(
        after[name][key][outside], before[name][key][outside]
      )
      inside = ~outside
      grew += int(
        np.sum(
          np.abs(after[name][key][inside]) > np.abs(before[name][key][inside])
        )
      )
  # No L1 step in Eq. 4: some weights of S move away from zero.
  assert grew > 0
  assert set(record["phases"]) >= {"head", "selective"}
  assert all("validation_loss_before" in p for p in record["phases"].values())


def test_frozen_shared_units_train_no_old_unit():
  context = _SyntheticContext()
  config = _den_config(shared_units="frozen", tau=0.0)
  params, state, _ = _after_task_0(context, config)
  old = jax.tree.map(np.copy, params)
  params, state, record = den.learn_task(
    context, params, state, 1, config, np.random.default_rng(1)
  )
  assert "selective" not in record["phases"] and record["expanded"]
  assert all(v == 0 for v in record["selected_units"].values())
  for name in ("conv_0", "conv_1", "dense_0"):
    n_out = old[name]["bias"].shape[0]
    n_in = old[name]["kernel"].shape[-2]
    np.testing.assert_array_equal(
      params[name]["kernel"][..., :n_in, :n_out], old[name]["kernel"]
    )
    np.testing.assert_array_equal(
      params[name]["bias"][:n_out], old[name]["bias"]
    )


def test_unknown_shared_units_setting_is_rejected():
  with pytest.raises(ValueError, match="shared_units"):
    _den_config(shared_units="partly")


@pytest.mark.parametrize(
  "overrides",
  [
    {"selective_retraining": False},
    {"split": False, "expansion": "constant"},
    {"tau": 10.0, "sigma": 0.0},
  ],
)
def test_ablation_switches_change_the_phases(overrides):
  context = _SyntheticContext()
  config = _den_config(**overrides)
  params, state, _ = _after_task_0(context, config)
  widths = surgery.widths(params, tuple(state["timestamps"]))
  params, state, record = den.learn_task(
    context, params, state, 1, config, np.random.default_rng(1)
  )
  if not config.selective_retraining:
    assert record["selected_units"] == widths
  if config.expansion == "constant":
    # Always k new units, never pruned, and no split without `split`.
    assert record["expanded"] and "pruned_units" not in record
    assert "splits" not in record and "split" not in record["phases"]
    assert record["units_after"] == {n: w + config.k for n, w in widths.items()}
  if config.tau == 10.0:
    # Loss below tau: no expansion; sigma 0 splits every drifted unit, so
    # the old task's timestamped network is back to exactly task 0's.
    assert not record["expanded"] and "expand" not in record["phases"]
    assert record["splits"] and "split" in record["phases"]
    before = context.phases["head"][0]
    for name in widths:
      n_in = before[name]["kernel"].shape[-2]
      np.testing.assert_array_equal(
        params[name]["kernel"][..., :n_in, : widths[name]],
        before[name]["kernel"],
      )
