"""The one fit loop: staged, early-stopped, resumable, sharded.

A fit runs an `mcl.trainer.recipe.Recipe`, a tuple of `Stage`s (update
direction, learning rate, patience) with a budget of validation passes.
Every pass takes up to `eval_every` steps of `mcl.trainer.train.train_step` from
`train_batches(pass)`, then scores the state with `evaluate` (a
clip-level validation loss and scores, `mcl.trainer.evaluation`). The best
variables are those of the pass with the lowest validation loss (with
`score_initial`, the starting variables count as pass -1). A stage ends
when its drop counter reaches its patience; the next stage restarts from
the best variables with a fresh optimizer state; after the last stage
the fit stops.

- A continual phase is a one-stage Adam recipe whose patience resets on
  improvement (`recipe.continual`); Won et al.'s tagging schedule is four
  stages (`recipe.won_2020`).
- Resume: with a `workdir`, the state, the best variables and the progress
  are saved after every pass (`mcl.trainer.checkpointing.RunCheckpoints`);
  called again on the same workdir, the fit continues from the latest save, and
  equals an uninterrupted one when `train_batches(pass)` depends only on
  its argument (dropout keys are `fold_in(rng, step)`).
- Non-finite loss: the fit stops with `mcl.trainer.train.NonFiniteLossError`;
  with a workdir the state is saved under `<workdir>/nonfinite` first.
- Devices: batches become global arrays sharded over the `("data",)` mesh
  and the state is replicated (`mcl.trainer.parallel`); `evaluate` shards its
  own.
- Cost: the pass's training loss is summed on device and read once per
  pass; the best variables are kept as device copies.
"""

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import metric_writers

from mcl.trainer import checkpointing, parallel, train
from mcl.trainer import recipe as recipes

Variables = dict


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What `evaluate` returns: the loss that selects, and other scores.

  Attributes:
    loss: clip-level validation loss (nats).
    scores: JSON-ready figures (accuracy, ROC-AUC, PR-AUC; None when
      undefined).
  """

  loss: float
  scores: Mapping[str, float | None]


@dataclasses.dataclass(frozen=True)
class PassRecord:
  """One validation pass.

  Attributes:
    index: 0-based pass number over the fit.
    step: optimizer steps done after the pass, over all stages.
    stage: index of the stage that trained it.
    learning_rate: that stage's step size.
    train_loss: mean training loss over the pass's steps.
    validation_loss: clip-level validation loss.
    scores: the evaluation's other figures.
    improved: the validation loss was the lowest so far.
  """

  index: int
  step: int
  stage: int
  learning_rate: float
  train_loss: float
  validation_loss: float
  scores: dict
  improved: bool


@dataclasses.dataclass(frozen=True)
class FitResult:
  """Outcome of a fit: the best variables by validation loss.

  Attributes:
    variables: {"params", "batch_stats"} of the best pass, numpy arrays
      ({} batch_stats without BatchNorm); the initial variables when no
      pass improved.
    validation_loss: the best pass's validation loss (inf when none).
    scores: its other figures ({} when none).
    best_pass: its index (-1: the initial variables, or none).
    steps: optimizer steps done over all stages.
    history: every pass, resumed ones included.
    initial_validation_loss: the validation loss of the starting
      variables (None without `score_initial`).
  """

  variables: Variables
  validation_loss: float
  scores: dict
  best_pass: int
  steps: int
  history: tuple[PassRecord, ...]
  initial_validation_loss: float | None = None

  @property
  def params(self) -> dict:
    return self.variables["params"]


@dataclasses.dataclass
class _Progress:
  """Where a fit stands between passes; saved as the checkpoint metadata."""

  passes: int = 0
  stage: int = 0
  drop_counter: int = 0
  best_pass: int = -1
  best_loss: float = math.inf
  best_scores: dict = dataclasses.field(default_factory=dict)
  initial_loss: float | None = None
  stopped: bool = False
  history: list[PassRecord] = dataclasses.field(default_factory=list)

  @classmethod
  def from_json(cls, metadata: dict) -> "_Progress":
    fields = {f.name for f in dataclasses.fields(cls)}
    progress = cls(**{k: v for k, v in metadata.items() if k in fields})
    progress.history = [PassRecord(**r) for r in progress.history]
    return progress


def _schedule(recipe: recipes.Recipe) -> dict:
  """The recipe as JSON without `max_evals`, which a resume may raise."""
  schedule = dataclasses.asdict(recipe)
  del schedule["max_evals"]
  return json.loads(json.dumps(schedule))


def _state_tree(state: train.TrainState) -> dict:
  return {
    "step": state.step,
    "params": state.params,
    "batch_stats": state.batch_stats,
    "opt_state": state.opt_state,
  }


def _host_variables(variables: Variables) -> Variables:
  return jax.device_get(
    {
      "params": variables["params"],
      "batch_stats": variables.get("batch_stats", {}),
    }
  )


def _start(model, variables, recipe, checkpoints, mesh):
  """The state, best variables and progress: fresh, or from `latest/`."""
  initial = _host_variables(variables)
  tx = recipes.stage_direction(recipe.stages[0], recipe)
  if checkpoints is None or checkpoints.latest_passes() is None:
    state = train.TrainState.create(model, initial, tx)
    return parallel.replicate(state, mesh), initial, _Progress()
  metadata = checkpoints.latest_metadata()
  if metadata["schedule"] != _schedule(recipe):
    raise ValueError(
      f"the workdir's run used {metadata['schedule']}, not {_schedule(recipe)}"
    )
  progress = _Progress.from_json(metadata)
  tx = recipes.stage_direction(recipe.stages[progress.stage], recipe)
  target = {
    "state": _state_tree(train.TrainState.create(model, initial, tx)),
    "best": initial,
  }
  tree, _ = checkpoints.restore_latest(target)
  state = train.TrainState.create(model, tree["state"], tx).replace(
    step=jnp.asarray(tree["state"]["step"], jnp.int32),
    opt_state=jax.tree.map(jnp.asarray, tree["state"]["opt_state"]),
  )
  logging.info(
    "resuming after pass %d, stage %d, step %d",
    progress.passes,
    progress.stage,
    int(state.step),
  )
  return parallel.replicate(state, mesh), tree["best"], progress


def _train_pass(state, batches, phase, rng, steps, mesh, report):
  """Up to `steps` steps; returns the state, mean training loss, count."""
  first_step = int(state.step)
  total, count = jnp.zeros([]), 0
  for batch in batches:
    state, metrics = train.train_step(
      state, parallel.shard_batch(batch, mesh), phase, rng
    )
    # Summed on device: the loss is read once per pass.
    total += metrics["loss"]
    count += 1
    report(first_step + count)
    if count == steps:
      break
  if not count:
    raise ValueError("the training batch iterator yielded no batch")
  return state, float(total) / count, count


def fit(
  model,
  variables: Variables,
  train_batches: Callable[[int], Iterator[Mapping[str, np.ndarray]]],
  evaluate: Callable[[Variables], Evaluation],
  recipe: recipes.Recipe,
  *,
  loss: Callable,
  rng: jax.Array,
  trainable: dict | None = None,
  penalty: train.Term | None = None,
  proximal: train.Term | None = None,
  workdir: str | None = None,
  score_initial: bool = False,
  writer: metric_writers.MetricWriter | None = None,
  step_offset: int = 0,
  name: str = "fit",
  mesh: jax.sharding.Mesh | None = None,
  on_step: Callable[[int], None] | None = None,
) -> FitResult:
  """Trains through the recipe's stages (see the module docstring).

  Args:
    model: the network, `apply(variables, x, train, mutable, rngs)`.
    variables: {"params"[, "batch_stats"]}, the starting point (unused
      when resuming, except for shapes).
    train_batches: pass index -> iterator of this process's training
      batches ({"inputs": [b, ...] and the loss's targets}); called once
      per pass, so a resumed run re-seeds its stream from the pass index.
    evaluate: variables -> `Evaluation` of the validation clips.
    recipe: stages and budget; a resume must use the same one, except for
      `max_evals`.
    loss: `loss(outputs, batch) -> scalar` (`mcl.trainer.train` losses).
    rng: key of the run; dropout uses `fold_in(rng, step)`.
    trainable: 0./1. mask like the params, or None to train everything.
    penalty: added to the loss, or None.
    proximal: applied after every update, or None.
    workdir: folder of the resumable checkpoints, or None for none.
    score_initial: evaluate the starting variables first; they count as
      pass -1 (a fit that never improves returns them).
    writer: TensorBoard scalars per pass, `<name>/...` at
      `step_offset + step`.
    step_offset: added to the step on the writer's x axis.
    name: prefix of the scalars and log lines.
    mesh: the `("data",)` mesh (`mcl.trainer.parallel.data_mesh()` when None).
    on_step: called with the step count after every step (e.g.
      `mcl.trainer.progress.RunProgress.start_phase`), or None.

  Returns:
    The best variables, their validation figures and the history.

  Raises:
    mcl.trainer.train.NonFiniteLossError: a pass's training loss was NaN or
      infinite (saved under `<workdir>/nonfinite` when there is a workdir).
    ValueError: `train_batches` yielded no batch, a global batch does not
      divide over the devices, or the workdir's run used another schedule.
  """
  mesh = mesh or parallel.data_mesh()
  checkpoints = checkpointing.RunCheckpoints(workdir) if workdir else None
  if checkpoints is not None:
    checkpoints.discard_damaged_latest()
  try:
    state, best, progress = _start(model, variables, recipe, checkpoints, mesh)
    if score_initial and not progress.history:
      result = evaluate(state.variables)
      progress.initial_loss = progress.best_loss = result.loss
      progress.best_scores = dict(result.scores)
    best = parallel.replicate(best, mesh)  # Device copies of the best.
    # The phase's terms reach the devices once; only the rate is per stage.
    terms = parallel.replicate((trainable, penalty, proximal), mesh)
    report = on_step or (lambda step: None)
    while (
      progress.passes < recipe.max_evals
      and not progress.stopped
      and int(state.step) < recipe.step_budget
    ):
      stage = recipe.stages[progress.stage]
      phase = train.Phase(
        learning_rate=jnp.float32(stage.learning_rate),
        trainable=terms[0],
        penalty=terms[1],
        proximal=terms[2],
        loss=loss,
      )
      steps = min(recipe.eval_every, recipe.step_budget - int(state.step))
      state, train_loss, _ = _train_pass(
        state,
        train_batches(progress.passes),
        phase,
        rng,
        steps,
        mesh,
        report,
      )
      steps_done = int(state.step)
      if not math.isfinite(train_loss):
        if workdir:
          directory = checkpointing.save_nonfinite(
            workdir,
            steps_done,
            {"state": _state_tree(state)},
            {"pass": progress.passes, "stage": progress.stage},
          )
          logging.error("non-finite loss; state saved to %s", directory)
        raise train.NonFiniteLossError(steps_done, jax.device_get(state.params))
      result = evaluate(state.variables)
      record = PassRecord(
        index=progress.passes,
        step=steps_done,
        stage=progress.stage,
        learning_rate=stage.learning_rate,
        train_loss=train_loss,
        validation_loss=result.loss,
        scores=dict(result.scores),
        improved=result.loss < progress.best_loss,
      )
      _log_pass(record, name, writer, step_offset)
      progress.history.append(record)
      progress.passes += 1
      if record.improved:
        # Copies: the next step donates the state's buffers.
        best = jax.tree.map(jnp.copy, state.variables)
        best.setdefault("batch_stats", {})
        progress.best_pass, progress.best_loss = record.index, result.loss
        progress.best_scores = dict(result.scores)
        if checkpoints:
          checkpoints.save_best(
            progress.passes, best, dataclasses.asdict(record)
          )
      if record.improved and recipe.patience_resets_on_improvement:
        progress.drop_counter = 0
      else:
        progress.drop_counter += 1
      if progress.drop_counter >= stage.patience:
        if progress.stage + 1 == len(recipe.stages):
          progress.stopped = True
        else:
          progress.stage += 1
          progress.drop_counter = 0
          next_stage = recipe.stages[progress.stage]
          state = parallel.replicate(
            train.TrainState.create(
              model,
              jax.device_get(best),
              recipes.stage_direction(next_stage, recipe),
              step=int(state.step),
            ),
            mesh,
          )
          logging.info(
            "%s: stage %d: %s at lr %g from the best pass %d",
            name,
            progress.stage,
            next_stage.optimizer,
            next_stage.learning_rate,
            progress.best_pass,
          )
      if checkpoints:
        metadata = dataclasses.asdict(progress)
        metadata["schedule"] = _schedule(recipe)
        checkpoints.save_latest(
          progress.passes,
          {"state": _state_tree(state), "best": best},
          metadata,
        )
  finally:
    if checkpoints:
      checkpoints.close()
  logging.info(
    "%s: %d passes, %d steps; best pass %d: validation loss %.4f %s",
    name,
    progress.passes,
    int(state.step),
    progress.best_pass,
    progress.best_loss,
    progress.best_scores,
  )
  return FitResult(
    variables=_host_variables(best),
    validation_loss=progress.best_loss,
    scores=progress.best_scores,
    best_pass=progress.best_pass,
    steps=int(state.step),
    history=tuple(progress.history),
    initial_validation_loss=progress.initial_loss,
  )


def _log_pass(record: PassRecord, name, writer, step_offset) -> None:
  logging.info(
    "%s: pass %d (stage %d, lr %g), step %d: train loss %.4f, validation "
    "loss %.4f %s%s",
    name,
    record.index,
    record.stage,
    record.learning_rate,
    record.step,
    record.train_loss,
    record.validation_loss,
    record.scores,
    " (best)" if record.improved else "",
  )
  if writer is None:
    return
  scalars = {
    f"{name}/train_loss": record.train_loss,
    f"{name}/learning_rate": record.learning_rate,
    f"{name}/stage": record.stage,
    f"{name}/validation_loss": record.validation_loss,
  }
  for key, value in record.scores.items():
    if value is not None:
      scalars[f"{name}/validation_{key}"] = value
  writer.write_scalars(step_offset + record.step, scalars)
