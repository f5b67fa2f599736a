"""The one step: array-valued phase terms, and sharding over 8 devices."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from mcl.continual import method, regularisers, sparsity
from mcl.models import ConvClassifier
from mcl.trainer import optimizer, train

FRAMES, MELS = 16, 8


def _continual_setup():
  model = ConvClassifier(conv_widths=(4, 6), dense_widths=(5,), head_sizes=(3,))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, FRAMES, MELS)).astype(np.float32)
  batch = {
    "inputs": x,
    "label": rng.integers(0, 3, 16).astype(np.int32),
    "task": np.zeros(16, np.int32),
  }
  params = jax.device_get(model.init(jax.random.key(0), x[:1])["params"])
  return model, params, batch


def _phase(params, anchor, strength, l1):
  trainable = method.ones(params)
  trainable["dense_0"]["kernel"][:2] = 0.0  # Some frozen entries.
  return train.Phase(
    learning_rate=jnp.float32(1e-2),
    trainable=trainable,
    penalty=regularisers.l2_pull(anchor, strength, keys=("kernel", "bias")),
    proximal=train.chain(
      sparsity.l1(l1), sparsity.connection_groups(l1, ("conv_0", "conv_1"))
    ),
    loss=train.TaskCrossEntropy((0,)),
  )


def test_phases_with_new_coefficients_and_anchors_reuse_the_compiled_step():
  model, params, batch = _continual_setup()
  other = jax.tree.map(lambda v: v + 0.5, params)
  tx = optimizer.direction("adam")
  before = train.train_step._cache_size()
  outs = []
  for anchor, strength, l1 in ((params, 0.0, 0.0), (other, 10.0, 100.0)):
    state = train.TrainState.create(model, {"params": params}, tx)
    for _ in range(2):
      state, metrics = train.train_step(
        state, batch, _phase(params, anchor, strength, l1), jax.random.key(0)
      )
    outs.append((jax.device_get(state.params), float(metrics["loss"])))
  assert train.train_step._cache_size() - before == 1
  # The arguments took effect: the pull and the thresholds moved things.
  assert outs[1][1] > outs[0][1] + 1.0
  kernel = [o[0]["conv_1"]["kernel"] for o in outs]
  assert np.mean(kernel[1] == 0) > np.mean(kernel[0] == 0)
  # Frozen entries stay bit-identical under every term.
  for out, _ in outs:
    np.testing.assert_array_equal(
      out["dense_0"]["kernel"][:2], params["dense_0"]["kernel"][:2]
    )


# Runs under 8 simulated CPU devices; prints nothing on success.
_SHARDED = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np
  import flax.linen as nn
  from mcl.trainer import optimizer, parallel, train
  from tests import test_train as t

  assert jax.device_count() == 8, jax.devices()
  mesh = parallel.data_mesh()

  def compare(state, batch, phase, rng):
    host = jax.device_get(state)  # The step donates its state.
    single, m1 = train.train_step(
      jax.tree.map(jnp.array, host), batch, phase, rng)
    single = jax.device_get(single)
    state8 = parallel.replicate(host, mesh)
    sharded, m8 = train.train_step(
      state8, parallel.shard_batch(batch, mesh),
      parallel.replicate(phase, mesh), rng,
    )
    assert len(jax.tree.leaves(sharded.params)[0].sharding.device_set) == 8
    sharded = jax.device_get(sharded)
    for a, b in zip(jax.tree.leaves(single.params),
                    jax.tree.leaves(sharded.params)):
      np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(single.batch_stats),
                    jax.tree.leaves(sharded.batch_stats)):
      np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-6)

  # Continual: mask, L2 pull and the L1 + group proximal map.
  model, params, batch = t._continual_setup()
  anchor = jax.tree.map(lambda v: v + 0.1, params)
  phase = t._phase(params, anchor, 1.0, 1e-2)
  state = train.TrainState.create(
    model, {"params": params}, optimizer.direction("adam"))
  compare(state, batch, phase, jax.random.key(0))

  # Tagging: BatchNorm statistics and dropout, Nesterov SGD with decay.
  class Tagger(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      x = nn.Dense(16)(x.reshape(x.shape[0], -1))
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      x = nn.Dropout(0.3, deterministic=not train)(nn.relu(x))
      return nn.Dense(4)(x)

  tagger = Tagger()
  rng = np.random.default_rng(1)
  batch = {"inputs": rng.normal(size=(16, 6)).astype(np.float32),
           "tags": (rng.uniform(size=(16, 4)) < 0.3).astype(np.float32)}
  variables = tagger.init(jax.random.key(1), batch["inputs"][:1], train=False)
  state = train.TrainState.create(
    tagger, variables, optimizer.direction("sgd", 1e-4, 0.9))
  phase = train.Phase(jnp.float32(0.1), loss=train.TagBinaryCrossEntropy())
  compare(state, batch, phase, jax.random.key(2))

  try:
    parallel.shard_batch({"inputs": np.zeros((12, 3))}, mesh)
  except ValueError as e:
    assert "12 examples does not divide over the 8 devices" in str(e), e
  else:
    raise AssertionError("a batch of 12 was sharded over 8 devices")
  """
)


def test_sharded_step_equals_the_single_device_step_on_8_devices(forked):
  # A process of its own (forked: tests/forks.py) with 8 CPU devices; XLA
  # read XLA_FLAGS when the server imported jax, so JAX's config asks.
  run = forked.run(
    "import jax\njax.config.update('jax_num_cpu_devices', 8)\n" + _SHARDED,
    timeout=600,
  )
  assert run.returncode == 0, run.stderr[-3000:]
