"""Multi-label auto-tagging with the staged Adam-then-SGD recipe.

Implements the training recipe of Won, Ferraro, Bogdanov & Serra,
"Evaluation of CNN-based automatic music tagging models" (SMC 2020),
reference code minzwon/sota-music-tagging-models, training/solver.py:

- loss: binary cross-entropy of the tags' sigmoids, mean over tags and
  examples, l = -mean[y log s(z) + (1 - y) log(1 - s(z))];
- weight decay as torch's coupled L2 (g <- g + wd * theta before the
  optimizer, for every parameter);
- stages: Adam, then SGD with Nesterov momentum and decreasing step sizes.
  A stage ends after `patience` validation passes without improvement (the
  drop counter); the next stage restarts from the best variables so far
  (params and batch_stats) with a fresh optimizer state;
- evaluation: the sigmoids of a clip's K chunks averaged into clip
  probabilities, then macro ROC-AUC and PR-AUC over tags;
- the best variables are those of the pass with the lowest validation loss.

`mcl.tagging.recipe` lists where this differs from solver.py.

Resuming: `fit` saves after every validation pass and, called again on the
same workdir, continues from the latest save. Training batches are drawn
from `train_batches(pass_index)`, a fresh iterator per pass, and dropout
keys are `fold_in(rng, step)`, so a resumed run repeats an uninterrupted
one when the caller's stream depends only on its argument.
"""

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions

from mcl import train as mcl_train
from mcl.tagging import checkpoints as run_checkpoints
from mcl.tagging import evaluation, step
from mcl.tagging import recipe as recipes

Variables = dict
Batch = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class PassRecord:
  """One validation pass.

  Attributes:
    index: 0-based pass number over the run.
    step: optimizer steps done after the pass, over all stages.
    stage: index of the stage that trained it.
    learning_rate: that stage's step size.
    train_loss: mean training loss over the pass's steps.
    validation_loss: clip-level BCE on the validation clips.
    validation_roc_auc: macro ROC-AUC, or None when undefined.
    validation_pr_auc: macro PR-AUC, or None when undefined.
    improved: the validation loss was the lowest so far.
  """

  index: int
  step: int
  stage: int
  learning_rate: float
  train_loss: float
  validation_loss: float
  validation_roc_auc: float | None
  validation_pr_auc: float | None
  improved: bool


@dataclasses.dataclass(frozen=True)
class FitResult:
  """Outcome of a run: the best variables by validation loss.

  Attributes:
    variables: {"params", "batch_stats"} of the best pass, numpy arrays
      (batch_stats {} for models without BatchNorm); the initial variables
      when no pass improved.
    validation_loss: the best pass's validation loss (inf when none).
    validation_roc_auc: its macro ROC-AUC, or None.
    validation_pr_auc: its macro PR-AUC, or None.
    best_pass: its index, -1 when none.
    steps: optimizer steps done over all stages.
    history: every pass, resumed ones included.
  """

  variables: Variables
  validation_loss: float
  validation_roc_auc: float | None
  validation_pr_auc: float | None
  best_pass: int
  steps: int
  history: tuple[PassRecord, ...]


@dataclasses.dataclass
class _Progress:
  """Where a run stands between passes; saved as the checkpoint metadata."""

  passes: int = 0
  stage: int = 0
  drop_counter: int = 0
  best_pass: int = -1
  best_loss: float = math.inf
  best_roc_auc: float | None = None
  best_pr_auc: float | None = None
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


def _state_tree(state: step.TrainState) -> dict:
  return {
    "step": state.step,
    "params": state.params,
    "batch_stats": state.batch_stats,
    "opt_state": state.opt_state,
  }


def _fresh_state(
  steps_done: jax.Array,
  variables: Variables,
  optimizer: optax.GradientTransformation,
) -> step.TrainState:
  # Device copies: the step donates the state, so it must not alias the
  # caller's (or the best) arrays.
  params = jax.tree.map(jnp.array, variables["params"])
  return step.TrainState(
    step=jnp.array(steps_done, jnp.int32),
    params=params,
    batch_stats=jax.tree.map(jnp.array, variables.get("batch_stats", {})),
    opt_state=optimizer.init(params),
  )


def _start_or_resume(
  checkpoints: run_checkpoints.RunCheckpoints,
  variables: Variables,
  recipe: recipes.Recipe,
) -> tuple[step.TrainState, Variables, _Progress]:
  """The state, best variables and progress: fresh, or from `latest/`."""
  initial = jax.device_get(
    {
      "params": variables["params"],
      "batch_stats": variables.get("batch_stats", {}),
    }
  )
  if checkpoints.latest_passes() is None:
    optimizer = recipes.stage_optimizer(recipe.stages[0], recipe)
    return _fresh_state(0, initial, optimizer), initial, _Progress()
  metadata = checkpoints.latest_metadata()
  if metadata["schedule"] != _schedule(recipe):
    raise ValueError(
      f"the workdir's run used {metadata['schedule']}, not {_schedule(recipe)}"
    )
  progress = _Progress.from_json(metadata)
  optimizer = recipes.stage_optimizer(recipe.stages[progress.stage], recipe)
  target = {
    "state": _state_tree(_fresh_state(0, initial, optimizer)),
    "best": initial,
  }
  tree, _ = checkpoints.restore_latest(target)
  state = step.TrainState(**jax.tree.map(jnp.array, tree["state"]))
  logging.info(
    "resuming after pass %d, stage %d, step %d",
    progress.passes,
    progress.stage,
    int(state.step),
  )
  return state, tree["best"], progress


def _train_pass(
  model: nn.Module,
  state: step.TrainState,
  batches: Iterator[Batch],
  rng: jax.Array,
  optimizer: optax.GradientTransformation,
  max_steps: int,
  report: periodic_actions.ReportProgress,
) -> tuple[step.TrainState, float]:
  """Up to `max_steps` steps; returns the state and mean training loss."""
  first_step = int(state.step)
  total, count = jnp.zeros([]), 0
  for batch in itertools.islice(batches, max_steps):
    state, loss = step.train_step(
      state,
      np.asarray(batch["inputs"], np.float32),
      np.asarray(batch["tags"], np.float32),
      rng,
      model=model,
      optimizer=optimizer,
    )
    # Summed on device: the loss is fetched once per pass.
    total += loss
    count += 1
    report(first_step + count)
  if not count:
    raise ValueError("the training batch iterator yielded no batch")
  return state, float(total) / count


def fit(
  model: nn.Module,
  variables: Variables,
  train_batches: Callable[[int], Iterator[Batch]],
  validation_batches: Callable[[], Iterable[Batch]],
  recipe: recipes.Recipe,
  workdir: str,
  *,
  rng: jax.Array,
  writer: metric_writers.MetricWriter | None = None,
) -> FitResult:
  """Trains through the recipe's stages, resuming a run saved in `workdir`.

  Every pass takes up to `recipe.eval_every` steps from
  `train_batches(pass_index)`, then evaluates on `validation_batches()`
  (`evaluation.evaluate`). An improvement of the validation loss saves the
  best variables; when the drop counter reaches the stage's patience the
  next stage starts from the best variables with a fresh optimizer state,
  and after the last stage the run stops. It also stops at
  `recipe.max_evals` passes. The state is saved after every pass.

  Args:
    model: `apply(variables, x, train, mutable, rngs)` -> logits
      [B, n_tags], with dropout (if any) on the "dropout" stream.
    variables: {"params"[, "batch_stats"]}, the starting point (unused
      when resuming, except for shapes).
    train_batches: pass index -> iterator of {"inputs": float32 [B, ...],
      "tags": float32 [B, n_tags] multi-hot}; called once per pass, so a
      resumed run re-seeds its stream from the pass index.
    validation_batches: () -> evaluation batches ({"inputs" [B, K, ...],
      "tags", "mask"}); called once per pass, read once.
    recipe: stages and budget; a resume must use the same one, except for
      `max_evals`.
    workdir: folder of the checkpoints (`checkpoints.RunCheckpoints`).
    rng: key of the run; dropout uses `fold_in(rng, step)`. Pass the same
      key when resuming.
    writer: TensorBoard scalars per pass (x axis: step), and steps/s.

  Returns:
    The best variables, their validation figures and the history.

  Raises:
    mcl.train.NonFiniteLossError: a pass's training loss was NaN or
      infinite; its state is saved under `<workdir>/nonfinite` first (the
      last finite pass stays in `<workdir>/latest`).
    ValueError: `train_batches` yielded no batch, a validation pass had no
      unmasked clip, or the workdir's run used another schedule.
  """
  checkpoints = run_checkpoints.RunCheckpoints(workdir)
  try:
    state, best, progress = _start_or_resume(checkpoints, variables, recipe)
    optimizer = recipes.stage_optimizer(recipe.stages[progress.stage], recipe)
    report = periodic_actions.ReportProgress(
      num_train_steps=recipe.max_evals * recipe.eval_every,
      writer=writer,
      every_secs=60.0,
    )
    while progress.passes < recipe.max_evals and not progress.stopped:
      stage = recipe.stages[progress.stage]
      state, train_loss = _train_pass(
        model,
        state,
        train_batches(progress.passes),
        rng,
        optimizer,
        recipe.eval_every,
        report,
      )
      steps_done = int(state.step)
      if not math.isfinite(train_loss):
        directory = run_checkpoints.save_nonfinite(
          workdir,
          steps_done,
          {"state": _state_tree(state)},
          {"pass": progress.passes, "stage": progress.stage},
        )
        logging.error("non-finite training loss; state saved to %s", directory)
        raise mcl_train.NonFiniteLossError(
          steps_done, jax.device_get(state.params)
        )
      result = evaluation.evaluate(
        model,
        step.variables_of(state.params, state.batch_stats),
        validation_batches(),
      )
      record = PassRecord(
        index=progress.passes,
        step=steps_done,
        stage=progress.stage,
        learning_rate=stage.learning_rate,
        train_loss=train_loss,
        validation_loss=result.loss,
        validation_roc_auc=result.roc_auc,
        validation_pr_auc=result.pr_auc,
        improved=result.loss < progress.best_loss,
      )
      _log_pass(record, writer)
      progress.history.append(record)
      progress.passes += 1
      if record.improved:
        # Host copies (np.array copies): the next step donates the state.
        best = jax.tree.map(
          np.array, {"params": state.params, "batch_stats": state.batch_stats}
        )
        progress.best_pass, progress.best_loss = record.index, result.loss
        progress.best_roc_auc, progress.best_pr_auc = (
          result.roc_auc, result.pr_auc,
        )  # fmt: skip
        checkpoints.save_best(progress.passes, best, dataclasses.asdict(record))
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
          optimizer = recipes.stage_optimizer(next_stage, recipe)
          state = _fresh_state(state.step, best, optimizer)
          logging.info(
            "stage %d: %s at lr %g from the best pass %d",
            progress.stage,
            next_stage.optimizer,
            next_stage.learning_rate,
            progress.best_pass,
          )
      metadata = dataclasses.asdict(progress)
      metadata["schedule"] = _schedule(recipe)
      checkpoints.save_latest(
        progress.passes, {"state": _state_tree(state), "best": best}, metadata
      )
  finally:
    checkpoints.close()
  logging.info(
    "%d passes, %d steps; best pass %d: validation loss %.4f",
    progress.passes,
    int(state.step),
    progress.best_pass,
    progress.best_loss,
  )
  return FitResult(
    variables=best,
    validation_loss=progress.best_loss,
    validation_roc_auc=progress.best_roc_auc,
    validation_pr_auc=progress.best_pr_auc,
    best_pass=progress.best_pass,
    steps=int(state.step),
    history=tuple(progress.history),
  )


def _log_pass(
  record: PassRecord, writer: metric_writers.MetricWriter | None
) -> None:
  logging.info(
    "pass %d (stage %d, lr %g), step %d: train loss %.4f, validation loss "
    "%.4f, ROC-AUC %s, PR-AUC %s%s",
    record.index,
    record.stage,
    record.learning_rate,
    record.step,
    record.train_loss,
    record.validation_loss,
    record.validation_roc_auc,
    record.validation_pr_auc,
    " (best)" if record.improved else "",
  )
  if writer is None:
    return
  scalars = {
    "train/loss": record.train_loss,
    "train/learning_rate": record.learning_rate,
    "train/stage": record.stage,
    "validation/loss": record.validation_loss,
  }
  if record.validation_roc_auc is not None:
    scalars["validation/roc_auc"] = record.validation_roc_auc
  if record.validation_pr_auc is not None:
    scalars["validation/pr_auc"] = record.validation_pr_auc
  writer.write_scalars(record.step, scalars)
  writer.flush()
