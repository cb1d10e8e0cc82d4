#!/usr/bin/env bash
# Quick start: install (first time) and run the default experiment; extra arguments are Hydra
# overrides, e.g. `bash scripts/run.sh sampler=importance`. W&B is offline without an API key.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m nearpole_exp "$@"
