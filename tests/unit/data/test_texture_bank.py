"""TextureFolder (textures drawn at another size are resized once and kept) and PhotoCrops."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_recsem.data.texture_bank import SKIMAGE_PHOTOS, PhotoCrops, TextureFolder, resize_bilinear


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


def _numbered_photo(path: Path, height: int, width: int) -> np.ndarray:
    """A grey photograph whose every pixel differs from its neighbours: ``(row * width + column) % 251``."""
    pixels = (np.arange(height * width).reshape(height, width) % 251).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_photo_crops_are_squares_of_the_photograph_at_their_own_scale(tmp_path: Path) -> None:
    pixels = _numbered_photo(tmp_path / "a.png", 30, 40)
    crops = PhotoCrops(tmp_path, ("a.png",), size=64, min_side=8)
    for seed in range(20):
        texture = crops.sample(1, 8, 8, torch.Generator().manual_seed(seed))  # sides 8..30, shrunk to 8 px
        assert texture.shape == (1, 3, 8, 8)
        assert torch.equal(texture[0, 0], texture[0, 2])  # grey stays grey
    # min_side = the shorter side: every crop is the 30 x 30 square at some column, unresized.
    whole = PhotoCrops(tmp_path, ("a.png",), size=64, min_side=30)
    crop = (whole.sample(1, 30, 30, torch.Generator().manual_seed(3))[0, 0] * 255).round().to(torch.uint8).numpy()
    left = int(np.flatnonzero(pixels[0] == crop[0, 0])[0])
    assert np.array_equal(crop, pixels[:, left : left + 30])


def test_photo_crops_shrink_large_photographs_once_and_keep_the_crop_scale(tmp_path: Path) -> None:
    _numbered_photo(tmp_path / "big.png", 200, 300)
    crops = PhotoCrops(tmp_path, ("big.png",), size=25, min_side=200)  # kept at a 50 px shorter side
    texture = crops.sample(2, 10, 10, torch.Generator().manual_seed(0))
    photo, factor = crops._photos[0]  # noqa: SLF001
    assert photo.shape == (3, 50, 75) and factor == pytest.approx(0.25)
    assert texture.shape == (2, 3, 10, 10)
    # A draw is reproducible from the seed, and the pickled source carries no photographs.
    assert torch.equal(texture, crops.sample(2, 10, 10, torch.Generator().manual_seed(0)))
    copy = pickle.loads(pickle.dumps(crops))
    assert copy._photos == [] and copy._on_device == {}  # noqa: SLF001


def test_missing_photographs_are_named_with_their_folder(tmp_path: Path) -> None:
    _numbered_photo(tmp_path / "a.png", 10, 10)
    with pytest.raises(FileNotFoundError, match=r"lacks b\.png; pass a folder"):
        PhotoCrops(tmp_path, ("a.png", "b.png"))


def test_scikit_image_ships_every_photograph() -> None:
    crops = PhotoCrops()
    assert len(crops) == len(SKIMAGE_PHOTOS) == 18
    textures = crops.sample(4, 32, 48, torch.Generator().manual_seed(0))
    assert textures.shape == (4, 3, 32, 48) and 0 <= textures.min() and textures.max() <= 1


def test_sixteen_bit_grey_textures_keep_their_levels(tmp_path: Path) -> None:
    # A 16-bit ramp; converted by PIL alone, every level above 255 would come out white.
    ramp = np.tile(np.linspace(0, 65535, 16).round().astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(tmp_path / "ramp8.png")
    textures = TextureFolder(tmp_path, size=16)
    sixteen, eight = (textures.load(torch.tensor([textures.paths.index(tmp_path / name)]))
                      for name in ("ramp16.png", "ramp8.png"))
    assert (sixteen.int() - eight.int()).abs().max() <= 1
    assert sixteen.float().std() > 50  # a ramp, not a white image


def test_an_image_too_large_to_decode_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 is then a decompression bomb
    with pytest.raises(OSError, match="huge.png"):
        TextureFolder(tmp_path, size=16).load(torch.tensor([0]))
