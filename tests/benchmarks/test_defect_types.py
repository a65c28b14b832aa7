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


def test_merged_rows_come_back_as_the_csv_holds_them_kept_or_new(tmp_path: Path) -> None:
    # New and kept rows alike are rounded to the CSV's 6 significant digits, so the Markdown
    # tables print a value the same way whether its model was rescored or kept.
    path, columns = tmp_path / "rows.csv", ("model", "seed", "value")
    defect_types.merged(path, [{"model": "draem", "seed": 0, "value": 0.5744999}], columns, {("draem", 0)})
    rows = defect_types.merged(path, [{"model": "recsem", "seed": 0, "value": 0.5744999}], columns, {("recsem", 0)})
    assert rows == [{"model": "draem", "seed": 0, "value": 0.5745}, {"model": "recsem", "seed": 0, "value": 0.5745}]
    assert defect_types.merged(tmp_path / "none.csv", [], columns, set()) == []
