"""The one fit loop: staged, early-stopped, resumable, sharded.

A fit runs an `mcl.trainer.recipe.Recipe` (stages of update direction,
learning rate and patience; a budget of passes and steps). Every pass
takes up to `eval_every` steps of `mcl.trainer.train.train_step` from
`train_batches(pass)`, then scores the state with `evaluate` (a
clip-level validation loss and scores, `mcl.trainer.evaluation`); the
best variables are those of the lowest validation loss (with
`score_initial`, the starting ones count as pass -1). The stage and
patience rule is `mcl.trainer.schedule.advance`; a new stage restarts
from the best variables with a fresh optimizer state.

- A continual phase is a one-stage Adam recipe whose patience resets on
  improvement (`recipe.continual`); Won et al.'s tagging schedule is four
  stages (`recipe.won_2020`).
- Resume: with a `workdir`, the state, the best variables and the progress
  are saved after every pass (`mcl.trainer.checkpointing.RunCheckpoints`);
  called again on the same workdir, the fit continues from the latest
  save (`mcl.trainer.resume`), and equals an uninterrupted one when
  `train_batches(pass)` depends only on its argument (dropout keys are
  `fold_in(rng, step)`).
- Non-finite loss: the fit stops with `mcl.trainer.train.NonFiniteLossError`;
  with a workdir the state is saved under `<workdir>/nonfinite` first.
- Devices: batches become global arrays sharded over the `("data",)` mesh
  and the state is replicated (`mcl.trainer.parallel`); `evaluate`
  shards its own.
- Cost: the pass's training loss is summed on device and read once per
  pass; the best variables are kept as device copies.
"""

import dataclasses
from collections.abc import Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import metric_writers

from mcl.trainer import checkpointing, parallel, resume, schedule, train
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
  history: tuple[schedule.PassRecord, ...]
  initial_validation_loss: float | None = None

  @property
  def params(self) -> dict:
    return self.variables["params"]


def _train_pass(state, batches, phase, rng, steps, mesh, report):
  """Up to `steps` steps; returns the state and the mean training loss."""
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
  return state, float(total) / count


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
    state, best, progress = resume.start(
      model, variables, recipe, checkpoints, mesh
    )
    if score_initial and not progress.history:
      result = evaluate(state.variables)
      progress = progress.scored_initial(result.loss, result.scores)
    best = parallel.replicate(best, mesh)  # Device copies of the best.
    passes = _Passes(
      train_batches,
      evaluate,
      recipe,
      loss,
      rng,
      # The phase's terms reach the devices once; only the rate is per stage.
      parallel.replicate((trainable, penalty, proximal), mesh),
      mesh,
      on_step or (lambda step: None),
      workdir,
      (name, writer, step_offset),
    )
    while schedule.running(progress, int(state.step), recipe):
      state, record = passes.run(state, progress)
      previous, progress = progress, schedule.advance(progress, record, recipe)
      if record.improved:
        # Copies: the next step donates the state's buffers.
        best = jax.tree.map(jnp.copy, state.variables)
        best.setdefault("batch_stats", {})
        if checkpoints:
          checkpoints.save_best(
            progress.passes, best, dataclasses.asdict(record)
          )
      if progress.stage != previous.stage:
        state = _next_stage(model, state, best, recipe, progress, mesh, name)
      if checkpoints:
        resume.save_latest(checkpoints, state, best, progress, recipe)
  finally:
    if checkpoints:
      checkpoints.close()
  return outcome(name, progress, best, int(state.step))


def outcome(name, progress: schedule.Progress, best, steps) -> FitResult:
  """The fit's outcome, logged: the best variables as numpy."""
  logging.info(
    "%s: %d passes, %d steps; best pass %d: validation loss %.4f %s",
    name,
    progress.passes,
    steps,
    progress.best_pass,
    progress.best_loss,
    progress.best_scores,
  )
  return FitResult(
    variables=resume.host_variables(best),
    validation_loss=progress.best_loss,
    scores=progress.best_scores,
    best_pass=progress.best_pass,
    steps=steps,
    history=progress.history,
    initial_validation_loss=progress.initial_loss,
  )


@dataclasses.dataclass(frozen=True)
class _Passes:
  """What every validation pass of one fit shares (`fit`'s arguments)."""

  train_batches: Callable[[int], Iterator[Mapping[str, np.ndarray]]]
  evaluate: Callable[[Variables], Evaluation]
  recipe: recipes.Recipe
  loss: Callable
  rng: jax.Array
  terms: tuple  # (trainable, penalty, proximal), on the devices.
  mesh: jax.sharding.Mesh
  report: Callable[[int], None]
  workdir: str | None
  log: tuple  # (name, writer, step_offset) of `log_pass`.

  def run(self, state, progress: schedule.Progress):
    """Trains one pass and scores it; returns the state and its record."""
    stage = self.recipe.stages[progress.stage]
    phase = train.Phase(
      learning_rate=jnp.float32(stage.learning_rate),
      trainable=self.terms[0],
      penalty=self.terms[1],
      proximal=self.terms[2],
      loss=self.loss,
    )
    state, train_loss = _train_pass(
      state,
      self.train_batches(progress.passes),
      phase,
      self.rng,
      schedule.pass_steps(int(state.step), self.recipe),
      self.mesh,
      self.report,
    )
    resume.stop_if_nonfinite(train_loss, state, progress, self.workdir)
    result = self.evaluate(state.variables)
    record = schedule.PassRecord(
      index=progress.passes,
      step=int(state.step),
      stage=progress.stage,
      learning_rate=stage.learning_rate,
      train_loss=train_loss,
      validation_loss=result.loss,
      scores=dict(result.scores),
      improved=result.loss < progress.best_loss,
    )
    log_pass(record, *self.log)
    return state, record


def _next_stage(model, state, best, recipe, progress, mesh, name):
  """A fresh optimizer of the new stage, from the best variables so far."""
  stage = recipe.stages[progress.stage]
  logging.info(
    "%s: stage %d: %s at lr %g from the best pass %d",
    name,
    progress.stage,
    stage.optimizer,
    stage.learning_rate,
    progress.best_pass,
  )
  return parallel.replicate(
    train.TrainState.create(
      model,
      jax.device_get(best),
      recipes.stage_direction(stage, recipe),
      step=int(state.step),
    ),
    mesh,
  )


def log_pass(record: schedule.PassRecord, name, writer, step_offset) -> None:
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
