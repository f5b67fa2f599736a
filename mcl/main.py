"""Entry point of every experiment.

  python -m mcl.main --config=configs/gtzan.py --workdir=DIR

`config.experiment` picks the experiment: "continual" (a method over a task
sequence, `mcl.continual.runner`) or "tagging" (one model on the
MagnaTagATune top-50 benchmark, `mcl.tagging.experiment`). Config values
are overridden on the command line, e.g.
`--config.data.fold=2 --config.den.k=8`.
"""

from absl import app, flags
from ml_collections import config_flags

from mcl import errors, experiments

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
flags.mark_flags_as_required(["config", "workdir"])


@errors.usage_errors
def main(argv):
  del argv
  experiments.start_process()
  experiments.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
