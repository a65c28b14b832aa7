"""``benchmarks/synthesis_revisions.py``: revisions are checked out, timed and summarised (timings never asserted)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from benchmarks import harness, speed, synthesis_revisions

pytestmark = pytest.mark.slow


def test_a_commit_and_the_worktree_are_timed_side_by_side(tmp_path: Path) -> None:
    output = tmp_path / "synthesis_revisions.csv"
    assert synthesis_revisions.main(["HEAD", "WORKTREE", "--sizes", "32", "--rounds", "1", "--calls", "2",
                                     "--source", "procedural", "--output", str(output)]) == 0
    rows = harness.read_rows(output)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=harness.REPO_ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    assert [(row["revision"], row["commit"].removesuffix("+changes")) for row in rows] == [
        ("HEAD", head), ("WORKTREE", head)]
    assert all(math.isfinite(float(row["ms_per_batch"])) and float(row["ms_per_batch"]) > 0 for row in rows)
    speed.summarise(tmp_path)
    summary = (tmp_path / "SPEED.md").read_text()
    assert f"| procedural | 32 | HEAD | {head} | 1 |" in summary
    assert f"| procedural | 32 | WORKTREE | {rows[1]['commit']} | 1 |" in summary


def test_an_unknown_revision_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no-such-revision"):
        synthesis_revisions.main(["no-such-revision", "--source", "procedural", "--output", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()


def test_a_failing_timer_stops_with_its_error(tmp_path: Path) -> None:
    empty = tmp_path / "no_textures"
    empty.mkdir()
    with pytest.raises(SystemExit, match=r"(?s)timing revision 'WORKTREE'.*no_textures"):
        synthesis_revisions.main(["WORKTREE", "--sizes", "32", "--rounds", "1", "--calls", "1", "--source", str(empty),
                                  "--output", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()
