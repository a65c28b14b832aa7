"""A small generated MVTec AD-layout dataset (textured tiles with painted defects), for tests and smoke runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random texture, (size, size, 3) uint8, similar from image to image."""
    cells = -(-size // 8)
    coarse = rng.normal(0.0, 1.0, (cells, cells, 3))
    texture = np.kron(coarse, np.ones((8, 8, 1)))[:size, :size]
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = 0.5 * np.sin(xx / 3.0)[..., None]
    image = 128 + 20 * texture + 30 * stripes + rng.normal(0, 4, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_mvtec_dataset(
    root: Path,
    category: str = "dummy",
    num_train: int = 8,
    num_test_good: int = 4,
    num_test_defective: int = 4,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write ``root/category/{train/good,test/good,test/defect,ground_truth/defect}``.

    Defects are bright or dark rectangles; the mask covers them exactly.

    Returns:
        Path: ``root``.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / category
    for folder in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for index in range(num_train):
        Image.fromarray(_texture(rng, size)).save(base / "train" / "good" / f"{index:03d}.png")
    for index in range(num_test_good):
        Image.fromarray(_texture(rng, size)).save(base / "test" / "good" / f"{index:03d}.png")
    for index in range(num_test_defective):
        image = _texture(rng, size)
        mask = np.zeros((size, size), dtype=np.uint8)
        height, width = rng.integers(size // 8, size // 3, size=2)
        top, left = rng.integers(0, size - height), rng.integers(0, size - width)
        image[top : top + height, left : left + width] = 255 if index % 2 else 0
        mask[top : top + height, left : left + width] = 255
        Image.fromarray(image).save(base / "test" / "defect" / f"{index:03d}.png")
        Image.fromarray(mask).save(base / "ground_truth" / "defect" / f"{index:03d}_mask.png")
    return Path(root)
