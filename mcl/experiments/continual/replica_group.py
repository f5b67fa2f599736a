"""A replica group: continual runs that differ only in seed and fold, run
as one program (`mcl.trainer.replicas`).

Each run of the group runs its own `mcl.experiments.run` in a thread of its
own: its data, method, surgery, scoring, checkpoints and results.json are
exactly a lone run's. Only its phases' fits go elsewhere: a run's
`fitter` hands the phase's `fit.fit` arguments to the group's `_Barrier`
and waits. When every run still going waits at a phase, the barrier
trains the waiting phases together, one `replicas.fit_replicas` per kind
of phase (same network, mask and term shapes, loss and recipe), each
stacked to the group's size so that every kind compiles its step once
however many runs share it; then it hands each run its `FitResult` (or
its `NonFiniteLossError`) and the runs go on to their host work (DEN's
surgery, scoring, checkpoints) until they next wait.

A run that resumes (its task checkpoints, as a lone run's) may be at
another task than the others: phases of equal shapes still train
together. A run that fails leaves the group; the others go on.
"""

import threading
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from mcl.continual import slots
from mcl.runtime import errors
from mcl.trainer import replicas

# The settings in which a group's runs may differ.
REPLICA_KEYS = ("seed", "data.fold")


def thread_name(index: int) -> str:
  """The thread of the group's run `index` (its log records carry it)."""
  return f"replica{index}"


def check_group(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises `mcl.runtime.errors.UserError` unless the configs differ only
  in `REPLICA_KEYS` and are continual experiments."""

  def rest(config):
    flat = dict(_flatten(config.to_dict()))
    for key in REPLICA_KEYS:
      flat.pop(key, None)
    return flat

  first = rest(configs[0])
  for config in configs:
    if config.experiment != "continual":
      raise errors.UserError(
        f"replica groups run continual experiments, not {config.experiment!r}"
      )
    other = rest(config)
    if other != first:
      keys = sorted(k for k in first.keys() | other.keys()
                    if first.get(k) != other.get(k))  # fmt: skip
      raise errors.UserError(
        f"a replica group's runs may differ only in {REPLICA_KEYS}; "
        f"these differ: {keys}"
      )


def _flatten(tree: dict, prefix: str = ""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _kind(call: dict):
  """What must be equal for two phases to train in one stack."""
  arrays = (call["variables"], call.get("trainable"), call.get("penalty"),
            call.get("proximal"))  # fmt: skip
  # Shapes and dtypes only: no leaf is copied off its device.
  shapes = tuple(
    (np.shape(a), a.dtype if hasattr(a, "dtype") else np.result_type(a))
    for a in jax.tree.leaves(arrays)
  )
  return (jax.tree.structure(arrays), shapes, call["model"], call["loss"],
          call["recipe"])  # fmt: skip


class _Barrier:
  """Collects the group's phase calls and trains them (module docstring)."""

  def __init__(self, size: int, strategy: str | None):
    self.size = size
    self.strategy = strategy
    self.live = size
    self.waiting: dict[int, dict] = {}
    self.done: dict[int, object] = {}
    self.condition = threading.Condition()
    # Capacity slots of growing methods, shared (`slots.Floor`).
    self.slot_floor = slots.Floor()

  def fitter(self, replica: int) -> "_Fitter":
    """`fit.fit`'s signature: replica `replica`'s phases go to the group."""
    return _Fitter(self, replica)

  def fit(self, replica: int, call: dict):
    """Waits until replica `replica`'s phase `call` has been trained."""
    with self.condition:
      self.waiting[replica] = call
      self.condition.notify_all()
      self.condition.wait_for(lambda: replica in self.done)
      outcome = self.done.pop(replica)
    if isinstance(outcome, BaseException):
      raise outcome
    return outcome

  def leave(self) -> None:
    """A run has ended (finished or failed)."""
    with self.condition:
      self.live -= 1
      self.condition.notify_all()

  def serve(self) -> None:
    """Trains the waiting phases whenever every live run waits; returns
    when no run is left."""
    while True:
      with self.condition:
        self.condition.wait_for(lambda: len(self.waiting) >= self.live)
        if not self.live:
          return
        calls, self.waiting = self.waiting, {}
      outcomes = {}
      groups: dict = {}
      for replica, call in sorted(calls.items()):
        groups.setdefault(_kind(call), []).append(replica)
      for members in groups.values():
        results = _fit([calls[m] for m in members], self.size, self.strategy)
        outcomes.update(zip(members, results, strict=True))
      with self.condition:
        self.done.update(outcomes)
        self.condition.notify_all()


class _Fitter:
  """A run's phase trainer in a group: `fit.fit`'s signature, and the
  group's `slot_floor` for `mcl.continual.slots.PaddedContext`."""

  def __init__(self, barrier: _Barrier, replica: int):
    self.barrier = barrier
    self.replica = replica
    self.slot_floor = barrier.slot_floor

  def __call__(self, model, variables, train_batches, evaluate, recipe, **kw):
    call = dict(kw, model=model, variables=variables, recipe=recipe,
                train_batches=train_batches, evaluate=evaluate,
                thread=thread_name(self.replica))  # fmt: skip
    return self.barrier.fit(self.replica, call)


def _fit(calls, size, strategy) -> list:
  """`replicas.fit_replicas`, or its error for every call."""
  try:
    return replicas.fit_replicas(calls, size, strategy)
  except Exception as error:  # Each run raises it in its own thread.
    return [error] * len(calls)


def run_group(run_one, configs, workdirs, strategy: str | None = None) -> list:
  """Runs `run_one(config, workdir, fitter)` of every run as one group.

  Args:
    run_one: runs one run with the given fitter (e.g.
      `mcl.experiments.run` with `fitter=`); returns its results.json.
    configs: the runs' configs; they differ only in `REPLICA_KEYS`.
    workdirs: their folders, one per config.
    strategy: `mcl.trainer.replicas` strategy, or None for the backend's.

  Returns:
    Per run, in order: its results.json dict, or the exception it raised.

  Raises:
    mcl.runtime.errors.UserError: configs that differ in other settings.
  """
  check_group(configs)
  if len(set(workdirs)) != len(workdirs):
    raise errors.UserError(f"a replica group's workdirs repeat: {workdirs}")
  barrier = _Barrier(len(configs), strategy)
  outcomes: list = [None] * len(configs)

  def replica(index):
    try:
      outcomes[index] = run_one(
        configs[index], workdirs[index], barrier.fitter(index)
      )
    except BaseException as error:  # Reported per run by the caller.
      outcomes[index] = error
    finally:
      barrier.leave()

  # Daemons: an interrupted group does not wait for runs blocked at
  # the barrier.
  threads = [
    threading.Thread(
      target=replica, args=(i,), name=thread_name(i), daemon=True
    )
    for i in range(len(configs))
  ]
  for thread in threads:
    thread.start()
  barrier.serve()
  for thread in threads:
    thread.join()
  return outcomes
