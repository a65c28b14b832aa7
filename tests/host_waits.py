"""What would make a GPU's host wait for the device, found on the CPU with meta tensors.

Meta tensors have shapes but no data: reading one on the host (``.item()``, ``bool()``,
``nonzero``, a copy back) fails, as it would wait for a GPU. :class:`BlockingCopies` finds
the other kind of wait, copies onto the device that are not ``non_blocking``. Indexing a
device tensor with CPU indices copies them inside the kernel, which neither can see.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from anomalib_recsem import SyntheticDefect


class BlockingCopies(TorchDispatchMode):
    """Records every copy between two devices made without ``non_blocking=True``."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:  # noqa: ANN401
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name == "_to_copy" and kwargs.get("device") is not None:
            source, target = args[0].device, torch.device(kwargs["device"])
            blocking = not kwargs.get("non_blocking", False)
        elif name == "copy_":
            source, target = args[1].device, args[0].device
            blocking = not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False))  # noqa: PLR2004
        else:
            return func(*args, **kwargs)
        if blocking and source != target:
            self.found.append(f"{name} {source} -> {target}")
        return func(*args, **kwargs)


def draw_meta_rows(monkeypatch: pytest.MonkeyPatch, defects: SyntheticDefect) -> None:
    """Make ``defects`` draw its masks and textures ahead as meta rows (their draw reads on the host)."""
    monkeypatch.setattr(defects, "_non_empty_masks", lambda count, height, width, device: torch.ones(
        count, 1, height, width, dtype=torch.bool, device=device))
    monkeypatch.setattr(defects, "_augmented_sources", lambda count, height, width, device: torch.empty(
        count, 3, height, width, device=device))
