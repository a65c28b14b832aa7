"""The stock ``anomalib`` command with RecSem, run as a user would, in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from anomalib.deploy import OpenVINOInferencer

from anomalib_recsem.data.dagm.generator import write_dagm_dataset
from tests.conftest import TINY_RECSEM

pytestmark = pytest.mark.slow

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_ARGS = [f"--model.{name} {value}" for name, value in TINY_RECSEM.items()]
TINY_ARGS = [part for argument in TINY_ARGS for part in argument.split()]
FAST_TRAINER = ["--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]


def run(arguments: list[str], cwd: Path, **environment: str) -> subprocess.CompletedProcess:
    """Run ``anomalib`` and fail with its output if it fails."""
    env = {**os.environ, **environment}
    result = subprocess.run([ANOMALIB, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    return result


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def trained_by_cli(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``anomalib train --model RecSem --data MVTec --data.category dummy`` with tiny widths."""
    workdir = tmp_path_factory.mktemp("cli")
    checked(run(
        ["train", "--model", "RecSem", "--data", "MVTec", "--data.root", str(mvtec_root), "--data.category", "dummy",
         "--data.num_workers", "0", "--data.train_batch_size", "4", "--data.eval_batch_size", "4",
         *TINY_ARGS, *FAST_TRAINER, "--default_root_dir", "results"],
        cwd=workdir,
    ))
    return workdir


def test_train_with_short_names_writes_checkpoint_and_images(trained_by_cli: Path) -> None:
    run_dir = trained_by_cli / "results" / "RecSem" / "MVTecAD" / "dummy" / "v0"
    assert (run_dir / "weights" / "lightning" / "model.ckpt").is_file()
    assert len(list((run_dir / "images").rglob("*.png"))) == 8
    config = (run_dir / "config.yaml").read_text()
    assert "anomalib_recsem.RecSem" in config


def test_train_in_bf16_mixed_precision_from_the_tiny_config(mvtec_root: Path, tmp_path: Path) -> None:
    result = checked(run(
        ["train", "--config", str(CONFIGS / "recsem_tiny.yaml"), "--data.root", str(mvtec_root),
         "--data.category", "dummy", "--trainer.precision", "bf16-mixed", "--trainer.max_epochs", "1",
         "--trainer.enable_progress_bar", "false", "--default_root_dir", "results"],
        cwd=tmp_path,
    ))
    assert "bf16" in result.stdout + result.stderr  # Lightning reports the precision it uses
    checkpoint = next((tmp_path / "results").rglob("model.ckpt"))
    import torch  # noqa: PLC0415

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert all(value.dtype != torch.bfloat16 for value in state.values())  # the weights stay float32
    assert all(bool(torch.isfinite(value.float()).all()) for value in state.values())


def test_export_openvino_then_infer(trained_by_cli: Path, mvtec_root: Path) -> None:
    checkpoint = trained_by_cli / "results" / "RecSem" / "MVTecAD" / "dummy" / "v0" / "weights" / "lightning" / "model.ckpt"
    checked(run(
        ["export", "--model", "RecSem", "--export_type", "openvino", "--ckpt_path", str(checkpoint),
         "--export_root", "exported"],
        cwd=trained_by_cli,
    ))
    xml = trained_by_cli / "exported" / "weights" / "openvino" / "model.xml"
    assert xml.is_file()
    image = next((mvtec_root / "dummy" / "test" / "defect").glob("*.png"))
    result = OpenVINOInferencer(path=xml, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"}).predict(image)
    assert np.asarray(result.anomaly_map).squeeze().shape == (TINY_RECSEM["image_size"],) * 2
    assert 0.0 <= float(np.asarray(result.pred_score).reshape(-1)[0]) <= 1.0


def test_full_class_path_works_without_autoload(mvtec_root: Path, tmp_path: Path) -> None:
    result = checked(run(
        ["fit", "--model", "anomalib_recsem.RecSem", "--data", "anomalib.data.MVTecAD", "--data.root", str(mvtec_root),
         "--data.category", "dummy", "--data.num_workers", "0", "--data.train_batch_size", "4",
         *TINY_ARGS, *FAST_TRAINER, "--default_root_dir", "results"],
        cwd=tmp_path, ANOMALIB_RECSEM_NO_AUTOLOAD="1",
    ))
    assert result.returncode == 0
    assert list((tmp_path / "results").rglob("model.ckpt"))


def test_short_name_needs_the_autoload_hook(tmp_path: Path) -> None:
    """With the hook switched off the short name is unknown: proof that the hook does the work."""
    result = run(["train", "--model", "RecSem", "--print_config"], cwd=tmp_path, ANOMALIB_RECSEM_NO_AUTOLOAD="1")
    assert result.returncode != 0
    assert "RecSem" in result.stderr + result.stdout


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("recsem*.yaml")), ids=lambda path: path.name)
def test_configs_parse(config: Path, tmp_path: Path) -> None:
    result = checked(run(["train", "--config", str(config), "--print_config"], cwd=tmp_path))
    assert "anomalib_recsem.RecSem" in result.stdout


def test_train_on_dagm(tmp_path: Path) -> None:
    root = write_dagm_dataset(tmp_path / "DAGM", num_train=8, num_test_normal=4, num_test_defective=4,
                              num_train_defective=1, image_size=128)
    checked(run(
        ["train", "--model", "RecSem", "--data", "DAGM", "--data.root", str(root), "--data.category", "Class1",
         "--data.num_workers", "0", "--data.train_batch_size", "4", "--data.eval_batch_size", "4",
         *TINY_ARGS, *FAST_TRAINER, "--default_root_dir", "results"],
        cwd=tmp_path,
    ))
    run_dir = tmp_path / "results" / "RecSem" / "DAGM" / "Class1" / "v0"
    assert (run_dir / "weights" / "lightning" / "model.ckpt").is_file()
    # 4 normal + 4 defective Test images and the defective Train image moved to test,
    # less the half of them that validation takes (val_split_mode from_test).
    written = [path for path in (run_dir / "images").rglob("*") if path.suffix.lower() == ".png"]
    assert 4 <= len(written) <= 5
