#!/usr/bin/env bash
# The demo (README's first command): install into .venv, then run the pipeline on the bundled
# sample, served by a loopback server that the recipe starts itself. Outputs land in runs/sample/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
VENV=${MMNER_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec mmner-data run --recipe recipes/sample.yaml "$@"
