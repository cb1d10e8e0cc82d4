#!/usr/bin/env bash
# Create ./.venv if needed and install nearpole_exp into it (editable; a test checks that the
# non-editable wheel ships the config too). Without a GPU it pins torch 2.13.0, which on these
# machines is a CPU build; with one (nvidia-smi works) it takes the newest torch>=2.3.
# Nothing is installed when pyproject.toml is unchanged since the last install (an editable
# install already sees every code change), so a second `bash scripts/run.sh` starts at once.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
stamp=.venv/.nearpole_exp-install
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] && .venv/bin/python -c \
    "import importlib.util as u, sys; sys.exit(u.find_spec('nearpole_exp') is None or u.find_spec('torch') is None)"; then
  exit 0
fi
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
# write the component schemas' cache, so that the first `--cfg job` composes without torch
.venv/bin/python -c "import nearpole_exp.app" >/dev/null 2>&1 || true
echo "$wanted" > "$stamp"
