"""Write BENCHMARKS.md from the per-area reports in benchmarks/ (each written by its own script;
links relative to benchmarks/ are rewritten relative to the repository root).

Usage: python scripts/assemble_benchmarks.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = [
    ("solvers.md", "scripts/validate_simulators.py, scripts/bench/solvers.py",
     "the PDE solvers against independent references, and against exponax's speed"),
    ("nearpole.md", "scripts/bench/nearpole.py", "near-pole strategies vs uniform, sampling speed"),
    ("ogas.md", "scripts/bench/ogas.py", "OGAS vs uniform, Sobol and Breed at equal budget; breeder cost"),
    ("executors.md", "scripts/bench/executors.py", "simulation executors and asynchronous generations"),
    ("sampling.md", "scripts/bench/sampling.py", "how cost grows: pools, dimensions, budgets, sweeps"),
    ("startup.md", "scripts/bench/startup.py", "a short run's time: imports, config, build, W&B, plots"),
]

HEADER = """# Benchmarks

Every figure below was measured by the script named in its section, with the command, the
machine and the date beside it; comparisons are ratios measured in one run, and spreads are
over seeds. This file is assembled from `benchmarks/*.md` by `python scripts/assemble_benchmarks.py`.

| section | script | what |
|---|---|---|
"""


def demote_headings(text: str) -> str:
    """Every markdown heading one level down (code blocks untouched), to nest a report in this file."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        out.append("#" + line if line.startswith("#") and not fenced else line)
    return "\n".join(out)


def main() -> None:
    parts = [HEADER]
    present = [row for row in SECTIONS if (ROOT / "benchmarks" / row[0]).exists()]
    parts += [f"| [{name}](benchmarks/{name}) | `{script}` | {what} |\n" for name, script, what in present]
    for name, _, _ in present:
        text = (ROOT / "benchmarks" / name).read_text().strip().replace("](../", "](")
        parts.append("\n" + demote_headings(text) + "\n")
    (ROOT / "BENCHMARKS.md").write_text("".join(parts))


if __name__ == "__main__":
    main()
