"""Each baseline's defining property, on synthetic data and tiny widths."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mcl.configs import test as test_config
from mcl.continual import (
  baselines,
  columns,
  joint,
  phase,
  regularisers,
  replay,
)
from mcl.datasets import tasks
from mcl.models import ConvClassifier

FRAMES, MELS = 16, 8
TASKS = [
  tasks.Task(i, (f"a{i}", f"b{i}"), (2 * i, 2 * i + 1)) for i in range(3)
]


def _band(task: int) -> int:
  return (task % (MELS // 2)) * 2


def _clips(task: int, n: int, chunks: int, seed: int) -> dict:
  """Synthetic clips whose class sets the sign of a band of the log-mel."""
  rng = np.random.default_rng([seed, task])
  label = rng.integers(0, 2, n).astype(np.int32)
  x = rng.standard_normal((n, chunks, FRAMES, MELS)).astype(np.float32)
  band = _band(task)
  x[..., band : band + 2] += (2 * label - 1)[:, None, None, None] * 3
  return {"inputs": x, "label": label, "mask": np.ones(n, np.float32)}


class SyntheticContext:
  """`phase.Context` on synthetic data; records every training batch."""

  learning_rate = 1e-2
  fit_config = phase.FitConfig(
    learning_rate=1e-2, max_steps=4, eval_every=2, patience=2
  )

  def __init__(self):
    self.task = None
    self.seen_batches = []

  def batches(self, task):
    step = 0
    while True:
      clips = _clips(task, 8, 1, seed=step)
      step += 1
      yield {
        "inputs": clips["inputs"][:, 0],
        "label": clips["label"],
        "task": np.full(8, task, np.int32),
      }

  def joint_batches(self):
    streams = [self.batches(t.index) for t in TASKS]
    while True:
      parts = [next(s) for s in streams]
      yield {k: np.concatenate([p[k][:3] for p in parts]) for k in parts[0]}

  def validation(self, task):
    return [_clips(task, 4, 2, seed=100)]

  def training_clips(self, task, num_chunks):
    return [_clips(task, 6, num_chunks, seed=200)]

  def phase(self, params, trainable, name, *, batches=None, heads=None,
            validation=None, fit_config=None, **kwargs):  # fmt: skip
    stream = batches or self.batches(self.task)

    def recorded():
      for batch in stream:
        self.seen_batches.append(batch)
        yield batch

    model_class = (
      ConvClassifier if "conv_0" in params else columns.ProgressiveNet
    )
    return phase.fit_phase(
      model_class.from_params(params), params, trainable,
      heads or (self.task,), recorded(),
      validation or {self.task: self.validation(self.task)},
      fit_config or self.fit_config, **kwargs,
    )  # fmt: skip


def _config(method: str) -> ml_collections.ConfigDict:
  config = test_config.get_config()
  config.method = method
  return config


def _learn(learner, tasks_to_learn, context=None):
  """Runs a method over tasks like the runner; returns params/state by task."""
  context = context or SyntheticContext()
  params, state = learner.init(jax.random.key(0), TASKS[0])
  history = []
  for task in tasks_to_learn:
    rng = np.random.default_rng(task.index)
    if task.index:
      params, state = learner.begin_task(params, state, task, rng)
    context.task = task.index
    params, state, _ = learner.learn_task(context, params, state, task, rng)
    history.append((params, state))
  return history, context


def _outputs(network, x):
  return np.asarray(
    network.model.apply({"params": network.params}, x)[network.head]
  )


@pytest.mark.parametrize("cls", [columns.STL, columns.Progressive])
def test_columns_leave_old_tasks_outputs_bit_identical(cls):
  learner = cls.from_config(_config("stl"), (1, FRAMES, MELS))
  history, _ = _learn(learner, TASKS)
  x = jnp.asarray(_clips(0, 5, 1, seed=7)["inputs"][:, 0])
  for j in range(2):
    before = _outputs(learner.network(*history[j], j), x)
    after = _outputs(learner.network(*history[-1], j), x)
    np.testing.assert_array_equal(after, before)
  # Task 2 trained something: its column moved from initialisation.
  last = learner.network(*history[-1], 2)
  lateral = any(n.startswith("lateral_") for n in last.params)
  assert lateral == (cls is columns.Progressive)
  if cls is columns.STL:  # Column 2 alone: no other column's weights.
    assert not any(n.endswith(("_col1", "_col2")) for n in last.params)


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_with_distance():
  model = ConvClassifier((2,), (3,), (2,))
  params = jax.device_get(
    model.init(jax.random.key(0), jnp.zeros((1, FRAMES, MELS)))["params"]
  )
  batches = [
    {"inputs": _clips(0, 8, 1, seed=s)["inputs"][:, 0]} for s in range(2)
  ]
  fisher = regularisers.diagonal_fisher(model, params, 0, batches)
  leaves = jax.tree.leaves(fisher)
  assert all(np.all(v >= 0) for v in leaves)
  assert sum(float(v.sum()) for v in leaves) > 0
  penalty = regularisers.ewc_penalty({0: params}, {0: fisher}, strength=10.0)

  def at(distance):
    moved = jax.tree.map(lambda v: v + distance, params)
    return float(penalty(moved, None, None))

  assert at(0.0) == 0.0
  assert 0 < at(0.1) < at(0.2) < at(0.4)
  # Quadratic: doubling the distance multiplies the penalty by 4.
  assert at(0.2) == pytest.approx(4 * at(0.1), rel=1e-4)


def test_replay_memory_is_bounded_and_holds_only_earlier_tasks():
  memory, capacity = None, 7
  rng = np.random.default_rng(0)
  for task in range(5):
    clips = _clips(task, 6, 2, seed=task)
    memory = replay.update_memory(
      memory, clips["inputs"], clips["label"], task, capacity, rng
    )
    assert memory["label"].size <= capacity
    assert set(memory["task"].tolist()) == set(range(task + 1))
    counts = np.bincount(memory["task"])
    assert counts.max() - counts.min() <= 1  # Balanced over tasks.
    # Stored chunks are real clips of their task (the class band is set).
    for i in range(memory["label"].size):
      t = memory["task"][i]
      band = memory["inputs"][i, :, :, _band(t) : _band(t) + 2].mean()
      assert np.sign(band) == 2 * memory["label"][i] - 1
  with pytest.raises(ValueError, match="already in the memory"):
    replay.update_memory(memory, clips["inputs"], clips["label"], 2, 7, rng)


def test_replay_trains_on_memory_of_earlier_tasks_only():
  config = _config("replay")
  config.replay.memory_clips = 4
  learner = replay.Replay.from_config(config, (1, FRAMES, MELS))
  context = SyntheticContext()
  history, _ = _learn(learner, TASKS[:2], context)
  task1_batches = [b for b in context.seen_batches if 1 in b["task"]]
  replayed = np.concatenate([b["task"] for b in task1_batches])
  assert set(replayed.tolist()) == {0, 1}
  assert all(
    (b["task"] == 0).sum() == config.replay.batch_size for b in task1_batches
  )
  memory = history[-1][1]["memory"]
  assert memory["label"].size <= 4 and set(memory["task"].tolist()) == {0, 1}


def test_joint_trains_on_every_tasks_data():
  learner = joint.Joint.from_config(_config("joint"), (1, FRAMES, MELS))
  context = SyntheticContext()
  params, state = learner.init(jax.random.key(0), TASKS[0])
  for task in TASKS[1:]:
    params, state = learner.begin_task(
      params, state, task, np.random.default_rng(0)
    )
  context.task = 2
  trained, _, _ = learner.learn_task(
    context, params, state, TASKS[2], np.random.default_rng(0)
  )
  seen = np.concatenate([b["task"] for b in context.seen_batches])
  assert set(seen.tolist()) == {0, 1, 2}
  for t in range(3):  # Every head learnt from its task's chunks.
    assert np.any(
      trained[f"head_{t}"]["kernel"] != params[f"head_{t}"]["kernel"]
    )
  # Budget: T times one task's steps.
  assert len(context.seen_batches) <= 3 * context.fit_config.max_steps


def test_finetune_moves_the_shared_trunk_and_l2_pulls_it_back():
  moved = {}
  for cls in (baselines.FineTune, baselines.L2):
    config = _config("l2")
    config.l2.strength = 10.0
    history, _ = _learn(cls.from_config(config, (1, FRAMES, MELS)), TASKS[:2])
    (p0, _), (p1, _) = history
    moved[cls] = sum(
      float(np.sum(np.square(p1[n]["kernel"] - p0[n]["kernel"])))
      for n in ("conv_0", "conv_1", "dense_0")
    )
  assert moved[baselines.FineTune] > 0
  assert moved[baselines.L2] < moved[baselines.FineTune]


def test_lwf_distillation_is_smallest_at_the_old_outputs():
  model = ConvClassifier((2,), (3,), (2, 2))
  params = jax.device_get(
    model.init(jax.random.key(0), jnp.zeros((1, FRAMES, MELS)))["params"]
  )
  old = {n: g for n, g in params.items() if n != "head_1"}
  penalty = regularisers.lwf_distillation(
    ConvClassifier.from_params(old), old, 1, strength=1.0, temperature=2.0
  )
  batch = {"inputs": jnp.asarray(_clips(0, 4, 1, seed=0)["inputs"][:, 0])}
  same = model.apply({"params": params}, batch["inputs"])
  other = jax.tree.map(lambda v: v * 1.5, params)
  changed = model.apply({"params": other}, batch["inputs"])
  # Cross-entropy to its own soft targets is their entropy, the minimum.
  assert float(penalty(params, batch, same)) < float(
    penalty(other, batch, changed)
  )
