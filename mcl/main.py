"""Entry point of every experiment.

  python -m mcl.main --config=configs/gtzan.py --workdir=DIR

`config.experiment` picks the experiment: "continual" (a method over a task
sequence, `mcl.experiments.continual.runner`) or "tagging" (one model on the
MagnaTagATune top-50 benchmark, `mcl.experiments.tagging`). Config values
are overridden on the command line, e.g.
`--config.data.fold=2 --config.den.k=8`. A workdir holds one run: a
re-run there with other settings is refused (`mcl.runtime.workdir`) unless
`--fresh` moves the old run aside.
"""

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


if __name__ == "__main__":
  app.run(main)
