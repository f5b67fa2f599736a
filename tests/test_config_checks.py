"""Bad settings stop a run at the boundary: one line, exit 2, nothing run.

Each case goes through the entry point's error handling in-process
(`mcl.runtime.errors.usage_errors` around `mcl.experiments.run`, as `mcl.main`
does), with the override parsed as `--config.<key>=<value>` is on the
command line.
"""

import glob
import importlib.util
import os

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from mcl import experiments
from mcl.analysis import protocol
from mcl.continual import registry
from mcl.datasets import from_config, tasks
from mcl.datasets import task_data as data
from mcl.experiments import config_checks, feature_dnn, tagging
from mcl.runtime import errors

# ml_collections loads config files with importlib's load_module.
pytestmark = pytest.mark.filterwarnings(
  "ignore:the load_module:DeprecationWarning"
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
TEST_CONFIG = os.path.join(CONFIGS, "test.py")
TAGGING_CONFIG = os.path.join(CONFIGS, "mtat_fcn.py")
FEATURES_CONFIG = os.path.join(CONFIGS, "gtzan_feature_dnn.py")
DIGITS_CONFIG = os.path.join(CONFIGS, "permuted_digits.py")

# The list (tasks, batch sizes, fit budget, chunks, DEN's k, seed)
# first, then every other checked key of the continual configs.
CONTINUAL_CASES = [
  "tasks=()",
  "tasks=blues",
  "train.batch_size=0",
  "train.batch_size=-4",
  "train.eval_batch_size=0",
  "train.fit.learning_rate=-1",
  "train.fit.patience=0",
  "train.fit.max_steps=0",
  "train.fit.eval_every=0",
  "data.chunk_seconds=0",
  "train.fit.learning_rate=nan",
  "data.eval_chunks=0",
  "den.k=-1",
  "seed=-1",
  "tasks=('blues',)",
  "tasks=(('blues',), ('metal', 'pop'))",
  "tasks=(('blues', 'classical'), 'metal')",
  "train.fit.learning_rate=0",
  "train.fit.learning_rate=inf",
  "data.chunk_seconds=-3",
  "data.chunk_seconds=nan",
  "data.chunk_seconds=0.001",
  "den.sigma=-0.1",
  "den.tau=-1",
  "den.l1=-1",
  "den.l2=nan",
  "den.group_lasso=-1",
  "den.outgoing_scale=-1",
  "den.expansion=grow",
  "den.shared_units=none",
  "den.drift_reference=yesterday",
  "den.split_top_k=-2",
  "den.projection=pca",
  "den.gpm_threshold=1.5",
  "l2.strength=-1",
  "ewc.strength=-1",
  "ewc.fisher_batches=0",
  "lwf.strength=-1",
  "lwf.temperature=0",
  "replay.memory_clips=0",
  "replay.chunks_per_clip=0",
  "replay.batch_size=0",
  "data.num_folds=2",
  "data.fold=5",
  "data.fold=-1",
  "method=nope",
  "model.name=nope",
  "data.source=nope",
  "features.n_mels=0",
  "features.hop_length=0",
  "features.front_end=mfcc",
  "model.widths.dense_widths=(0,)",
]
TAGGING_CASES = [
  "train.batch_size=0",
  "train.eval_batch_size=0",
  "data.eval_chunks=0",
  "train.stages=()",
  "train.stages=(('adam', -1.0, 80),)",
  "train.stages=(('rmsprop', 1e-4, 80),)",
  "train.stages=(('adam', 1e-4, 0),)",
  "train.momentum=1.0",
  "train.weight_decay=-1",
  "train.max_epochs=0",
  "train.steps_per_epoch=-1",
  "train.shuffle_buffer=0",
  "input.length=0",
  "input.feature=mfcc",
  "model.name=nope",
  "data.num_tags=0",
  "seed=-1",
]
FEATURES_CASES = [
  "data.test_folds=(5,)",
  "data.test_folds=()",
  "data.test_folds=(0, 0)",
  "data.num_folds=2",
  "model.hidden=(0,)",
  "model.dropout_rate=1.0",
  "train.fit.eval_every=0",
  "train.fit.learning_rate=-1",
  "train.batch_size=0",
  "seed=-1",
]
DIGITS_CASES = [
  "data.num_tasks=0",
  "data.validation_fraction=1.5",
  "data.test_fraction=0",
  "data.split_seed=-1",
]


@pytest.fixture(autouse=True, scope="module")
def _devices_known():
  # The first device query may log about missing accelerators; the
  # cases read stderr.
  jax.device_count()


def _override(path: str, text: str):
  """(key, value) of `--config.<text>`, typed as the command line types it."""
  argv = ["test", f"--config={path}", f"--config.{text}"]
  values = flags.FlagValues()
  config = config_flags.DEFINE_config_file(
    "config", flag_values=values, lock_config=False, sys_argv=argv
  )
  values(argv)
  key = text.split("=", 1)[0]
  node = config.value
  for part in key.split("."):
    node = node[part]
  return key, node


def _away_from_the_repo(config, tmp_path):
  """Data paths under tmp_path: a case that wrongly passed fails fast."""
  for key in ("data_dir", "manual_dir", "source_dir"):
    if key in config.data:
      config.data[key] = str(tmp_path / "data" / key)
  return config


def _entry_point(config, workdir, capsys) -> list[str]:
  """Runs `config` as `mcl.main` does; returns its stderr lines (exit 2)."""
  main = errors.usage_errors(lambda argv: experiments.run(config, workdir))
  capsys.readouterr()
  with pytest.raises(SystemExit) as stopped:
    main([])
  assert stopped.value.code == 2
  return capsys.readouterr().err.splitlines()


def _check_case(path, config, text, tmp_path, capsys):
  key, value = _override(path, text)
  config.update_from_flattened_dict({key: value})
  workdir = str(tmp_path / "run")
  lines = _entry_point(config, workdir, capsys)
  assert len(lines) == 1, lines
  assert lines[0].startswith(f"error: {key}={value!r}: "), lines[0]
  assert not os.path.exists(workdir)  # Not even created.


@pytest.mark.parametrize("text", CONTINUAL_CASES)
def test_a_bad_continual_setting_is_one_line_and_exit_2(
  text, tiny_config, tmp_path, capsys
):
  _check_case(TEST_CONFIG, tiny_config, text, tmp_path, capsys)


@pytest.mark.parametrize(
  "path, text",
  [(TAGGING_CONFIG, t) for t in TAGGING_CASES]
  + [(FEATURES_CONFIG, t) for t in FEATURES_CASES]
  + [(DIGITS_CONFIG, t) for t in DIGITS_CASES],
)
def test_a_bad_setting_of_the_other_configs_is_one_line_and_exit_2(
  path, text, tmp_path, capsys
):
  config = _away_from_the_repo(experiments.load_config(path), tmp_path)
  _check_case(path, config, text, tmp_path, capsys)


def test_the_messages_say_what_is_allowed(tiny_config):
  def message(**overrides):
    config = tiny_config.copy_and_resolve_references()
    config.update_from_flattened_dict(overrides)
    with pytest.raises(errors.UserError) as raised:
      config_checks.validate(config)
    return str(raised.value)

  assert message(**{"train.batch_size": 0}) == (
    "train.batch_size=0: must be an integer >= 1"
  )
  assert message(tasks=("blues",)) == (
    "tasks=('blues',): must be a tuple of tuples of class names, e.g. "
    "(('blues', 'jazz'), ...)"
  )
  assert message(**{"train.fit.learning_rate": float("nan")}) == (
    "train.fit.learning_rate=nan: must be a finite number > 0"
  )
  assert message(**{"data.fold": 5}) == (
    "data.fold=5: must be an integer in [0, 5) (data.num_folds=5)"
  )
  assert message(method="dne").startswith(
    "method='dne': not a task_incremental method"
  )
  assert message(scenario="class_incremental", method="den").startswith(
    "method='den': not a class_incremental method"
  )
  assert message(scenario="class_incremental", method="ncm").startswith(
    "method='ncm': a closed-form head on frozen-encoder records"
  )
  assert (
    message(order="s4") == "order='s4': must be one of ['', 's1', 's2', 's3']"
  )
  # Every problem at once, on one line.
  both = message(**{"seed": -1, "den.k": -1})
  assert both == (
    "seed=-1: must be an integer >= 0; den.k=-1: must be an integer >= 0"
  )


def test_unknown_experiment_is_named(tiny_config):
  tiny_config.experiment = "nope"
  with pytest.raises(errors.UserError, match="experiment='nope': must be"):
    config_checks.validate(tiny_config)


def test_batches_divide_over_the_devices(tiny_config, monkeypatch):
  monkeypatch.setattr(jax, "device_count", lambda: 3)
  assert config_checks.problems(tiny_config) == [
    "train.batch_size=8: must be a multiple of the 3 devices (batches are "
    "split evenly over them)"
  ]
  monkeypatch.setattr(jax, "device_count", lambda: 2)
  tiny_config.replay.batch_size = 3  # Replay's batches: 8 + 3 chunks.
  assert config_checks.problems(tiny_config) == []  # DEN replays nothing.
  tiny_config.method = "replay"
  assert config_checks.problems(tiny_config) == [
    "train.batch_size=8 + replay.batch_size=3: the replayed batch must be "
    "a multiple of the 2 devices"
  ]


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unusable_workdir_is_one_line_and_exit_2(
  where, tiny_config, tmp_path, capsys
):
  blocker = tmp_path / "file"
  blocker.write_text("")
  workdir = str(blocker if where == "a file" else blocker / "run")
  lines = _entry_point(tiny_config, workdir, capsys)
  assert len(lines) == 1 and lines[0].startswith(f"error: --workdir={workdir}")


def test_a_chunk_longer_than_clips_names_them(tiny_config, tmp_path, capsys):
  # GTZAN excerpts are 15-20 s: a 100 s chunk would be mostly padding.
  tiny_config.data.chunk_seconds = 100.0
  workdir = tmp_path / "run"
  lines = _entry_point(tiny_config, str(workdir), capsys)
  errors_said = [line for line in lines if line.startswith("error: ")]
  assert errors_said == lines[-1:]
  assert lines[-1].startswith(
    "error: data.chunk_seconds=100.0: longer than 20 of the tasks' 20 "
    "clips (blues/blues.0000"
  )
  assert lines[-1].endswith(
    "which were zero-padded to it; a chunk must fit most clips"
  )
  assert not (workdir / "checkpoints").exists()


def test_chunk_check_reads_only_the_tasks_clips(tiny_config):
  task_list = [tasks.Task(0, ("a", "b"), (0, 1))]
  clips = {
    "train": data.SplitClips(
      np.array([0, 1, 2]), np.array([200, 100, 10]), ["a/0", "b/0", "c/0"]
    ),
    "test": data.SplitClips(np.array([1]), np.array([150]), ["b/1"]),
  }
  tiny_config.data.chunk_seconds = 2.0  # 125 frames of 62.5 frames/s.
  with pytest.raises(errors.UserError) as raised:
    from_config.check_chunk_length(task_list, clips, tiny_config)
  assert str(raised.value) == (
    "data.chunk_seconds=2.0: longer than 1 of the tasks' 3 clips, the "
    "shortest b/0 (1.6 s); must be <= 1.6 s (the shortest clip)"
  )
  tiny_config.data.chunk_seconds = 1.6  # 100 frames: c/0 is no task's.
  from_config.check_chunk_length(task_list, clips, tiny_config)


def _shipped_configs():
  paths = []
  for path in sorted(glob.glob(os.path.join(CONFIGS, "*.py"))):
    spec = importlib.util.spec_from_file_location("shipped", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "get_config"):
      paths.append(os.path.basename(path))
  return paths


@pytest.mark.parametrize("name", _shipped_configs())
def test_shipped_configs_pass(name):
  config_checks.validate(experiments.load_config(os.path.join(CONFIGS, name)))


KEY = jax.random.key(0)


def _num_params(tree) -> int:
  return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(tree))


def _continual_network(config):
  """The method's tree before task 0, with the config's input shape."""
  if config.data.source == "arrays":  # Shapes come with the arrays.
    shape, sizes = (1, 1, 16), [2, 2]
    first = tasks.Task(0, ("0", "1"), (0, 1))
  elif config.data.source in ("permuted_digits", "mnist"):
    rows = 8 if config.data.source == "permuted_digits" else 28
    shape, sizes = (1, rows, rows), [10] * config.data.num_tasks
    first = tasks.Task(0, tuple(map(str, range(10))), tuple(range(10)))
  else:
    frames = from_config.chunk_frames(config)
    shape = (1, frames, config.features.n_mels)
    groups = tasks.task_groups(config)
    sizes = [len(group) for group in groups]
    names = tuple(groups[0])
    first = tasks.Task(0, names, tuple(range(len(names))))
  method = registry.method_class(config).from_config(config, shape, sizes)
  return jax.eval_shape(lambda: method.init(KEY, first)[0])


@pytest.mark.parametrize("name", _shipped_configs())
def test_every_config_builds_its_experiment(name):
  """Its method or model initialises, untrained, from no data folder
  (traced by `jax.eval_shape`: shapes, not values, so a 72M-parameter
  model costs no compilation)."""
  config = experiments.load_config(os.path.join(CONFIGS, name))
  config_checks.validate(config)
  assert config.experiment in experiments.EXPERIMENTS
  if config.experiment == "continual":
    params = _continual_network(config)
    widths = config.model.widths
    for i, width in enumerate(widths.conv_widths):
      assert params[f"conv_{i}"]["kernel"].shape[-1] == width
  elif config.experiment == "tagging":
    params = jax.eval_shape(lambda: tagging.model_of(config, KEY)[1]["params"])
  else:
    params = jax.eval_shape(
      lambda: feature_dnn.model_of(config, 8, KEY)[1]["params"]
    )
    assert params["dense_0"]["kernel"].shape[0] == 518
    assert params["output"]["kernel"].shape[-1] == 8
  assert _num_params(params) > 0


def _definition(name):
  spec = importlib.util.spec_from_file_location(
    "sweep", os.path.join(CONFIGS, "sweeps", name)
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_shipped_sweeps_and_protocols_pass():
  checked = 0
  for name in ("gtzan_den.py", "permuted_digits.py"):
    definition = _definition(name).get_sweep()
    for run in definition.runs:
      config_checks.validate(
        experiments.load_config(definition.config, run.overrides)
      )
      checked += 1
  module = _definition("gtzan_protocol.py")
  for budget in module.BUDGETS:
    definition = module.get_protocol(budget=budget)
    for run in protocol.tuning_runs(definition):
      config_checks.validate(
        experiments.load_config(definition.config, run.overrides)
      )
      checked += 1
    for variant in definition.variants.values():
      overrides = {
        **definition.budget,
        **definition.grids[variant.grid][0],
        **variant.overrides,
      }
      config_checks.validate(
        experiments.load_config(definition.config, overrides)
      )
  assert checked


def test_every_schema_key_is_in_a_shipped_config():
  """A misspelt key would never be checked: each is in some config."""
  assert set(config_checks.SCHEMAS) == set(experiments.EXPERIMENTS)
  keys = {kind: set() for kind in config_checks.SCHEMAS}
  for name in _shipped_configs():
    config = experiments.load_config(os.path.join(CONFIGS, name))
    flat = _flatten(config.to_dict())
    keys[config.experiment].update(flat)
  for kind, schema in config_checks.SCHEMAS.items():
    assert set(schema) <= keys[kind], set(schema) - keys[kind]


def _flatten(tree, prefix=""):
  out = set()
  for key, value in tree.items():
    if isinstance(value, dict):
      out |= _flatten(value, f"{prefix}{key}.")
    else:
      out.add(f"{prefix}{key}")
  return out
