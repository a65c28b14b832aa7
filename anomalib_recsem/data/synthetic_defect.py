"""DRAEM-style synthetic surface defects, batched on the images' device.

:class:`SyntheticDefect` turns a batch of defect-free images into training pairs for
RecSem's reconstruction and recognition networks, as the authors' code does:

1. *Light augmentation* of every image (the reconstruction target ``clean``): each of
   rotate ``U(-4, 4)`` degrees, scale ``U(0.98, 1.02)`` and translate ``U(-2%, 2%)`` in x
   and y is drawn with a random count of 0-3 of them (imgaug ``SomeOf((0, all))``), and the
   chosen ones are applied as one warp with edge padding.
2. *Mask*: 2-D Perlin noise with ``2**r`` lattice cells per axis (``r`` an integer drawn per
   axis and image), rotated by ``U(-90, 90)`` degrees with zero padding and thresholded at
   0.5. Optionally, connected components that are small, tiny or in the top-left corner are
   dropped (the authors' later variant).
3. *Anomaly source*: a texture (the built-in procedural bank, crops of the photographs that
   ship with scikit-image, a folder such as DTD, or the image itself rotated by ``U(-90, 90)``
   degrees), passed through 3 of 10 photometric and
   geometric augmentations (imgaug ``SomeOf(3, ..., random_order=True)``), each with the
   authors' parameter ranges. Grey images get grey textures.
4. *Blend*: ``defective = clean * (1 - m) + beta * clean * m + (1 - beta) * texture * m``
   with ``beta ~ U(0, 0.8)``.

Masks and textures (except the image itself as source) are drawn up to 64 at a time and
served in order (:class:`~anomalib_recsem.data.draw_ahead.DrawAhead`): drawing them takes
some 450 tensor operations however many are drawn, each a kernel launch on a GPU, so a call
that needs 4 costs about a third of the operations it did. The random parameters are drawn on
the CPU and copied to the device without waiting for it. A call makes the host wait for the
device only to read ``apply_defect`` flags given on the device, and when it draws masks and
textures (an empty mask is redrawn; textures are grouped by augmentation with indices copied
to the device), which is once every several calls, or every call for the image itself as
source.

The colour operations are kornia's, batched with per-image parameters, except where
kornia's version cost most of the synthesis time on a CPU and a short closed form gives the
same result: the warps (a separable sampling grid and a directly built matrix), sharpness
(a box sum for PIL's smoothing kernel), autocontrast (PIL's 256-level histogram),
posterize (on the 8-bit levels), the HSV round trip of the hue shift, and the
brightness change in YCbCr, YUV, HSV and HLS (each a one-line change of R, G and B). The
unit tests hold every one of them against kornia or PIL.
Deliberate differences from the authors' imgaug/OpenCV code: the blend stays in float (not
rounded to ``uint8``); the chosen light-augmentation ops are composed in a fixed order
(rotation and scale about the centre, then translation: for these small ranges the
order changes the result by well under a pixel); an image chosen for a defect always gets a
non-empty mask (the noise is redrawn, and as a last resort a disc is used), so ``label`` and
``mask`` agree.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from kornia import color, enhance
from kornia.contrib import connected_components
from torch import Tensor
from torch.nn import functional as F  # noqa: N812
from torchvision import tv_tensors
from torchvision.transforms import v2

from anomalib_recsem.options import check_flag, check_integer, check_number

from .draw_ahead import DrawAhead
from .perlin import perlin_noise_2d
from .texture_bank import (
    PROCEDURAL_RENDER_SIZE,
    PhotoCrops,
    TextureFolder,
    fit_size,
    procedural_textures,
    resize_bilinear,
)

__all__ = ["SOURCE_AUGMENTATIONS", "DefectBatch", "SyntheticDefect", "augment_sources", "filter_components"]

logger = logging.getLogger(__name__)

_MAX_PERLIN_EXPONENT = 8
# Redraws of an empty mask before falling back to a disc. With the default settings about
# one mask in 20 is empty, so the fallback is practically never needed.
_MASK_RETRIES = 10
# Largest channel spread of an image that counts as grey (a JPEG decoded to RGB may differ by a level).
_GREY_TOLERANCE = 2 / 255
# The later variant drops components whose bounding box starts at x <= 3 and y <= 3.
_CORNER_LIMIT = 3


class DefectBatch(NamedTuple):
    """Output of :meth:`SyntheticDefect.synthesize`.

    Attributes:
        clean: Light-augmented images ``(B, C, H, W)``, the reconstruction target.
        defective: ``clean`` with the defect blended in ``(B, C, H, W)``; equal to
            ``clean`` wherever ``mask`` is 0.
        mask: Defect masks ``(B, 1, H, W)`` with values in ``{0, 1}``.
        label: ``(B,)``, 1 where the mask is non-empty, else 0.
    """

    clean: Tensor
    defective: Tensor
    mask: Tensor
    label: Tensor


def _to(values: Tensor, like: Tensor) -> Tensor:
    """``values`` (drawn on the CPU) in ``like``'s dtype and on its device, copied without waiting.

    A blocking copy to a GPU waits for all the work queued before it; an asynchronous copy
    from ordinary memory is staged at once and queued behind that work instead.
    """
    return values.to(device=like.device, dtype=like.dtype, non_blocking=True)


def _uniform(count: int | tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> Tensor:
    shape = (count,) if isinstance(count, int) else count
    return torch.rand(shape, generator=generator) * (high - low) + low


# On a CPU, torch.where costs some 20 times and torch.remainder some 10 times as much as an
# addition on the same tensor (torch 2.15), and the colour operations are full of both. The
# helpers below give exactly their results with plain arithmetic: lerp with a 0/1 weight
# returns one side unchanged, and the sign of a difference is 0 only for equal floats.


def _positive(x: Tensor) -> Tensor:
    """``1.0`` where ``x > 0``, else ``0.0``, for ``x >= 0``."""
    return torch.sign(x)


def _or_one(x: Tensor) -> Tensor:
    """``x``, with 1 where it is 0 (a divisor), for ``x >= 0``."""
    return x + (1 - _positive(x))


def _at_least(x: Tensor, y: Tensor) -> Tensor:
    """``1.0`` where ``x >= y``, else ``0.0`` (a float difference is zero only for equal floats)."""
    return (torch.sign(x - y) + 1).clamp_(max=1)


def _select(weight: Tensor, if_one: Tensor, if_zero: Tensor) -> Tensor:
    """``torch.where(weight == 1, if_one, if_zero)`` for a 0/1 float ``weight`` and finite values."""
    return torch.lerp(if_zero, if_one, weight)


def _remainder(x: Tensor, divisor: float) -> Tensor:
    """``torch.remainder(x, divisor)`` for ``-divisor <= x < 2 * divisor``, the same floats.

    Except for negative ``x`` so close to 0 that ``x / divisor`` underflows to 0 (above
    about ``-1e-44``), which stay ``x`` where torch gives ``x + divisor``: for a hue, the same angle.
    """
    return x - divisor * torch.floor(x / divisor)


def _warp(images: Tensor, matrix: Tensor, padding_mode: str) -> Tensor:
    """Bilinear affine warp ``(N, C, H, W)`` by forward pixel maps ``(N, 3, 3)`` (kornia's convention).

    Same result as ``kornia.geometry.transform.warp_affine(..., align_corners=True)``. An
    affine sampling grid is separable (a per-column plus a per-row term), which makes it
    several times cheaper than the ``affine_grid`` matrix product kornia uses, and on a CPU
    that product cost as much as the sampling itself.
    """
    _, _, height, width = images.shape
    # Inverted and scaled where the maps were built (the CPU), and copied without waiting:
    # on a GPU, linalg.inv and a blocking copy would each wait for all queued work.
    inverse = torch.linalg.inv(matrix.float())[:, :2]  # output -> input pixel
    # A side of one pixel has one sample position, the centre (kornia's convention).
    to_unit = torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)]).view(1, 2, 1)
    inverse = _to(inverse * to_unit, images)  # input pixel -> [-1, 1] (align_corners=True)
    xs = torch.arange(width, dtype=images.dtype, device=images.device).view(1, 1, 1, width)
    ys = torch.arange(height, dtype=images.dtype, device=images.device).view(1, 1, height, 1)
    coefficients = inverse.unsqueeze(-1).unsqueeze(-1)  # (N, 2, 3, 1, 1): x/y rows, x/y/1 columns
    grid = coefficients[:, :, 0] * xs + (coefficients[:, :, 2] - 1) + coefficients[:, :, 1] * ys
    return F.grid_sample(images, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode=padding_mode,
                         align_corners=True)


def _affine_matrix(shift: Tensor, centre: Tensor, scale: Tensor, degrees: Tensor) -> Tensor:
    """Forward pixel maps ``(N, 3, 3)`` (float32, CPU), equal to ``kornia.geometry.transform.get_affine_matrix2d``.

    Scale ``(N, 2)`` and rotate by ``degrees`` ``(N,)`` about ``centre`` ``(N, 2)``, then shift
    by ``shift`` ``(N, 2)`` pixels. Built directly because kornia assembles it from four 3 x 3
    matrix products, which cost more than the warp itself for the small batches here.
    """
    radians = torch.deg2rad(degrees.float())
    cos, sin = torch.cos(radians), torch.sin(radians)
    linear = torch.stack([cos * scale[:, 0], -sin * scale[:, 1], sin * scale[:, 0], cos * scale[:, 1]], 1)
    linear = linear.view(-1, 2, 2)
    offset = centre - (linear @ centre.unsqueeze(-1)).squeeze(-1) + shift
    matrix = torch.zeros(degrees.shape[0], 3, 3)
    matrix[:, :2, :2] = linear
    matrix[:, :2, 2] = offset
    matrix[:, 2, 2] = 1
    return matrix


def _rotate_about_centre(images: Tensor, degrees: Tensor, padding_mode: str) -> Tensor:
    """``kornia.geometry.transform.rotate`` (anticlockwise ``degrees`` ``(N,)`` about the centre) via :func:`_warp`."""
    count, _, height, width = images.shape
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2]).expand(count, 2)
    matrix = _affine_matrix(torch.zeros(count, 2), centre, torch.ones(count, 2), -degrees.float().cpu())
    return _warp(images, matrix, padding_mode)


# --------------------------------------------------------------------------------------
# The 10 anomaly-source augmentations. Each takes RGB images (n, 3, H, W) in [0, 1] and a
# generator, draws its own per-image parameters with the authors' (imgaug) ranges, and
# returns the augmented images.
# --------------------------------------------------------------------------------------


def _gamma(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # GammaContrast((0.5, 2.0), per_channel=True)
    gamma = _to(_uniform((x.shape[0], x.shape[1]), 0.5, 2.0, generator), x)
    return enhance.adjust_gamma(x, gamma)


# Luma weights of kornia's YCbCr and YUV (BT.601). Both inverses are linear with a luma
# coefficient of 1 in every channel, so a luma change adds the same amount to R, G and B.
_LUMA = (0.299, 0.587, 0.114)


def _luma(x: Tensor) -> Tensor:
    """BT.601 luma ``(N, 1, H, W)`` of RGB images ``(N, 3, H, W)``.

    Weighted with Python numbers: weights in a tensor would be copied to a GPU at every call,
    and that copy waits for the device.
    """
    red, green, blue = _LUMA
    return x[:, :1] * red + x[:, 1:2] * green + x[:, 2:] * blue


def _shift_luma(x: Tensor, change: Callable[[Tensor], Tensor]) -> Tensor:
    """The YCbCr or YUV round trip of ``kornia.color`` with only the luma (``[0, 1]``) changed."""
    luma = _luma(x)
    return x + (change(luma) - luma)


def _scale_value(x: Tensor, change: Callable[[Tensor], Tensor]) -> Tensor:
    """The HSV round trip with only V (the largest channel) changed: hue and saturation fix the ratios R:G:B."""
    value = x.amax(1, keepdim=True)
    new = change(value)
    return _select(_positive(value), x * (new / value.clamp(min=1e-12)), new)


def _shift_lightness(x: Tensor, change: Callable[[Tensor], Tensor]) -> Tensor:
    """The HLS round trip with only L changed.

    Each channel is ``L - a * g(hue)`` with ``a = S * min(L, 1 - L)``, so at fixed hue and
    saturation the offsets from L scale with ``min(L, 1 - L)``.
    """
    lightness = (x.amax(1, keepdim=True) + x.amin(1, keepdim=True)) / 2
    new = change(lightness)
    room, new_room = torch.minimum(lightness, 1 - lightness), torch.minimum(new, 1 - new)
    return _select(_positive(room), new + (x - lightness) * (new_room / room.clamp(min=1e-12)), new)


def _through(
    forward: Callable[[Tensor], Tensor], backward: Callable[[Tensor], Tensor], top: float
) -> Callable[[Tensor, Callable[[Tensor], Tensor]], Tensor]:
    """A kornia colour-space round trip that changes only channel 0, whose range is ``[0, top]``."""

    def shift(x: Tensor, change: Callable[[Tensor], Tensor]) -> Tensor:
        converted = forward(x)
        converted[:, 0] = change(converted[:, :1] / top).squeeze(1) * top
        return backward(converted)

    return shift


# imgaug's MultiplyAndAddToBrightness picks one of these colour spaces per image and changes
# its brightness channel: YCbCr, HSV, HLS, Lab, Luv, YUV. The first three and YUV are closed
# forms of kornia's round trips, equal to float round-off except within about 1e-5 of black
# or white, where kornia's epsilons shift its result slightly (unit tests hold them against
# kornia); Lab and Luv are nonlinear and go through kornia.
_BRIGHTNESS_SPACES: tuple[Callable[[Tensor, Callable[[Tensor], Tensor]], Tensor], ...] = (
    _shift_luma,
    _scale_value,
    _shift_lightness,
    _through(color.rgb_to_lab, color.lab_to_rgb, 100.0),
    _through(color.rgb_to_luv, color.luv_to_rgb, 100.0),
    _shift_luma,
)


def _brightness(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30)): a random colour space, and
    # multiply and add in random order.
    count = x.shape[0]
    space = torch.randint(0, len(_BRIGHTNESS_SPACES), (count,), generator=generator)
    multiply = _to(_uniform(count, 0.8, 1.2, generator), x).view(-1, 1, 1, 1)
    add = _to(_uniform(count, -30 / 255, 30 / 255, generator), x).view(-1, 1, 1, 1)
    add_first = _to(torch.rand(count, generator=generator) < 0.5, x).view(-1, 1, 1, 1)
    out = x.clone()
    for index, shift in enumerate(_BRIGHTNESS_SPACES):
        rows = (space == index).nonzero().squeeze(1).to(x.device, non_blocking=True)
        if rows.numel() == 0:
            continue
        factor, offset, first = multiply[rows], add[rows], add_first[rows]

        def change(value: Tensor, before: Tensor = offset * first, after: Tensor = offset * (1 - first),
                   factor: Tensor = factor) -> Tensor:
            # (value + offset) * factor or value * factor + offset: the unused offset is 0.
            return ((value + before) * factor + after).clamp(0, 1)

        out[rows] = shift(x[rows], change).clamp(0, 1)
    return out


def _sharpness(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # pillike.EnhanceSharpness((0.0, 2.0)): blend with PIL's SMOOTH filter (3 x 3, centre 5,
    # the rest 1, over 13; border pixels kept), 0 smooths, 1 keeps, 2 sharpens. The
    # kernel is a 3 x 3 box sum plus 4 times the pixel, and the box sum is summed from shifted
    # slices: on a CPU, kornia's depthwise convolution took most of the synthesis time, and
    # avg_pool2d twice as long as the slices at 256 px.
    if min(x.shape[-2:]) < 3:  # noqa: PLR2004  PIL's kernel needs 3 x 3
        return x
    factor = _to(_uniform(x.shape[0], 0.0, 2.0, generator), x).view(-1, 1, 1, 1)
    across = x[..., :, :-2] + x[..., :, 1:-1] + x[..., :, 2:]
    smooth = x.clone()
    box = across[..., :-2, :] + across[..., 1:-1, :] + across[..., 2:, :]
    smooth[..., 1:-1, 1:-1] = (box + 4 * x[..., 1:-1, 1:-1]) / 13
    return torch.lerp(smooth, x, factor).clamp(0, 1)


def _hue_saturation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # AddToHueAndSaturation((-50, 50), per_channel=True): independent offsets added to hue
    # (255 = a full turn) and to saturation (255 = full scale) in HSV.
    count = x.shape[0]
    hue = _to(_uniform(count, -50 / 255, 50 / 255, generator), x).view(-1, 1, 1, 1) * 6  # hue in sixths of a turn
    saturation = _to(_uniform(count, -50 / 255, 50 / 255, generator), x).view(-1, 1, 1, 1)
    value, sixths, chroma = _hsv_parts(x)
    new_saturation = (chroma / _or_one(value) + saturation).clamp(0, 1)
    return _hsv_to_rgb(_remainder(sixths + hue, 6), new_saturation, value).clamp(0, 1)


def _hsv_parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Value, hue in sixths of a turn ``[0, 6]`` and chroma (``max - min``), each ``(N, 1, H, W)``.

    ``kornia.color.rgb_to_hsv`` with hue rescaled from radians; computed on single planes,
    where kornia's version (three stacked planes, then a stack) cost most of the hue shift.
    """
    red, green, blue = x[:, :1], x[:, 1:2], x[:, 2:]
    value, minimum = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
    chroma = value - minimum
    divisor = _or_one(chroma)
    sixths = _select(
        _at_least(red, green) * _at_least(red, blue),
        (green - blue) / divisor,
        _select(_at_least(green, blue), (blue - red) / divisor + 2, (red - green) / divisor + 4),
    )
    return value, _remainder(sixths, 6), chroma


def _hsv_to_rgb(sixths: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    """``kornia.color.hsv_to_rgb`` by the closed form of the hue hexagon.

    Inputs are ``(N, 1, H, W)``, hue in sixths of a turn; the output is ``(N, 3, H, W)``.
    Channel ``n`` (R, G, B: 5, 3, 1) is
    ``V - V * S * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + hue) mod 6``; kornia selects
    among six cases with nested ``where``s, several times slower.
    """
    k = _remainder(sixths.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + sixths, 6)
    return value - value * saturation * torch.minimum(k, 4 - k).clamp(0, 1)


def _on_rows(x: Tensor, chosen: Tensor, op: Callable[[Tensor | slice], Tensor]) -> Tensor:
    """``x`` with the rows where the CPU bool ``chosen`` ``(N,)`` is true replaced by ``op(rows)``.

    ``op`` gets the chosen rows (CPU indices, or a slice when all are chosen) and returns
    those rows changed; the other rows are not computed at all, where a ``torch.where`` would
    compute every row and then choose. CPU indices index ``x`` on any device and also the
    per-image parameters that ``op`` drew on the CPU; indices on a GPU could not index those.
    """
    rows = chosen.nonzero().squeeze(1)
    if rows.numel() == 0:
        return x
    if rows.numel() == x.shape[0]:
        return op(slice(None))
    out = x.clone()
    out[rows] = op(rows)
    return out


def _solarize(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # Solarize(0.5, threshold=(32, 128)): half of the images invert above the threshold.
    count = x.shape[0]
    threshold = _uniform(count, 32 / 255, 128 / 255, generator)
    applied = torch.rand(count, generator=generator) < 0.5
    return _on_rows(x, applied, lambda rows: enhance.solarize(x[rows], _to(threshold[rows], x)))


def _posterize(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # Posterize: keep 1..8 most significant bits, computed on the 8-bit levels directly
    # (kornia's version costs several times more).
    bits = torch.randint(1, 9, (x.shape[0],), generator=generator)
    step = torch.pow(2.0, 8 - bits).view(-1, 1, 1, 1)

    def posterize(rows: Tensor | slice) -> Tensor:
        level = _to(step[rows], x)
        return torch.floor(torch.floor(x[rows] * 255) / level) * level / 255

    # All 8 bits kept leaves the image as it is, as in kornia (no rounding to 8-bit levels).
    return _on_rows(x, bits < 8, posterize)  # noqa: PLR2004


def _invert(x: Tensor, generator: torch.Generator | None) -> Tensor:  # noqa: ARG001
    return enhance.invert(x)


def _autocontrast(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # pillike.Autocontrast(cutoff=(0, 20)): per channel, PIL's algorithm on the 256-level
    # histogram: cut that percentage of the darkest and of the brightest pixels and stretch
    # the remaining levels to [0, 1]. A histogram costs one pass where sorting the pixels
    # cost most of the synthesis time on a CPU.
    count, channels = x.shape[:2]
    cutoff = torch.randint(0, 21, (count,), generator=generator).to(x.device, non_blocking=True)
    levels = (x.flatten(2) * 255).round().clamp(0, 255).long()
    histogram = torch.zeros(count, channels, 256, device=x.device).scatter_add_(
        2, levels, torch.ones((), device=x.device).expand(levels.shape)
    )
    cut = (levels.shape[-1] * cutoff // 100).view(-1, 1, 1)
    low = (histogram.cumsum(-1) <= cut).sum(-1, keepdim=True).unsqueeze(-1)  # first level past the cut
    high = 255 - (histogram.flip(-1).cumsum(-1) <= cut).sum(-1, keepdim=True).unsqueeze(-1)
    stretched = ((x * 255 - low) / (high - low).clamp(min=1)).clamp(0, 1)
    return _select((high > low).to(x), stretched, x)


def _equalize(x: Tensor, generator: torch.Generator | None) -> Tensor:  # noqa: ARG001
    return enhance.equalize(x)


def _rotate(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # Affine(rotate=(-45, 45)) with imgaug's default black padding.
    return _rotate_about_centre(x, _uniform(x.shape[0], -45.0, 45.0, generator), padding_mode="zeros")


_SOURCE_OPS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "gamma": _gamma,
    "brightness": _brightness,
    "sharpness": _sharpness,
    "hue_saturation": _hue_saturation,
    "solarize": _solarize,
    "posterize": _posterize,
    "invert": _invert,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "rotate": _rotate,
}
SOURCE_AUGMENTATIONS: tuple[str, ...] = tuple(_SOURCE_OPS)


def augment_sources(sources: Tensor, num_augmentations: int, generator: torch.Generator | None = None) -> Tensor:
    """Apply ``num_augmentations`` of the 10 source augmentations to each image.

    Each image gets its own random choice of distinct augmentations, applied in random
    order, with its own parameters (imgaug ``SomeOf(k, ..., random_order=True)``). Every
    augmentation runs once per position in that order, on the images that drew it there.

    Args:
        sources: RGB images ``(N, 3, H, W)`` in ``[0, 1]``.
        num_augmentations: Augmentations per image, ``0..10``.
        generator: Random generator (``None``: torch's global CPU generator).

    Returns:
        Augmented images ``(N, 3, H, W)`` in ``[0, 1]``.
    """
    count = sources.shape[0]
    if count == 0 or num_augmentations == 0:
        return sources
    order = torch.rand(count, len(_SOURCE_OPS), generator=generator).argsort(dim=1)[:, :num_augmentations]
    # Every op is defined on [0, 1], and interpolation round-off leaves values such as
    # 1 + 2**-23: inverted, then raised to a fractional gamma, that is NaN. So the range is
    # enforced before and after each op.
    out = sources.clamp(0, 1)
    ops = list(_SOURCE_OPS.values())
    # Grouped once in Python: a nonzero() per (position, op) cost more than the small ops.
    for drawn in order.t().tolist():
        for index in sorted(set(drawn)):
            rows = [row for row, op in enumerate(drawn) if op == index]
            # Consecutive rows are a view: no gather, and one copy back.
            consecutive = rows[-1] - rows[0] + 1 == len(rows)
            where = (slice(rows[0], rows[-1] + 1) if consecutive
                     else torch.tensor(rows).to(sources.device, non_blocking=True))
            out[where] = ops[index](out[where], generator).clamp_(0, 1)
    return out


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------


def filter_components(mask: Tensor, min_area: int = 0, min_size: int = 0, drop_corner: bool = False) -> Tensor:
    """Drop connected components of binary masks (the authors' later variant).

    Components are 8-connected and labelled with kornia on the masks' device.

    Args:
        mask: Boolean masks ``(N, 1, H, W)``.
        min_area: Drop components with fewer pixels than this (0 disables).
        min_size: Drop components whose bounding box has ``w <= min_size`` and
            ``h <= min_size`` (0 disables).
        drop_corner: Drop components whose bounding box starts at ``x <= 3`` and ``y <= 3``.

    Returns:
        Filtered boolean masks ``(N, 1, H, W)``.
    """
    if mask.shape[0] == 0 or not (min_area > 0 or min_size > 0 or drop_corner):
        return mask
    height, width = mask.shape[-2:]
    # Labels spread one pixel per iteration; H + W covers any blob a Perlin mask makes.
    labels = connected_components(mask.float(), num_iterations=height + width).long()
    _, component = torch.unique(labels, return_inverse=True)  # 0 is the background
    count = int(component.max()) + 1
    flat = component.flatten()
    ys = torch.arange(height, device=mask.device).view(1, 1, height, 1).expand_as(component).flatten()
    xs = torch.arange(width, device=mask.device).view(1, 1, 1, width).expand_as(component).flatten()

    def reduce(values: Tensor, how: str, start: int) -> Tensor:
        initial = torch.full((count,), start, dtype=values.dtype, device=values.device)
        return initial.scatter_reduce(0, flat, values, reduce=how)

    area = torch.bincount(flat, minlength=count)
    x0, x1 = reduce(xs, "amin", width), reduce(xs, "amax", -1) + 1
    y0, y1 = reduce(ys, "amin", height), reduce(ys, "amax", -1) + 1
    drop = torch.zeros(count, dtype=torch.bool, device=mask.device)
    if min_area > 0:
        drop |= area < min_area
    if min_size > 0:
        drop |= ((x1 - x0) <= min_size) & ((y1 - y0) <= min_size)
    if drop_corner:
        drop |= (x0 <= _CORNER_LIMIT) & (y0 <= _CORNER_LIMIT)
    # Index 0 is the background, unless no pixel is (then it is the first defect).
    drop[0] = drop[0] | ~mask.all()
    return ~drop[component]


def _check_range(name: str, value: Any, accepted: str) -> tuple[float, float]:  # noqa: ANN401
    try:
        low, high = value
        return float(low), float(high)
    except (TypeError, ValueError):
        msg = f"{name} must be a pair {accepted}, got {value!r}"
        raise ValueError(msg) from None


class SyntheticDefect(v2.Transform):
    """Synthesise DRAEM-style surface defects on batches of images.

    Args:
        anomaly_source: Where defect textures come from. ``None`` (default): a built-in
            procedural texture bank, no files needed. ``"photos"``: random square crops, at
            every scale, of 18 photographs that ship with scikit-image (brick, grass, gravel,
            cells, scenes; :class:`~anomalib_recsem.data.texture_bank.PhotoCrops`), natural
            textures like DTD's without a download. ``"self"``: the image itself,
            rotated by ``U(-90, 90)`` degrees with edge padding (the authors' later variant).
            A directory: texture images, DTD layout ``images/<class>/*.jpg``,
            ``<dir>/<class>/*.jpg`` or any folder (searched recursively for
            jpg/jpeg/png/bmp, case-insensitive); decoded lazily and cached at 256 x 256.
        probability: Chance that an image gets a defect when :meth:`synthesize` is not
            told which ones should.
        blend_factor: ``(low, high)`` of ``beta ~ U(low, high)``, the weight of the
            original image inside the defect, ``0 <= low <= high <= 1``.
        perlin_scale_range: ``(low, high)`` of the integer exponent ``r``; each axis of
            the Perlin lattice has ``2**r`` cells, ``r`` drawn per axis and per image,
            ``0 <= low <= high <= 8``. The later variant uses ``(3, 5)``.
        threshold: The mask is ``rotated_noise > threshold``, ``0 <= threshold < 1`` (below 0,
            the corners that the rotation pads with zeros would be defect too).
        mask_rotation: The noise is rotated by ``U(-mask_rotation, mask_rotation)``
            degrees, ``0 <= mask_rotation <= 180``.
        min_defect_area: Later variant: drop mask components with fewer pixels (800 in
            the original); 0 disables.
        min_defect_size: Later variant: drop components whose bounding box has width and
            height both ``<= min_defect_size`` (20 in the original); 0 disables.
        drop_corner_defects: Later variant: drop components whose bounding box starts at
            ``x <= 3`` and ``y <= 3``.
        num_source_augmentations: How many of the 10 source augmentations (see
            ``SOURCE_AUGMENTATIONS``) each texture gets, ``0..10``.
        light_augmentation: Apply the light affine augmentation to every image.
        seed: ``None``: use torch's global generator (``lightning.seed_everything`` makes
            runs reproducible). An int: a private ``torch.Generator``; in a data-loader
            worker it is reseeded from this seed and the worker's own torch seed, so that
            workers and epochs draw different defects and a seeded run still draws the same ones.

    Example:
        >>> transform = SyntheticDefect(seed=0)
        >>> batch = transform.synthesize(torch.rand(4, 3, 64, 64), torch.tensor([True, False, True, True]))
        >>> batch.mask.shape, batch.label.tolist()
        (torch.Size([4, 1, 64, 64]), [1.0, 0.0, 1.0, 1.0])
        >>> image = transform(tv_tensors.Image(torch.rand(3, 64, 64)))  # as a torchvision transform
        >>> image, mask = transform(image, tv_tensors.Mask(torch.zeros(64, 64)))  # with a mask: the defect's too
        >>> mask.shape
        torch.Size([64, 64])

    In an anomalib dataset's ``augmentations`` the item's ``gt_label`` stays what the
    dataset says (anomalib's hook passes the image and mask only), while ``gt_mask`` gains
    the defect.

    Note:
        Random parameters are drawn on the CPU and moved to the images' device. Masks and
        textures are drawn ahead, so reseeding the generator changes what follows only once
        those are used up or :meth:`discard_drawn` is called.
    """

    def __init__(
        self,
        anomaly_source: str | Path | None = None,
        probability: float = 0.5,
        blend_factor: tuple[float, float] = (0.0, 0.8),
        perlin_scale_range: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        mask_rotation: float = 90.0,
        min_defect_area: int = 0,
        min_defect_size: int = 0,
        drop_corner_defects: bool = False,
        num_source_augmentations: int = 3,
        light_augmentation: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if check_number("probability", probability, minimum=0) > 1:
            msg = f"probability must be a number in [0, 1], got {probability!r}"
            raise ValueError(msg)
        low, high = _check_range("blend_factor", blend_factor, "(low, high) with 0 <= low <= high <= 1")
        if not 0 <= low <= high <= 1:
            msg = f"blend_factor must satisfy 0 <= low <= high <= 1, got {tuple(blend_factor)!r}"
            raise ValueError(msg)
        accepted = f"of integers (low, high) with 0 <= low <= high <= {_MAX_PERLIN_EXPONENT}"
        scale_low, scale_high = _check_range("perlin_scale_range", perlin_scale_range, accepted)
        if not (scale_low.is_integer() and scale_high.is_integer() and 0 <= scale_low <= scale_high <= 8):  # noqa: PLR2004
            msg = f"perlin_scale_range must be a pair {accepted}, got {tuple(perlin_scale_range)!r}"
            raise ValueError(msg)
        if not 0 <= check_number("threshold", threshold, minimum=0) < 1:
            msg = f"threshold must be in [0, 1) (Perlin noise in [-1, 1], rotated in with zeros), got {threshold!r}"
            raise ValueError(msg)
        if check_number("mask_rotation", mask_rotation, minimum=0) > 180:  # noqa: PLR2004
            msg = f"mask_rotation must be in [0, 180] degrees, got {mask_rotation!r}"
            raise ValueError(msg)
        min_defect_area = check_integer("min_defect_area", min_defect_area, minimum=0)  # 0 disables
        min_defect_size = check_integer("min_defect_size", min_defect_size, minimum=0)
        num_source_augmentations = check_integer("num_source_augmentations", num_source_augmentations, 0,
                                                 maximum=len(SOURCE_AUGMENTATIONS))
        if seed is not None:  # torch.Generator.manual_seed's range
            seed = check_integer("seed", seed, minimum=-(2**63), maximum=2**64 - 1)
        drop_corner_defects = check_flag("drop_corner_defects", drop_corner_defects)
        light_augmentation = check_flag("light_augmentation", light_augmentation)

        self.probability = float(probability)
        self.blend_factor = (low, high)
        self.perlin_scale_range = (int(scale_low), int(scale_high))
        self.threshold = float(threshold)
        self.mask_rotation = float(mask_rotation)
        self.min_defect_area = min_defect_area
        self.min_defect_size = min_defect_size
        self.drop_corner_defects = drop_corner_defects
        self.num_source_augmentations = num_source_augmentations
        self.light_augmentation = light_augmentation
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._seeded_in = os.getpid()
        self._drawn_masks = DrawAhead()
        self._drawn_textures = DrawAhead()

        self.anomaly_source: str | Path | None
        self.texture_folder: TextureFolder | PhotoCrops | None = None
        if anomaly_source is None:
            self.anomaly_source = None
        elif isinstance(anomaly_source, str) and anomaly_source == "self":
            self.anomaly_source = "self"
        elif isinstance(anomaly_source, str) and anomaly_source == "photos":
            self.anomaly_source = "photos"
            self.texture_folder = PhotoCrops()
        elif isinstance(anomaly_source, (str, Path)):
            self.anomaly_source = Path(anomaly_source)
            self.texture_folder = TextureFolder(self.anomaly_source)
        else:
            msg = f"anomaly_source must be None, 'photos', 'self' or a directory path, got {anomaly_source!r}"
            raise ValueError(msg)

    def extra_repr(self) -> str:
        """Summarise the configuration for ``repr``."""
        source = "procedural" if self.anomaly_source is None else str(self.anomaly_source)
        return (
            f"anomaly_source={source!r}, probability={self.probability}, blend_factor={self.blend_factor}, "
            f"perlin_scale_range={self.perlin_scale_range}, threshold={self.threshold}, "
            f"mask_rotation={self.mask_rotation}, min_defect_area={self.min_defect_area}, "
            f"min_defect_size={self.min_defect_size}, drop_corner_defects={self.drop_corner_defects}, "
            f"num_source_augmentations={self.num_source_augmentations}, "
            f"light_augmentation={self.light_augmentation}, seed={self.seed}"
        )

    def _light_affine(self, images: Tensor) -> Tensor:
        """Light-augment every image: the chosen ops of rotate, scale and translate as one warp (edge padding)."""
        count, _, height, width = images.shape
        # Drawn even when disabled, so that toggling it leaves the rest of the stream alone.
        num_ops = torch.randint(0, 4, (count, 1), generator=self.generator)
        chosen = torch.rand(count, 3, generator=self.generator).argsort(dim=1).argsort(dim=1) < num_ops
        angle = _uniform(count, -4.0, 4.0, self.generator) * chosen[:, 0]
        scale = 1 + (_uniform(count, 0.98, 1.02, self.generator) - 1) * chosen[:, 1]
        shift = _uniform((count, 2), -0.02, 0.02, self.generator) * chosen[:, 2:] * torch.tensor([width, height])
        moving = chosen.any(dim=1).nonzero().squeeze(1)
        if not self.light_augmentation or moving.numel() == 0:
            return images.clone()
        centre = torch.tensor([(width - 1) / 2, (height - 1) / 2]).expand(moving.numel(), 2)
        matrix = _affine_matrix(shift[moving], centre, scale[moving].unsqueeze(1).expand(-1, 2), angle[moving])
        if moving.numel() == count:
            return _warp(images, matrix, padding_mode="border")
        # Only the images that drew an op are resampled; the others pass through untouched.
        out = images.clone()
        rows = moving.to(images.device, non_blocking=True)
        out[rows] = _warp(images[rows], matrix, padding_mode="border")
        return out

    def _draw_masks(self, count: int, height: int, width: int, device: torch.device) -> Tensor:
        """Binary Perlin masks ``(count, 1, H, W)`` as booleans, filtered if configured."""
        low, high = self.perlin_scale_range
        resolution = 2 ** torch.randint(low, high + 1, (count, 2), generator=self.generator)
        angle = _uniform(count, -self.mask_rotation, self.mask_rotation, self.generator)
        noise = perlin_noise_2d(resolution, height, width, generator=self.generator, device=device).unsqueeze(1)
        if self.mask_rotation > 0:
            # Zero padding like imgaug's default: rotated-in corners never become defect.
            noise = _rotate_about_centre(noise, angle, padding_mode="zeros")
        return filter_components(
            noise > self.threshold, self.min_defect_area, self.min_defect_size, self.drop_corner_defects
        )

    def _fallback_discs(self, count: int, height: int, width: int, device: torch.device) -> Tensor:
        """Last-resort defects: one disc per image, sized to pass the component filter when possible."""
        short_side = min(height, width)
        radius = max(short_side / 8, math.sqrt(self.min_defect_area / math.pi) + 1, self.min_defect_size / 2 + 1)
        radius = min(radius, short_side / 2)
        margin = radius + (_CORNER_LIMIT + 1 if self.drop_corner_defects else 0)
        centre_y = _uniform(count, min(margin, height / 2), max(height - radius, height / 2), self.generator)
        centre_x = _uniform(count, min(margin, width / 2), max(width - radius, width / 2), self.generator)
        ys = (torch.arange(height) + 0.5).view(1, height, 1)
        xs = (torch.arange(width) + 0.5).view(1, 1, width)
        discs = (ys - centre_y.view(-1, 1, 1)) ** 2 + (xs - centre_x.view(-1, 1, 1)) ** 2 <= radius**2
        return discs.unsqueeze(1).to(device, non_blocking=True)

    def _non_empty_masks(self, count: int, height: int, width: int, device: torch.device) -> Tensor:
        """Masks as :meth:`_draw_masks`, redrawn (and as a last resort replaced by discs) until none is empty."""
        masks = self._draw_masks(count, height, width, device)
        for _ in range(_MASK_RETRIES):
            empty = (~masks.flatten(1).any(1)).nonzero().squeeze(1)
            if empty.numel() == 0:
                return masks
            masks[empty] = self._draw_masks(empty.numel(), height, width, device)
        empty = (~masks.flatten(1).any(1)).nonzero().squeeze(1)
        if empty.numel() > 0:
            logger.debug("Falling back to disc defects for %d image(s) after %d redraws", empty.numel(), _MASK_RETRIES)
            masks[empty] = self._fallback_discs(empty.numel(), height, width, device)
        return masks

    def _masks(self, count: int, height: int, width: int, device: torch.device) -> Tensor:
        """``count`` non-empty masks ``(count, 1, H, W)`` (bool), drawn ahead (:class:`DrawAhead`)."""
        # Budgeted by what drawing a mask holds at once (float noise, the rotation's sampling
        # grid, the component labels: some 16 bytes a pixel), not by the bool mask kept.
        return self._drawn_masks.take(count, (height, width, device),
                                      lambda ahead: self._non_empty_masks(ahead, height, width, device),
                                      row_bytes=16 * height * width)

    def _augmented_sources(self, count: int, height: int, width: int, device: torch.device) -> Tensor:
        """``count`` augmented RGB textures ``(count, 3, H, W)`` from the folder, photographs or procedural bank.

        Textures are augmented at their own resolution (at most 256 px for files, 128 for
        the procedural bank) and then resized: the augmentations are nearly all per-pixel, so
        this looks the same and costs up to 4x less for large images.
        """
        if self.texture_folder is not None:
            size = fit_size(height, width, self.texture_folder.size)
            sources = self.texture_folder.sample(count, *size, self.generator, device).float()
        else:
            size = fit_size(height, width, PROCEDURAL_RENDER_SIZE)
            sources = procedural_textures(count, *size, self.generator, device).float()
        return resize_bilinear(augment_sources(sources, self.num_source_augmentations, self.generator), height, width)

    def _textures(self, clean: Tensor) -> Tensor:
        """Augmented textures ``(n, C, H, W)`` for the images in ``clean`` ``(n, C, H, W)`` (float32)."""
        count, channels, height, width = clean.shape
        if self.anomaly_source == "self":  # made from these very images: nothing to draw ahead
            rgb = clean.expand(-1, 3, -1, -1) if channels == 1 else clean
            angle = _uniform(count, -90.0, 90.0, self.generator)
            sources = _rotate_about_centre(rgb, angle, padding_mode="border")
            textures = augment_sources(sources, self.num_source_augmentations, self.generator)
        else:
            textures = self._drawn_textures.take(count, (height, width, clean.device),
                                                 lambda ahead: self._augmented_sources(ahead, height, width,
                                                                                       clean.device),
                                                 row_bytes=3 * height * width * 4)
        if channels == 1:
            return _luma(textures)
        # Grey images stored as RGB get grey defects: a coloured patch on a grey surface is a
        # cue that no real defect of that surface has. Chosen on the device: reading the
        # choice on the host would make it wait for the GPU.
        is_grey = (clean.amax(1) - clean.amin(1)).flatten(1).amax(1) <= _GREY_TOLERANCE
        return torch.where(is_grey.view(-1, 1, 1, 1), _luma(textures).expand(-1, 3, -1, -1), textures)

    def discard_drawn(self) -> None:
        """Forget the masks and textures drawn ahead, so that what follows depends only on the generator.

        RecSem calls this at every epoch start; a run resumed at an epoch boundary then
        draws what the uninterrupted run drew.
        """
        self._drawn_masks.discard()
        self._drawn_textures.discard()

    def synthesize(self, images: Tensor, apply_defect: Tensor | None = None) -> DefectBatch:
        """Light-augment a batch and blend synthetic defects into some of its images.

        Args:
            images: Float images ``(B, C, H, W)`` in ``[0, 1]``, ``C`` in ``{1, 3}``.
            apply_defect: Optional bool ``(B,)``: which images get a defect. ``None``
                draws each with ``probability``. Read on the host: flags on a GPU make it
                wait for all the work queued there, so give them on the CPU.

        Returns:
            :class:`DefectBatch` with ``clean`` and ``defective`` ``(B, C, H, W)``,
            ``mask`` ``(B, 1, H, W)`` in ``{0, 1}`` and ``label`` ``(B,)``, all with the
            dtype and device of ``images``. Every selected image has a non-empty mask.
        """
        defect_batch, _ = self._run(images, apply_defect)
        return defect_batch

    def _reseed_in_worker(self) -> None:
        """Give a data-loader worker's copy of a seeded generator a stream of its own.

        Every worker starts from the parent's generator state, and workers that are not
        persistent start from it again every epoch: without this, each worker and each
        epoch would draw the same defects. The worker's seed differs per worker and epoch
        and follows the loader's random state, so a seeded run stays reproducible.
        """
        if self.generator is None or self._seeded_in == os.getpid():
            return
        self._seeded_in = os.getpid()
        if torch.utils.data.get_worker_info() is not None:
            # The worker's torch seed: its loader's seed and worker id, and the distributed rank
            # once Lightning's worker initialisation (seed_everything(workers=True)) has run.
            self.generator.manual_seed(hash((self.seed, torch.initial_seed())) % 2**63)

    def _run(self, images: Tensor, apply_defect: Tensor | None, extra_mask: Tensor | None = None) -> tuple[DefectBatch, Tensor | None]:
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):  # noqa: PLR2004
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            msg = f"images must be a tensor of shape (B, C, H, W) with C in {{1, 3}}, got {shape}"
            raise ValueError(msg)
        if not images.is_floating_point():
            msg = f"images must be a floating tensor with values in [0, 1], got dtype {images.dtype}"
            raise TypeError(msg)
        batch, _, height, width = images.shape
        self._reseed_in_worker()
        if apply_defect is None:
            selected = torch.rand(batch, generator=self.generator) < self.probability
        else:
            selected = torch.as_tensor(apply_defect).detach().to("cpu").bool()
            if selected.shape != (batch,):
                msg = f"apply_defect must have shape ({batch},), got {tuple(selected.shape)}"
                raise ValueError(msg)
        work = images.detach().float()
        if extra_mask is not None:  # moved by the same warp, then thresholded back to a mask
            work = torch.cat([work, extra_mask.to(work)], dim=1)
        work = self._light_affine(work)
        clean, warped_extra = (work[:, :-1], work[:, -1:] > 0.5) if extra_mask is not None else (work, None)  # noqa: PLR2004
        beta = _to(_uniform(batch, *self.blend_factor, self.generator), clean).view(-1, 1, 1, 1)

        mask = torch.zeros(batch, 1, height, width, device=images.device)
        defective = clean.clone()
        chosen = selected.nonzero().squeeze(1)
        if chosen.numel() > 0:
            chosen = chosen.to(images.device, non_blocking=True)
            sub_mask = self._masks(chosen.numel(), height, width, images.device).float()
            sub_clean = clean[chosen]
            textures = self._textures(sub_clean)
            blended = torch.lerp(textures, sub_clean, beta[chosen])  # beta * clean + (1 - beta) * texture
            mask[chosen] = sub_mask
            defective[chosen] = torch.lerp(sub_clean, blended, sub_mask)
        dtype = images.dtype
        result = DefectBatch(
            clean=clean.to(dtype),
            defective=defective.to(dtype),
            mask=mask.to(dtype),
            label=_to(selected, images),
        )
        return result, warped_extra

    def forward(self, *inputs: Any) -> Tensor | tuple[Tensor, tv_tensors.Mask]:  # noqa: ANN401
        """Apply as a torchvision / anomalib transform: what comes in comes back, changed.

        Args:
            *inputs: An image ``(C, H, W)`` or batch ``(B, C, H, W)`` (plain tensor or
                ``tv_tensors.Image``; floats in ``[0, 1]``, or ``uint8`` in ``[0, 255]`` as
                torchvision has them), optionally followed by a mask ``(H, W)``,
                ``(1, H, W)`` (single image) or ``(B, H, W)``, ``(B, 1, H, W)`` (batch).

        Returns:
            The defective image, with the input's shape and type; given a mask,
            ``(defective_image, mask)``, where the mask is a ``tv_tensors.Mask`` ``(H, W)``
            for a single image or ``(B, H, W)`` for a batch: the given mask (moved by the
            same light augmentation) OR the new defect mask, in the given mask's dtype.
            (anomalib's classification datasets call their augmentations with the image
            alone and expect an image back.)
        """
        if len(inputs) == 1 and isinstance(inputs[0], (tuple, list)):
            inputs = tuple(inputs[0])
        if not 1 <= len(inputs) <= 2:  # noqa: PLR2004
            msg = f"SyntheticDefect expects (image) or (image, mask), got {len(inputs)} inputs"
            raise TypeError(msg)
        image = inputs[0]
        given_mask = inputs[1] if len(inputs) == 2 else None  # noqa: PLR2004
        if not isinstance(image, Tensor) or image.ndim not in (3, 4):
            msg = "SyntheticDefect expects an image tensor of shape (C, H, W) or (B, C, H, W)"
            raise TypeError(msg)
        single = image.ndim == 3  # noqa: PLR2004
        batch = image.as_subclass(Tensor)
        batch = batch.unsqueeze(0) if single else batch
        integer = not batch.is_floating_point()
        if integer and batch.dtype != torch.uint8:
            # torchvision's way back from float loses levels of wider integer types (65535 -> 0).
            msg = f"SyntheticDefect takes float images in [0, 1] or uint8 images, got dtype {batch.dtype}"
            raise TypeError(msg)
        if integer:
            batch = v2.functional.to_dtype(batch, torch.float32, scale=True)
        num, _, height, width = batch.shape

        extra = None
        if given_mask is not None:
            raw = given_mask.as_subclass(Tensor) if isinstance(given_mask, Tensor) else torch.as_tensor(given_mask)
            if raw.numel() != num * height * width:
                msg = f"mask must hold one (H, W) = ({height}, {width}) plane per image, got shape {tuple(raw.shape)}"
                raise ValueError(msg)
            extra = raw.reshape(num, 1, height, width).float()

        result, warped = self._run(batch, None, extra)
        mask = result.mask > 0
        if warped is not None:
            mask = mask | warped
        mask_dtype = given_mask.dtype if isinstance(given_mask, Tensor) else result.mask.dtype
        mask = mask[:, 0].to(mask_dtype)
        defective = result.defective
        if integer:
            defective = v2.functional.to_dtype(defective, image.dtype, scale=True)
        if single:
            defective, mask = defective[0], mask[0]
        if isinstance(image, tv_tensors.TVTensor):
            defective = tv_tensors.wrap(defective, like=image)
        return defective if given_mask is None else (defective, tv_tensors.Mask(mask))
