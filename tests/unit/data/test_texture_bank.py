"""TextureFolder: textures drawn at another size are resized once and kept."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_recsem.data.texture_bank import TextureFolder, resize_bilinear


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Six random 24 x 20 RGB PNG textures."""
    rng = np.random.default_rng(0)
    for index in range(6):
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(tmp_path / f"t{index}.png")
    return tmp_path


def _expected(root: Path, indices: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Decoded at the folder's size, then resized as one batch, with no cache involved."""
    return resize_bilinear(TextureFolder(root, size=16).load(indices).float() / 255, height, width)


def test_sample_equals_resizing_the_decoded_textures(folder: Path) -> None:
    textures = TextureFolder(folder, size=16)
    # Later draws repeat earlier indices (from the cache), and one folder serves every size.
    for seed in (0, 1, 2):
        for size in ((8, 8), (8, 6), (16, 16)):
            indices = torch.randint(0, 6, (5,), generator=torch.Generator().manual_seed(seed))
            drawn = textures.sample(5, *size, generator=torch.Generator().manual_seed(seed))
            assert drawn.shape == (5, 3, *size)
            torch.testing.assert_close(drawn, _expected(folder, indices, *size), rtol=0, atol=0)


def test_resized_textures_are_kept_and_the_files_not_read_again(folder: Path) -> None:
    textures = TextureFolder(folder, size=16)
    first = textures.textures(torch.arange(6), 8, 8)
    for path in folder.iterdir():
        path.write_bytes(b"not an image")
    torch.testing.assert_close(textures.textures(torch.tensor([5, 0, 5]), 8, 8), first[[5, 0, 5]], rtol=0, atol=0)
    with pytest.raises(OSError, match="cannot read texture image"):
        textures.textures(torch.tensor([1]), 16, 16)  # the full-size copy was given up for the small one


def test_pickled_folder_carries_no_textures(folder: Path) -> None:
    textures = TextureFolder(folder, size=16)
    empty = len(pickle.dumps(textures))
    textures.textures(torch.arange(6), 8, 8)
    textures.load(torch.arange(6))
    assert len(pickle.dumps(textures)) == empty
    assert textures.textures(torch.zeros(0, dtype=torch.long), 8, 8).shape == (0, 3, 8, 8)
