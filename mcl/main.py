"""Entry point of every experiment.

  python -m mcl.main --config=configs/gtzan.py --workdir=DIR
  mcl-train --config=gtzan --workdir=DIR      (installed: a built-in config)

`config.experiment` picks the experiment: "continual" (a method over a task
sequence, `mcl.experiments.continual.runner`) or "tagging" (one model on the
MagnaTagATune top-50 benchmark, `mcl.experiments.tagging`). Config values
are overridden on the command line, e.g.
`--config.data.fold=2 --config.den.k=8`. A workdir holds one run: a
re-run there with other settings is refused (`mcl.runtime.workdir`) unless
`--fresh` moves the old run aside. `--config=` takes a config file or
the name of a built-in one (`mcl/configs/`, e.g. `gtzan`, `test`).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from mcl import experiments
from mcl.runtime import errors

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_FRESH = flags.DEFINE_bool(
  "fresh",
  False,
  "Move a previous run of --workdir aside (to <workdir>.<UTC time>) and "
  "start anew; without it a run of other settings there is an error.",
)
flags.mark_flags_as_required(["config", "workdir"])


@errors.usage_errors
def main(argv):
  del argv
  experiments.start_process()
  experiments.run(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)


@errors.usage_errors
def _config_files(argv: list[str]) -> list[str]:
  """`argv` with a built-in config's name in `--config` as its file
  (`--config=NAME` or `--config NAME`)."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + experiments.config_file(arg[len("--config=") :])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = experiments.config_file(out[i + 1])
  return out


def cli() -> None:
  """Console script `mcl-train`: `main` with the flags above."""
  sys.argv = _config_files(sys.argv)
  app.run(main)


if __name__ == "__main__":
  cli()
