"""Capacity slots: padded DEN networks equal the sliced ones, free slots
stay zero through a phase, and a 5-task DEN run compiles each phase kind
of `train_step` once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcl.configs import permuted_digits as digits_config
from mcl.continual import regularisers, slots, sparsity, surgery, timestamped
from mcl.experiments.continual import runner
from mcl.models import ConvClassifier, head_name
from mcl.trainer import optimizer, train

LAYERS = ("conv_0", "conv_1", "dense_0")
SHAPE = (3, 12, 10)


def _grown_network():
  """A tiny conv network after three tasks of growth and one split."""
  model = ConvClassifier(conv_widths=(3, 5), dense_widths=(4,), head_sizes=(2,))
  params = jax.device_get(model.init(jax.random.key(0), jnp.zeros(SHAPE)))
  params = params["params"]
  stamps = {n: np.zeros(params[n]["bias"].shape, np.int32) for n in LAYERS}
  rng = np.random.default_rng(0)
  for task in (1, 2):
    params = surgery.add_head(params, "dense_0", head_name(task), 3, rng)
    heads = tuple(head_name(j) for j in range(task + 1))
    old = params
    params, stamps = surgery.grow(
      params, stamps, LAYERS, heads, 2, task, rng, outgoing_scale=0.5
    )
    # Drift every old unit a little, then split the most drifted one.
    params = {
      n: {k: v + 0.01 * rng.standard_normal(v.shape).astype(np.float32)
          for k, v in g.items()}
      for n, g in params.items()
    }  # fmt: skip
    params, stamps, _ = surgery.split_units(
      params, old, stamps, LAYERS, heads, task, sigma=0.0, top_k=1
    )
  return params, stamps


def _plan(params, factor=2.0):
  return slots.plan(
    params, LAYERS, {"conv_0": 3, "conv_1": 5, "dense_0": 4}, (2, 3, 3, 2),
    factor,
  )  # fmt: skip


def test_capacity_is_geometric_and_exact_for_layers_that_do_not_grow():
  assert slots.capacity(8, 8, None) == 8
  assert slots.capacity(8, 9, 2.0) == 16
  assert slots.capacity(8, 16, 2.0) == 16
  assert slots.capacity(8, 17, 2.0) == 32
  assert slots.capacity(8, 100, 1.5) == 192  # 12, 24, 48, 96, 192.
  with pytest.raises(ValueError, match=">= 1"):
    slots.capacity(8, 8, 0.5)


def test_padded_network_equals_the_sliced_one_for_every_task():
  params, stamps = _grown_network()
  plan = _plan(params)
  assert surgery.widths(params, LAYERS) == {
    "conv_0": 9,
    "conv_1": 11,
    "dense_0": 10,
  }
  assert plan.units == (12, 20, 16)  # 2x the initial widths, doubled.
  padded = slots.pad(params, plan)
  # Heads of tasks not begun are zero groups; free slots are zero.
  assert np.all(padded["head_3"]["kernel"] == 0)
  for name, width in surgery.widths(params, LAYERS).items():
    assert np.all(padded[name]["kernel"][..., width:] == 0)
    assert np.all(padded[name]["bias"][width:] == 0)
  inputs = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
  heads = tuple(head_name(j) for j in range(3))
  for task in range(3):
    sliced = timestamped.timestamped_params(params, stamps, LAYERS, heads, task)
    expected = ConvClassifier.from_params(sliced).apply(
      {"params": sliced}, inputs
    )[task]
    masked = slots.timestamped(padded, slots.unit_mask(stamps, plan, task))
    got = ConvClassifier.from_params(masked).apply({"params": masked}, inputs)
    assert got[task].shape == expected.shape
    np.testing.assert_allclose(got[task], expected, atol=1e-6, rtol=0)
  # The live part reads back unchanged.
  back = slots.unpad(padded, params)
  for name, group in params.items():
    for k, v in group.items():
      np.testing.assert_array_equal(back[name][k], v)


def test_free_slots_stay_exact_zeros_through_a_phase():
  params, stamps = _grown_network()
  plan = _plan(params)
  padded = slots.pad(params, plan)
  ones = jax.tree.map(lambda v: np.ones(v.shape, np.float32), params)
  trainable = slots.pad(ones, plan)
  anchor = {n: params[n] for n in LAYERS}
  penalty = slots.pad_term(
    regularisers.l2_pull(anchor, 1.0, names=LAYERS, keys=("kernel", "bias")),
    plan,
  )
  fresh = {n: stamps[n] == 2 for n in LAYERS}
  proximal = slots.pad_term(
    train.chain(sparsity.l1(1e-3), sparsity.unit_groups(1e-3, fresh)), plan
  )
  model = ConvClassifier.from_params(padded)
  state = train.TrainState.create(
    model, {"params": padded}, optimizer.direction("adam")
  )
  phase = train.Phase(
    learning_rate=jnp.float32(1e-2),
    trainable=trainable,
    penalty=penalty,
    proximal=proximal,
    loss=train.TaskCrossEntropy(plan.heads),
  )
  rng = np.random.default_rng(2)
  for _ in range(5):
    batch = {
      "inputs": rng.standard_normal(SHAPE).astype(np.float32),
      "label": np.array([0, 1, 2], np.int32),
      "task": np.array([2, 2, 2], np.int32),
    }
    state, _ = train.train_step(state, batch, phase, jax.random.key(0))
  trained = jax.device_get(state.params)
  live = surgery.widths(params, LAYERS)
  for i, name in enumerate(LAYERS):
    kernel, width = trained[name]["kernel"], live[name]
    assert np.all(kernel[..., width:] == 0), name
    assert np.all(trained[name]["bias"][width:] == 0), name
    if i:
      assert np.all(kernel[..., live[LAYERS[i - 1]] :, :] == 0), name
  assert np.all(trained["head_3"]["kernel"] == 0)
  assert np.all(trained["head_2"]["kernel"][live["dense_0"] :] == 0)
  # The live part did train.
  moved = slots.unpad(trained, params)
  assert not np.allclose(moved["head_2"]["kernel"], params["head_2"]["kernel"])


def test_padded_training_equals_compact_training_up_to_rounding():
  params, _ = _grown_network()
  plan = _plan(params)
  ones = jax.tree.map(lambda v: np.ones(v.shape, np.float32), params)
  anchor = {n: params[n] for n in LAYERS}
  pull = regularisers.l2_pull(
    anchor, 1.0, names=LAYERS, keys=("kernel", "bias")
  )
  trained = []
  for tree, mask, penalty, heads in (
    (params, ones, pull, (2,)),
    (slots.pad(params, plan), slots.pad(ones, plan), slots.pad_term(pull, plan),
     plan.heads),
  ):  # fmt: skip
    state = train.TrainState.create(
      ConvClassifier.from_params(tree), {"params": tree},
      optimizer.direction("adam"),
    )  # fmt: skip
    phase = train.Phase(
      learning_rate=jnp.float32(1e-2),
      trainable=mask,
      penalty=penalty,
      loss=train.TaskCrossEntropy(heads),
    )
    rng = np.random.default_rng(3)
    for _ in range(5):
      batch = {
        "inputs": rng.standard_normal(SHAPE).astype(np.float32),
        "label": np.array([0, 1, 2], np.int32),
        "task": np.array([2, 2, 2], np.int32),
      }
      state, _ = train.train_step(state, batch, phase, jax.random.key(0))
    trained.append(jax.device_get(state.params))
  compact, padded = trained
  live = slots.unpad(padded, params)
  for name, group in compact.items():
    for k, v in group.items():
      np.testing.assert_allclose(live[name][k], v, atol=1e-5, err_msg=name)


def test_a_growing_den_run_compiles_each_phase_kind_once(
  tmp_path, compilations
):
  config = digits_config.get_config()
  config.data.num_tasks = 5
  config.model.widths.conv_widths = (4, 8)
  config.model.widths.dense_widths = (8,)
  config.train.batch_size = 16
  config.train.eval_batch_size = 1024  # One evaluation batch per split.
  config.train.fit.max_steps = 6
  config.train.fit.eval_every = 3
  config.train.fit.patience = 2
  config.den.k = 2
  config.den.tau = -1.0  # Every task expands ...
  config.den.split_top_k = 1  # ... and splits a unit per layer.
  config.den.capacity = 4.0
  jax.clear_caches()
  out = runner.run(config, str(tmp_path))
  records = out["task_records"][1:]
  assert all(r["expanded"] for r in records)
  assert all(r["splits"] for r in records)
  units = out["units_per_layer"]
  assert units[-1]["conv_0"] > units[1]["conv_0"] > units[0]["conv_0"]
  # One trace per phase kind: sparse, head, selective, expand, split.
  assert 1 <= compilations["jit(train_step)"] <= 5, compilations
  # Scoring and validation of the padded network: one compilation; the
  # random-init reference (its own shapes) another; class-incremental
  # scoring's chunk logits one.
  assert 1 <= compilations["jit(_clip_log_probabilities)"] <= 2, compilations
  assert compilations["jit(_forward)"] <= 1, compilations


def test_inspect_shows_live_units_in_their_slots(finished_run):
  from mcl import inspect as mcl_inspect

  config, workdir, results = finished_run
  params, metadata = mcl_inspect.load(workdir)
  assert metadata["slots_per_layer"] == {
    "conv_0": 8,
    "conv_1": 16,
    "dense_0": 16,
  }
  report = mcl_inspect.format_report(params, metadata)
  units = results["units_per_layer"][-1]["conv_0"]
  assert f"conv_0: {units:4d} units of 8 slots, by timestamp" in report
  # The checkpoint holds the live units only: free slots are not saved.
  assert params["conv_0"]["bias"].shape == (units,)
