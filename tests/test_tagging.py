import itertools
import os
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from clu import metric_writers

from mcl.trainer import (
  checkpoint_seals,
  evaluation,
  fit,
  metrics,
  recipe,
  train,
)
from mcl.trainer import checkpointing as checkpoints

FEATURES, N_TAGS, CHUNKS, BATCH = 8, 4, 3, 16
RNG = jax.random.key(0)


class TinyTagger(nn.Module):
  """Dense + BatchNorm + Dropout, logits [B, N_TAGS]."""

  batch_norm: bool = True

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(16)(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    x = nn.Dropout(0.1, deterministic=not train)(x)
    return nn.Dense(N_TAGS)(x)


def _init(model):
  return model.init(RNG, jnp.zeros((1, FEATURES)), train=False)


class Data:
  """Learnable multi-label data: tags are thresholded projections."""

  def __init__(self, seed=0):
    rng = np.random.default_rng(seed)
    self.w = rng.normal(size=(FEATURES, N_TAGS))
    self.train_x, self.train_tags = self._clips(rng, 256)
    clips, self.val_tags = self._clips(rng, 40)
    noise = 0.5 * rng.normal(size=(40, CHUNKS, FEATURES))
    self.val_x = (clips[:, None] + noise).astype(np.float32)
    self.validation_calls = 0
    self.flip_on_calls = ()  # These validation passes see flipped tags.

  def _clips(self, rng, n):
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    return x, (x @ self.w > 0.5).astype(np.float32)

  def train_batches(self, pass_index, nan=False):
    rng = np.random.default_rng([7, pass_index])
    order = rng.permutation(len(self.train_x))
    for start in range(0, len(order) - BATCH + 1, BATCH):
      i = order[start : start + BATCH]
      x = self.train_x[i] + 0.3 * rng.normal(size=(BATCH, FEATURES))
      if nan:
        x[0, 0] = np.nan
      yield {"inputs": x.astype(np.float32), "tags": self.train_tags[i]}

  def validation_batches(self, tags=None):
    """Batches of 16 clips; the last padded with NaN clips of mask 0."""
    tags = self.val_tags if tags is None else tags
    if self.validation_calls in self.flip_on_calls:
      tags = 1.0 - tags
    self.validation_calls += 1
    for start in range(0, len(tags), 16):
      x, y = self.val_x[start : start + 16], tags[start : start + 16]
      pad = 16 - len(x)
      yield {
        "inputs": np.concatenate([x, np.full((pad,) + x.shape[1:], np.nan)]),
        "tags": np.concatenate([y, np.ones((pad, N_TAGS))]),
        "mask": np.concatenate([np.ones(len(x)), np.zeros(pad)]),
      }


def _recipe(**overrides):
  settings = dict(
    stages=(recipe.Stage("adam", 1e-2, 3), recipe.Stage("sgd", 5e-2, 10)),
    weight_decay=1e-4,
    momentum=0.9,
    eval_every=6,
    max_evals=8,
  )
  settings.update(overrides)
  return recipe.Recipe(**settings)


def _validate(model, data):
  def evaluate(variables):
    result = evaluation.evaluate_tags(
      model, variables, data.validation_batches()
    )
    return fit.Evaluation(
      result.loss, {"roc_auc": result.roc_auc, "pr_auc": result.pr_auc}
    )

  return evaluate


def _fit(model, data, workdir, tuned, train_batches=None, **kwargs):
  return fit.fit(
    model,
    _init(model),
    train_batches or data.train_batches,
    _validate(model, data),
    tuned,
    loss=train.TagBinaryCrossEntropy(),
    rng=RNG,
    workdir=str(workdir),
    name="train",
    **kwargs,
  )


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def test_evaluate_averages_chunk_sigmoids_and_leaves_out_padding():
  model, data = TinyTagger(), Data()
  variables = _init(model)
  result = evaluation.evaluate_tags(model, variables, data.validation_batches())

  logits = np.asarray(
    model.apply(variables, data.val_x.reshape(-1, FEATURES), train=False),
    np.float64,
  ).reshape(40, CHUNKS, N_TAGS)
  expected = _sigmoid(logits).mean(axis=1)
  y = data.val_tags
  loss = -np.mean(y * np.log(expected) + (1 - y) * np.log(1 - expected))
  np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5)
  np.testing.assert_array_equal(result.tags, y)
  assert result.loss == pytest.approx(loss, rel=1e-5)
  assert result.roc_auc == pytest.approx(metrics.tag_roc_auc(expected, y))
  assert result.pr_auc == pytest.approx(metrics.tag_pr_auc(expected, y))
  # Averaging logits instead would give other probabilities.
  assert not np.allclose(_sigmoid(logits.mean(axis=1)), expected, rtol=1e-3)


def _expected_stages(history, tuned):
  """The stage of every pass, replaying the drop counter by hand."""
  stage, drop, stages = 0, 0, []
  for record in history:
    stages.append(stage)
    reset = record.improved and tuned.patience_resets_on_improvement
    drop = 0 if reset else drop + 1
    if drop >= tuned.stages[stage].patience:
      stage, drop = stage + 1, 0
  return stages


def test_fit_learns_and_keeps_the_minimum_validation_loss_pass(tmp_path):
  model, data, tuned = TinyTagger(), Data(), _recipe()
  # Passes 3-5 cannot improve, so Adam's patience (3) runs out; pass 7
  # cannot either, so the best is not simply the last pass.
  data.flip_on_calls = (3, 4, 5, 7)
  compiled = train.train_step._cache_size()
  result = _fit(model, data, tmp_path, tuned)

  history = result.history
  assert len(history) == tuned.max_evals
  assert [r.step for r in history] == [6 * (i + 1) for i in range(8)]
  losses = [r.validation_loss for r in history]
  assert history[-1].train_loss < history[0].train_loss
  assert min(losses) < losses[0] - 0.05
  assert result.best_pass == int(np.argmin(losses))
  assert result.validation_loss == min(losses)
  assert result.scores["roc_auc"] > 0.8
  assert result.best_pass not in (3, 4, 5, 7)
  assert [r.stage for r in history] == _expected_stages(history, tuned)
  assert [r.stage for r in history] == [0] * 6 + [1] * 2
  assert [r.learning_rate for r in history[-2:]] == [5e-2] * 2
  # One compile per stage.
  assert train.train_step._cache_size() - compiled == 2

  again = evaluation.evaluate_tags(
    model, result.variables, data.validation_batches()
  )
  assert again.loss == pytest.approx(result.validation_loss, rel=1e-6)
  run = checkpoints.RunCheckpoints(str(tmp_path))
  best, metadata = run.restore_best(result.variables)
  run.close()
  assert metadata["index"] == result.best_pass
  jax.tree.map(np.testing.assert_array_equal, best, result.variables)


def test_stage_switch_restarts_from_the_best_variables_with_sgd(tmp_path):
  model, data = TinyTagger(), Data()
  tuned = _recipe(max_evals=3, patience_resets_on_improvement=False)
  data.flip_on_calls = (2,)  # Pass 2 cannot improve: the best is older.
  first = _fit(model, data, tmp_path, tuned)
  assert [r.stage for r in first.history] == [0, 0, 0]
  assert not first.history[2].improved and first.best_pass < 2

  sgd = recipe.stage_direction(tuned.stages[1], tuned)
  start = {
    "step": np.zeros([], np.int32),
    "params": first.variables["params"],
    "batch_stats": first.variables["batch_stats"],
    "opt_state": sgd.init(first.variables["params"]),
  }
  run = checkpoints.RunCheckpoints(str(tmp_path))
  saved, metadata = run.restore_latest(
    {"state": start, "best": first.variables}
  )
  run.close()
  assert metadata["stage"] == 1 and metadata["drop_counter"] == 0
  state = saved["state"]
  assert int(state["step"]) == 18
  for name in ("params", "batch_stats"):
    jax.tree.map(np.testing.assert_array_equal, state[name], start[name])

  # Replay pass 3 from there with a hand-built Nesterov SGD at the stage's lr.
  by_hand = optax.chain(
    optax.add_decayed_weights(1e-4),
    optax.sgd(5e-2, momentum=0.9, nesterov=True),
  )
  params = jax.tree.map(jnp.array, state["params"])
  batch_stats = jax.tree.map(jnp.array, state["batch_stats"])
  opt_state = by_hand.init(params)
  for i, batch in enumerate(
    itertools.islice(data.train_batches(3), tuned.eval_every)
  ):

    def loss_fn(p, batch=batch, batch_stats=batch_stats, i=i):
      logits, updated = model.apply(
        {"params": p, "batch_stats": batch_stats},
        batch["inputs"],
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": jax.random.fold_in(RNG, 18 + i)},
      )
      bce = optax.sigmoid_binary_cross_entropy(logits, batch["tags"])
      return jnp.mean(bce), updated["batch_stats"]

    grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = by_hand.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)

  tuned = _recipe(max_evals=4, patience_resets_on_improvement=False)
  resumed = _fit(model, data, tmp_path, tuned)
  assert resumed.history[:3] == first.history
  assert resumed.history[3].stage == 1
  assert resumed.history[3].learning_rate == 5e-2
  run = checkpoints.RunCheckpoints(str(tmp_path))
  saved, _ = run.restore_latest({"state": start, "best": first.variables})
  run.close()
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
    saved["state"]["params"],
    jax.device_get(params),
  )


def test_interrupted_fit_resumes_from_the_saved_pass(tmp_path):
  model, data, tuned = TinyTagger(), Data(), _recipe(max_evals=4)
  whole = _fit(model, data, tmp_path / "whole", tuned)
  cut = _fit(model, data, tmp_path / "cut", _recipe(max_evals=2))
  assert len(cut.history) == 2
  calls = data.validation_calls
  resumed = _fit(model, data, tmp_path / "cut", tuned)

  assert data.validation_calls - calls == 2  # Only passes 2 and 3 ran.
  assert resumed.history[:2] == cut.history
  assert resumed.steps == whole.steps == 24
  for a, b in zip(resumed.history, whole.history, strict=True):
    assert a.validation_loss == pytest.approx(b.validation_loss, rel=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    resumed.variables,
    whole.variables,
  )
  # A finished run returns at once.
  assert _fit(model, data, tmp_path / "cut", tuned).history == resumed.history
  assert data.validation_calls - calls == 2
  with pytest.raises(ValueError, match="schedule|used"):
    _fit(model, data, tmp_path / "cut", _recipe(max_evals=5, eval_every=3))


def test_model_without_batch_norm_trains_resumes_and_logs(tmp_path):
  model, data = TinyTagger(batch_norm=False), Data()
  _fit(model, data, tmp_path, _recipe(max_evals=1))
  writer = mock.create_autospec(metric_writers.MetricWriter, instance=True)
  result = _fit(model, data, tmp_path, _recipe(max_evals=2), writer=writer)
  assert len(result.history) == 2
  assert result.variables["batch_stats"] == {}
  assert np.isfinite(result.validation_loss)
  (step_written, scalars), _ = writer.write_scalars.call_args
  assert step_written == 12
  assert scalars["train/validation_loss"] == result.history[1].validation_loss
  assert set(scalars) == {
    "train/train_loss",
    "train/learning_rate",
    "train/stage",
    "train/validation_loss",
    "train/validation_roc_auc",
    "train/validation_pr_auc",
  }


def test_nonfinite_loss_raises_and_saves_the_state(tmp_path):
  model, data = TinyTagger(), Data()
  with pytest.raises(train.NonFiniteLossError):
    _fit(
      model,
      data,
      tmp_path,
      _recipe(),
      train_batches=lambda i: data.train_batches(i, nan=True),
    )
  assert os.path.isdir(tmp_path / "nonfinite")
  variables = _init(model)
  target = {
    "state": {
      "step": np.zeros([], np.int32),
      "params": variables["params"],
      "batch_stats": variables["batch_stats"],
      "opt_state": recipe.stage_direction(_recipe().stages[0], _recipe()).init(
        variables["params"]
      ),
    }
  }
  saved, metadata = checkpoints.restore_nonfinite(str(tmp_path), target)
  assert metadata["pass"] == 0 and int(saved["state"]["step"]) == 6
  assert not np.all(np.isfinite(saved["state"]["params"]["Dense_0"]["kernel"]))


def test_stage_optimizers_use_coupled_weight_decay_like_torch():
  p0, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
  lr, wd, m = 0.1, 0.01, 0.9
  tuned = _recipe(weight_decay=wd, momentum=m)

  sgd = recipe.stage_direction(recipe.Stage("sgd", lr, 1), tuned)
  params = jnp.asarray(p0)
  state = sgd.init(params)
  for _ in range(2):
    direction, state = sgd.update(jnp.asarray(g), state, params)
    params = params - lr * direction
  # torch.optim.SGD(nesterov=True): d = g + wd p, b = m b + d,
  # p -= lr (d + m b), with b = d at the first step.
  d1 = g + wd * p0
  p1 = p0 - lr * (d1 + m * d1)
  d2 = g + wd * p1
  b2 = m * d1 + d2
  np.testing.assert_allclose(params, p1 - lr * (d2 + m * b2), rtol=1e-6)

  adam = recipe.stage_direction(recipe.Stage("adam", lr, 1), tuned)
  direction, _ = adam.update(jnp.asarray(g), adam.init(jnp.asarray(p0)), p0)
  updates = -lr * direction
  # First Adam step: the bias-corrected moments give d / (|d| + eps), so
  # coupled decay leaves -lr sign(d); AdamW's would add -lr wd p (1 %).
  np.testing.assert_allclose(updates, -lr * np.sign(d1), rtol=1e-4)

  with pytest.raises(ValueError, match="adam"):
    recipe.Stage("rmsprop", lr, 1)
  reference = recipe.won_2020(eval_every=100)
  assert [s.patience for s in reference.stages[:3]] == [80, 20, 20]
  assert not reference.patience_resets_on_improvement


def test_a_damaged_latest_save_is_moved_aside_and_the_fit_starts_over(
  tmp_path,
):
  model, data, tuned = TinyTagger(), Data(), _recipe(max_evals=2)
  whole = _fit(model, data, tmp_path / "whole", tuned)
  _fit(model, data, tmp_path / "cut", _recipe(max_evals=1))
  latest = tmp_path / "cut" / "latest"
  (step,) = [p for p in latest.iterdir() if p.name.isdigit()]
  os.remove(step / checkpoint_seals.CHECKSUMS)  # Killed before it was sealed.
  with pytest.raises(checkpoint_seals.CheckpointError, match="not sealed"):
    checkpoints.RunCheckpoints(str(tmp_path / "cut")).latest_metadata()
  again = _fit(model, data, tmp_path / "cut", tuned)
  assert (tmp_path / "cut" / "latest.damaged").is_dir()
  assert again.history == whole.history  # Started over, nothing mixed.
