#!/usr/bin/env bash
# Creates or updates .venv with the test extra, checks style, runs the suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash launch/setup.sh test
.venv/bin/ruff check mcl configs tests
exec .venv/bin/python -m pytest tests "$@"
