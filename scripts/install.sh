#!/usr/bin/env bash
# Install mmner-data and everything its tests need, from this repo's own files only.
# Idempotent: a second run installs nothing new.
#
# torch and torchvision are pinned first to a matching pair (torchvision's C ops must match the
# torch build); a bare `torch` requirement could otherwise resolve to a different build.
# Override with TORCH_SPEC / TORCHVISION_SPEC (e.g. a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "${TORCH_SPEC:-torch==2.14.1}" "${TORCHVISION_SPEC:-torchvision==0.29.1}"
"${PIP[@]}" -e ".[test]"
"$PY" - <<'PY'
import torchvision.ops  # noqa: F401  (fails loudly when torch and torchvision do not match)
PY
