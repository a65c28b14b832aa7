"""``benchmarks/speed.py``: its cells run and write well-formed rows (timings are never asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks import harness, speed

pytestmark = pytest.mark.slow


def test_train_and_defect_cells_write_rows_with_mfu(tmp_path: Path) -> None:
    assert speed.main(["--parts", "train", "defects", "--presets", "recsem_tiny", "--precisions", "fp32", "bf16",
                       "--steps", "1", "--warmup", "0", "--output", str(tmp_path)]) == 0
    rows = harness.read_rows(tmp_path / "train_step.csv")
    assert {(row["precision"], row["channels_last"]) for row in rows} == {
        ("fp32", "False"), ("fp32", "True"), ("bf16", "False"), ("bf16", "True")}
    for row in rows:
        assert row["status"] == "ok", row["note"]
        assert 0 < float(row["mfu"]) < 1
        assert float(row["samples_per_second"]) == pytest.approx(4 / float(row["seconds_per_step"]), rel=1e-4)
        # Timings are not asserted; the shares must be the ratios they name.
        seconds, networks = float(row["seconds_per_step"]), float(row["networks_seconds_per_step"])
        assert networks > 0
        assert float(row["outside_share"]) == pytest.approx(1 - networks / seconds, abs=1e-5)  # as the CSV rounds
        assert float(row["synthesis_share"]) == pytest.approx(float(row["synthesis_s"]) / seconds, abs=1e-5)
        fitting = float(row["lightning_seconds_per_step"])
        assert float(row["lightning_outside_share"]) == pytest.approx(1 - networks / fitting, abs=1e-5)
        assert row["augmenter"] == "SyntheticDefect(photos)"  # the preset's own defects, RecSem's default
    defects = harness.read_rows(tmp_path / "defects.csv")
    assert {row["image_size"] for row in defects} == {"128", "256"}
    assert all(math.isfinite(float(row["ms_per_batch"])) for row in defects)
    assert "## Training step" in (tmp_path / "SPEED.md").read_text()


def test_step_flops_are_three_forward_passes() -> None:
    model = harness.recsem("recsem_tiny")
    images, flags = torch.rand(2, 3, 64, 64), torch.tensor([True, False])
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.model(images)
    forward = counter.get_total_flops()
    assert speed.step_flops(model, images, flags) == pytest.approx(3 * forward, rel=0.05)


@pytest.mark.parametrize(("flags", "bf16_factor"), [("fma avx2", 1), ("fma avx2 avx512f avx512_bf16", 2)])  # AMD
def test_cpu_peak_follows_clock_threads_and_bf16_instructions(
    flags: str, bf16_factor: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"vendor_id\t: AuthenticAMD\ncpu MHz\t\t: 2000.000\nflags\t\t: {flags}\ncpu MHz\t\t: 2500.000\n")
    monkeypatch.setattr(harness, "CPUINFO", cpuinfo)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    fp32 = speed.peak_tflops(torch.device("cpu"), "fp32")
    assert fp32 == pytest.approx(2 * 2500e6 * 32 / 1e12)
    assert speed.peak_tflops(torch.device("cpu"), "bf16") == pytest.approx(bf16_factor * fp32)
    cpuinfo.write_text(cpuinfo.read_text().replace("AuthenticAMD", "GenuineIntel"))
    wide = "avx512f" in flags  # Intel's server cores: two 512-bit pipes
    assert speed.peak_tflops(torch.device("cpu"), "fp32") == pytest.approx((2 if wide else 1) * fp32)
    cpuinfo.write_text(cpuinfo.read_text().replace("GenuineIntel", "SomeOtherVendor"))
    assert math.isnan(speed.peak_tflops(torch.device("cpu"), "fp32"))


def test_summary_gives_gpu_memory_where_a_row_measured_it(tmp_path: Path) -> None:
    measured = {"model": "recsem", "image_size": "256", "batch_size": "8", "precision": "bf16", "channels_last": "True",
                "seconds_per_step": "0.1", "samples_per_second": "80", "mfu": "0.4", "outside_share": "0.02",
                "synthesis_share": "0.03", "lightning_outside_share": "0.05",
                "status": "ok", "device": "NVIDIA H100 80GB HBM3", "gpu_reserved_mb": "9216"}
    harness.write_rows(tmp_path / "train_step.csv", [measured, measured | {"device": "CPU", "gpu_reserved_mb": ""}],
                       speed.TRAIN_COLUMNS)
    table = speed.summarise(tmp_path).read_text()
    cells = "| recsem | 256 | 8 | bf16 | True | 0.100 | 80.0 | 0.400 | 2.0 % | 5.0 % | 3.0 % |"
    assert f"| NVIDIA H100 80GB HBM3 {cells} 9.0 GiB |" in table
    assert f"| CPU {cells} – |" in table


def test_a_synthesis_source_that_cannot_load_is_a_row_not_a_crash(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real = speed.SyntheticDefect

    def without_photographs(anomaly_source: object = None, **kwargs: object) -> speed.SyntheticDefect:
        if anomaly_source == "photos":
            raise FileNotFoundError("anomaly_source 'photos': /nowhere lacks brick.png")
        return real(anomaly_source=anomaly_source, **kwargs)

    monkeypatch.setattr(speed, "SyntheticDefect", without_photographs)
    assert speed.main(["--parts", "defects", "--textures", str(tmp_path / "absent"), "--warmup", "0",
                       "--output", str(tmp_path)]) == 0
    rows = harness.read_rows(tmp_path / "defects.csv")
    assert [(row["source"], row["status"]) for row in rows] == [
        ("procedural", "ok"), ("photos", "error"), ("procedural", "ok"), ("photos", "error")]  # no DTD folder
    assert "| photos | 128 | error: FileNotFoundError: anomaly_source 'photos': /nowhere lacks" in (
        tmp_path / "SPEED.md").read_text()
