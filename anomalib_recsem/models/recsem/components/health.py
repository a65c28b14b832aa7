"""Reconstruction health: is the reconstruction network doing its job?

The discriminator can learn to spot synthetic defects in the input alone, and then scores
well on them while the reconstruction has collapsed to one fixed image. These metrics watch
the reconstruction itself on validation images:

* ``reconstruction_error``: mean squared error on the normal images (low: normal content is
  reproduced);
* ``reconstruction_spread``: per-pixel standard deviation across images of the
  reconstructions, divided by that of the inputs (near 0: one image whatever the input; near
  1: the reconstructions vary as much as the inputs do);
* ``residual_pixel_AUROC``: pixel AUROC of ``|input - reconstruction|`` against the
  ground-truth masks (above 0.5: the reconstruction drops real defects).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class ReconstructionError(Metric):
    """Mean squared error between normal images and their reconstructions."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("squared_error", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor, reconstructions: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch.

        Args:
            images: ``(B, C, H, W)``.
            reconstructions: ``(B, C, H, W)``.
            labels: ``(B,)``, 0 for normal images; only those count.
        """
        normal = labels == 0
        difference = (images[normal] - reconstructions[normal]).double()
        # Out of place: after Engine.validate (inference mode) the states are inference tensors,
        # which a later fit's validation may not update in place.
        self.squared_error = self.squared_error + difference.square().sum()
        self.count = self.count + difference.numel()

    def compute(self) -> torch.Tensor:
        """Mean squared error (NaN without normal images)."""
        return (self.squared_error / self.count).float()


class ReconstructionSpread(Metric):
    """How much reconstructions vary across images, relative to the inputs."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("input_sum", "input_square_sum", "output_sum", "output_square_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor, reconstructions: torch.Tensor) -> None:
        """Add a batch of images ``(B, C, H, W)`` and their reconstructions."""
        images, reconstructions = images.double(), reconstructions.double()
        # Per-pixel sums over images; the states start as scalars and broadcast on first use.
        self.input_sum = self.input_sum + images.sum(0)
        self.input_square_sum = self.input_square_sum + images.square().sum(0)
        self.output_sum = self.output_sum + reconstructions.sum(0)
        self.output_square_sum = self.output_square_sum + reconstructions.square().sum(0)
        self.count = self.count + images.shape[0]

    def compute(self) -> torch.Tensor:
        """Mean per-pixel standard deviation of the reconstructions over that of the inputs."""

        def spread(total: torch.Tensor, square_total: torch.Tensor) -> torch.Tensor:
            mean = total / self.count
            return (square_total / self.count - mean.square()).clamp(min=0).sqrt().mean()

        return (spread(self.output_sum, self.output_square_sum) / spread(self.input_sum, self.input_square_sum)).float()


class ResidualAUROC(Metric):
    """Pixel AUROC of the residual ``|input - reconstruction|`` (channel mean) against the masks.

    Residuals (clamped to ``[0, 1]``) are counted in 1000 bins per class, so memory does not
    grow with the number of pixels and an update is one ``bincount``. The AUROC is then the
    probability that a defect pixel's bin is above a normal pixel's, ties counting half.
    """

    full_state_update = False
    bins = 1000

    def __init__(self) -> None:
        super().__init__()
        self.add_state("counts", default=torch.zeros(2, self.bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor, reconstructions: torch.Tensor, masks: torch.Tensor) -> None:
        """Add a batch: images and reconstructions ``(B, C, H, W)``, masks ``(B, H, W)`` or ``(B, 1, H, W)``."""
        residual = (images - reconstructions).abs().mean(dim=1).clamp(0, 1)
        index = (residual * (self.bins - 1)).round().long().flatten()
        target = masks.reshape(residual.shape).flatten().long().clamp(0, 1)
        counts = torch.bincount(target * self.bins + index, minlength=2 * self.bins).view(2, self.bins)
        self.counts = self.counts + counts.to(self.counts)

    def compute(self) -> torch.Tensor:
        """The AUROC (NaN without pixels of both classes)."""
        normal, defect = self.counts
        below = torch.cumsum(normal, 0) - normal  # normal pixels in lower bins
        wins = (defect * (below + 0.5 * normal)).sum()
        return (wins / (normal.sum() * defect.sum())).float()
