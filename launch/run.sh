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
#   FMA_DIR    configs/fma_*: the Free Music Archive download
#              (default data/fma: fma_metadata/, fma_medium/)
# configs/permuted_digits.py needs no data folder.
# Extra arguments are passed to mcl.main, e.g. --config.data.fold=2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
config="${CONFIG:-configs/gtzan.py}"
if [[ -z "${CONFIG:-}" ]]; then
  workdir="${WORKDIR:-runs/gtzan_den_fold0}"
else
  workdir="${WORKDIR:-runs/$(basename "$config" .py)}"
fi
args=(--config="$config" --workdir="$workdir"
  --config.data.data_dir="$root/runs/tfds")
# The data folder is checked before any install work.
case "$(basename "$config")" in
  mtat_*)
    data="${MTAT_DIR:-$root/data/magnatagatune}"
    args+=(--config.data.manual_dir="$data")
    if [[ ! -f "$data/annotations_final.csv" ]]; then
      cat >&2 <<EOT
launch/run.sh: no MagnaTagATune at $data (annotations_final.csv missing).
Download annotations_final.csv and mp3.zip.001-003 from the MagnaTagATune
page (mirg.city.ac.uk/codeapps/the-magnatagatune-dataset), unzip the audio
into mp3/ beside the csv (mp3/0 ... mp3/f), then:
MTAT_DIR=/that/folder bash launch/run.sh
EOT
      exit 2
    fi ;;
  fma_*)
    data="${FMA_DIR:-$root/data/fma}"
    args+=(--config.data.manual_dir="$data")
    if [[ ! -f "$data/fma_metadata/tracks.csv" ]]; then
      cat >&2 <<EOT
launch/run.sh: no FMA at $data (fma_metadata/tracks.csv missing).
Download fma_metadata.zip and fma_medium.zip (github.com/mdeff/fma, files at
os.unil.cloud.switch.ch/fma/) and unzip both there, then:
FMA_DIR=/that/folder bash launch/run.sh
EOT
      exit 2
    fi ;;
  permuted_digits*) ;;  # Bundled digits (or TFDS mnist in runs/tfds).
  *)
    data="${AUDIO_DIR:-$root/../shared/data/gtzan_excerpts}"
    args+=(--config.data.source_dir="$data")
    if [[ ! -d "$data" ]]; then
      cat >&2 <<EOT
launch/run.sh: no audio folder at $data.
It needs <label>/<clip> audio, e.g. blues/blues.00000.wav (any format the
decoder reads). GTZAN itself: TFDS's gtzan download host is offline; take a
copy of genres_original/ (e.g. Kaggle's "GTZAN Dataset - Music Genre
Classification"), or any labelled folder with --config.tasks naming its
labels, then: AUDIO_DIR=/that/folder bash launch/run.sh
EOT
      exit 2
    fi ;;
esac
bash launch/setup.sh
exec .venv/bin/python -m mcl.main "${args[@]}" "$@"
