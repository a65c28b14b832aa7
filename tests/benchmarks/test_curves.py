"""``benchmarks/curves.py`` and the GPU campaign that drives it, end to end on generated data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import curves, defect_types, gpu_campaign, harness

pytestmark = pytest.mark.slow

POINT_COLUMNS = ("image_AUROC", "pixel_AUPRO", "pixel_AUROC", "reconstruction_spread", "residual_pixel_AUROC")


def test_smoke_curves_record_points_and_resume(tmp_path: Path) -> None:
    assert curves.main(["--smoke", "--output", str(tmp_path)]) == 0
    csv_path = tmp_path / "curve_dummy.csv"
    rows = harness.read_rows(csv_path)
    # Both models, a point at step 0, every 2 steps and at the last step (4).
    assert sorted((row["model"], int(row["step"])) for row in rows) == [
        ("draem", 0), ("draem", 2), ("draem", 4), ("recsem", 0), ("recsem", 2), ("recsem", 4)]
    for row in rows:
        assert int(row["samples"]) == int(row["step"]) * 4
        assert float(row["seconds"]) >= 0
        for column in POINT_COLUMNS:
            assert 0.0 <= float(row[column]) <= 1.0 or (column == "reconstruction_spread" and float(row[column]) >= 0)
    assert (tmp_path / "curve_dummy.png").stat().st_size > 0
    # Their checkpoints, scored per defect type: every defective test image counted once per model.
    assert defect_types.main(["--smoke", "--output", str(tmp_path), "--threads", "1"]) == 0
    by_type = harness.read_rows(tmp_path / "defect_types_dummy.csv")
    for model in ("recsem", "draem"):
        images = {row["defect_type"]: int(row["images"]) for row in by_type if row["model"] == model}
        assert images.pop("good") == 4 and images.pop("good (training images)") == 2  # 8 training images, every 4th
        assert sum(images.values()) == 4
    assert all(0.0 <= float(row["image_AUROC"]) <= 1.0 for row in by_type if not row["defect_type"].startswith("good"))
    assert all(int(row["step"]) == 4 and 0.0 <= float(row["median_score"]) <= 1.0 for row in by_type)
    assert (tmp_path / "hardest_dummy_draem_seed0.png").stat().st_size > 0
    # A finished run is not trained again.
    assert curves.main(["--smoke", "--output", str(tmp_path)]) == 0
    assert len(harness.read_rows(csv_path)) == len(rows)


def test_interrupted_run_continues_from_its_checkpoint(tmp_path: Path) -> None:
    assert curves.main(["--smoke", "--output", str(tmp_path), "--models", "recsem"]) == 0
    csv_path = tmp_path / "curve_dummy.csv"
    # As if the run had stopped after step 2: its last point is gone, its checkpoint says step 4.
    rows = [row for row in harness.read_rows(csv_path) if int(row["step"]) <= 2]
    harness.write_rows(csv_path, rows, curves.COLUMNS)
    assert curves.main(["--smoke", "--output", str(tmp_path), "--models", "recsem", "--steps", "6"]) == 0
    steps = [int(row["step"]) for row in harness.read_rows(csv_path)]
    assert steps == [0, 2, 6]  # resumed at step 4 (its checkpoint), not from scratch


def test_gpu_campaign_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    assert gpu_campaign.main(["--smoke", "--budget", "400", "--output", str(tmp_path)]) == 0
    speed = harness.read_rows(tmp_path / "train_step.csv")
    assert {row["precision"] for row in speed} == {"fp32", "bf16"}
    assert all(row["status"] == "ok" and 0 < float(row["mfu"]) < 1 for row in speed)
    points = harness.read_rows(tmp_path / "curve_dummy.csv")
    assert {row["model"] for row in points} == {"recsem", "draem"}
    assert all(row["precision"] == "bf16-mixed" for row in points)
    assert all(math.isfinite(float(row["image_AUROC"])) for row in points)
