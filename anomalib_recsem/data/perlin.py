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
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

__all__ = ["perlin_noise_2d"]


def _fade(t: Tensor) -> Tensor:
    # Quintic smoothstep: zero first and second derivative at lattice points.
    return t * t * t * (t * (t * 6 - 15) + 10)


def _axis_matrices(res: Tensor, size: int, table: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Per-axis interpolation matrices.

    Args:
        res: Lattice cells along this axis per image, shape ``(N,)``, values in
            ``[1, size]``.
        size: Number of pixels along the axis.
        table: Gradient-table length along the axis (``max(res) + 1``).
        dtype: Floating dtype.

    Returns:
        ``(weight, weighted_offset)``, both of shape ``(N, size, table)``:
        ``sum_d w(d) * onehot(cell + d)`` and ``sum_d w(d) * (frac - d) * onehot(cell + d)``
        over the two lattice corners ``d in {0, 1}``.
    """
    pos = (torch.arange(size, device=res.device, dtype=dtype) + 0.5).unsqueeze(0)
    lattice = pos * (res.to(dtype).unsqueeze(1) / size)  # (N, size)
    cell = lattice.floor()
    frac = lattice - cell
    # Round-off must not push a pixel into cell res (its +1 corner would be off-table).
    cell = torch.minimum(cell.long(), (res - 1).unsqueeze(1))
    fade = _fade(frac)
    near = F.one_hot(cell, table).to(dtype)  # (N, size, table)
    far = F.one_hot(cell + 1, table).to(dtype)
    w_near = (1 - fade).unsqueeze(-1)
    w_far = fade.unsqueeze(-1)
    weight = w_near * near + w_far * far
    weighted_offset = (w_near * frac.unsqueeze(-1)) * near + (w_far * (frac - 1).unsqueeze(-1)) * far
    return weight, weighted_offset


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

    res = resolution.to(device=device, dtype=torch.long)
    res_y = res[:, 0].clamp(1, height)
    res_x = res[:, 1].clamp(1, width)
    table_h = int(res_y.max()) + 1
    table_w = int(res_x.max()) + 1
    angles = torch.rand(num, table_h, table_w, generator=generator, dtype=dtype)
    angles = (angles * (2 * math.pi)).to(device)
    grad_y, grad_x = torch.cos(angles), torch.sin(angles)

    row_weight, row_offset = _axis_matrices(res_y, height, table_h, dtype)  # (N, H, Ty)
    col_weight, col_offset = _axis_matrices(res_x, width, table_w, dtype)  # (N, W, Tx)
    # (N, 2*Ty, W): gradient tables already interpolated along the columns.
    right = torch.cat(
        (
            torch.bmm(grad_y, col_weight.transpose(1, 2)),
            torch.bmm(grad_x, col_offset.transpose(1, 2)),
        ),
        dim=1,
    )
    left = torch.cat((row_offset, row_weight), dim=2) * math.sqrt(2.0)  # (N, H, 2*Ty)
    return torch.bmm(left, right)
