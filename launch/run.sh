#!/usr/bin/env bash
# Sets up .venv and runs one experiment (building its records on first use).
# Default: DEN over the GTZAN genre tasks. Variables:
#   CONFIG     config file (default configs/gtzan.py)
#   WORKDIR    output folder (default runs/gtzan_den_fold0 for the default
#              config, else runs/<config name>)
#   AUDIO_DIR  GTZAN-layout configs: folder of <label>/<clip> audio
#              (default ../shared/data/gtzan_excerpts)
#   MTAT_DIR   configs/mtat_*: the MagnaTagATune manual download
#              (default data/magnatagatune: annotations_final.csv, mp3/0..f)
# configs/permuted_digits.py needs no data folder.
# Extra arguments are passed to mcl.main, e.g. --config.data.fold=2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash launch/setup.sh
config="${CONFIG:-configs/gtzan.py}"
if [[ -z "${CONFIG:-}" ]]; then
  workdir="${WORKDIR:-runs/gtzan_den_fold0}"
else
  workdir="${WORKDIR:-runs/$(basename "$config" .py)}"
fi
args=(--config="$config" --workdir="$workdir"
  --config.data.data_dir="$root/runs/tfds")
case "$(basename "$config")" in
  mtat_*) args+=(--config.data.manual_dir="${MTAT_DIR:-$root/data/magnatagatune}") ;;
  permuted_digits*) ;;  # Bundled digits (or TFDS mnist in runs/tfds).
  *) args+=(--config.data.source_dir="${AUDIO_DIR:-$root/../shared/data/gtzan_excerpts}") ;;
esac
exec .venv/bin/python -m mcl.main "${args[@]}" "$@"
