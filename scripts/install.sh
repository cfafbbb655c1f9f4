#!/usr/bin/env bash
# Install mmner-data and everything its tests need, from this repo's own files only.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
