#!/usr/bin/env bash
# Creates or updates .venv with the test extra, checks style, runs the suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash launch/setup.sh test
.venv/bin/ruff check mcl configs tests
# Two workers (pytest-xdist): each starts on its half of the suite, in
# order, so a module's fixtures are mostly built once, and takes tests
# from the other's tail when its own run out (worksteal).
# MCL_TEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest tests -n "${MCL_TEST_WORKERS:-2}" \
  --dist worksteal --durations=25 "$@"
