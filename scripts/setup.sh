#!/usr/bin/env bash
# Create ./.venv if needed and install nearpole_exp into it (editable; a test checks that the
# non-editable wheel ships the config too). Without a GPU it pins torch 2.13.0, which on these
# machines is a CPU build; with one (nvidia-smi works) it takes the newest torch>=2.3.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip install "torch>=2.3"
  else
    pip install "torch==2.13.0"
  fi
fi
pip install -e ".[dev]"
