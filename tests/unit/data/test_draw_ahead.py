"""DrawAhead serves rows drawn ahead in order, each once, within its row and memory limits."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from anomalib_recsem.data.draw_ahead import DrawAhead


class _Counter:
    """Draws consecutive integers, so that every row ever drawn is distinct, and records each draw's size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.next = 0

    def __call__(self, count: int) -> torch.Tensor:
        self.sizes.append(count)
        self.next += count
        return torch.arange(self.next - count, self.next)


def test_rows_are_served_in_order_and_draws_double_up_to_the_limit() -> None:
    ahead, draw = DrawAhead(most_rows=16, budget_bytes=2**20), _Counter()
    served = torch.cat([ahead.take(3, "key", draw, row_bytes=4) for _ in range(13)])
    assert draw.sizes == [3, 6, 12, 16, 16]
    # The one row the first draw of 16 has left for the 13th request is dropped, not served twice.
    assert served.tolist() == [*range(36), 37, 38, 39]


def test_memory_budget_bounds_a_draw_but_a_request_is_always_drawn_whole() -> None:
    ahead, draw = DrawAhead(most_rows=64, budget_bytes=1000), _Counter()
    for _ in range(10):
        ahead.take(2, "key", draw, row_bytes=100)
    assert draw.sizes == [2, 4, 8, 10]  # 10 rows of 100 bytes fill the 1000
    assert len(ahead.take(25, "key", draw, row_bytes=100)) == 25
    assert draw.sizes[-1] == 25


def test_another_key_or_a_discard_draws_afresh_as_if_first() -> None:
    ahead, draw = DrawAhead(most_rows=64), _Counter()
    for _ in range(3):
        ahead.take(2, (32, 32), draw, row_bytes=1)
    other = ahead.take(2, (64, 64), draw, row_bytes=1)  # rows of another size: what is left is dropped
    assert draw.sizes == [2, 4, 2] and other.tolist() == [6, 7]
    ahead.take(2, (64, 64), draw, row_bytes=1)
    ahead.discard()
    ahead.take(2, (64, 64), draw, row_bytes=1)
    assert draw.sizes == [2, 4, 2, 4, 2]
    # Sizes that alternate never grow the draws beyond what each request needs.
    alternating = _Counter()
    for index in range(20):
        ahead.take(1, index % 2, alternating, row_bytes=1)
    assert alternating.sizes == [1] * 20


def test_copies_and_other_processes_start_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    ahead, draw = DrawAhead(most_rows=64), _Counter()
    ahead.take(2, "key", draw, row_bytes=1)
    ahead.take(2, "key", draw, row_bytes=1)  # draws 4, serves 2: 2 are left
    copy = pickle.loads(pickle.dumps(ahead))
    assert copy.take(2, "key", draw, row_bytes=1).tolist() == [6, 7]  # drawn afresh, not rows 4 and 5
    assert (copy.most_rows, copy.budget_bytes) == (ahead.most_rows, ahead.budget_bytes)
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked data-loader worker
    assert ahead.take(2, "key", draw, row_bytes=1).tolist() == [8, 9]
