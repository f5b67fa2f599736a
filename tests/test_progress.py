"""The run's progress lines and ETA, on a fake clock."""

import pytest

from mcl.trainer import progress


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_eta_before_and_after_the_first_task():
  clock = Clock()
  run = progress.RunProgress(num_tasks=3, every_secs=1e9, clock=clock)
  run.start_task(0)
  on_step = run.start_phase("sparse", step_budget=100)
  on_step(1)  # Compiles: 1 step at t = 0.
  clock.now = 10.0
  on_step(51)  # 50 steps in 10 s after compiling.
  # 49 steps left at 5 steps/s: 9.8 s; each later task ~ 10 + 9.8 s.
  assert run.eta() == pytest.approx(9.8 + 2 * 19.8)
  assert run.end_phase(100).startswith("task 1/3 sparse: 100 steps")
  clock.now = 30.0
  run.end_task()  # Task 0 took 30 s: the ETA now counts in tasks.
  run.start_task(1)
  clock.now = 40.0
  assert run.eta() == pytest.approx(1 * 30.0 + (30.0 - 10.0))
  clock.now = 75.0  # Task 1 outlasts task 0: it is the better guess.
  assert run.eta() == pytest.approx(1 * 45.0)
  clock.now = 90.0
  run.end_task()  # Task 1 took 60 s; task 0 (30 s) no longer counts.
  run.start_task(2)
  clock.now = 100.0
  assert run.eta() == pytest.approx(60.0 - 10.0)


def test_lines_name_the_task_phase_rate_and_eta(caplog):
  clock = Clock()
  run = progress.RunProgress(num_tasks=5, every_secs=30.0, clock=clock)
  run.start_task(1)
  on_step = run.start_phase("selective", step_budget=150)
  with caplog.at_level("INFO"):
    for step in range(1, 41):
      clock.now = step * 1.0
      on_step(step)
  lines = [r.getMessage() for r in caplog.records]
  # One line after 30 s, not one per step.
  assert lines == [
    "task 2/5 selective: step 30/150, 1.0 steps/s; run ETA ~9m30s"
  ]
