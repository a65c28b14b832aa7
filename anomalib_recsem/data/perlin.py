"""Batched 2-D Perlin noise in torch.

This is the gradient-noise formulation of DRAEM's ``rand_perlin_2d`` (random unit
gradients on a lattice, quintic fade, bilinear blend of the four corner dot products,
scaled by ``sqrt(2)``), rewritten so that a whole batch with a *different lattice
resolution per image and per axis* costs two batched matrix products and no loop over
images or resolution groups.

Why matrix products: for an axis-aligned lattice, the noise at pixel ``(i, j)`` is

    sum over corners (dy, dx) of  wy(i, dy) * wx(j, dx) * <g[cy(i)+dy, cx(j)+dx], (fy(i)-dy, fx(j)-dx)>

where ``cy, fy`` (``cx, fx``) are the lattice cell and fractional position of row ``i``
(column ``j``) and ``wy, wx`` the faded interpolation weights. Splitting the dot product
into its two components, every term is (a function of the row) x (a gradient-table entry)
x (a function of the column), and the sum over the four corners factorises, so

    noise = Ay @ Gy @ Bx + Cy @ Gx @ Dx

with ``(H, Ty)`` row matrices ``Ay, Cy``, ``(Tx, W)`` column matrices ``Bx, Dx`` (each
has two non-zeros per row/column) and the ``(Ty, Tx)`` gradient-component tables
``Gy, Gx``. Images with smaller lattices simply leave the tail of their tables unused.

One deliberate deviation from the NumPy original, statistically immaterial: noise is
sampled at pixel centres (``(i + 0.5) * res / size``) instead of at ``i * res / size``.
This keeps the noise non-degenerate when ``res`` equals the image size (the original only
samples lattice points there, where Perlin noise is zero) and removes the original's
requirement that the size be divisible by ``res``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["perlin_noise_2d"]


def _fade(t: Tensor) -> Tensor:
    # Quintic smoothstep: zero first and second derivative at lattice points.
    return t * t * t * (t * (t * 6 - 15) + 10)


def _axis_weights(res: Tensor, size: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Lattice corners and interpolation terms of every pixel along one axis.

    Args:
        res: Lattice cells along this axis per image, shape ``(N,)``, values in
            ``[1, size]``.
        size: Number of pixels along the axis.
        dtype: Floating dtype.

    Returns:
        ``(corners, weight, weighted_offset)``, each of shape ``(N, size, 2)``: the
        table indices ``cell + d`` of the two lattice corners ``d in {0, 1}``, their
        interpolation weights ``w(d)`` and ``w(d) * (frac - d)``.
    """
    pos = (torch.arange(size, device=res.device, dtype=dtype) + 0.5).unsqueeze(0)
    lattice = pos * (res.to(dtype).unsqueeze(1) / size)  # (N, size)
    cell = lattice.floor()
    frac = lattice - cell
    # Round-off must not push a pixel into cell res (its +1 corner would be off-table).
    cell = torch.minimum(cell.long(), (res - 1).unsqueeze(1))
    fade = _fade(frac)
    corners = torch.stack((cell, cell + 1), dim=2)
    weight = torch.stack((1 - fade, fade), dim=2)
    weighted_offset = weight * torch.stack((frac, frac - 1), dim=2)
    return corners, weight, weighted_offset


def _spread(corners: Tensor, values: Tensor, table: int) -> Tensor:
    """``(N, size, table)`` matrix holding ``values`` at the ``corners`` columns, zero elsewhere.

    Each row has just two non-zeros, so a scatter into zeros builds it in one pass
    (the sum of one-hot matrices scaled by the weights gives the same numbers).
    """
    shape = (*corners.shape[:2], table)
    return torch.zeros(shape, device=values.device, dtype=values.dtype).scatter_(2, corners, values)


def perlin_noise_2d(
    resolution: Tensor,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Generate a batch of 2-D Perlin noise images, each with its own lattice.

    Args:
        resolution: Integer tensor of shape ``(N, 2)``: number of lattice cells along
            ``(height, width)`` for each image (DRAEM's ``res``, i.e. the noise has
            ``res`` "blobs" across the axis). Values are clamped to ``[1, size]``.
        height: Output height ``H``.
        width: Output width ``W``.
        generator: Random generator for the lattice gradients; ``None`` uses torch's
            global CPU generator. Random numbers are drawn on the CPU so that a seed
            gives the same noise on every device.
        device: Device of the output; defaults to ``resolution``'s device.
        dtype: Floating dtype of the output.

    Returns:
        Tensor of shape ``(N, H, W)`` with values in about ``[-1, 1]``.

    Example:
        >>> res = torch.tensor([[1, 1], [4, 32]])
        >>> perlin_noise_2d(res, 64, 64).shape
        torch.Size([2, 64, 64])
    """
    if resolution.ndim != 2 or resolution.shape[1] != 2:
        msg = f"resolution must have shape (N, 2), got {tuple(resolution.shape)}"
        raise ValueError(msg)
    device = torch.device(device) if device is not None else resolution.device
    num = resolution.shape[0]
    if num == 0:
        return torch.zeros(0, height, width, device=device, dtype=dtype)

    res = resolution.to(dtype=torch.long)
    res_y = res[:, 0].clamp(1, height)
    res_x = res[:, 1].clamp(1, width)
    # Read where the resolutions were drawn (the CPU, in the synthesis), so a GPU is not made to wait.
    table_h = int(res_y.max()) + 1
    table_w = int(res_x.max()) + 1
    # Copied without waiting: a blocking copy to a GPU waits for all the work queued there.
    res_y, res_x = res_y.to(device, non_blocking=True), res_x.to(device, non_blocking=True)
    angles = torch.rand(num, table_h, table_w, generator=generator, dtype=dtype)
    angles = (angles * (2 * math.pi)).to(device, non_blocking=True)
    grad_y, grad_x = torch.cos(angles), torch.sin(angles)

    row_corners, row_weight, row_offset = _axis_weights(res_y, height, dtype)  # (N, H, 2) each
    col_corners, col_weight, col_offset = _axis_weights(res_x, width, dtype)  # (N, W, 2) each
    # (N, 2*Ty, W): gradient tables already interpolated along the columns.
    right = torch.cat(
        (
            torch.bmm(grad_y, _spread(col_corners, col_weight, table_w).transpose(1, 2)),
            torch.bmm(grad_x, _spread(col_corners, col_offset, table_w).transpose(1, 2)),
        ),
        dim=1,
    )
    # (N, H, 2*Ty): the offset terms against the first half of `right`, the weights
    # against the second.
    left = _spread(
        torch.cat((row_corners, row_corners + table_h), dim=2),
        torch.cat((row_offset, row_weight), dim=2) * math.sqrt(2.0),
        2 * table_h,
    )
    return torch.bmm(left, right)
