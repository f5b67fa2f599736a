"""Replica groups (`mcl.trainer.replicas`,
`mcl.experiments.continual.replica_group`): runs that differ in seed or
fold trained as one program equal the same runs done alone."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcl import experiments
from mcl import sweep as sweep_cli
from mcl.analysis import sweep
from mcl.configs import arrays as arrays_config
from mcl.configs import permuted_digits
from mcl.continual import phase
from mcl.datasets import arrays
from mcl.experiments.continual import replica_group, results
from mcl.models import conv_classifier
from mcl.runtime import errors
from mcl.trainer import fit, optimizer, replicas, train

DIM, PER_SPLIT = 12, (24, 8, 8)


def _data(tasks: int):
  """`tasks` tasks of two separable classes of [DIM] features."""
  rng = np.random.default_rng(0)
  patterns = rng.normal(size=(2 * tasks, DIM)) * 1.5
  x, y, split = [], [], []
  for c in range(2 * tasks):
    for s, n in enumerate(PER_SPLIT):
      x.append(patterns[c] + rng.normal(size=(n, DIM)))
      y += [c] * n
      split += [s] * n
  groups = [[2 * t, 2 * t + 1] for t in range(tasks)]
  x = np.concatenate(x).astype(np.float32)
  return arrays.from_arrays(x, np.asarray(y), groups, np.asarray(split))


def _config(method: str, seed: int):
  config = permuted_digits.tiny(arrays_config.get_config())
  config.method, config.seed = method, seed
  config.train.batch_size, config.train.eval_batch_size = 16, 64
  config.replay.batch_size = 16
  return config


def _lone(method, seeds, root, tasks=3):
  return [
    experiments.run(
      _config(method, s), os.path.join(root, f"lone{s}"), data=_data(tasks)
    )
    for s in seeds
  ]


def _group(method, seeds, root, tasks=3, fitter=None, strategy=None):
  def run_one(config, workdir, group_fitter):
    return experiments.run(
      config,
      workdir,
      data=_data(tasks),
      fitter=fitter(config.seed, group_fitter) if fitter else group_fitter,
    )

  return replica_group.run_group(
    run_one,
    [_config(method, s) for s in seeds],
    [os.path.join(root, f"group{s}") for s in seeds],
    strategy,
  )


def _tiny_state(seed: int):
  model = conv_classifier.ConvClassifier(
    conv_widths=(), dense_widths=(8,), head_sizes=(2,)
  )
  x = np.random.default_rng(seed).normal(size=(8, 3, 4)).astype(np.float32)
  variables = model.init(jax.random.key(seed), x)
  state = train.TrainState.create(model, variables, optimizer.direction())
  batch = {"inputs": x, "label": np.arange(8) % 2, "task": np.zeros(8, int)}
  return model, state, batch


@pytest.mark.parametrize("strategy", replicas.STRATEGIES)
def test_an_inactive_replica_is_unchanged_and_an_active_one_steps_alone(
  strategy,
):
  (_, s0, b0), (_, s1, b1) = _tiny_state(0), _tiny_state(1)
  phase_ = train.Phase(
    learning_rate=jnp.float32(0.1), loss=train.TaskCrossEntropy((0,))
  )
  lone, _ = train.train_step(
    jax.tree.map(jnp.copy, s0), b0, phase_, jax.random.key(0)
  )
  before = jax.device_get(s1)
  stacked, metrics = replicas.replica_step(
    replicas.stack([s0, s1]),
    replicas.stack([b0, b1]),
    replicas.stack([phase_, phase_]),
    jnp.stack([jax.random.key(0)] * 2),
    jnp.asarray([True, False]),
    strategy=strategy,
  )
  assert metrics["loss"].shape == (2,)
  stepped, kept = replicas.unstack(stacked, 0), replicas.unstack(stacked, 1)
  for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(before), strict=True):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(lone), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert int(stepped.step) == 1 and int(kept.step) == 0


def _fit_call(seed: int, flat_validation: bool):
  """fit.fit's arguments on a tiny network; a flat validation loss never
  improves, so that fit stops after its patience."""
  model, state, batch = _tiny_state(seed)

  def batches():
    rng = np.random.default_rng(seed)
    while True:
      yield dict(batch, inputs=batch["inputs"] + rng.normal(size=(8, 3, 4)))

  stream = batches()

  def evaluate(variables):
    if flat_validation:
      return fit.Evaluation(1.0, {})
    logits = model.apply(variables, batch["inputs"])[0]
    loss = train.TaskCrossEntropy((0,))((logits,), batch)
    return fit.Evaluation(float(loss), {})

  budget = phase.FitConfig(0.05, max_steps=40, eval_every=5, patience=2)
  return {
    "model": model,
    "variables": {"params": jax.device_get(state.params)},
    "train_batches": lambda _: stream,
    "evaluate": evaluate,
    "recipe": budget.recipe(),
    "loss": train.TaskCrossEntropy((0,)),
    "rng": jax.random.key(0),
    "score_initial": True,
  }


def test_replicas_stop_each_on_their_own_and_equal_lone_fits():
  calls = [_fit_call(0, False), _fit_call(1, True)]
  grouped = replicas.fit_replicas(calls, size=3, strategy="unroll")
  lone = [fit.fit(**_fit_call(0, False)), fit.fit(**_fit_call(1, True))]
  # The flat replica stopped after its patience and kept its initial
  # parameters; the other trained on to its budget.
  assert grouped[1].steps == lone[1].steps == 10
  assert grouped[1].best_pass == -1
  assert grouped[0].steps == lone[0].steps == 40
  for g, a in zip(grouped, lone, strict=True):
    assert [p.validation_loss for p in g.history] == pytest.approx(
      [p.validation_loss for p in a.history], rel=1e-5
    )
    for x, y in zip(
      jax.tree.leaves(g.params), jax.tree.leaves(a.params), strict=True
    ):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  initial = calls[1]["variables"]["params"]
  for x, y in zip(
    jax.tree.leaves(grouped[1].params), jax.tree.leaves(initial), strict=True
  ):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("method", ["ewc", "progressive"])
def test_a_replica_groups_results_equal_the_runs_done_alone(tmp_path, method):
  seeds = (0, 1, 2)
  lone = _lone(method, seeds, str(tmp_path))
  grouped = _group(method, seeds, str(tmp_path))
  for a, g in zip(lone, grouped, strict=True):
    assert not isinstance(g, BaseException), g
    assert results.largest_difference(a, g) <= 1e-5
    assert g["config"]["seed"] == a["config"]["seed"]


def test_den_replicas_compile_each_phase_kind_once_per_group(
  tmp_path, compilations, monkeypatch
):
  # A kind: a phase's shapes (capacity slots included), terms, loss and
  # budget. The runs' phases diverge (one splits, the other expands) and
  # train in stacks of their own, each padded to the group's size, so a
  # kind compiles once whichever runs reach it.
  kinds = set()
  kind = replica_group._kind

  def counted(call):
    kinds.add(kind(call))
    return kind(call)

  monkeypatch.setattr(replica_group, "_kind", counted)
  lone = _lone("den", (0, 1), str(tmp_path), tasks=5)
  compilations.clear()
  grouped = _group("den", (0, 1), str(tmp_path), tasks=5)
  assert compilations["jit(train_step)"] == 0
  assert compilations["jit(replica_step)"] == len(kinds), compilations
  for a, g in zip(lone, grouped, strict=True):
    assert not isinstance(g, BaseException), g
    assert results.largest_difference(a, g) <= 1e-5


class _Killed(Exception):
  """Stands for the kill of a group's process."""


def test_a_killed_group_resumes_from_its_task_checkpoints(tmp_path):
  root = str(tmp_path)
  phases = []

  def dies_at_the_third_phase(seed, group_fitter):
    def fitter(*args, **kwargs):
      phases.append(seed)
      if phases.count(seed) == 3:
        raise _Killed()
      return group_fitter(*args, **kwargs)

    return fitter

  killed = _group("finetune", (0, 1), root, fitter=dies_at_the_third_phase)
  assert all(isinstance(k, _Killed) for k in killed)
  phases.clear()

  def counts(seed, group_fitter):
    def fitter(*args, **kwargs):
      phases.append(seed)
      return group_fitter(*args, **kwargs)

    return fitter

  resumed = _group("finetune", (0, 1), root, fitter=counts)
  # Tasks 0 and 1 were checkpointed: only task 2 was trained again.
  assert sorted(phases) == [0, 1]
  lone = _lone("finetune", (0, 1), root)
  for a, r in zip(lone, resumed, strict=True):
    assert results.largest_difference(a, r) <= 1e-5


def test_a_group_refuses_runs_of_other_settings(tmp_path):
  other = _config("finetune", 1)
  other.train.fit.max_steps = 7
  with pytest.raises(errors.UserError, match="train.fit.max_steps"):
    replica_group.check_group([_config("finetune", 0), other])


def test_replica_groups_are_the_seeds_and_folds_of_a_grid_point():
  runs = sweep.grid({"a": {"x": 1}, "b": {"x": 2}}, (0, 1), (0, 1, 2))
  groups = sweep.replica_groups(runs, 0)
  assert [len(g) for g in groups] == [6, 6]
  assert {r.label for r in groups[0]} == {"a"}
  assert [len(g) for g in sweep.replica_groups(runs, 4)] == [4, 4, 2, 2]
  assert [len(g) for g in sweep.replica_groups(runs, 1)] == [1] * 12


@pytest.mark.parametrize("replicas", [2, 0])
def test_a_sweep_groups_a_grid_point_on_request_with_a_log_per_run(
  tmp_path, replicas
):
  tiny = {"method": "finetune", "data.num_tasks": 2,
          "train.fit.max_steps": 10, "train.fit.eval_every": 5}  # fmt: skip
  runs = sweep.grid({"finetune": tiny}, None, (0, 1))
  root = str(tmp_path)
  env = sweep_cli.environment(1, root)
  assert sweep_cli.run_all(runs, "permuted_digits", root, 1, env, replicas) == 0
  for run in runs:
    assert sweep.finished(root, run)
    with open(os.path.join(sweep.workdir(root, run), "log.txt")) as f:
      log = f.read()
    # Its own pass lines, not the other run's.
    assert log.count("task0/train: pass 0 ") == 1, log
    # --replicas=0 (automatic) runs them one after another on a CPU.
    assert ("in a stack of 2" in log) == (replicas == 2), log
