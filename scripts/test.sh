#!/usr/bin/env bash
# `make test`: lint, type-check, then the whole suite (real servers included).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff check .
ruff format --check --quiet .
echo "== mypy"
mypy
echo "== pytest"
python -m pytest -q "$@"
echo "== bench smoke (benchmarks still run; figures are not checked)"
python bench/run_all.py --smoke
