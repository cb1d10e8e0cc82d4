"""``python -m nearpole_exp.compare <sweep_dir>``: the command-line entry of
:mod:`nearpole_exp.reporting.comparison`."""

import sys

from nearpole_exp.reporting.comparison.cli import main

if __name__ == "__main__":
    sys.exit(main())
