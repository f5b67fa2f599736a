#!/usr/bin/env bash
# Creates .venv if missing and installs mcl into it (editable) with the exact
# versions, checked by hash, of launch/requirements.lock, or of
# launch/requirements-test.lock for the test extra. Nothing is resolved at
# install time: the lock is complete and installed --no-deps (the musicnn
# wheel, locked alone, has a stale numpy<1.17 pin). The installer is uv,
# itself pinned (launch/tools.sh). setup.cfg keeps the ranges for library
# users; bash launch/lock.sh refreshes the locks.
# Usage: bash launch/setup.sh [test]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
  "") lock="$root/launch/requirements.lock" ;;
  test) lock="$root/launch/requirements-test.lock" ;;
  *) echo "setup: unknown extra '$1' (none or test)" >&2; exit 2 ;;
esac
source "$root/launch/tools.sh"
if [ ! -x "$root/.venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$root/.venv"
fi
# A venv installed from this lock and setup.cfg is left as it is.
stamp="$root/.venv/mcl-installed-from"
wanted="$(cat "$lock" "$root/setup.cfg" | sha256sum)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  rm -f "$stamp"
  install=("$uv" pip install --quiet --python "$root/.venv/bin/python"
    --no-deps)
  "${install[@]}" --require-hashes -r "$lock"
  "${install[@]}" --no-build-isolation -e "$root"
  "$root/.venv/bin/python" -c "import mcl, jax, flax, tensorflow_datasets; from mcl.models import musicnn_checkpoint as m; m.checkpoint_folder('MTT_musicnn')" \
    || { echo "setup: installation of mcl failed" >&2; exit 1; }
  echo "$wanted" > "$stamp"
fi
