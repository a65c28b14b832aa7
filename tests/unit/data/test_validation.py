"""Tests of the image, mask and dataset checks that run before a stage reads any data."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from anomalib.data.datasets.image.mvtecad import MVTecADDataset
from PIL import Image

from anomalib_recsem.data.dagm import DAGMDataset
from anomalib_recsem.data.dagm.generator import write_dagm_dataset
from anomalib_recsem.data.validation import (
    DataValidationError,
    check_eight_bit,
    expected_folder,
    read_image_size,
    validate_dataset,
    validate_stage_data,
)
from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset


def _image(path: Path, size: tuple[int, int] = (48, 32), mode: str = "RGB", fmt: str = "PNG") -> Path:
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path, format=fmt)
    return path


def _cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(("name", "fmt", "mode"), [("a.png", "PNG", "RGB"), ("b.png", "PNG", "L"),
                                                   ("c.jpg", "JPEG", "RGB"), ("d.bmp", "BMP", "L")])
def test_good_images_report_their_size(tmp_path: Path, name: str, fmt: str, mode: str) -> None:
    assert read_image_size(_image(tmp_path / name, mode=mode, fmt=fmt)) == (48, 32)


@pytest.mark.parametrize(("name", "fmt"), [("a.png", "PNG"), ("c.jpg", "JPEG")])
def test_truncated_images_are_named(tmp_path: Path, name: str, fmt: str) -> None:
    path = _cut_in_half(_image(tmp_path / name, size=(256, 256), fmt=fmt))
    with pytest.raises(DataValidationError, match=re.escape(f"Cannot read mask {path}: ")):
        read_image_size(path, "mask")


def test_text_file_and_missing_file_are_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataValidationError, match=re.escape(str(text))):
        read_image_size(text)
    with pytest.raises(KeyError, match=re.escape(str(tmp_path / "gone.png"))):
        read_image_size(tmp_path / "gone.png", error_type=KeyError)


def test_images_with_grey_levels_above_255_are_refused_before_anomalib_clips_them(tmp_path: Path) -> None:
    levels = np.random.default_rng(0).integers(0, 65536, (32, 48), dtype=np.uint16)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(levels).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I;16")
    with pytest.raises(DataValidationError, match=re.escape(f"train image {sixteen}") + ".*above 255"):
        check_eight_bit(sixteen, "train image")
    wide_but_dark = tmp_path / "dark.tif"
    Image.fromarray((levels // 257).astype(np.int32)).save(wide_but_dark)  # 32-bit, levels within 8 bits
    assert Image.open(wide_but_dark).mode == "I"
    check_eight_bit(wide_but_dark)
    check_eight_bit(_image(tmp_path / "grey.png", mode="L"))


@pytest.fixture
def mvtec_copy(tmp_path: Path) -> Path:
    return write_mvtec_dataset(tmp_path, num_train=2, num_test_good=1, num_test_defective=2, size=32)


def test_mask_of_other_size_names_both_files(mvtec_copy: Path) -> None:
    mask = mvtec_copy / "dummy" / "ground_truth" / "defect" / "001_mask.png"
    Image.fromarray(np.zeros((16, 32), dtype=np.uint8)).save(mask)
    dataset = MVTecADDataset(root=mvtec_copy, category="dummy", split="test")
    with pytest.raises(DataValidationError) as error:
        validate_dataset(dataset, "test")
    message = str(error.value)
    assert str(mask) in message
    assert str(mvtec_copy / "dummy" / "test" / "defect" / "001.png") in message
    assert "32x16" in message and "32x32" in message
    validate_dataset(MVTecADDataset(root=mvtec_copy, category="dummy", split="train"), "train")  # untouched split


def test_empty_train_set_names_the_folder_only_when_required(mvtec_copy: Path) -> None:
    for image in (mvtec_copy / "dummy" / "train" / "good").iterdir():
        image.unlink()
    dataset = MVTecADDataset(root=mvtec_copy, category="dummy", split="train")
    assert len(dataset) == 0
    validate_dataset(dataset, "val")
    with pytest.raises(DataValidationError, match=re.escape(f"no defect-free images found in {mvtec_copy / 'dummy' / 'train' / 'good'}")):
        validate_dataset(dataset, "train", require_samples=True)


def test_dagm_folders(tmp_path: Path) -> None:
    write_dagm_dataset(tmp_path, categories=("Class1",), num_train=2, num_train_defective=1, num_test_normal=2,
                       num_test_defective=1, image_size=32)
    write_dagm_dataset(tmp_path, categories=("Class2",), num_test_normal=4, num_test_defective=1, image_size=32,
                       with_train=False)
    with_train = DAGMDataset(root=tmp_path, category="Class1", split="train")
    without_train = DAGMDataset(root=tmp_path, category="Class2", split="train")
    assert expected_folder(with_train, "train") == str(tmp_path / "Class1" / "Train")
    assert expected_folder(with_train, "test") == str(tmp_path / "Class1" / "Test")
    assert expected_folder(without_train, "train") == str(tmp_path / "Class2" / "Test")


def test_dagm_train_set_emptied_by_drop_is_named(tmp_path: Path) -> None:
    write_dagm_dataset(tmp_path, categories=("Class1",), num_train=0, num_train_defective=2, num_test_normal=2,
                       num_test_defective=1, image_size=32)
    dataset = DAGMDataset(root=tmp_path, category="Class1", split="train", train_defects="drop")
    with pytest.raises(DataValidationError, match=re.escape(f"no defect-free images found in {tmp_path / 'Class1' / 'Train'}")):
        validate_dataset(dataset, "train", require_samples=True)


def test_stage_data_checks_the_subsets_of_the_stage(mvtec_copy: Path) -> None:
    broken = _cut_in_half(mvtec_copy / "dummy" / "test" / "good" / "000.png")
    train = MVTecADDataset(root=mvtec_copy, category="dummy", split="train")
    test = MVTecADDataset(root=mvtec_copy, category="dummy", split="test")
    trainer = SimpleNamespace(datamodule=SimpleNamespace(train_data=train, val_data=None, test_data=test))
    validate_stage_data(trainer, "fit")  # train only: fine
    validate_stage_data(trainer, "predict")  # not checked
    validate_stage_data(SimpleNamespace(datamodule=None), "test")  # DataLoaders, no datamodule
    with pytest.raises(DataValidationError, match=re.escape(f"Cannot read test image {broken}")):
        validate_stage_data(trainer, "test")


def test_a_sixteen_bit_training_image_stops_the_dataset_check(mvtec_copy: Path) -> None:
    image = mvtec_copy / "dummy" / "train" / "good" / "000.png"
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(image)
    with pytest.raises(DataValidationError, match=re.escape(f"train image {image}")):
        validate_dataset(MVTecADDataset(root=mvtec_copy, category="dummy", split="train"), "train")
