"""Permuted digits: data, flattening models, and tiny runs of the runner."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn import datasets as sk_datasets

from mcl.configs import permuted_digits as digits_config
from mcl.datasets import from_config, permuted_digits
from mcl.experiments.continual import runner
from mcl.models import ConvClassifier, ProgressiveNet


@pytest.fixture(scope="module")
def digits():
  return from_config.build(digits_config.get_config())


def test_permutations_are_fixed_by_the_seed_and_task_0_is_the_identity():
  p = permuted_digits.permutations(10, 64, seed=0)
  assert p.shape == (10, 64)
  np.testing.assert_array_equal(p[0], np.arange(64))
  for row in p:
    np.testing.assert_array_equal(np.sort(row), np.arange(64))
  assert len({tuple(row) for row in p}) == 10  # All tasks differ.
  np.testing.assert_array_equal(p, permuted_digits.permutations(10, 64, 0))
  assert not np.array_equal(p[1:], permuted_digits.permutations(10, 64, 1)[1:])
  with pytest.raises(ValueError, match="num_tasks"):
    permuted_digits.permutations(0, 64, 0)


def test_splits_are_disjoint_stratified_and_cover_the_digits(digits):
  target = sk_datasets.load_digits().target
  index = permuted_digits.stratified_split(target, 0.2, 0.2, seed=0)
  assert {k: v.size for k, v in index.items()} == {
    "train": 1079,
    "validation": 359,
    "test": 359,
  }
  together = np.concatenate(list(index.values()))
  np.testing.assert_array_equal(np.sort(together), np.arange(target.size))
  total = np.bincount(target)
  for name, share in (("train", 0.6), ("validation", 0.2), ("test", 0.2)):
    # Every digit (174-183 images) gets its share, within one image.
    counts = np.bincount(target[index[name]], minlength=10)
    assert np.all(np.abs(counts - share * total) <= 1), name
    # The data source holds exactly these images, scaled to [0, 1].
    images = digits.splits[name]
    np.testing.assert_array_equal(images.label, target[index[name]])
    assert images.image.min() >= 0 and images.image.max() == 1
  other = permuted_digits.stratified_split(target, 0.2, 0.2, seed=1)
  assert not np.array_equal(other["test"], index["test"])
  with pytest.raises(ValueError, match="fractions"):
    permuted_digits.stratified_split(target, 0.5, 0.5, seed=0)


def test_a_task_permutes_the_pixels_of_the_same_images(digits):
  # Equal seeds draw equal images in equal order; only pixels move.
  plain = next(digits.train_batches(0, seed=5))
  permuted = next(digits.train_batches(3, seed=5))
  np.testing.assert_array_equal(plain["label"], permuted["label"])
  assert plain["inputs"].shape == (64, 8, 8)
  assert plain["inputs"].dtype == np.float32
  assert plain["label"].dtype == np.int32
  np.testing.assert_array_equal(
    permuted["inputs"],
    permuted_digits.permute(plain["inputs"], digits.permutations[3]),
  )
  np.testing.assert_array_equal(  # Same multiset of values per image.
    np.sort(permuted["inputs"].reshape(64, -1)),
    np.sort(plain["inputs"].reshape(64, -1)),
  )
  assert not np.array_equal(permuted["inputs"], plain["inputs"])
  other = next(digits.train_batches(0, seed=6))
  assert not np.array_equal(other["label"], plain["label"])


def test_eval_and_joint_batches_have_the_runner_layouts(digits):
  batches = digits.eval_batches(2, "test")
  assert batches[0]["inputs"].shape == (256, 1, 8, 8)
  assert sum(int(b["mask"].sum()) for b in batches) == 359
  labels = np.concatenate([b["label"][b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(labels, digits.splits["test"].label)
  first = batches[0]["inputs"][:3, 0]
  np.testing.assert_array_equal(
    first,
    permuted_digits.permute(
      digits.splits["test"].image[:3], digits.permutations[2]
    ),
  )
  with pytest.raises(ValueError, match="unknown split"):
    digits.eval_batches(0, "valid")

  joint = next(digits.joint_batches(seed=0))
  assert set(joint) == {"inputs", "label", "task"}
  train = digits.splits["train"]
  rows = zip(joint["inputs"], joint["label"], joint["task"], strict=True)
  for x, label, task in rows:
    # Undo the task's permutation: a training image of that label.
    unpermuted = np.empty(64, np.float32)
    unpermuted[digits.permutations[task]] = x.ravel()
    match = np.all(train.image.reshape(-1, 64) == unpermuted, axis=1)
    assert np.any(match & (train.label == label))


def test_unknown_source_and_bad_settings_are_clear_errors():
  config = digits_config.get_config()
  config.data.source = "cifar"
  with pytest.raises(ValueError, match="known: .*'permuted_digits'"):
    from_config.build(config)
  config = digits_config.get_config()
  config.data.num_tasks = 0
  with pytest.raises(ValueError, match="num_tasks"):
    from_config.build(config)
  config.data.source = "mnist"  # Fails before any download.
  with pytest.raises(ValueError, match="num_tasks"):
    from_config.build(config)


def test_mnist_loads_through_tfds(tmp_path):
  with tfds.testing.mock_data(num_examples=30):
    splits = permuted_digits.load_mnist(str(tmp_path), validation_size=10)
  assert {k: v.image.shape for k, v in splits.items()} == {
    "train": (20, 28, 28),
    "validation": (10, 28, 28),
    "test": (30, 28, 28),
  }
  assert all(0 <= v.image.min() <= v.image.max() <= 1 for v in splits.values())
  assert splits["test"].label.dtype == np.int32


def test_no_conv_layer_means_a_flattening_mlp():
  config = digits_config.get_config()
  model = ConvClassifier(**config.model.widths, head_sizes=(10, 10))
  x = jnp.zeros((5, 8, 8))
  params = model.init(jax.random.key(0), x)["params"]
  assert params["dense_0"]["kernel"].shape == (64, 312)
  assert params["dense_1"]["kernel"].shape == (312, 128)
  assert model.hidden_layers == ("dense_0", "dense_1")
  assert ConvClassifier.from_params(params) == model
  x = jax.random.normal(jax.random.key(1), (5, 8, 8))
  logits = model.apply({"params": params}, x)
  assert [v.shape for v in logits] == [(5, 10), (5, 10)]

  # Progressive nets: dense_0 reads the input, so it has no lateral.
  net = ProgressiveNet((), (16, 8), (10, 10), lateral=True)
  params = net.init(jax.random.key(0), x)["params"]
  assert params["dense_0_col1"]["kernel"].shape == (64, 16)
  assert "lateral_dense_0_col1" not in params
  assert params["lateral_dense_1_col1"]["kernel"].shape == (16, 8)
  assert ProgressiveNet.from_params(params) == net


@pytest.mark.parametrize("method", ["finetune", "stl", "den"])
def test_tiny_run_learns_every_task(method, tmp_path):
  config = digits_config.tiny(digits_config.get_config())
  config.method = method
  workdir = str(tmp_path / method)
  results = runner.run(config, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["accuracy_matrix"] == results["accuracy_matrix"]
  accuracy = results["accuracy_matrix"]
  assert len(accuracy) == 3 and all(len(row) == 3 for row in accuracy)
  assert results["finished_tasks"] == 3
  assert all(accuracy[j][j] > 0.5 for j in range(3))  # Chance: 0.1.
  assert results["unlearnt_tasks"] == []
  assert results["tasks"] == [list(permuted_digits.DIGITS)] * 3
  if method == "stl":  # Independent columns never forget.
    assert results["bwt"] == 0.0
  if method == "den":  # Dense layers: the search reads every row.
    assert "selected_units" in results["task_records"][1]
    assert results["units_per_layer"][0] == {"dense_0": 32, "dense_1": 16}
