"""Antialiased resizing that survives export.

Shrinking a fine texture without antialiasing turns it into moire, so RecSem trains and
tests on antialiased resizes. anomalib exports its pre-processor with antialiasing switched
off (``get_exportable_transform``), and exporting torch's antialiased resize does not help:
ONNX ``Resize`` with ``antialias=1`` comes out of OpenVINO far from torch's result. So the
exported graph resizes with :func:`resize_antialiased`, which is torch's antialiased
bilinear resize written as two matrix products: the interpolation weights are computed in
the graph from the input's (dynamic) size, and the products export to plain ``MatMul``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import CenterCrop, Compose, Resize


def antialias_weights(in_size: int, out_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Weights of torch's antialiased bilinear resize along one axis.

    Output pixel ``i`` has its centre at ``c = (i + 0.5) s`` in input pixels, with
    ``s = in_size / out_size``. When shrinking, the triangle filter is stretched to a
    support of ``s`` on each side, so every input pixel under it contributes; input pixel
    ``j`` gets ``max(0, 1 - |j + 0.5 - c| / max(s, 1))`` within torch's window
    ``[floor(c - support + 0.5), floor(c + support + 0.5))``, normalised per output pixel.

    Args:
        in_size: Input length (may be symbolic when exporting).
        out_size: Output length.
        dtype: Floating dtype of the weights.
        device: Device of the weights.

    Returns:
        torch.Tensor: ``(out_size, in_size)`` weights; each row sums to 1.
    """
    scale = in_size / out_size
    # sym_max: a plain max() on an exported model's symbolic size would fix the size.
    stretch = torch.sym_max(scale, 1.0)
    centre = (torch.arange(out_size, dtype=dtype, device=device) + 0.5) * scale
    position = torch.arange(in_size, dtype=dtype, device=device) + 0.5
    offset = position.unsqueeze(0) - centre.unsqueeze(1)
    weight = (1 - offset.abs() / stretch).clamp(min=0)
    low = (centre - stretch + 0.5).floor().clamp(min=0).unsqueeze(1)
    high = (centre + stretch + 0.5).floor().unsqueeze(1)
    inside = (position.unsqueeze(0) - 0.5 >= low) & (position.unsqueeze(0) - 0.5 < high)
    weight = weight * inside
    return weight / weight.sum(dim=1, keepdim=True)


def resize_antialiased(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Antialiased bilinear resize, equal to ``F.interpolate(..., antialias=True)`` to float round-off.

    Args:
        images: ``(..., H, W)`` floating tensor.
        size: ``(height, width)`` of the output.

    Returns:
        torch.Tensor: ``(..., height, width)``.
    """
    height, width = images.shape[-2:]
    rows = antialias_weights(height, int(size[0]), images.dtype, images.device)
    columns = antialias_weights(width, int(size[1]), images.dtype, images.device)
    return rows @ images @ columns.transpose(0, 1)


def output_size(transform: object) -> tuple[int, int] | None:
    """The ``(height, width)`` a transform always gives, when its last resize or crop fixes both sides.

    Args:
        transform: A torchvision transform, a ``Compose`` of them, or None.

    Returns:
        tuple[int, int] | None: The size, or None when it depends on the input.
    """
    if isinstance(transform, Compose):
        sizes = [output_size(part) for part in transform.transforms if isinstance(part, (Resize, CenterCrop, Compose))]
        return sizes[-1] if sizes else None
    size = getattr(transform, "size", None) if isinstance(transform, (Resize, CenterCrop)) else None
    if not isinstance(size, Sequence) or len(size) not in (1, 2):
        return None  # an int Resize keeps the aspect ratio
    if isinstance(transform, Resize) and len(size) == 1:
        return None
    return (int(size[0]), int(size[-1]))


def check_pre_processed_size(pre_processor: object, image_size: tuple[int, int]) -> None:
    """Refuse a pre-processor that resizes to another size than the network is built for.

    Args:
        pre_processor: The model's pre-processor (or a bool, which is not checked).
        image_size: The network's ``(height, width)``.

    Raises:
        ValueError: Naming both sizes.
    """
    size = output_size(getattr(pre_processor, "transform", None))
    if size is not None and size != tuple(image_size):
        msg = (
            f"The pre-processor makes images of {size[0]}x{size[1]} px, but the network is built for image_size "
            f"{image_size[0]}x{image_size[1]} (its memory scales and score window follow image_size): pass "
            f"image_size={list(size)}, or a pre-processor for {list(image_size)}."
        )
        raise ValueError(msg)


class AntialiasedPreProcessor(PreProcessor):
    """anomalib's pre-processor with one antialiased resize in training, testing and export.

    The callbacks (fit, validate, test, predict) resize with torchvision's
    ``Resize(antialias=True)``; ``forward``, which anomalib exports, resizes with
    :func:`resize_antialiased`, its exportable equal.

    Args:
        image_size: ``(height, width)`` images are resized to.

    Example:
        >>> pre_processor = AntialiasedPreProcessor((64, 64))
        >>> pre_processor(torch.rand(1, 3, 200, 100)).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(self, image_size: Sequence[int]) -> None:
        super().__init__(transform=Resize(list(image_size), antialias=True))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Resize an exported model's input.

        A checkpoint restores the transform it was trained with (anomalib's load hook): one
        that is not a plain resize (a user's own pipeline) is applied as anomalib would.

        Args:
            batch: Images ``(B, C, H, W)`` of any size.

        Returns:
            torch.Tensor: ``(B, C, height, width)``.
        """
        if type(self.transform) is Resize:
            return resize_antialiased(batch, self.transform.size)
        return super().forward(batch)
