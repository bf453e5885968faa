#!/usr/bin/env bash
# The test suite (unit, end-to-end on small synthetic data, MOOG physics, notebook, browser).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q --durations=25 "$@"
