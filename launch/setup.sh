#!/usr/bin/env bash
# Creates .venv if missing and installs mcl into it (editable).
# Usage: source launch/setup.sh [EXTRA]   e.g. EXTRA=test
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:-}"
if [ ! -x "$root/.venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$root/.venv"
fi
spec="$root"
[ -n "$extra" ] && spec="$root[$extra]"
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -e "$spec" 2>&1 | grep -v "is ignored: it is neither a file" || true
# The musicnn wheel ships the four pretrained checkpoints mcl converts
# (mcl.models.musicnn_checkpoint); its numpy<1.17 pin is stale, so no deps.
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-deps musicnn==0.1.0 2>&1 | grep -v "is ignored: it is neither a file" || true
"$root/.venv/bin/python" -c "import mcl, jax, flax, tensorflow_datasets; from mcl.models import musicnn_checkpoint as m; m.checkpoint_folder('MTT_musicnn')" \
  || { echo "setup: installation of mcl failed" >&2; exit 1; }
