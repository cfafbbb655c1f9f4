#!/usr/bin/env bash
# The test command (README, CI): install from the repo into .venv, then run the whole suite offline.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
VENV=${MMNER_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
ruff check mmner_data tests benchmarks scripts
exec python -m pytest "$@"
