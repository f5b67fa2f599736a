"""The tuning protocol on hand-made runs: selection, final plan, resume."""

import json
import os

import pytest

from mcl.analysis import protocol, sweep
from tests import forks

GRIDS = {
  "stl": [{"method": "stl"}],
  "ewc": [
    {"method": "ewc", "ewc.strength": 1.0},
    {"method": "ewc", "ewc.strength": 10.0},
    {"method": "ewc", "ewc.strength": 100.0},
  ],
}
VARIANTS = {
  "stl": protocol.Variant("stl"),
  "ewc": protocol.Variant("ewc"),
  "ewc_small": protocol.Variant("ewc", {"ewc.fisher_batches": 1}),
}

# Validation accuracy of the hand-made tuning runs: {(grid, config): per
# fold}; the nonzero parameters are 1000 + 10 * config.
VALIDATION = {
  ("stl", 0): [0.9, 0.8, 0.7],
  ("ewc", 0): [0.5, 0.75, 0.6],
  ("ewc", 1): [0.7, 0.75, 0.6],
  ("ewc", 2): [0.6, 0.5, 0.6],
}


def _protocol(seeds=(0, 1)):
  return protocol.Protocol(
    config="configs/gtzan.py",
    budget={"train.fit.max_steps": 4},
    grids=GRIDS,
    variants=VARIANTS,
    folds=(0, 1, 2),
    seeds=seeds,
  )


def _results(validation, test, params, tasks=2):
  """A results.json whose validation and test figures differ."""
  return {
    "tasks": [["a", "b"]] * tasks,
    "finished_tasks": tasks,
    "validation_accuracy_matrix": [[1.0, None], [1.0, 2 * validation - 1.0]],
    "accuracy_matrix": [[test, None], [test, test]],
    "auroc_matrix": [[test, None], [test, test]],
    "average_accuracy": test,
    "final_auroc": test,
    "final_pr_auc": test,
    "final_class_incremental_accuracy": test,
    "mean_diagonal_accuracy": test,
    "bwt": 0.0,
    "fwt": None,
    "forgetting": [0.0],
    "total_nonzero_params": params,
    "seconds_per_task": [1.0, 1.0],
  }


def _write(root, run, results):
  path = sweep.workdir(root, run)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump(results, f)


def _write_tuning(root, definition, test_of=lambda grid, index, fold: 0.5):
  for (grid, index), per_fold in VALIDATION.items():
    for fold, validation in zip(definition.folds, per_fold, strict=True):
      run = protocol.tuning_run(definition, grid, index, fold)
      test = test_of(grid, index, fold)
      _write(root, run, _results(validation, test, 1000 + 10 * index))


def test_validation_figures_read_the_last_validation_row():
  results = _results(0.75, 0.1, 1234)
  assert protocol.validation_figures(results) == (0.75, 1234)


def test_selection_follows_validation_and_breaks_ties_by_parameters(tmp_path):
  root = str(tmp_path)
  definition = _protocol()
  _write_tuning(root, definition)
  selection = protocol.select(definition, root)
  # Fold 0: c1 is best. Fold 1: c0 and c1 tie at 0.75, c0 has fewer
  # parameters. Fold 2: all tie at 0.6, c0 has the fewest.
  assert selection.chosen["ewc"] == {0: 1, 1: 0, 2: 0}
  assert selection.chosen["stl"] == {0: 0, 1: 0, 2: 0}
  assert selection.scores["ewc"][0] == pytest.approx([0.5, 0.7, 0.6])
  assert protocol.choose([0.5, 0.5], [10, 10]) == 0  # Then grid order.
  assert protocol.choose([0.5, 0.5], [20, 10]) == 1


def test_selection_never_reads_test_figures(tmp_path):
  definition = _protocol()
  clean, poisoned = str(tmp_path / "clean"), str(tmp_path / "poisoned")
  _write_tuning(clean, definition)
  chosen = protocol.select(definition, clean).chosen

  # Poison: every test figure says the configurations not chosen are
  # perfect and the chosen ones are useless.
  def test_of(grid, index, fold):
    return 0.0 if chosen[grid][fold] == index else 1.0

  _write_tuning(poisoned, definition, test_of)
  assert protocol.select(definition, poisoned).chosen == chosen

  # The same change to a validation figure does change the choice.
  run = protocol.tuning_run(definition, "ewc", 2, 0)
  _write(poisoned, run, _results(1.0, 0.0, 1020))
  assert protocol.select(definition, poisoned).chosen["ewc"][0] == 2


def test_selection_requires_every_tuning_run(tmp_path):
  root = str(tmp_path)
  definition = _protocol()
  _write_tuning(root, definition)
  os.remove(
    os.path.join(
      sweep.workdir(root, protocol.tuning_run(definition, "ewc", 1, 2)),
      "results.json",
    )
  )
  with pytest.raises(ValueError, match="1 tuning runs have not finished"):
    protocol.select(definition, root)


def test_final_plan_reuses_selected_tuning_runs_for_the_first_seed(tmp_path):
  root = str(tmp_path)
  definition = _protocol()
  _write_tuning(root, definition)
  selection, plan = protocol.prepare_final(definition, root)
  # Seed 0: stl and ewc link to their chosen tuning runs, ewc_small runs.
  # Seed 1: every variant on every fold runs.
  assert len(plan.links) == 2 * 3
  assert len(plan.runs) == 3 + 3 * 3
  link = os.path.join(root, "final", "ewc", "fold0_seed0")
  assert os.path.realpath(link) == os.path.realpath(
    os.path.join(root, "tuning", "ewc_c1", "fold0_seed0")
  )
  assert sweep.finished(root, sweep.Run("final/ewc", "fold0_seed0", {}))
  by_name = {(r.label, r.name): r.overrides for r in plan.runs}
  small = by_name["final/ewc_small", "fold0_seed0"]
  assert small["ewc.strength"] == 10.0 and small["ewc.fisher_batches"] == 1
  assert by_name["final/ewc", "fold1_seed1"] == {
    "train.fit.max_steps": 4,
    "method": "ewc",
    "ewc.strength": 1.0,
    "data.fold": 1,
    "seed": 1,
  }
  with open(os.path.join(root, "selection.json")) as f:
    selection_json = json.load(f)
  assert selection_json["chosen"]["ewc"] == {"0": 1, "1": 0, "2": 0}
  # Hand-made tuning runs carry no provenance: all 12 counted as such.
  assert selection_json["provenance"] == [{"runs": 12, "provenance": None}]
  with open(os.path.join(root, "selection.md")) as f:
    table = f.read()
  assert (
    "| ewc | c1: ewc.strength=10.0 | 0.683 | **0.700** | 0.750 | 0.600"
    in (table)
  )


class _Interrupted(Exception):
  pass


def _executor(root, log, stop_after=None):
  """Writes each run's results.json from its overrides, like a trainer
  whose validation score is VALIDATION's; raises after `stop_after`."""

  def execute(runs):
    for run in runs:
      if stop_after is not None and len(log) == stop_after:
        raise _Interrupted
      grid = run.overrides["method"]
      strengths = [c.get("ewc.strength") for c in GRIDS[grid]]
      index = strengths.index(run.overrides.get("ewc.strength"))
      validation = VALIDATION[grid, index][run.overrides["data.fold"]]
      _write(root, run, _results(validation, 0.5, 1000 + 10 * index))
      log.append((run.label, run.name))
    return 0

  return execute


def test_an_interrupted_protocol_resumes_without_rerunning(tmp_path):
  definition = _protocol()
  reference, log = str(tmp_path / "reference"), []
  protocol.run(definition, reference, _executor(reference, log))
  every_run = list(log)
  assert len(every_run) == 4 * 3 + 12  # Tuning, then the final runs.

  for stop_after in (5, 15):  # Once in tuning, once in the final runs.
    root, log = str(tmp_path / f"stopped{stop_after}"), []
    with pytest.raises(_Interrupted):
      protocol.run(definition, root, _executor(root, log, stop_after))
    done = list(log)
    assert len(done) == stop_after
    selection, failures = protocol.run(definition, root, _executor(root, log))
    assert failures == 0
    resumed = log[len(done) :]
    assert not set(resumed) & set(done)  # Nothing ran twice.
    assert sorted(done + resumed) == sorted(every_run)
    assert selection.chosen["ewc"] == {0: 1, 1: 0, 2: 0}


def test_final_seeds_apart_from_the_tuning_seed_are_all_new_runs(tmp_path):
  root = str(tmp_path)
  _write_tuning(root, _protocol())
  definition = _protocol(seeds=(1, 2))
  plan = protocol.prepare_final(definition, root)[1]
  assert not plan.links and len(plan.runs) == 2 * 3 * 3
  assert {r.overrides["seed"] for r in plan.runs} == {1, 2}


def test_a_run_of_another_config_is_an_error_not_a_finished_run(tmp_path):
  root = str(tmp_path)
  definition = _protocol()
  run = protocol.tuning_run(definition, "ewc", 1, 0)
  results = _results(0.5, 0.5, 1000)
  results["config"] = {"train": {"fit": {"max_steps": 40}}, "ewc": {}}
  _write(root, run, results)
  with pytest.raises(ValueError, match="max_steps=40, this sweep asks for 4"):
    sweep.finished(root, run)


def test_links_are_repointed_and_never_replace_a_run(tmp_path):
  final = str(tmp_path / "final" / "a" / "fold0_seed0")
  first, second = str(tmp_path / "t" / "c0"), str(tmp_path / "t" / "c1")
  protocol.make_links({final: first})
  protocol.make_links({final: second})
  assert os.path.realpath(final) == os.path.realpath(second)
  os.remove(final)
  os.makedirs(final)
  with pytest.raises(ValueError, match="a folder where the protocol needs"):
    protocol.make_links({final: first})


def test_grids_of_methods_with_hyper_parameters_have_one_size():
  with pytest.raises(ValueError, match="differ"):
    protocol.Protocol(
      config="c.py",
      budget={},
      grids={**GRIDS, "l2": [{"method": "l2"}] * 2},
      variants=VARIANTS,
      folds=(0,),
      seeds=(0,),
    )


_PROTOCOL_FILE = """
from tests import test_protocol


def get_protocol(seeds=(0, 1), budget="cpu"):
  del budget
  return test_protocol._protocol(seeds=tuple(seeds))
"""


def _sweep_cli(forked, *args):
  """launch/sweep.py as a script, in a process of its own (forked)."""
  script = os.path.join(forks.ROOT, "launch", "sweep.py")
  return forked.run(
    f"import runpy\nrunpy.run_path({script!r}, run_name='__main__')\n", args
  )


def test_print_only_prints_tuning_then_final_commands(tmp_path, forked):
  path = tmp_path / "protocol_file.py"
  path.write_text(_PROTOCOL_FILE)
  root = str(tmp_path / "root")
  args = (f"--protocol={path}", f"--root={root}", "--print_only")
  first = _sweep_cli(forked, *args)
  assert first.returncode == 0, first.stderr
  lines = [x for x in first.stdout.splitlines() if "mcl.main" in x]
  assert len(lines) == 4 * 3 and "tuning/ewc_c2/fold2_seed0" in lines[-1]

  _write_tuning(root, _protocol())
  second = _sweep_cli(forked, *args)
  assert second.returncode == 0, second.stderr
  lines = [x for x in second.stdout.splitlines() if "mcl.main" in x]
  assert len(lines) == 3 + 3 * 3  # The first seed's own rows are links.
  assert all("/final/" in x for x in lines)
  assert "--config.ewc.fisher_batches=1" in second.stdout
  assert os.path.exists(os.path.join(root, "selection.md"))

  unfinished = _sweep_cli(
    forked,
    f"--protocol={path}",
    f"--root={tmp_path / 'empty'}",
    "--aggregate_only",
  )
  assert unfinished.returncode != 0
  assert "tuning runs have not finished" in unfinished.stderr
