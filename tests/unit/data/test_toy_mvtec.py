"""The generated MVTec AD-layout dataset that tests and smoke runs train on."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset


@pytest.mark.parametrize("size", [64, 100])
def test_images_of_any_size(tmp_path: Path, size: int) -> None:
    root = write_mvtec_dataset(tmp_path, num_train=1, num_test_good=1, num_test_defective=1, size=size)
    images = sorted((root / "dummy").rglob("*.png"))
    assert len(images) == 4  # train, good test, defective test and its mask
    assert {Image.open(path).size for path in images} == {(size, size)}
