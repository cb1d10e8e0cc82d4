"""Command-line solver for the CommandLineSimulator test: reads ``--params`` JSON, writes the
sleeping solver's trajectory to ``--out`` (.npy); exits 2 with a message on stderr for a crash
mode, hangs for a hang mode."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.sleep_solver import trajectory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--grid", type=int, default=16)
    args = parser.parse_args()
    with open(args.params) as handle:
        params = np.array(json.load(handle)["params"], dtype=np.float64)
    if params[1] > 0.95:
        print("solver diverged: mode out of range", file=sys.stderr)
        sys.exit(2)
    if params[1] < -0.95:
        time.sleep(3600)
    np.save(args.out, trajectory(params, args.steps, args.grid))


if __name__ == "__main__":
    main()
