import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcl.continual import masks, regularisers, sparsity, surgery, timestamped
from mcl.models import ConvClassifier
from mcl.trainer import optimizer, train

FRAMES, MELS = 16, 8


def _network(conv=(3, 4), dense=(5, 6), heads=(2,), seed=0):
  model = ConvClassifier(conv, dense, heads)
  params = model.init(jax.random.key(seed), jnp.zeros((1, FRAMES, MELS)))
  params = jax.device_get(params["params"])
  stamps = {
    name: np.zeros(params[name]["bias"].shape, np.int32)
    for name in model.hidden_layers
  }
  return model, params, stamps


def _inputs(seed=1, n=4):
  return jax.random.normal(jax.random.key(seed), (n, FRAMES, MELS)) * 10


def _outputs(params, task):
  return ConvClassifier.from_params(params).apply(
    {"params": params}, _inputs()
  )[task]


def _task_outputs(params, stamps, layers, task):
  heads = ConvClassifier.from_params(params).heads
  sub = timestamped.timestamped_params(params, stamps, layers, heads, task)
  return np.asarray(_outputs(sub, task))


def _perturb(params, rng, names):
  new = {
    k: {kk: np.array(vv) for kk, vv in v.items()} for k, v in params.items()
  }
  for name in names:
    for key in new[name]:
      new[name][key] = new[name][key] + 0.3 * rng.standard_normal(
        new[name][key].shape
      ).astype(np.float32)
  return new


def test_growth_with_zero_units_keeps_old_outputs():
  model, params, stamps = _network()
  layers = model.hidden_layers
  params = surgery.add_head(
    params, layers[-1], "head_1", 3, np.random.default_rng(0)
  )
  heads = ("head_0", "head_1")
  before = [np.asarray(_outputs(params, t)) for t in (0, 1)]

  grown, grown_stamps = surgery.grow(params, stamps, layers, heads, 2, 1, None)

  assert surgery.widths(grown, layers) == {
    "conv_0": 5,
    "conv_1": 6,
    "dense_0": 7,
    "dense_1": 8,
  }
  assert all((grown_stamps[n][-2:] == 1).all() for n in layers)
  for t in (0, 1):
    # Full grown network: zero units add exact zeros, but the reductions
    # run over more channels, so equal up to float reassociation.
    np.testing.assert_allclose(
      _outputs(grown, t), before[t], rtol=1e-6, atol=1e-6
    )
  # Timestamped inference of task 0 runs the very same arrays: bit-equal.
  np.testing.assert_array_equal(
    _task_outputs(grown, grown_stamps, layers, 0),
    np.asarray(_outputs({k: params[k] for k in (*layers, "head_0")}, 0)),
  )


def test_growth_with_random_units_keeps_timestamped_outputs():
  model, params, stamps = _network()
  layers = model.hidden_layers
  before = _task_outputs(params, stamps, layers, 0)
  grown, grown_stamps = surgery.grow(
    params, stamps, layers, ("head_0",), 3, 1, np.random.default_rng(0)
  )
  assert np.abs(grown["conv_1"]["kernel"][..., -3:]).sum() > 0
  np.testing.assert_array_equal(
    _task_outputs(grown, grown_stamps, layers, 0), before
  )


def test_masked_parameters_are_bit_identical_after_optimizer_steps():
  model, params, stamps = _network(heads=(2, 2))
  layers = model.hidden_layers
  grown, stamps = surgery.grow(
    params, stamps, layers, model.heads, 2, 1, np.random.default_rng(0)
  )
  trainable = masks.new_unit_mask(grown, stamps, layers, 1, "head_1")
  grown_model = ConvClassifier.from_params(grown)
  state = train.TrainState.create(
    grown_model, {"params": grown}, optimizer.direction("adam")
  )
  proximal = train.chain(
    sparsity.l1(1e-3),
    sparsity.unit_groups(1e-3, {n: stamps[n] == 1 for n in layers}),
  )
  for step in range(5):
    batch = {
      "inputs": _inputs(step),
      "label": jnp.array([0, 1, 1, 0]),
      "task": jnp.ones(4, jnp.int32),
    }
    phase = train.Phase(
      learning_rate=jnp.float32(1e-2),
      trainable=trainable,
      penalty=regularisers.l2_pull(grown, 1e-2, names=layers),
      proximal=proximal,
      loss=train.TaskCrossEntropy((1,)),
    )
    state, _ = train.train_step(state, batch, phase, jax.random.key(0))
  after = jax.device_get(state.params)
  changed = 0
  for name in grown:
    for key in grown[name]:
      frozen = trainable[name][key] == 0
      np.testing.assert_array_equal(
        after[name][key][frozen], grown[name][key][frozen]
      )
      changed += int(np.sum(after[name][key] != grown[name][key]))
  assert changed > 0
  # Old task's timestamped network did not move at all.
  np.testing.assert_array_equal(
    _task_outputs(after, stamps, layers, 0),
    _task_outputs(grown, stamps, layers, 0),
  )


def test_split_restores_old_tasks_exactly():
  model, params, stamps = _network()
  layers = model.hidden_layers
  rng = np.random.default_rng(0)
  old = params
  new = surgery.add_head(params, layers[-1], "head_1", 2, rng)
  old_outputs = _task_outputs(old, stamps, layers, 0)
  # Simulate retraining of every shared layer for task 1.
  new = _perturb(new, rng, layers)
  assert not np.allclose(_task_outputs(new, stamps, layers, 0), old_outputs)

  split, split_stamps, records = surgery.split_units(
    new, old, stamps, layers, ("head_0", "head_1"), 1, sigma=0.0
  )

  np.testing.assert_array_equal(
    _task_outputs(split, split_stamps, layers, 0), old_outputs
  )
  assert [r.layer for r in records] == list(layers)
  assert surgery.widths(split, layers) == {
    "conv_0": 6,
    "conv_1": 8,
    "dense_0": 10,
    "dense_1": 12,
  }
  # Every unit drifted and was split, so the duplicates rebuild the
  # retrained network for task 1 exactly.
  np.testing.assert_allclose(
    _task_outputs(split, split_stamps, layers, 1),
    np.asarray(_outputs(new, 1)),
    rtol=1e-5,
    atol=1e-5,
  )


def test_split_only_above_sigma():
  model, params, stamps = _network()
  layers = model.hidden_layers
  new = {
    k: {kk: np.array(vv) for kk, vv in v.items()} for k, v in params.items()
  }
  # Per incoming weight (4 rows + bias): sqrt(4 / 5) and 0.01 sqrt(4 / 5).
  new["dense_0"]["kernel"][:, 2] += 1.0
  new["dense_0"]["kernel"][:, 4] += 0.01
  new = surgery.add_head(new, layers[-1], "head_1", 2, np.random.default_rng(0))
  _, split_stamps, records = surgery.split_units(
    new, params, stamps, layers, ("head_0", "head_1"), 1, sigma=0.5
  )
  assert len(records) == 1
  assert records[0].layer == "dense_0"
  assert records[0].units == (2,)
  assert records[0].drifts[0] == pytest.approx(np.sqrt(4 / 5))
  assert split_stamps["dense_0"].tolist() == [0] * 5 + [1]


def test_subnetwork_search_on_hand_built_sparse_tree():
  _, params, _ = _network(conv=(3, 4), dense=(5,), heads=(2, 3))
  layers = ("conv_0", "conv_1", "dense_0")
  for name in (*layers, "head_1"):
    params[name]["kernel"] = np.zeros_like(params[name]["kernel"])
  # head_1 reads dense_0 units 1 (output 0) and 3 (output 2 only: the
  # reference implementation, reading column 0, would miss it).
  params["head_1"]["kernel"][1, 0] = 1.0
  params["head_1"]["kernel"][3, 2] = -1.0
  # dense_0 unit 1 <- conv_1 channel 0; unit 3 <- channel 2; unit 4 <- 3
  # (unit 4 is not selected, so channel 3 must not be either).
  params["dense_0"]["kernel"][0, 1] = 0.5
  params["dense_0"]["kernel"][2, 3] = 0.5
  params["dense_0"]["kernel"][3, 4] = 0.5
  # conv_1 channel 2 <- conv_0 channel 1 through one kernel tap.
  params["conv_1"]["kernel"][0, 2, 1, 2] = 0.1
  params["conv_1"]["kernel"][1, 1, 2, 3] = 0.1

  selected = masks.select_subnetwork(params, layers, "head_1")

  assert np.flatnonzero(selected["dense_0"]).tolist() == [1, 3]
  assert np.flatnonzero(selected["conv_1"]).tolist() == [0, 2]
  assert np.flatnonzero(selected["conv_0"]).tolist() == [1]
  mask = masks.subnetwork_mask(params, layers, selected, "head_1")
  assert mask["dense_0"]["kernel"][0, 1] == 1
  assert mask["dense_0"]["kernel"][0, 4] == 0
  assert mask["dense_0"]["kernel"][1, 1] == 0
  assert mask["head_0"]["kernel"].sum() == 0
  assert mask["head_1"]["kernel"].all()


def test_group_lasso_prunes_a_zeroed_unit():
  model, params, stamps = _network(heads=(2, 2))
  layers = model.hidden_layers
  grown, stamps = surgery.grow(
    params, stamps, layers, model.heads, 2, 1, np.random.default_rng(0)
  )
  # Give the new units outgoing weights so only the group decides.
  for consumer in (*layers[1:], "head_1"):
    grown[consumer]["kernel"][..., -2:, :] = 0.5
  grown["dense_0"]["kernel"][:, -1] *= 1e-3
  grown["dense_0"]["bias"][-1] = 0.0
  proximal = sparsity.unit_groups(0.1, {n: stamps[n] == 1 for n in layers})
  trainable = masks.new_unit_mask(grown, stamps, layers, 1, "head_1")
  # Unit step sizes (v = 1, learning rate 1): threshold 0.1 sqrt(group size).
  metric = optimizer.AdamMetric(
    jnp.float32(1.0), jax.tree.map(jnp.ones_like, grown)
  )
  shrunk = jax.device_get(proximal(grown, trainable, metric))
  assert np.all(shrunk["dense_0"]["kernel"][:, -1] == 0)
  assert np.any(shrunk["dense_0"]["kernel"][:, -2] != 0)

  pruned, pruned_stamps, removed = surgery.prune_dead_units(
    shrunk, stamps, layers, model.heads, 1
  )

  assert removed == {"conv_0": 0, "conv_1": 0, "dense_0": 1, "dense_1": 0}
  assert pruned["dense_0"]["kernel"].shape[-1] == 5 + 1
  assert pruned["dense_1"]["kernel"].shape[0] == 5 + 1
  assert pruned_stamps["dense_0"].tolist() == [0] * 5 + [1]
  np.testing.assert_array_equal(
    pruned["dense_0"]["kernel"][:, -1], shrunk["dense_0"]["kernel"][:, -2]
  )


def test_l1_proximal_makes_exact_zeros_only_where_trainable():
  _, params, _ = _network()
  trainable = jax.tree.map(np.zeros_like, params)
  trainable["dense_0"]["kernel"][:] = 1
  metric = optimizer.AdamMetric(
    jnp.float32(1.0), jax.tree.map(jnp.ones_like, params)
  )
  out = jax.device_get(sparsity.l1(10.0)(params, trainable, metric))
  assert np.all(out["dense_0"]["kernel"] == 0)
  np.testing.assert_array_equal(
    out["dense_1"]["kernel"], params["dense_1"]["kernel"]
  )
  np.testing.assert_array_equal(
    out["dense_0"]["bias"], params["dense_0"]["bias"]
  )


def test_timestamped_params_rejects_a_non_prefix():
  model, params, stamps = _network()
  stamps = dict(stamps)
  stamps["conv_0"] = np.array([0, 1, 0], np.int32)
  with pytest.raises(ValueError, match="prefix"):
    timestamped.timestamped_params(
      params, stamps, model.hidden_layers, model.heads, 0
    )


def test_pruning_follows_dead_units_back_through_layers():
  model, params, stamps = _network(conv=(2,), dense=(3, 3), heads=(2,))
  layers = model.hidden_layers
  grown, stamps = surgery.grow(
    params, stamps, layers, model.heads, 1, 1, np.random.default_rng(0)
  )
  # New dense_0 unit feeds only the new dense_1 unit, whose head row is 0;
  # the new conv_0 unit feeds only the new dense_0 unit.
  grown["dense_0"]["kernel"][-1, :] = 0.0
  grown["dense_0"]["kernel"][-1, -1] = 1.0
  grown["dense_1"]["kernel"][-1, :] = 0.0
  grown["dense_1"]["kernel"][-1, -1] = 1.0
  grown["head_0"]["kernel"][-1, :] = 0.0

  pruned, pruned_stamps, removed = surgery.prune_dead_units(
    grown, stamps, layers, model.heads, 1
  )

  assert removed == {"conv_0": 1, "dense_0": 1, "dense_1": 1}
  assert surgery.widths(pruned, layers) == surgery.widths(params, layers)
  jax.tree.map(
    np.testing.assert_array_equal, {k: pruned[k] for k in params}, params
  )


def test_growth_with_outgoing_weights_feeds_only_current_readers():
  model, params, stamps = _network(heads=(2,))
  layers = model.hidden_layers
  before = _task_outputs(params, stamps, layers, 0)
  params = surgery.add_head(
    params, layers[-1], "head_1", 2, np.random.default_rng(0)
  )
  heads = ("head_0", "head_1")
  grown, grown_stamps = surgery.grow(
    params, stamps, layers, heads, 2, 1, np.random.default_rng(1),
    outgoing_scale=0.1,
  )  # fmt: skip
  # Rows of the new units: nonzero into the next layer and head 1,
  # zero into head 0, which no task reads them through.
  assert np.all(grown["conv_1"]["kernel"][:, :, -2:, :] != 0)
  assert np.all(grown["head_1"]["kernel"][-2:] != 0)
  assert np.all(grown["head_0"]["kernel"][-2:] == 0)
  np.testing.assert_array_equal(
    _task_outputs(grown, grown_stamps, layers, 0), before
  )
  # Only head 1 reads the new dense_1 units: zero rows there kill them,
  # whatever head 0 holds.
  grown["head_1"]["kernel"][-2:] = 0.0
  grown["head_0"]["kernel"][-2:] = 1.0
  _, _, removed = surgery.prune_dead_units(
    grown, grown_stamps, layers, heads, 1
  )
  assert removed["dense_1"] == 2
  with pytest.raises(ValueError, match="rng"):
    surgery.grow(params, stamps, layers, heads, 2, 1, None, outgoing_scale=1.0)
