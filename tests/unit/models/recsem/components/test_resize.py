"""The exportable antialiased resize equals torch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_recsem.models.recsem.components.resize import AntialiasedPreProcessor, antialias_weights, resize_antialiased


@pytest.mark.parametrize(("shape", "size"), [
    ((2, 3, 512, 512), (256, 256)),  # DAGM to the paper's size
    ((1, 3, 200, 150), (128, 128)),  # non-square, shrinking
    ((1, 1, 100, 300), (256, 256)),  # growing one axis, shrinking the other
    ((1, 3, 64, 64), (64, 64)),  # already at size
])
def test_equals_torch_antialiased_bilinear(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    images = torch.rand(shape)
    expected = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(resize_antialiased(images, size), expected, atol=1e-5)


def test_weights_by_hand() -> None:
    # Halving: output pixel i is centred between inputs 2i and 2i+1; the triangle of half-width 2
    # gives them 3/4 each and the next one out 1/4 (its other neighbour falls outside the image or the window).
    weights = antialias_weights(4, 2, torch.float64, torch.device("cpu"))
    expected = torch.tensor([[0.75, 0.75, 0.25, 0.0], [0.0, 0.25, 0.75, 0.75]], dtype=torch.float64)
    assert torch.allclose(weights, expected / expected.sum(1, keepdim=True))


def test_not_antialiasing_would_alias() -> None:
    """A one-pixel checkerboard shrunk 4x: antialiased it is flat grey, plain bilinear keeps the pattern."""
    board = (torch.arange(64).view(1, -1) + torch.arange(64).view(-1, 1)) % 2
    board = board.float().expand(1, 1, 64, 64)
    assert resize_antialiased(board, (16, 16)).std() < 1e-3
    assert F.interpolate(board, size=(15, 15), mode="bilinear", antialias=False).std() > 0.1


def test_pre_processor_forward_uses_it() -> None:
    images = torch.rand(1, 3, 90, 70)
    pre_processor = AntialiasedPreProcessor((32, 64))
    expected = F.interpolate(images, size=(32, 64), mode="bilinear", antialias=True)
    assert torch.allclose(pre_processor(images), expected, atol=1e-5)
    assert torch.allclose(pre_processor.transform(images), expected, atol=1e-5)
