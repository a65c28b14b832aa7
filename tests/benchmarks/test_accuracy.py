"""``benchmarks/accuracy.py`` on generated data: rows, skipping what is recorded, the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import accuracy, harness

pytestmark = pytest.mark.slow


def test_smoke_runs_write_rows_and_are_not_repeated(tmp_path: Path) -> None:
    assert accuracy.main(["--smoke", "--output", str(tmp_path)]) == 0
    rows = harness.read_rows(tmp_path / "accuracy_dummy.csv")
    assert sorted(row["model"] for row in rows) == ["draem", "recsem"]
    for row in rows:
        assert row["error"] == ""
        assert row["train_images"] == "8" and row["test_images"] == "8"
        assert (row["reconstruction_width"], row["discriminator_width"]) == ("8", "8")
        for metric in accuracy.METRICS:
            assert 0.0 <= float(row[metric]) <= 1.0, (metric, row)
    assert accuracy.main(["--smoke", "--output", str(tmp_path)]) == 0
    assert len(harness.read_rows(tmp_path / "accuracy_dummy.csv")) == 2
    summary = (tmp_path / "ACCURACY.md").read_text()
    assert "| recsem | default | recsem_tiny | 64 | 1 |" in summary


def test_failed_run_is_recorded_and_the_others_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of textures")

    monkeypatch.setattr(harness, "draem", broken)
    assert accuracy.main(["--smoke", "--output", str(tmp_path)]) == 0
    rows = {row["model"]: row for row in harness.read_rows(tmp_path / "accuracy_dummy.csv")}
    assert rows["draem"]["error"] == "RuntimeError: out of textures"
    assert rows["recsem"]["error"] == ""
