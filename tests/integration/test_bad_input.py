"""Bad input through anomalib's Engine and the stock CLI: every case fails early, naming the
file, folder or argument, or is handled correctly.

Covered elsewhere: image sizes that are not multiples of 32 (unit/models/recsem), a
non-finite loss and NaN pixels (unit/models/recsem/test_lightning_model.py), all-zero
masks and non-square images of varying sizes (integration/test_magnetic_tile.py), and
malformed DAGM files (unit/data/dagm/test_dataset.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from PIL import Image

import anomalib.data.datamodules.image.mvtecad as anomalib_mvtecad
from anomalib_recsem import DAGM, RecSem
from anomalib_recsem.data import MVTec
from anomalib_recsem.data.validation import DataValidationError
from anomalib_recsem.models.recsem.components.checkpoint import CheckpointMismatchError
from anomalib_recsem.models.recsem.components.export import UntrainedModelError
from tests.conftest import TINY_BATCHES, TINY_RECSEM
from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset

pytestmark = pytest.mark.slow

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))
SIZE = 64


def _engine(root: Path) -> Engine:
    return Engine(default_root_dir=root, max_epochs=1, logger=False, accelerator="cpu", devices=1,
                  enable_progress_bar=False, enable_model_summary=False)


def _datamodule(root: Path, cls: type = MVTecAD, **kwargs: object) -> MVTecAD:
    return cls(root=root, category="dummy", **TINY_BATCHES, num_workers=0, **kwargs)


def _fit(datamodule: object, tmp_path: Path) -> None:
    _engine(tmp_path / "results").fit(model=RecSem(**TINY_RECSEM), datamodule=datamodule)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train, 2 good and 2 defective test images of 64 px."""
    return write_mvtec_dataset(tmp_path_factory.mktemp("small"), num_train=4, num_test_good=2, num_test_defective=2)


@pytest.fixture
def damaged_root(small_root: Path, tmp_path: Path) -> Path:
    """A private copy of ``small_root`` that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(small_root, root)
    return root


# --------------------------------------------------------------------------- missing dataset


@pytest.mark.parametrize("missing", ["root", "category"])
def test_mvtec_alias_names_missing_folder_without_downloading(
    small_root: Path, tmp_path: Path, missing: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(anomalib_mvtecad, "download_and_extract", _no_download)
    root = tmp_path / "nowhere" if missing == "root" else small_root
    datamodule = MVTec(root=root, category="dumy", num_workers=0)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "dumy"))) as error:
        _fit(datamodule, tmp_path)
    assert "not an MVTec AD category" in str(error.value)
    if missing == "category":
        assert "Folders found under" in str(error.value) and "dummy" in str(error.value)
    assert not (tmp_path / "nowhere").exists()  # nothing created


def _no_download(*_args: object, **_kwargs: object) -> None:
    pytest.fail("download_and_extract must not be called")


def test_mvtec_alias_failed_download_names_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An official category is still downloaded; offline, the error names the folder."""

    def offline(*_args: object, **_kwargs: object) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(anomalib_mvtecad, "download_and_extract", offline)
    root = tmp_path / "MVTecAD"
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "bottle"))) as error:
        _fit(MVTec(root=root, category="bottle", num_workers=0), tmp_path)
    assert "Name or service not known" in str(error.value)
    assert isinstance(error.value.__cause__, URLError)


def test_anomalib_mvtecad_downloads_then_names_missing_category(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """anomalib's own MVTecAD (unchanged by the plugin) downloads whenever <root>/<category> is
    missing: offline that is a URLError without a path; once the download has run, the
    dataset names the missing folder. The ``MVTec`` alias above fails before downloading."""
    calls = []
    monkeypatch.setattr(anomalib_mvtecad, "download_and_extract", lambda root, info: calls.append(root))
    with pytest.raises(FileNotFoundError, match=re.escape(str(small_root / "dumy"))):
        _fit(MVTecAD(root=small_root, category="dumy", num_workers=0), tmp_path)
    assert calls == [small_root]


@pytest.mark.parametrize("missing", ["root", "category"])
def test_dagm_names_missing_folder(tmp_path: Path, missing: str) -> None:
    root = tmp_path / "DAGM"
    if missing == "category":
        (root / "Class2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "Class1"))) as error:
        _fit(DAGM(root=root, category="Class1", num_workers=0), tmp_path)
    assert "cannot be downloaded automatically" in str(error.value)


# --------------------------------------------------------------------------- empty training folder


def test_empty_train_folder_is_named(damaged_root: Path, tmp_path: Path) -> None:
    train_dir = damaged_root / "dummy" / "train" / "good"
    for image in train_dir.iterdir():
        image.unlink()
    with pytest.raises(DataValidationError, match=re.escape(f"no defect-free images found in {train_dir}")):
        _fit(_datamodule(damaged_root), tmp_path)
    assert not list((tmp_path / "results").rglob("*.ckpt"))


# --------------------------------------------------------------------------- unreadable files


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_text("this is not an image\n")


@pytest.mark.parametrize("how", ["truncated", "text"])
@pytest.mark.parametrize("where", ["train/good/001.png", "test/good/001.png", "test/defect/000.png",
                                   "ground_truth/defect/000_mask.png"])
def test_unreadable_file_is_named_before_training(damaged_root: Path, tmp_path: Path, where: str, how: str) -> None:
    broken = damaged_root / "dummy" / where
    _damage(broken, how)
    with pytest.raises(DataValidationError, match=re.escape(f"{broken}: ")):
        _fit(_datamodule(damaged_root), tmp_path)
    assert not list((tmp_path / "results").rglob("*.ckpt"))


@pytest.mark.parametrize("how", ["truncated", "text"])
def test_unreadable_test_file_is_named_by_engine_test(damaged_root: Path, tmp_path: Path, how: str) -> None:
    broken = damaged_root / "dummy" / "test" / "defect" / "001.png"
    _damage(broken, how)
    with pytest.raises(DataValidationError, match=re.escape(f"Cannot read test image {broken}")):
        _engine(tmp_path / "results").test(model=RecSem(**TINY_RECSEM), datamodule=_datamodule(damaged_root))


# --------------------------------------------------------------------------- masks of the wrong size


def test_mask_size_mismatch_names_mask_and_image(damaged_root: Path, tmp_path: Path) -> None:
    mask = damaged_root / "dummy" / "ground_truth" / "defect" / "001_mask.png"
    Image.fromarray(np.full((SIZE // 2, SIZE), 255, dtype=np.uint8)).save(mask)
    image = damaged_root / "dummy" / "test" / "defect" / "001.png"
    for run in (lambda: _fit(_datamodule(damaged_root), tmp_path),
                lambda: _engine(tmp_path / "results").test(model=RecSem(**TINY_RECSEM),
                                                            datamodule=_datamodule(damaged_root))):
        with pytest.raises(DataValidationError) as error:
            run()
        message = str(error.value)
        assert str(mask) in message and str(image) in message
        assert f"{SIZE}x{SIZE // 2}" in message and f"{SIZE}x{SIZE}" in message


# --------------------------------------------------------------------------- grayscale + RGB, checkpoints, export


@pytest.fixture(scope="module")
def mixed_run(small_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every other image (train and test) converted to 8-bit grayscale; fit one epoch."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    shutil.copytree(small_root, root)
    images = sorted((root / "dummy" / "train").rglob("*.png")) + sorted((root / "dummy" / "test").rglob("*.png"))
    converted = images[::2]
    for path in converted:
        Image.open(path).convert("L").save(path)
    project = root.parent / "results"
    datamodule = _datamodule(root)
    model = RecSem(**TINY_RECSEM)
    engine = _engine(project)
    engine.fit(model=model, datamodule=datamodule)
    checkpoint = next(project.rglob("model.ckpt"))
    return {"root": root, "converted": converted, "datamodule": datamodule, "model": model, "engine": engine,
            "checkpoint": checkpoint, "project": project}


def test_mixed_grayscale_and_rgb_train_and_test(mixed_run: dict) -> None:
    assert {Image.open(path).mode for path in mixed_run["converted"]} == {"L"}
    batch = next(iter(mixed_run["datamodule"].train_dataloader()))
    assert batch.image.shape[1] == 3  # grayscale files are read as RGB
    (results,) = mixed_run["engine"].test(model=mixed_run["model"], datamodule=mixed_run["datamodule"])
    for name in ("image_AUROC", "pixel_AUROC", "pixel_AUPRO"):
        assert np.isfinite(results[name]), name


def test_checkpoint_of_other_width_names_file_and_argument(mixed_run: dict) -> None:
    checkpoint = mixed_run["checkpoint"]
    wider = RecSem(**{**TINY_RECSEM, "reconstruction_width": 16})
    with pytest.raises(CheckpointMismatchError) as error:
        mixed_run["engine"].test(model=wider, datamodule=mixed_run["datamodule"], ckpt_path=checkpoint)
    message = str(error.value)
    assert str(checkpoint) in message
    assert "reconstruction_width=8 in the checkpoint (model: 16)" in message
    assert "discriminator_width" not in message  # only what differs
    assert "size mismatch" not in message and "\n" not in message


def test_load_from_checkpoint_restores_widths(mixed_run: dict) -> None:
    model = RecSem.load_from_checkpoint(mixed_run["checkpoint"])
    assert model.hparams["reconstruction_width"] == TINY_RECSEM["reconstruction_width"]
    state = torch.load(mixed_run["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())


def test_load_from_checkpoint_with_other_width_names_file_and_argument(mixed_run: dict) -> None:
    with pytest.raises(CheckpointMismatchError) as error:
        RecSem.load_from_checkpoint(mixed_run["checkpoint"], reconstruction_width=16)
    message = str(error.value)
    assert str(mixed_run["checkpoint"]) in message
    assert "reconstruction_width=16" in message


def test_export_untrained_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UntrainedModelError, match="ckpt_path"):
        _engine(tmp_path).export(model=RecSem(**TINY_RECSEM), export_type="torch", export_root=tmp_path / "export")
    assert not (tmp_path / "export" / "weights" / "torch" / "model.pt").exists()


def test_export_with_checkpoint_still_works(mixed_run: dict, tmp_path: Path) -> None:
    exported = _engine(tmp_path).export(model=RecSem(**TINY_RECSEM), export_type="torch",
                                        export_root=tmp_path / "export", ckpt_path=mixed_run["checkpoint"])
    assert exported is not None and Path(exported).is_file()


def test_cli_export_without_checkpoint_names_ckpt_path(tmp_path: Path) -> None:
    arguments = [f"--model.{name}={value}" for name, value in TINY_RECSEM.items()]
    result = subprocess.run(
        [ANOMALIB, "export", "--model", "RecSem", *arguments, "--export_type", "torch", "--export_root", "exported"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert result.returncode != 0, output[-2000:]
    assert "UntrainedModelError" in output
    assert "--ckpt_path" in output
    assert not list((tmp_path / "exported").rglob("model.pt"))
