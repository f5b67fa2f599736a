#!/usr/bin/env bash
# Creates or updates .venv with the test extra, checks style, runs the suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash launch/setup.sh test
.venv/bin/ruff check mcl configs tests
# Two workers (pytest-xdist), a test file each at a time, so that a
# module's fixtures are built once: MCL_TEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest tests -n "${MCL_TEST_WORKERS:-2}" \
  --dist loadfile --durations=25 "$@"
