#!/usr/bin/env bash
# Sets up .venv, builds the log-mel records and runs DEN over the GTZAN
# genre tasks. Variables:
#   AUDIO_DIR  folder of <label>/<clip> audio (default ../shared/data/gtzan_excerpts)
#   WORKDIR    output folder (default runs/gtzan_den_fold0)
#   CONFIG     config file (default configs/gtzan.py)
# Extra arguments are passed to mcl.main, e.g. --config.data.fold=2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash launch/setup.sh
audio_dir="${AUDIO_DIR:-$root/../shared/data/gtzan_excerpts}"
workdir="${WORKDIR:-runs/gtzan_den_fold0}"
exec .venv/bin/python -m mcl.main \
  --config="${CONFIG:-configs/gtzan.py}" \
  --workdir="$workdir" \
  --config.data.source_dir="$audio_dir" \
  --config.data.data_dir="$root/runs/tfds" \
  "$@"
