"""RecSem sweeps through anomalib's own ``anomalib benchmark`` pipeline.

``anomalib benchmark`` exits 0 even when every job fails (it logs the error to
``runs/pipeline.log`` and writes no CSV), so these tests judge the run by its outputs.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "benchmark"
METRICS = ("image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO")
MVTEC_AD_CATEGORIES = {
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
}  # fmt: skip


def expand(config: dict) -> list[dict]:
    """The jobs anomalib's benchmark generator would build from a config, as plain dicts."""
    from anomalib.pipelines.components.utils import get_iterator_from_grid_dict

    return list(get_iterator_from_grid_dict(config["benchmark"]))


@pytest.mark.parametrize("name", ["recsem_sweep.yaml", "recsem_smoke.yaml"])
def test_config_is_a_valid_recsem_grid(name: str) -> None:
    """Both files parse, set max_epochs, and only use RecSem arguments (no job is trained)."""
    from anomalib.pipelines.benchmark.pipeline import Benchmark

    import anomalib_recsem

    config = yaml.safe_load((CONFIGS / name).read_text())
    assert Benchmark._setup_runners(config)  # accepted accelerator form
    jobs = expand(config)
    parameters = inspect.signature(anomalib_recsem.RecSem).parameters
    for job in jobs:
        # Dotless names: anomalib's get_model whitelist rejects third-party module paths.
        assert job["model"]["class_path"] == "RecSem"
        assert job["data"]["class_path"] == "MVTecAD"
        assert set(job["model"]["init_args"]) <= set(parameters)
        assert job["model"]["init_args"]["max_epochs"] >= 1
        size = job["model"]["init_args"]["image_size"]
        assert all(1 <= scale <= size // 16 for scale in job["model"]["init_args"]["memory_scales"])
    scales = {tuple(job["model"]["init_args"]["memory_scales"]) for job in jobs}
    if name == "recsem_sweep.yaml":
        assert {job["data"]["init_args"]["category"] for job in jobs} == MVTEC_AD_CATEGORIES
        assert scales == {(8,), (8, 16)}
        assert len(jobs) == 2 * len(MVTEC_AD_CATEGORIES)
    else:
        assert len(jobs) == 2


@pytest.mark.parametrize(("name", "preset"), [("recsem_sweep.yaml", "recsem_small"),
                                             ("recsem_smoke.yaml", "recsem_tiny")])
def test_config_repeats_its_preset(name: str, preset: str) -> None:
    """The pipeline cannot read a preset file: what the config leaves fixed must be the preset's."""
    from anomalib_recsem.presets import model_arguments

    config = yaml.safe_load((CONFIGS / name).read_text())["benchmark"]["model"]["init_args"]
    swept = {key for key, value in config.items() if isinstance(value, dict) and "grid" in value}
    own = {"max_epochs", "image_size", "anomaly_source"}  # what a sweep sets for itself
    expected = {key: value for key, value in model_arguments(preset).items() if key not in own | swept}
    assert {key: value for key, value in config.items() if key not in own | swept} == expected


@pytest.mark.slow
def test_smoke_sweep_runs_every_job(tmp_path: Path) -> None:
    """``anomalib benchmark`` on a tiny dataset: one CSV row with finite metrics per job."""
    data_root = write_mvtec_dataset(tmp_path / "data", category="dummy", num_train=8, size=64)
    config = yaml.safe_load((CONFIGS / "recsem_smoke.yaml").read_text())
    config["benchmark"]["data"]["init_args"]["root"] = str(data_root)
    jobs = expand(config)
    config_path = tmp_path / "sweep.yaml"
    config_path.write_text(yaml.safe_dump(config))

    result = subprocess.run(
        [ANOMALIB, "benchmark", "--config", str(config_path)],
        cwd=tmp_path,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = tmp_path / "runs" / "pipeline.log"
    log_text = log.read_text() if log.is_file() else ""
    diagnostics = f"rc={result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{log_text[-4000:]}"
    assert result.returncode == 0, diagnostics
    assert "There were some errors" not in result.stdout, diagnostics
    assert "Traceback" not in log_text, diagnostics

    csv_files = list((tmp_path / "runs" / "benchmark").glob("*/results.csv"))
    assert len(csv_files) == 1, diagnostics
    with csv_files[0].open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(jobs) == 2, rows
    assert {row["model.init_args.memory_scales"] for row in rows} == {"[4]", "[2, 4]"}
    for row in rows:
        assert row["model.class_path"] == "RecSem"
        for metric in METRICS:
            value = float(row[metric])
            assert math.isfinite(value), (metric, row)
            assert 0.0 <= value <= 1.0, (metric, row)
        assert float(row["fit_duration"]) > 0
