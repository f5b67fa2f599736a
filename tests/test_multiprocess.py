"""Two JAX processes on localhost give the figures of one process.

Each test starts the same worker as one process with two CPU devices and
as two processes with one device each, joined by `jax.distributed` through
a loopback coordinator (`mcl.trainer.parallel.initialize` reads
JAX_COORDINATOR_ADDRESS). Both layouts partition the step over a 2-device
`("data",)` mesh; in the second every process feeds only its rows of each
global batch. The workers print their figures as JSON. All three run at
once, forked from one forked that has imported the workers' modules
(tests/forks.py).
"""

import json
import socket
import textwrap

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


def _result(child) -> dict:
  status = child.wait()
  assert status == 0, child.stderr()[-3000:]
  (line,) = [x for x in child.stdout().splitlines() if x.startswith("RESULT ")]
  return json.loads(line[len("RESULT ") :])


def _run(forked, worker: str, workdir) -> tuple[dict, list[dict]]:
  """(one process with 2 devices, [process 0, process 1]), all three
  started at once."""
  # XLA reads XLA_FLAGS when jax is imported, before the fork: the child
  # asks for its two CPU devices through JAX's config instead.
  one = forked.start(
    "import jax\njax.config.update('jax_num_cpu_devices', 2)\n" + worker,
    [str(workdir / "one")],
    name="one",
  )
  port = _free_port()
  two = [
    forked.start(
      worker,
      [str(workdir / "two")],
      {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": str(i),
      },
      name=f"two_{i}",
    )
    for i in range(2)
  ]
  return _result(one), [_result(p) for p in two]


def test_two_processes_run_den_as_one_process(forked, tmp_path):
  one, two = _run(forked, _CONTINUAL, tmp_path)
  assert two[0] == two[1]
  assert two[0] == one
  assert one["average_accuracy"] > 0.5
  results = json.loads((tmp_path / "two" / "results.json").read_text())
  assert results["accuracy_matrix"] == one["accuracy_matrix"]


def test_two_processes_fit_the_tagging_recipe_as_one_process(forked, tmp_path):
  one, two = _run(forked, _TAGGING, tmp_path)
  assert two[0] == two[1]
  assert two[0] == one
  assert one["steps"] > 0 and one["roc_auc"] > 0.8
