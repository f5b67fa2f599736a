"""The stage and patience rule of a fit, without a network or a device."""

import dataclasses
import json
import math
import subprocess
import sys

from mcl.trainer import recipe as recipes
from mcl.trainer import schedule


def _record(progress, loss):
  return schedule.PassRecord(
    index=progress.passes,
    step=10 * (progress.passes + 1),
    stage=progress.stage,
    learning_rate=1e-3,
    train_loss=1.0,
    validation_loss=loss,
    scores={"accuracy": 0.5},
    improved=loss < progress.best_loss,
  )


def _run(recipe, losses, progress=None):
  progress = progress or schedule.Progress()
  stages = []
  for loss in losses:
    if not schedule.running(progress, 10 * progress.passes, recipe):
      break
    progress = schedule.advance(progress, _record(progress, loss), recipe)
    stages.append(progress.stage)
  return progress, stages


def test_patience_resets_on_improvement_and_ends_the_last_stage():
  recipe = recipes.continual(
    learning_rate=1e-3, max_steps=1000, eval_every=10, patience=2
  )
  progress, _ = _run(recipe, [3.0, 2.0, 2.5, 1.0, 1.5, 1.6, 0.1])
  # 1.0 at pass 3 reset the counter; 1.5 and 1.6 ran out the patience.
  assert progress.stopped and progress.passes == 6
  assert progress.best_pass == 3 and progress.best_loss == 1.0
  assert [r.improved for r in progress.history] == [
    True, True, False, True, False, False,
  ]  # fmt: skip


def test_stages_advance_from_drop_counts_without_resetting():
  recipe = recipes.Recipe(
    stages=(
      recipes.Stage("adam", 1e-4, 3),
      recipes.Stage("sgd", 1e-3, 2),
      recipes.Stage("sgd", 1e-4, 2),
    ),
    weight_decay=1e-4,
    momentum=0.9,
    eval_every=10,
    max_evals=100,
    patience_resets_on_improvement=False,
  )
  patiences = [s.patience for s in recipe.stages]
  losses = [1.0 / (i + 1) for i in range(sum(patiences))]  # Always better.
  progress, stages = _run(recipe, losses)
  # Fixed-length stages: every improvement still counts as a drop.
  assert stages == [0, 0, 1, 1, 2, 2, 2]
  assert progress.stopped and progress.best_pass == sum(patiences) - 1


def test_budgets_end_the_fit():
  recipe = recipes.continual(
    learning_rate=1e-3, max_steps=40, eval_every=10, patience=50
  )
  progress, _ = _run(recipe, [1.0] * 10)
  assert progress.passes == 4 and not progress.stopped
  capped = dataclasses.replace(recipe, max_steps=25)
  assert schedule.running(schedule.Progress(), 20, capped)
  assert schedule.pass_steps(20, capped) == 5
  assert not schedule.running(schedule.Progress(), 25, capped)


def test_scored_initial_variables_are_beaten_only_by_a_lower_loss():
  recipe = recipes.continual(
    learning_rate=1e-3, max_steps=100, eval_every=10, patience=3
  )
  start = schedule.Progress().scored_initial(0.5, {"accuracy": 0.9})
  progress, _ = _run(recipe, [0.7, 0.6, 0.8], start)
  assert progress.best_pass == -1 and progress.best_loss == 0.5
  assert progress.best_scores == {"accuracy": 0.9} and progress.stopped
  assert math.isinf(schedule.Progress().best_loss)


def test_progress_round_trips_through_json_metadata():
  recipe = recipes.continual(
    learning_rate=1e-3, max_steps=100, eval_every=10, patience=3
  )
  progress, _ = _run(recipe, [0.7, 0.6])
  metadata = json.loads(json.dumps(dataclasses.asdict(progress)))
  metadata["schedule"] = {"ignored": True}
  assert schedule.Progress.from_json(metadata) == progress


def test_the_schedule_imports_no_jax():
  code = "import sys, mcl.trainer.schedule; print('jax' in sys.modules)"
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == "False"
