"""``benchmarks/synthesis_revisions.py``: revisions are checked out, timed and summarised (timings never asserted)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def test_texture_files_are_timed_with_their_cache_warm(tmp_path: Path) -> None:
    textures = tmp_path / "textures"
    textures.mkdir()
    for index in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * index, dtype=np.uint8)).save(textures / f"t{index}.png")
    output = tmp_path / "synthesis_revisions.csv"
    assert synthesis_revisions.main(["WORKTREE", "--sizes", "32", "--rounds", "1", "--calls", "2",
                                     "--source", str(textures), "--output", str(output)]) == 0
    (row,) = harness.read_rows(output)
    assert row["source"] == tmp_path.name  # the folder above the textures, as DTD's images/ gives "dtd"
    assert float(row["ms_per_batch"]) > 0


def test_each_run_is_summarised_apart(tmp_path: Path) -> None:
    def row(minute: int, round_index: int, value: float, revision: str = "abc1234") -> dict[str, object]:
        return {"revision": revision, "commit": revision, "source": "dtd", "image_size": 128, "batch_size": 8,
                "round": round_index, "calls": 100, "threads": 2, "ms_per_batch": value, "device": "cpu",
                "finished_at": f"2026-12-02T05:{minute:02d}:30+00:00"}

    # Two runs on one day: two rounds, then one; the second starts again at round 0.
    rows = [row(10, 0, 10.0), row(11, 1, 12.0), row(40, 0, 30.0)]
    harness.write_rows(tmp_path / "synthesis_revisions.csv", rows, synthesis_revisions.COLUMNS)
    speed.summarise(tmp_path)
    summary = (tmp_path / "SPEED.md").read_text()
    assert "| 2026-12-02 05:10 | cpu | dtd | 128 | abc1234 | abc1234 | 2 | 11.0 | 10.0-12.0 | 1.00 |" in summary
    assert "| 2026-12-02 05:40 | cpu | dtd | 128 | abc1234 | abc1234 | 1 | 30.0 | 30.0-30.0 | 1.00 |" in summary


def test_revisions_are_compared_round_by_round(tmp_path: Path) -> None:
    """The ratio column pairs rounds: a machine that slows down between rounds does not show."""
    def row(round_index: int, revision: str, value: float) -> dict[str, object]:
        return {"revision": revision, "commit": revision, "source": "dtd", "image_size": 256, "batch_size": 8,
                "round": round_index, "calls": 10, "threads": 2, "ms_per_batch": value, "device": "cpu",
                "finished_at": "2026-12-02T05:10:30+00:00"}

    # The machine's speed changes from round to round, and the order rotates; "new" is 10 %
    # slower than "old" in every round, which the ratio gives exactly.
    rows = [row(0, "old", 10.0), row(0, "new", 11.0), row(1, "new", 20.0), row(1, "old", 18.0),
            row(2, "old", 20.0), row(2, "new", 22.0), row(3, "new", 44.0), row(3, "old", 40.0)]
    harness.write_rows(tmp_path / "synthesis_revisions.csv", rows, synthesis_revisions.COLUMNS)
    speed.summarise(tmp_path)
    summary = (tmp_path / "SPEED.md").read_text()
    assert "| 256 | old | old | 4 | 19.0 | 10.0-40.0 | 1.00 |" in summary
    assert "| 256 | new | new | 4 | 21.0 | 11.0-44.0 | 1.10 |" in summary
