"""Best-checkpoint callback that tolerates datasets without ground-truth masks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from torch import Tensor


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, minus the stop when the monitored metric is missing.

    The configs keep one best checkpoint per validation metric (``image_AUROC`` and
    ``pixel_AUPRO``). A dataset without ground-truth masks (a ``Folder`` of good and bad
    images, say) yields no pixel metrics, and Lightning's class then ends training at the
    first validation with "could not find the monitored key". This subclass warns once and
    writes nothing for that metric instead, so one config serves data with and without masks.
    Everything else (file names, ``mode``, ties, resume state) is Lightning's.

    It derives from Lightning's class rather than anomalib's ``ModelCheckpoint``: anomalib's
    would replace the Engine's own ``weights/lightning/model.ckpt``, the file to resume from.

    Example:
        >>> callback = BestCheckpoint(monitor="pixel_AUPRO", mode="max", filename="best_pixel_AUPRO")
    """

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - ModelCheckpoint's own signature
        super().__init__(*args, **kwargs)
        self._warned_missing = False

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates:
            if not self._warned_missing:
                rank_zero_warn(
                    f"BestCheckpoint(monitor={self.monitor!r}): validation logged no {self.monitor!r} "
                    f"(logged: {sorted(monitor_candidates)}), so this callback keeps no checkpoint. "
                    "Pixel metrics need ground-truth masks.",
                )
                self._warned_missing = True
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)
