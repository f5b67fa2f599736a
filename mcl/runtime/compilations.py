"""XLA compilations by function, counted from jax's monitoring events.

What `JAX_LOG_COMPILES=1` lists, as numbers: every backend compilation
("/jax/core/compile/backend_compile_duration") counted and timed per
jitted function name (e.g. "jit(train_step)"). The benchmarks in
`launch/` and the tests' `compilations` fixture read it.
"""

import collections

import jax

_EVENT = "/jax/core/compile/backend_compile_duration"


class Compilations:
  """Counts while registered (a context manager).

  Attributes:
    counts: {function name: compilations}.
    seconds: {function name: seconds spent compiling it}.
  """

  def __init__(self):
    self.counts = collections.Counter()
    self.seconds = collections.Counter()

  def _listen(self, event: str, duration: float, **kwargs) -> None:
    if event == _EVENT:
      name = kwargs.get("fun_name", "?")
      self.counts[name] += 1
      self.seconds[name] += duration

  def clear(self) -> None:
    self.counts.clear()
    self.seconds.clear()

  def start(self) -> "Compilations":
    """Counts from now on."""
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def stop(self) -> None:
    jax.monitoring.unregister_event_duration_listener(self._listen)

  def __enter__(self) -> "Compilations":
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()
