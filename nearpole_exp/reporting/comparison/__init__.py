"""Local comparison report of a Hydra multirun: per-point stats over seeds, ratios to a baseline.

``python -m nearpole_exp.compare <sweep_dir> --baseline sampler=uniform`` prints a Rich table and
writes ``comparison.csv``, ``comparison.md`` and ``comparison_<group>.png`` (to ``--out``, default
the sweep directory), for people who compare runs without a W&B account.

Statistics: a sweep point is a job's overrides without ``seed`` (and without the keys Hydra's
``override_dirname`` excludes: hydra.*, logger*, trainer.progress, ...); its seeds are replicates.
Each metric gets the mean and the *sample* standard deviation (ddof=1, empty for one seed) over
the completed seeds with a finite value. The ratio to the baseline is a ratio of those per-point
means over seeds: baseline/point when lower is better (so >1 means the point is better, like the
Melissa paper's tail ratios), point/baseline otherwise. "Wins" counts the seeds, present with a
finite value in both, where the point beats the baseline's run with the same seed.
"""

from nearpole_exp.reporting.comparison.aggregate import ComparisonResult
from nearpole_exp.reporting.comparison.read import (
    DEFAULT_EXCLUDE,
    SweepEmptyError,
    find_job_dirs,
    read_job,
    sweep_excludes,
)
from nearpole_exp.reporting.comparison.render import print_comparison, render_markdown
from nearpole_exp.reporting.comparison.sweep import compare_sweep

__all__ = ["DEFAULT_EXCLUDE", "ComparisonResult", "SweepEmptyError", "compare_sweep", "find_job_dirs",
           "print_comparison", "read_job", "render_markdown", "sweep_excludes"]
