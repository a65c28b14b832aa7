"""``benchmarks/accuracy.py``: the smoke campaign, resuming, and how failures are reported."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy.py"
METRICS = ("image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO")


@pytest.fixture(scope="module")
def accuracy() -> ModuleType:
    """The benchmark script as a module (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("benchmarks_accuracy", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is being created.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_smoke_campaign_writes_rows_summary_and_resumes(accuracy: ModuleType, tmp_path: Path) -> None:
    assert accuracy.main(["--smoke", "--output", str(tmp_path)]) == 0
    main_rows = rows(tmp_path / "accuracy_smoke.csv")
    assert sorted(row["model"] for row in main_rows) == ["draem", "recsem"]
    for row in main_rows:
        assert row["error"] == ""
        assert row["train_images"] == "8"
        assert (row["reconstruction_width"], row["discriminator_width"]) == ("8", "8")
        assert float(row["train_seconds"]) > 0
        for metric in METRICS:
            assert 0.0 <= float(row[metric]) <= 1.0, (metric, row)
    summary = (tmp_path / "ACCURACY.md").read_text()
    assert "| recsem | 1 |" in summary and "| draem | 1 |" in summary
    assert "## Goal" in summary and "Cimpoi" in summary
    assert (tmp_path / "accuracy_smoke.png").stat().st_size > 0

    # Everything is recorded already: nothing is trained again.
    assert accuracy.main(["--smoke", "--output", str(tmp_path)]) == 0
    assert len(rows(tmp_path / "accuracy_smoke.csv")) == 2

    # The ablation's baseline is the main RecSem run, copied rather than retrained.
    assert (
        accuracy.main(["--smoke", "--ablation", "--variants", "default", "one_scale", "--output", str(tmp_path)]) == 0
    )
    ablation = {row["variant"]: row for row in rows(tmp_path / "ablation_smoke.csv")}
    assert set(ablation) == {"default", "one_scale"}
    assert ablation["default"]["source"] == "accuracy_smoke.csv"
    assert ablation["one_scale"]["memory_scales"] == "4"
    assert ablation["default"]["memory_scales"] == "2,4"
    assert math.isfinite(float(ablation["one_scale"]["pixel_AUPRO"]))
    assert "| one_scale | 4 |" in (tmp_path / "ACCURACY.md").read_text()


def fake_row(accuracy: ModuleType, spec: Any, settings: Any) -> dict[str, Any]:
    """What ``run_one`` returns, without training."""
    return {
        "model": spec.model,
        "variant": spec.variant,
        "seed": spec.seed,
        **accuracy.planned_settings(settings),
        "train_seconds": 1.0,
        **dict.fromkeys(METRICS, 0.5),
    }


def test_failed_run_is_recorded_reported_and_retried(
    accuracy: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def draem_breaks(spec: Any, settings: Any) -> dict[str, Any]:
        if spec.model == "draem":
            msg = "simulated DRAEM failure"
            raise RuntimeError(msg)
        return fake_row(accuracy, spec, settings)

    monkeypatch.setattr(accuracy, "run_one", draem_breaks)
    assert accuracy.main(["--smoke", "--output", str(tmp_path)]) == 1
    recorded = {row["model"]: row for row in rows(tmp_path / "accuracy_smoke.csv")}
    assert recorded["recsem"]["error"] == ""
    assert "RuntimeError: simulated DRAEM failure" in recorded["draem"]["error"]
    assert "simulated DRAEM failure" in (tmp_path / "accuracy.log").read_text()
    assert "Failed runs" in (tmp_path / "ACCURACY.md").read_text()

    # A later call retries only the failed run.
    calls: list[str] = []

    def works(spec: Any, settings: Any) -> dict[str, Any]:
        calls.append(spec.model)
        return fake_row(accuracy, spec, settings)

    monkeypatch.setattr(accuracy, "run_one", works)
    assert accuracy.main(["--smoke", "--output", str(tmp_path)]) == 0
    assert calls == ["draem"]
    assert "Failed runs" not in (tmp_path / "ACCURACY.md").read_text()

    # Other settings in the same CSV would make means over seeds meaningless: refused.
    planned = accuracy.planned_settings
    monkeypatch.setattr(accuracy, "planned_settings", lambda settings: {**planned(settings), "epochs": "99"})
    assert accuracy.main(["--smoke", "--output", str(tmp_path), "--seeds", "1"]) == 2


def test_summarise_only_without_results(accuracy: ModuleType, tmp_path: Path) -> None:
    assert accuracy.main(["--summarise-only", "--output", str(tmp_path)]) == 0
    assert "No successful runs" in (tmp_path / "ACCURACY.md").read_text()
