"""Random rows drawn many at a time and handed out a few at a time.

Eager PyTorch pays a fixed cost for every operation it runs: a few microseconds of Python
and dispatch on the CPU, and on a GPU a kernel launch. Drawing a synthetic defect's mask
and texture takes some 450 operations whether it is drawn for 4 images or for 64, so a
training step that needs 4 defects spends most of that cost on overhead; on a GPU that
overhead is a large share of a step. :class:`DrawAhead` draws up to
:data:`MOST_ROWS` rows at once and serves them in order, so that cost is paid once every
several steps. Each draw is twice as large as the one before, from what the first request
needs up to that limit, so a short-lived user (a data-loader worker that makes a few
defects) draws at most about twice what it uses; rows of another kind (another image size)
start again from the first request's size. A copy (pickled for a data-loader worker, or
inherited by a forked one) starts empty, so no two copies serve the same rows.

The rows are independent draws, so serving them later changes nothing about their
distribution; only the order in which a seeded generator's numbers are used changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from typing import Any

from torch import Tensor

__all__ = ["BUDGET_BYTES", "MOST_ROWS", "DrawAhead"]

#: The most rows drawn at once.
MOST_ROWS = 64
#: The most memory held ahead, so that large images draw fewer rows at a time (64 MiB: 64
#: RGB float rows at 512 x 512 px would take 192 MiB).
BUDGET_BYTES = 64 * 2**20


class DrawAhead:
    """A buffer of rows drawn ahead, refilled when it runs short or the kind of row changes.

    Args:
        most_rows: The most rows drawn at once.
        budget_bytes: The most memory the rows drawn at once may take; at least the rows a
            single request needs are always drawn.

    Example:
        >>> import torch
        >>> ahead = DrawAhead(most_rows=8)
        >>> drawn = []
        >>> draw = lambda count: drawn.append(count) or torch.arange(count)
        >>> [ahead.take(3, "ids", draw, row_bytes=8).tolist() for _ in range(4)]
        [[0, 1, 2], [0, 1, 2], [3, 4, 5], [0, 1, 2]]
        >>> drawn  # 3, then twice as many, then the limit
        [3, 6, 8]
    """

    def __init__(self, most_rows: int = MOST_ROWS, budget_bytes: int = BUDGET_BYTES) -> None:
        self.most_rows = most_rows
        self.budget_bytes = budget_bytes
        self.discard()

    def take(self, count: int, key: Hashable, draw: Callable[[int], Tensor], row_bytes: int) -> Tensor:
        """The next ``count`` rows drawn for ``key``.

        Args:
            count: Rows wanted.
            key: What the rows are (size, device, dtype...); rows drawn for another key are
                discarded.
            draw: Draws ``n`` rows, a tensor of leading size ``n``.
            row_bytes: Memory of one row, which bounds how many are drawn at once.

        Returns:
            Tensor: ``count`` rows, a view into the buffer (a clone is not needed: each row is
            handed out once).
        """
        if key != self._key or self._process != os.getpid():
            self.discard()
        if self._rows is None or self._used + count > len(self._rows):
            ahead = min(2 * self._last_draw, self.most_rows, self.budget_bytes // max(row_bytes, 1))
            self._rows, self._key, self._used = draw(max(count, ahead)), key, 0
            self._last_draw = len(self._rows)
        rows = self._rows[self._used : self._used + count]
        self._used += count
        return rows

    def discard(self) -> None:
        """Forget the rows not yet handed out: the next request draws afresh, as if the first."""
        self._rows: Tensor | None = None
        self._key: Hashable = None
        self._used = self._last_draw = 0
        self._process = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        """A copy starts empty: two copies serving the same rows would paste the same defects."""
        return {"most_rows": self.most_rows, "budget_bytes": self.budget_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore the limits; nothing drawn comes along."""
        self.__dict__.update(state)
        self.discard()
