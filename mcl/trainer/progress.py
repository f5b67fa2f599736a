"""Progress of a whole run: task i/T, the phase, steps/s and the run's ETA.

A continual run learns T tasks, each in one or more phases (DEN: sparse,
head, selective, expand, split; a baseline: one) that stop early, so no
step budget predicts its length. The ETA of the run is therefore taken
from whole tasks. A task is expected to last m = max(mean, e) seconds:
the mean time of the tasks finished in this process, task 0 left out once
another has finished (DEN learns task 0 in one phase and later tasks in
four), and at least the e seconds the current task has already taken.
With r tasks after the current one, ETA = r * m + (m - e). Before any
task has finished, m is e plus what the current phase's step budget
leaves at its rate. A rough figure, marked with "~". A tagging run is one
task of one phase.

Every phase logs one line when it ends, and one every `every_secs` while
it runs:

  task 2/5 selective: step 40/150, 12.3 steps/s; run ETA ~3m10s
"""

import time
from collections.abc import Callable

from absl import logging


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  return f"{minutes}m{seconds:02d}s"


class RunProgress:
  """The progress lines of a run (see the module docstring).

  Args:
    num_tasks: T, the tasks of the run.
    every_secs: seconds between lines within a phase.
    clock: seconds, monotonic (a fake one in tests).
  """

  def __init__(
    self,
    num_tasks: int,
    every_secs: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
  ):
    self.num_tasks = num_tasks
    self.every_secs = every_secs
    self._clock = clock
    self._task_seconds = {}  # {task: seconds} finished in this process.
    self._task = None  # (index, start time)
    self._phase = None  # name, budget, start time, first step seen
    self._rate = None
    self._step = 0
    self._last_line = None

  def start_task(self, index: int) -> None:
    """Task `index` (0-based) begins."""
    self._task = (index, self._clock())

  def end_task(self) -> None:
    """The current task has finished (its time enters the ETA)."""
    index, start = self._task
    self._task_seconds[index] = self._clock() - start
    self._task = None

  def eta(self) -> float:
    """Seconds the run still needs, estimated (module docstring)."""
    index, start = self._task
    elapsed = self._clock() - start
    after = self.num_tasks - index - 1
    seconds = dict(self._task_seconds)
    if len(seconds) > 1:
      seconds.pop(0, None)
    if seconds:
      task = max(sum(seconds.values()) / len(seconds), elapsed)
    else:
      phase_left = 0.0
      if self._phase and self._rate:
        phase_left = max(self._phase[1] - self._step, 0) / self._rate
      task = elapsed + phase_left
    return after * task + (task - elapsed)

  def start_phase(self, name: str, step_budget: int) -> Callable[[int], None]:
    """Begins a phase; returns the per-step callback for `mcl.trainer.fit.fit`.

    Args:
      name: the phase's name in the line (e.g. "selective").
      step_budget: its upper bound on steps.

    Returns:
      step -> None, to call with the phase's step count after each step;
      it logs a line at most every `every_secs`.
    """
    now = self._clock()
    self._phase = (name, step_budget, now, None)
    self._rate, self._step, self._last_line = None, 0, now
    return self._on_step

  def _on_step(self, step: int) -> None:
    name, budget, start, first = self._phase
    now = self._clock()
    if first is None:  # The first step compiles: rates start after it.
      self._phase = (name, budget, start, (step, now))
    elif step > first[0] and now > first[1]:
      self._rate = (step - first[0]) / (now - first[1])
    self._step = step
    if now - self._last_line >= self.every_secs:
      self._last_line = now
      logging.info("%s", self.line(f"step {step}/{budget}"))

  def end_phase(self, steps: int) -> str:
    """Logs and returns the phase's closing line."""
    name, _, start, _ = self._phase
    if self._rate is None:
      seconds = self._clock() - start
      self._rate = steps / seconds if seconds > 0 else None
    self._step = steps
    text = self.line(f"{steps} steps")
    logging.info("%s", text)
    self._phase = None
    return text

  def line(self, what: str) -> str:
    """`task i/T <phase>: <what>, <rate>; run ETA ~<duration>`."""
    index, _ = self._task
    name = self._phase[0] if self._phase else "-"
    rate = f"{self._rate:.1f} steps/s" if self._rate else "rate n/a"
    return (
      f"task {index + 1}/{self.num_tasks} {name}: {what}, {rate}; "
      f"run ETA ~{_duration(self.eta())}"
    )
