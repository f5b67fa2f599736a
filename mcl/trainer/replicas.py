"""R fits in lockstep: one jitted step over states stacked on a replica axis.

Runs that share a config and differ in seed or fold train networks of one
shape. `fit_replicas` takes R calls of `mcl.trainer.fit.fit`'s arguments
and trains them together: their train states (parameters, optimizer
state, step) and the phase's arrays (learning rate, mask, penalty and
proximal arguments) are stacked on a leading axis of size R, and one
jitted `replica_step` updates all of them per step, so R fits cost one
compilation and one dispatch per step.

- Early stopping per replica, by mask: each replica keeps its own
  `mcl.trainer.schedule.Progress`; a replica whose schedule has stopped
  (or whose loss went non-finite) stays in the stack with `active` False,
  and the step writes its old state back, so its parameters do not
  change. Its training stream is not read again.
- Equal to the fit done alone: the same schedule, the same stream reads,
  the same validation passes and selection; only the step's arithmetic
  is batched (float rounding, see BUILD_NOTES "Replica groups").
- Strategies: "vmap" maps `mcl.trainer.train.step` over the replica axis
  (a convolution with per-replica kernels becomes one grouped
  convolution: the GPU's choice); "unroll" writes R copies of the step in
  one program (XLA:CPU runs grouped convolutions about 4x slower than R
  plain ones, BUILD_NOTES "Replica groups"). `default_strategy` picks by
  backend.
- Validation passes stay per replica (each call's `evaluate`), on the
  replica's slice of the stack. A call's "thread" names the thread whose
  log records a replica's pass lines should look like (a replica group's
  run logs its own thread's records to its log.txt); the calling thread
  takes that name while it scores the replica.

Limits: one-stage recipes (a continual phase), no per-pass workdir (runs
resume per task), one device (the replica axis is not sharded).
"""

import contextlib
import functools
import threading
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from mcl.trainer import fit, parallel, resume, schedule, train

STRATEGIES = ("vmap", "unroll")


def default_strategy() -> str:
  """ "unroll" on CPU, "vmap" on GPU and TPU (see the module docstring)."""
  return "unroll" if jax.default_backend() == "cpu" else "vmap"


def stack(trees: Sequence):
  """Trees of one structure -> one tree of arrays with a leading axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree, index: int):
  """Replica `index`'s slice of a stacked tree."""
  return jax.tree.map(lambda leaf: leaf[index], tree)


@functools.partial(jax.jit, donate_argnums=0, static_argnames="strategy")
def replica_step(states, batches, phases, rngs, active, *, strategy: str):
  """One `mcl.trainer.train.step` of every replica.

  Args:
    states: `TrainState` with every array stacked on axis 0 (size R);
      donated.
    batches: {"inputs": float32 [R, B, ...], targets [R, B, ...]}.
    phases: `train.Phase` with its arrays stacked (learning rate [R]).
    rngs: [R] keys of the replicas' runs.
    active: bool [R]; an inactive replica's state is returned unchanged.
    strategy: "vmap" or "unroll" (module docstring).

  Returns:
    (states, {"loss": float32 [R], "data_loss": float32 [R]}).
  """

  def one(state, batch, phase, rng, live):
    new, metrics = train.step(state, batch, phase, rng)
    kept = jax.tree.map(lambda n, o: jnp.where(live, n, o), new, state)
    return kept, metrics

  if strategy == "vmap":
    return jax.vmap(one)(states, batches, phases, rngs, active)
  outputs = [
    one(*unstack((states, batches, phases, rngs, active), r))
    for r in range(active.shape[0])
  ]
  return stack(outputs)


class _Replica:
  """One call's side of `fit_replicas`: its schedule, stream and best."""

  def __init__(self, call: dict, state, best, progress):
    self.call = call
    self.state = state  # Only until stacked.
    self.best = best
    self.progress = progress
    self.error: BaseException | None = None
    self.report = call.get("on_step") or (lambda step: None)
    self.log = (call.get("name", "fit"), call.get("writer"))
    self.offset = call.get("step_offset", 0)

  @contextlib.contextmanager
  def named(self):
    """The calling thread under the call's "thread" name (log records)."""
    thread = threading.current_thread()
    own = thread.name
    thread.name = self.call.get("thread") or own
    try:
      yield
    finally:
      thread.name = own

  def running(self, step: int) -> bool:
    return self.error is None and schedule.running(
      self.progress, step, self.call["recipe"]
    )


def _check(calls: Sequence[dict], size: int) -> None:
  recipe = calls[0]["recipe"]
  if len(recipe.stages) != 1:
    raise ValueError("replicated fits take one-stage recipes")
  if not 0 < len(calls) <= size:
    raise ValueError(f"{len(calls)} calls for {size} replicas")
  for call in calls:
    if call.get("workdir"):
      raise ValueError("replicated fits keep no per-pass workdir")
    if call["recipe"] != recipe:
      raise ValueError("replicated fits share one recipe")


def _phases(calls, stage, size, mesh):
  """The calls' `train.Phase`s stacked, padded with the first's."""
  terms = [
    parallel.replicate(
      (c.get("trainable"), c.get("penalty"), c.get("proximal")), mesh
    )
    for c in calls
  ]
  terms += [terms[0]] * (size - len(calls))
  phases = [
    train.Phase(
      learning_rate=jnp.float32(stage.learning_rate),
      trainable=t[0],
      penalty=t[1],
      proximal=t[2],
      loss=calls[0]["loss"],
    )
    for t in terms
  ]
  return stack(phases)


def fit_replicas(
  calls: Sequence[dict], size: int | None = None, strategy: str | None = None
) -> list:
  """`fit.fit` of every call, trained in lockstep (module docstring).

  Args:
    calls: `fit.fit`'s arguments as dicts (model, variables,
      train_batches, evaluate, recipe, loss, rng, and optionally
      trainable, penalty, proximal, score_initial, writer, step_offset,
      name, on_step, and "thread", see the module docstring); every
      call's network, mask and terms of one shape, one loss and one
      recipe.
    size: R, the stack's size (default len(calls)); slots beyond the
      calls are padding, inactive throughout, so that groups of fewer
      calls reuse the compiled step of R.
    strategy: "vmap" or "unroll" (default `default_strategy()`).

  Returns:
    Per call, in order: its `fit.FitResult`, or the
    `mcl.trainer.train.NonFiniteLossError` its training raised.

  Raises:
    ValueError: a multi-stage recipe, a workdir, calls of other recipes,
      more calls than `size`, a training iterator that yielded nothing,
      or calls whose shapes do not stack.
  """
  size = size or len(calls)
  strategy = strategy or default_strategy()
  _check(calls, size)
  mesh = parallel.data_mesh()
  recipe = calls[0]["recipe"]
  replicas = []
  for call in calls:
    replica = _Replica(
      call, *resume.start(call["model"], call["variables"], recipe, None, mesh)
    )
    if call.get("score_initial"):
      with replica.named():
        result = call["evaluate"](replica.state.variables)
      replica.progress = replica.progress.scored_initial(
        result.loss, result.scores
      )
    replicas.append(replica)
  padding = [replicas[0].state] * (size - len(calls))
  states = stack([r.state for r in replicas] + padding)
  for r in replicas:
    r.state = None
  phases = _phases(calls, recipe.stages[0], size, mesh)
  rngs = jnp.stack([c["rng"] for c in calls] + [calls[0]["rng"]] * len(padding))
  step = 0
  while any(r.running(step) for r in replicas):
    live = [r.running(step) for r in replicas]
    states, losses, count = _train_pass(
      states, replicas, live, phases, rngs, size, step, recipe, strategy
    )
    step += count
    for index, (replica, ran) in enumerate(zip(replicas, live, strict=True)):
      if ran:
        loss = float(losses[index]) / count
        with replica.named():
          _score_pass(replica, unstack(states, index), loss)
  steps = jax.device_get(states.step)
  outcomes = []
  for index, (replica, steps_done) in enumerate(
    zip(replicas, steps[: len(replicas)], strict=True)
  ):
    with replica.named():
      logging.info(
        "%s: replica %d of %d in a stack of %d (%s)",
        replica.log[0], index, len(replicas), size, strategy,
      )  # fmt: skip
      outcomes.append(
        replica.error
        or fit.outcome(
          replica.log[0], replica.progress, replica.best, int(steps_done)
        )  # fmt: skip
      )
  return outcomes


def _train_pass(states, replicas, live, phases, rngs, size, step, recipe, how):
  """Up to a pass of steps of the live replicas; returns the states, the
  summed losses [R] and the step count."""
  steps = schedule.pass_steps(step, recipe)
  streams = [
    iter(r.call["train_batches"](r.progress.passes)) if ran else None
    for r, ran in zip(replicas, live, strict=True)
  ]
  active = jnp.asarray(live + [False] * (size - len(replicas)))
  total, count = jnp.zeros([size]), 0
  for _ in range(steps):
    batches = [next(s, None) if s else None for s in streams]
    if any(s and b is None for s, b in zip(streams, batches, strict=True)):
      raise ValueError("a training batch iterator ran out within a pass")
    first = next(b for b in batches if b is not None)
    filled = [b if b is not None else first for b in batches]
    filled += [first] * (size - len(filled))
    stacked = jax.tree.map(lambda *a: np.stack(a), *filled)
    states, metrics = replica_step(
      states, stacked, phases, rngs, active, strategy=how
    )
    total += metrics["loss"]
    count += 1
    for replica, ran in zip(replicas, live, strict=True):
      if ran:
        replica.report(step + count)
  if not count:
    raise ValueError("the training batch iterator yielded no batch")
  return states, jax.device_get(total), count


def _score_pass(replica: _Replica, state, train_loss: float) -> None:
  """A live replica's validation pass, selection and schedule advance."""
  recipe = replica.call["recipe"]
  try:
    resume.stop_if_nonfinite(train_loss, state, replica.progress, None)
  except train.NonFiniteLossError as error:
    replica.error = error
    return
  result = replica.call["evaluate"](state.variables)
  record = schedule.PassRecord(
    index=replica.progress.passes,
    step=int(state.step),
    stage=0,
    learning_rate=recipe.stages[0].learning_rate,
    train_loss=train_loss,
    validation_loss=result.loss,
    scores=dict(result.scores),
    improved=result.loss < replica.progress.best_loss,
  )
  fit.log_pass(record, replica.log[0], replica.log[1], replica.offset)
  replica.progress = schedule.advance(replica.progress, record, recipe)
  if record.improved:
    best = dict(state.variables)
    best.setdefault("batch_stats", {})
    replica.best = best
