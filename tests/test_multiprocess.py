"""Two JAX processes on localhost give the figures of one process.

Each test starts the same worker as one process with two CPU devices and
as two processes with one device each, joined by `jax.distributed` through
a loopback coordinator (`mcl.trainer.parallel.initialize` reads
JAX_COORDINATOR_ADDRESS). Both layouts partition the step over a 2-device
`("data",)` mesh; in the second every process feeds only its rows of each
global batch. The workers print their figures as JSON.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))

_CONTINUAL = textwrap.dedent(
  """
  import json, sys
  from mcl.trainer import parallel
  parallel.initialize()
  import jax
  from mcl.configs import permuted_digits
  from mcl.experiments.continual import runner

  config = permuted_digits.tiny(permuted_digits.get_config())
  config.method = "den"
  assert jax.device_count() == 2, jax.devices()
  out = runner.run(config, sys.argv[1])
  keys = ("accuracy_matrix", "auroc_matrix", "average_accuracy", "bwt",
          "params_per_task", "total_params", "validation_loss")
  print("RESULT", json.dumps({k: out[k] for k in keys}))
  """
)

_TAGGING = textwrap.dedent(
  """
  import json, sys
  from mcl.trainer import parallel
  parallel.initialize()
  import jax, numpy as np
  from mcl.datasets import input_pipeline
  from mcl.trainer import evaluation, fit, train
  from tests import test_tagging as t

  assert jax.device_count() == 2, jax.devices()
  model, data = t.TinyTagger(), t.Data()
  rows = input_pipeline.process_slice(
    t.BATCH, jax.process_index(), jax.process_count()
  )

  def local(index):
    for batch in data.train_batches(index):
      yield {k: v[rows] for k, v in batch.items()}

  result = fit.fit(
    model, t._init(model), local, t._validate(model, data), t._recipe(),
    loss=train.TagBinaryCrossEntropy(), rng=t.RNG, workdir=sys.argv[1],
  )
  test = evaluation.evaluate_tags(
    model, result.variables, data.validation_batches())
  print("RESULT", json.dumps({
    "history": [[r.validation_loss, r.train_loss, r.stage]
                for r in result.history],
    "best_pass": result.best_pass, "steps": result.steps,
    "roc_auc": test.roc_auc,
  }))
  """
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(**extra) -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)
  return {**env, **extra}


def _result(stdout: str) -> dict:
  (line,) = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
  return json.loads(line[len("RESULT ") :])


def _run(worker: str, workdir) -> tuple[dict, list[dict]]:
  """(one process with 2 devices, [process 0, process 1])."""
  one = subprocess.run(
    [sys.executable, "-c", worker, str(workdir / "one")],
    env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
    capture_output=True,
    text=True,
    timeout=900,
    cwd=ROOT,
  )
  assert one.returncode == 0, one.stderr[-3000:]
  port = _free_port()
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", worker, str(workdir / "two")],
      env=_env(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID=str(i),
      ),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=ROOT,
    )
    for i in range(2)
  ]
  outs = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=900)
    assert p.returncode == 0, stderr[-3000:]
    outs.append(_result(stdout))
  return _result(one.stdout), outs


def test_two_processes_run_den_as_one_process(tmp_path):
  one, two = _run(_CONTINUAL, tmp_path)
  assert two[0] == two[1]
  assert two[0] == one
  assert one["average_accuracy"] > 0.5
  results = json.loads((tmp_path / "two" / "results.json").read_text())
  assert results["accuracy_matrix"] == one["accuracy_matrix"]


def test_two_processes_fit_the_tagging_recipe_as_one_process(tmp_path):
  one, two = _run(_TAGGING, tmp_path)
  assert two[0] == two[1]
  assert two[0] == one
  assert one["steps"] > 0 and one["roc_auc"] > 0.8
