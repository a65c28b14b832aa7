"""The GPU campaign: what travels to the GPU machine, and the whole campaign run on the CPU."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import gpu_campaign, harness


def test_packed_data_unpacks_to_the_same_mvtec_tree_as_png(tmp_path: Path) -> None:
    source, textures = harness.smoke_data(tmp_path / "generated")
    gpu_campaign.pack(source / "dummy", textures, tmp_path / "packed", size=32)
    packed = tmp_path / "packed" / "dummy"
    assert not [path for path in packed.rglob("*.png") if "ground_truth" not in path.parts]  # images travel as JPEG
    root = gpu_campaign.unpack(tmp_path / "packed", "dummy", tmp_path / "unpacked")
    before = sorted(path.relative_to(source / "dummy") for path in (source / "dummy").rglob("*.png"))
    after = sorted(path.relative_to(root / "dummy") for path in (root / "dummy").rglob("*") if path.is_file())
    assert after == before
    for relative in before:
        mask = "ground_truth" in relative.parts  # masks exact (nearest), binary as they were
        resample = Image.Resampling.NEAREST if mask else Image.Resampling.BILINEAR
        with Image.open(source / "dummy" / relative) as original, Image.open(root / "dummy" / relative) as copy:
            expected = np.asarray(original.convert("L").resize((32, 32), resample), dtype=float)
            if mask:
                assert np.array_equal(np.asarray(copy, dtype=float), expected), relative
            else:
                assert np.abs(np.asarray(copy, dtype=float) - expected).mean() < 3, relative
    assert len(list((tmp_path / "packed" / "dtd").rglob("*.jpg"))) == len(list(textures.rglob("*.jpg")))


def test_unpack_names_the_folder_when_nothing_was_packed(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"magnetic_tile holds no packed dataset.*--prepare"):
        gpu_campaign.unpack(tmp_path / "data", "magnetic_tile", tmp_path / "unpacked")


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a killed process may linger as a zombie until it is reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_stage_out_of_time_is_stopped_with_the_processes_it_started(tmp_path: Path) -> None:
    started = time.monotonic()
    command = ["bash", "-c", f"sleep 60 & echo $! > {tmp_path / 'child'}; wait"]
    assert gpu_campaign._run(command, 3, tmp_path / "log") == 124
    assert time.monotonic() - started < 30
    child = int((tmp_path / "child").read_text())
    for _ in range(50):  # the grandchild is gone too, not left holding the GPU
        if not _running(child):
            break
        time.sleep(0.1)
    assert not _running(child)
    assert gpu_campaign._run(["bash", "-c", "exit 3"], 10, tmp_path / "log") == 3


@pytest.mark.slow
def test_gpu_campaign_runs_end_to_end_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As on the GPU machine, the shared data folder does not exist: everything comes from what was packed.
    monkeypatch.setenv("RECSEM_DATASETS", str(tmp_path / "no_datasets"))
    output, work = tmp_path / "out", tmp_path / "work"
    assert gpu_campaign.main(["--smoke", "--budget", "900", "--output", str(output), "--work", str(work)]) == 0
    # What comes back from the GPU machine: at most 8 files, checkpoints left behind.
    returned = sorted(path.name for path in output.iterdir())
    assert returned == ["CURVES_dummy.md", "SPEED.md", "campaign.log", "curve_dummy.csv", "curve_dummy.png",
                        "defects.csv", "train_step.csv"]
    assert list((work / "checkpoints").glob("*.ckpt"))
    log = (output / "campaign.log").read_text()
    assert all(f"preflight: defects from {source} on cpu" in log for source in ("procedural", "photos", "dtd"))
    assert all(f"preflight: {model} curve run of two steps in bf16-mixed on cpu" in log
               for model in ("recsem", "draem"))
    speed = harness.read_rows(output / "train_step.csv")
    assert {row["precision"] for row in speed} == {"fp32", "bf16"}
    assert all(row["status"] == "ok" and 0 < float(row["mfu"]) < 1 for row in speed)
    defects = harness.read_rows(output / "defects.csv")
    assert {row["image_size"] for row in defects} == {"128", "256"}
    assert {row["source"] for row in defects} == {"procedural", "photos", "dtd"}  # dtd: the packed subset
    assert all(row["status"] == "ok" and float(row["ms_per_batch"]) > 0 for row in defects)
    points = harness.read_rows(output / "curve_dummy.csv")
    assert {row["model"] for row in points} == {"recsem", "draem"}
    assert all(row["precision"] == "bf16-mixed" for row in points)
    assert all(math.isfinite(float(row["image_AUROC"])) for row in points)


def test_a_failed_preflight_stops_the_campaign_before_the_speed_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECSEM_DATASETS", str(tmp_path / "no_datasets"))
    monkeypatch.setattr(gpu_campaign, "PREFLIGHT_SECONDS", 0.5)  # the checks cannot finish: a stage that fails
    output = tmp_path / "out"
    assert gpu_campaign.main(["--smoke", "--output", str(output), "--work", str(tmp_path / "work")]) == 2
    assert sorted(path.name for path in output.iterdir()) == ["campaign.log"]


def test_preflight_fails_on_a_defect_source_that_cannot_load(tmp_path: Path) -> None:
    """The check itself, as the campaign's first stage runs it: here the carried textures are missing."""
    with pytest.raises(FileNotFoundError, match="anomaly_source"):
        gpu_campaign.main(["--preflight", "cpu", "--data", str(tmp_path / "nothing_packed"), "--work", str(tmp_path)])
