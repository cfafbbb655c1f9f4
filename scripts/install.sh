#!/usr/bin/env bash
# Install mmner-data and everything its tests need, from this repo's own files only, into the
# repository's own virtual environment (.venv). Idempotent: a second run installs nothing new.
#
# A virtual environment, because a stock Debian/Ubuntu Python refuses `pip install` into the
# system interpreter (PEP 668, "externally managed environment").
# torch and torchvision are pinned first to a matching pair (torchvision's C ops must match the
# torch build); a bare `torch` requirement could otherwise resolve to a different build.
# Override with TORCH_SPEC / TORCHVISION_SPEC (e.g. a CUDA build on a GPU machine), the
# interpreter with PYTHON, the environment's folder with MMNER_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MMNER_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV" || {
    echo "install.sh: could not create $VENV (on Debian/Ubuntu: apt install python3-venv)" >&2
    exit 1
  }
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "${TORCH_SPEC:-torch==2.14.1}" "${TORCHVISION_SPEC:-torchvision==0.29.1}"
"${PIP[@]}" -e ".[test,ray]"
"$PY" - <<'PY'
import torchvision.ops  # noqa: F401  (fails loudly when torch and torchvision do not match)
PY
