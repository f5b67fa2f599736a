import jax
import jax.numpy as jnp
import numpy as np

from mcl.continual import surgery
from mcl.models import ConvClassifier
from mcl.trainer import checkpointing


def test_checkpoint_restores_into_grown_shapes(tmp_path):
  model = ConvClassifier((3, 4), (5,), (2,))
  params = jax.device_get(
    model.init(jax.random.key(0), jnp.zeros((1, 16, 8)))["params"]
  )
  stamps = {
    n: np.zeros(params[n]["bias"].shape, np.int32) for n in model.hidden_layers
  }
  grown, stamps = surgery.grow(
    params,
    stamps,
    model.hidden_layers,
    model.heads,
    3,
    1,
    np.random.default_rng(0),
  )
  grown_model = ConvClassifier.from_params(grown)
  checkpoints = checkpointing.TaskCheckpoints(str(tmp_path / "ckpt"))
  checkpoints.save(
    0, params, {"architecture": checkpointing.architecture(model)}
  )
  checkpoints.save(
    1,
    grown,
    {
      "architecture": checkpointing.architecture(grown_model),
      "timestamps": {k: v.tolist() for k, v in stamps.items()},
    },
  )
  checkpoints.close()

  reopened = checkpointing.TaskCheckpoints(str(tmp_path / "ckpt"))
  assert reopened.tasks() == [0, 1]
  restored, metadata = reopened.restore(
    1, checkpointing.abstract_params(ConvClassifier, (1, 16, 8))
  )
  assert metadata["architecture"]["conv_widths"] == [6, 7]
  assert metadata["timestamps"]["dense_0"] == [0] * 5 + [1] * 3
  assert jax.tree.structure(restored) == jax.tree.structure(grown)
  jax.tree.map(np.testing.assert_array_equal, restored, grown)
  first, _ = reopened.restore(
    0, checkpointing.abstract_params(ConvClassifier, (1, 16, 8))
  )
  assert first["conv_0"]["kernel"].shape == (3, 3, 1, 3)
