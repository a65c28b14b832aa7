"""Row gathers and scatters for batches of images.

The defect pipeline moves whole images between sub-batches all the time (the images that
get a defect, that move, or that share an augmentation). On CPU, torch is slow at this
for a few large rows: ``index_select`` and ``index_copy_`` copy every row in a parallel
region of its own, where waking the threads costs more than the copy, and advanced
indexing computes an offset per element. NumPy's row indexing is one serial ``memcpy``
per row and several times faster at any thread count, so CPU tensors go through it;
other devices (and tensors that need autograd) use torch indexing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["put_rows_", "take_rows", "undo_permutation"]

# dtypes that share memory with NumPy without conversion.
_NUMPY_DTYPES = frozenset(
    {torch.bool, torch.uint8, torch.int32, torch.int64, torch.float16, torch.float32, torch.float64}
)


def _as_numpy(tensor: Tensor) -> np.ndarray | None:
    """Return a NumPy view of ``tensor``, or ``None`` when it must stay with torch."""
    if tensor.device.type != "cpu" or tensor.requires_grad or tensor.dtype not in _NUMPY_DTYPES:
        return None
    return tensor.numpy()


def take_rows(tensor: Tensor, rows: Tensor) -> Tensor:
    """Copy of ``tensor[rows]`` along the first dimension.

    Args:
        tensor: ``(N, ...)`` tensor.
        rows: 1-D integer tensor of row indices (any device).

    Returns:
        New contiguous tensor ``(len(rows), ...)`` on ``tensor``'s device.
    """
    array = _as_numpy(tensor)
    if array is None:
        return tensor[rows.to(tensor.device)]
    return torch.from_numpy(np.take(array, rows.cpu().numpy(), axis=0))


def put_rows_(tensor: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    """``tensor[rows] = values`` in place.

    Args:
        tensor: ``(N, ...)`` tensor to write into.
        rows: 1-D integer tensor of distinct row indices (any device).
        values: ``(len(rows), ...)`` tensor with ``tensor``'s dtype and device.

    Returns:
        ``tensor``.
    """
    target, source = _as_numpy(tensor), _as_numpy(values)
    if target is None or source is None or values.dtype != tensor.dtype:
        tensor[rows.to(tensor.device)] = values
    else:
        target[rows.cpu().numpy()] = source
    return tensor


def undo_permutation(tensor: Tensor, order: Tensor) -> Tensor:
    """Rows of ``tensor`` back in original order, where row ``i`` holds original row ``order[i]``.

    Args:
        tensor: ``(N, ...)`` tensor whose rows were permuted by ``order``.
        order: 1-D permutation of ``0..N-1`` on the CPU.

    Returns:
        ``tensor`` itself when ``order`` is the identity, else a reordered copy.
    """
    count = order.shape[0]
    if torch.equal(order, torch.arange(count)):
        return tensor
    restore = torch.empty_like(order)
    restore[order] = torch.arange(count)
    return take_rows(tensor, restore)
