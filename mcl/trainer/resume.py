"""A fit's saved state: starting fresh or from `latest/`, saving a pass.

What `mcl.trainer.fit.fit` keeps in its workdir through
`mcl.trainer.checkpointing.RunCheckpoints`: after every pass the train
state, the best variables and the `mcl.trainer.schedule.Progress` (with
the recipe, less `max_evals`, which a resume may raise); on a non-finite
loss the state under `<workdir>/nonfinite`. A fit called again on the
same workdir starts where the latest save left it.
"""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
from absl import logging

from mcl.trainer import checkpointing, parallel, schedule, train
from mcl.trainer import recipe as recipes

Variables = dict


def schedule_json(recipe: recipes.Recipe) -> dict:
  """The recipe as JSON without `max_evals`, which a resume may raise."""
  fields = dataclasses.asdict(recipe)
  del fields["max_evals"]
  return json.loads(json.dumps(fields))


def state_tree(state: train.TrainState) -> dict:
  """The state's arrays as the checkpoint's tree."""
  return {
    "step": state.step,
    "params": state.params,
    "batch_stats": state.batch_stats,
    "opt_state": state.opt_state,
  }


def host_variables(variables: Variables) -> Variables:
  """{"params", "batch_stats"} as numpy ({} batch_stats when absent)."""
  return jax.device_get(
    {
      "params": variables["params"],
      "batch_stats": variables.get("batch_stats", {}),
    }
  )


def start(model, variables, recipe, checkpoints, mesh):
  """The state, best variables and progress: fresh, or from `latest/`."""
  initial = host_variables(variables)
  tx = recipes.stage_direction(recipe.stages[0], recipe)
  if checkpoints is None or checkpoints.latest_passes() is None:
    state = train.TrainState.create(model, initial, tx)
    return parallel.replicate(state, mesh), initial, schedule.Progress()
  metadata = checkpoints.latest_metadata()
  if metadata["schedule"] != schedule_json(recipe):
    raise ValueError(
      f"the workdir's run used {metadata['schedule']}, "
      f"not {schedule_json(recipe)}"
    )
  progress = schedule.Progress.from_json(metadata)
  tx = recipes.stage_direction(recipe.stages[progress.stage], recipe)
  target = {
    "state": state_tree(train.TrainState.create(model, initial, tx)),
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


def stop_if_nonfinite(train_loss, state, progress, workdir) -> None:
  """Raises `NonFiniteLossError` (the state saved, with a workdir)."""
  if math.isfinite(train_loss):
    return
  steps_done = int(state.step)
  if workdir:
    directory = checkpointing.save_nonfinite(
      workdir,
      steps_done,
      {"state": state_tree(state)},
      {"pass": progress.passes, "stage": progress.stage},
    )
    logging.error("non-finite loss; state saved to %s", directory)
  raise train.NonFiniteLossError(steps_done, jax.device_get(state.params))


def save_latest(checkpoints, state, best, progress, recipe) -> None:
  """The state, the best variables and the progress after a pass."""
  metadata = dataclasses.asdict(progress)
  metadata["schedule"] = schedule_json(recipe)
  checkpoints.save_latest(
    progress.passes, {"state": state_tree(state), "best": best}, metadata
  )
