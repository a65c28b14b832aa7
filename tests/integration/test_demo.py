"""The offline demo, shortened, and the CPU preset it shares with configs/recsem_small.yaml."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from anomalib_recsem.cli import main
from anomalib_recsem.demo import DemoSettings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_demo_reads_its_presets_from_the_configs() -> None:
    config = yaml.safe_load((CONFIGS / "recsem_small.yaml").read_text())
    assert DemoSettings().model_arguments == config["model"]["init_args"]
    tiny = yaml.safe_load((CONFIGS / "recsem_tiny.yaml").read_text())
    assert DemoSettings(quick=True).model_arguments == tiny["model"]["init_args"]
    for settings, preset in ((DemoSettings(), config), (DemoSettings(quick=True), tiny)):
        data = preset["data"]["init_args"]
        assert settings.batch_sizes == (data["train_batch_size"], data["eval_batch_size"])
    assert DemoSettings().batch_sizes != DemoSettings(quick=True).batch_sizes  # the check can tell them apart


@pytest.mark.parametrize("argument", ["--epochs", "--train-images", "--test-images"])
def test_bad_numbers_are_refused(argument: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--output", str(tmp_path), argument, "0"])
    assert exit_info.value.code == 2
    assert f"argument {argument}: must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seeds_numpy_cannot_take_are_refused(seed: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--output", str(tmp_path), "--seed", seed])
    assert exit_info.value.code == 2
    assert f"argument --seed: must be an integer from 0 to {2**32 - 1}" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_quick_demo_writes_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "demo"
    assert main(["demo", "--quick", "--epochs", "1", "--train-images", "8", "--test-images", "3",
                 "--output", str(output), "--no-progress"]) == 0
    report = output / "report" / "report.md"
    assert report.is_file()
    overlays = sorted((output / "report" / "overlays").glob("*.png"))
    assert len(overlays) == 6
    assert sum("defect" in path.name for path in overlays) == 3
    assert all(f"overlays/{path.name}" in report.read_text() for path in overlays)
    assert (output / "export" / "weights" / "openvino" / "model.xml").is_file()
    with (output / "report" / "metrics.csv").open() as handle:
        metrics = {row["metric"]: float(row["value"]) for row in csv.DictReader(handle)}
    for name in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO", "openvino_image_AUROC"):
        assert 0.0 <= metrics[name] <= 1.0
    # OpenVINO's scores rank the test images like PyTorch's.
    assert metrics["openvino_image_AUROC"] == pytest.approx(metrics["image_AUROC"], abs=0.12)
