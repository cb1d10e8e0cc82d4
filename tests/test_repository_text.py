"""The repository speaks of the product only: no word of how the work was organised (issue
numbers, sessions) and no absolute path of the machine something was measured on, in any
tracked text file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = {".md", ".py", ".yaml", ".yml", ".toml", ".sh", ".txt", ".cfg", ".ini", ""}
PROCESS = re.compile(r"\b(issue|session|sprint)\s+#?\d+\b|\bsession\s+\d+'s\b|\b(this|last|next|"
                     r"previous|earlier) (session|round of work)\b", re.IGNORECASE)
PROCESS_NAME = re.compile(r"(issue|session|sprint)[_-]?\d", re.IGNORECASE)
MACHINE_PATH = re.compile(r"(?<![\w.~])/(work|home|Users|root|mnt)/[\w.-]+")


def tracked_files() -> list[Path]:
    """Tracked files (git), else every file outside the ignored build and output folders."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        return [ROOT / name for name in out]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "outputs", "multirun", "__pycache__", "wandb"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def offending_lines(pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in tracked_files():
        if path.suffix not in TEXT or not path.is_file() or path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{path.relative_to(ROOT)}:{i}: {line.strip()[:120]}"
                  for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    return found


def test_the_patterns_catch_what_they_are_for() -> None:
    for text in ("Target (issue 17): ...", "measured in session 6", "session 4's preset",
                 "as this session found"):
        assert PROCESS.search(text), text
    for text in ("the training round 3", "a W&B session", "issue a warning"):
        assert not PROCESS.search(text), text
    assert PROCESS_NAME.search("placement_ogas_session6.png") and not PROCESS_NAME.search("d16")
    assert MACHINE_PATH.search("hydra.sweep.dir=/work/main/outputs/x")
    assert not MACHINE_PATH.search("outputs/nearpole/runs/x and ./work/x")


def test_no_tracked_text_speaks_of_how_the_work_was_organised() -> None:
    found = offending_lines(PROCESS)
    assert not found, "\n".join(found)


def test_no_tracked_text_holds_an_absolute_machine_path() -> None:
    found = offending_lines(MACHINE_PATH)
    assert not found, "\n".join(found)


def test_no_file_is_named_for_how_the_work_was_organised() -> None:
    found = [str(p.relative_to(ROOT)) for p in tracked_files() if PROCESS_NAME.search(p.name)]
    assert not found, found
