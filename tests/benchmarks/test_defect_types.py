"""``benchmarks/defect_types.py``: how a scoring run merges its rows into the committed CSVs."""

from __future__ import annotations

from pathlib import Path

from benchmarks import defect_types, harness

COLUMNS = ("model", "seed", "image_AUROC")


def test_rescoring_some_checkpoints_replaces_only_their_rows(tmp_path: Path) -> None:
    # Checkpoints are not committed: a later machine holding only RecSem seed 1's checkpoint must
    # replace that seed's rows and keep seed 0's and Draem's, whose checkpoints it no longer has.
    path = tmp_path / "scores.csv"
    harness.write_rows(path, [{"model": "recsem", "seed": 0, "image_AUROC": 0.7},
                              {"model": "recsem", "seed": 1, "image_AUROC": 0.6},
                              {"model": "draem", "seed": 0, "image_AUROC": 0.5}], COLUMNS)
    rows = defect_types.merged(path, [{"model": "recsem", "seed": 1, "image_AUROC": 0.9}], COLUMNS,
                               {("recsem", 1)})
    expected = [("draem", 0, 0.5), ("recsem", 0, 0.7), ("recsem", 1, 0.9)]
    assert [(row["model"], row["seed"], row["image_AUROC"]) for row in rows] == expected
    assert [(row["model"], int(row["seed"]), float(row["image_AUROC"])) for row in harness.read_rows(path)] == expected


def test_a_checkpoint_scored_without_rows_drops_its_old_ones(tmp_path: Path) -> None:
    # A model whose evaluation yields no row of a kind (no masks: no removal rows) leaves none behind.
    path = tmp_path / "scores.csv"
    harness.write_rows(path, [{"model": "recsem", "seed": 0, "image_AUROC": 0.7},
                              {"model": "draem", "seed": 0, "image_AUROC": 0.5}], COLUMNS)
    rows = defect_types.merged(path, [], COLUMNS, {("recsem", 0)})
    assert [(row["model"], row["seed"]) for row in rows] == [("draem", 0)]
