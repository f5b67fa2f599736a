"""The paper's DEN (issue 21): S's zeros stay zero, drift against each
unit's own past; and the labelled variants den_split_topk, den_recal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcl.continual import anchors, recalibration, surgery
from mcl.models import ConvClassifier
from tests import test_den_sparsity as synthetic

LAYERS = ("dense_0", "dense_1")


def _selective(config_overrides):
  context = synthetic._SyntheticContext()
  config = synthetic._den_config(**config_overrides)
  params, state, _ = synthetic._after_task_0(context, config)
  synthetic.den.learn_task(
    context, params, state, 1, config, np.random.default_rng(1)
  )
  return context.phases["selective"]


def test_selective_retraining_keeps_every_exact_zero_at_zero():
  # A strong L1 in task 0 leaves exact zeros inside S.
  before, trainable, after = _selective({"l1": 1e-2})
  inside = 0
  for name in ("conv_0", "conv_1", "dense_0"):
    was_zero = before[name]["kernel"] == 0
    inside += int(np.sum(was_zero & (trainable[name]["kernel"] == 0)))
    np.testing.assert_array_equal(after[name]["kernel"][was_zero], 0.0)
  assert inside > 0
  # The old behaviour, kept as a switch, trains them.
  before, _, after = _selective({"l1": 1e-2, "retrain_zeros": True})
  left = sum(
    int(np.sum((before[n]["kernel"] == 0) & (after[n]["kernel"] != 0)))
    for n in ("conv_0", "conv_1", "dense_0")
  )
  assert left > 0


def _mlp(rng, widths=(6, 4)):
  params = {}
  n_in = 5
  for name, width in zip(LAYERS, widths, strict=True):
    params[name] = {
      "kernel": rng.standard_normal((n_in, width)).astype(np.float32),
      "bias": rng.standard_normal(width).astype(np.float32),
    }
    n_in = width
  params["head_0"] = {
    "kernel": rng.standard_normal((n_in, 2)).astype(np.float32),
    "bias": np.zeros(2, np.float32),
  }
  return params


def _moved(params, unit, rms):
  """`params` with dense_0 unit `unit`'s incoming weights and bias all
  moved by `rms` (so its drift per incoming weight is `rms`)."""
  out = jax.tree.map(np.array, params)
  out["dense_0"]["kernel"][:, unit] += rms
  out["dense_0"]["bias"][unit] += rms
  return out


def test_drift_that_adds_up_over_two_tasks_is_split():
  rng = np.random.default_rng(0)
  sigma = 0.1
  task0 = _mlp(rng)
  stamps = {n: np.zeros(task0[n]["bias"].shape, np.int32) for n in LAYERS}
  anchor, anchor_task = anchors.initial(task0, LAYERS)
  heads = ("head_0",)

  def split(now, before, anchor, anchor_task, reference):
    drift = (
      anchors.drift(now, anchor, anchor_task, stamps, LAYERS)
      if reference == "anchor"
      else None
    )
    return surgery.split_units(
      now, before, stamps, LAYERS, heads, 1, sigma, drift=drift
    )

  task1 = _moved(task0, 2, 0.6 * sigma)  # Below sigma: no split.
  _, _, records = split(task1, task0, anchor, anchor_task, "anchor")
  assert records == []
  anchor, anchor_task = anchors.update(
    anchor, anchor_task, task1, stamps, LAYERS, 1, {}
  )
  np.testing.assert_array_equal(
    anchor["dense_0"]["kernel"], task0["dense_0"]["kernel"]
  )
  task2 = _moved(task1, 2, 0.6 * sigma)  # 0.6 sigma again: 1.2 in all.
  grown, _, records = split(task2, task1, anchor, anchor_task, "anchor")
  assert [(r.layer, r.units) for r in records] == [("dense_0", (2,))]
  assert records[0].drifts[0] == pytest.approx(1.2 * sigma, rel=1e-5)
  # Restored to W^(t-1), the duplicate carries the new weights.
  np.testing.assert_array_equal(
    grown["dense_0"]["kernel"][:, 2], task1["dense_0"]["kernel"][:, 2]
  )
  np.testing.assert_array_equal(
    grown["dense_0"]["kernel"][:, -1], task2["dense_0"]["kernel"][:, 2]
  )
  # Against W^(t-1) only (the old behaviour) the drift is never seen.
  _, _, records = split(task2, task1, anchor, anchor_task, "previous")
  assert records == []


def test_a_split_unit_is_anchored_anew_and_duplicates_at_their_task():
  rng = np.random.default_rng(1)
  task0 = _mlp(rng)
  stamps = {n: np.zeros(task0[n]["bias"].shape, np.int32) for n in LAYERS}
  anchor, anchor_task = anchors.initial(task0, LAYERS)
  task1 = _moved(task0, 1, 1.0)
  grown, stamps1, records = surgery.split_units(
    task1, task0, stamps, LAYERS, ("head_0",), 1, 0.5
  )
  anchor, anchor_task = anchors.update(
    anchor, anchor_task, grown, stamps1, LAYERS, 1,
    {r.layer: r.units for r in records},
  )  # fmt: skip
  assert anchor_task["dense_0"].tolist() == [0, 1, 0, 0, 0, 0, 1]
  assert anchor_task["dense_1"].tolist() == [0, 0, 0, 0]
  np.testing.assert_array_equal(
    anchor["dense_0"]["kernel"], grown["dense_0"]["kernel"]
  )


def test_split_top_k_splits_the_most_drifted_units_whatever_sigma():
  rng = np.random.default_rng(2)
  task0 = _mlp(rng)
  stamps = {n: np.zeros(task0[n]["bias"].shape, np.int32) for n in LAYERS}
  moved = _moved(_moved(_moved(task0, 0, 1e-4), 3, 3e-4), 5, 2e-4)
  _, _, records = surgery.split_units(
    moved, task0, stamps, LAYERS, ("head_0",), 1, 1.0, top_k=2
  )
  # sigma 1.0 splits nothing; the top 2 of dense_0 are units 3 and 5, and
  # dense_1's units did not move, so none of them is split.
  assert [(r.layer, r.units) for r in records] == [("dense_0", (3, 5))]


def _clips(rng, n=6, chunks=3, frames=16, mels=8):
  return [
    {
      "inputs": rng.standard_normal((n, chunks, frames, mels)).astype(
        np.float32
      ),
      "mask": np.array([1, 1, 1, 1, 1, 0], np.float32),
    }
  ]


def _conv_params(seed=0):
  model = ConvClassifier((3,), (4,), (2, 3))
  params = model.init(jax.random.key(seed), jnp.zeros((1, 16, 8)))["params"]
  return jax.tree.map(np.array, params)


def test_recalibration_removes_a_constant_logit_offset_exactly():
  rng = np.random.default_rng(3)
  before = _conv_params()
  after = jax.tree.map(np.array, before)
  after["head_0"]["bias"] += np.array([1.3, -0.4], np.float32)
  clips = _clips(rng)
  offset = recalibration.head_offset(before, after, 0, clips)
  np.testing.assert_allclose(offset, [1.3, -0.4], rtol=1e-5)
  fixed = recalibration.recalibrate(after, "head_0", offset)
  np.testing.assert_allclose(
    fixed["head_0"]["bias"], before["head_0"]["bias"], atol=1e-6
  )
  assert fixed["head_1"] is after["head_1"]  # Other heads untouched.


def test_recalibration_removes_a_constant_shift_of_the_heads_input():
  rng = np.random.default_rng(4)
  before = _conv_params(1)
  before["dense_0"]["bias"] += 50.0  # Every ReLU active: linear there.
  after = jax.tree.map(np.array, before)
  shift = np.array([0.5, -0.2, 0.3, 0.1], np.float32)
  after["dense_0"]["bias"] += shift  # The head's input moves by `shift`.
  clips = _clips(rng)
  offset = recalibration.head_offset(before, after, 1, clips)
  np.testing.assert_allclose(
    offset, shift @ before["head_1"]["kernel"], rtol=1e-4, atol=1e-5
  )
  fixed = recalibration.recalibrate(after, "head_1", offset)
  x = clips[0]["inputs"][:, 0]
  model = ConvClassifier.from_params(before)
  want = model.apply({"params": before}, x)[1]
  got = model.apply({"params": fixed}, x)[1]
  np.testing.assert_allclose(got, want, atol=1e-4)


class _ContextWithClips(synthetic._SyntheticContext):
  """The synthetic context, with training clips for GPM and den_recal."""

  def training_clips(self, task, num_chunks):
    rng = np.random.default_rng(task)
    return _clips(rng, n=6, chunks=num_chunks)


def test_den_gpm_keeps_selective_retraining_off_the_stored_bases():
  context = _ContextWithClips()
  config = synthetic._den_config(projection="gpm", gpm_threshold=0.9)
  params, state, _ = synthetic._after_task_0(context, config)
  assert set(state["bases"]) == {"conv_0", "conv_1", "dense_0"}
  _, state1, _ = synthetic.den.learn_task(
    context, params, state, 1, config, np.random.default_rng(1)
  )
  before, _, after = context.phases["selective"]
  for name, basis in state["bases"].items():
    delta = np.concatenate(
      [
        (after[name]["kernel"] - before[name]["kernel"]).reshape(
          -1, before[name]["bias"].shape[0]
        ),
        (after[name]["bias"] - before[name]["bias"])[None],
      ]
    )
    assert np.abs(delta).max() > 0  # It trained,
    residual = np.linalg.norm(basis.T @ delta) / np.linalg.norm(delta)
    assert residual < 1e-4, name  # off the old activations' subspace.
  # Task 1's activations enlarge the memory.
  assert all(
    state1["bases"][n].shape[1] >= state["bases"][n].shape[1]
    for n in state["bases"]
  )


def test_den_recal_records_and_applies_old_heads_offsets():
  context = _ContextWithClips()
  # No split (sigma 10): the drift reaches head 0's network.
  config = synthetic._den_config(recalibrate=True, sigma=10.0)
  params, state, _ = synthetic._after_task_0(context, config)
  new, _, record = synthetic.den.learn_task(
    context, params, state, 1, config, np.random.default_rng(1)
  )
  (offset,) = record["recalibration"].values()
  assert np.abs(offset).max() > 0
  # Without recalibration the run is the same but for head 0's bias.
  context = _ContextWithClips()
  plain = synthetic._den_config(sigma=10.0)
  params, state, _ = synthetic._after_task_0(context, plain)
  old, _, _ = synthetic.den.learn_task(
    context, params, state, 1, plain, np.random.default_rng(1)
  )
  np.testing.assert_allclose(
    new["head_0"]["bias"], old["head_0"]["bias"] - np.array(offset), atol=1e-6
  )
