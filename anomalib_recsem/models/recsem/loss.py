"""Training loss of RecSem: reconstruction, prototype memory and segmentation terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .torch_model import RecSemOutput


class FocalLoss(nn.Module):
    """Binary focal loss on softmax probabilities, as used by DRAEM and RecSem.

    The one-hot target is clamped to ``[smooth, 1 - smooth]`` and
    ``p_t = sum_c target_c * p_c + smooth``; the loss is ``-(1 - p_t)^gamma * log(p_t)``
    averaged over all pixels.

    Args:
        gamma: Focusing exponent.
        smooth: Label smoothing, also added to ``p_t`` to keep the logarithm finite.
    """

    def __init__(self, gamma: float = 2.0, smooth: float = 1e-5) -> None:
        super().__init__()
        self.gamma = gamma
        self.smooth = smooth

    def forward(self, probabilities: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            probabilities: Softmax output (normal, defect), shape ``(B, 2, H, W)``.
            mask: Binary defect mask, shape ``(B, 1, H, W)``.

        Returns:
            torch.Tensor: Scalar loss.
        """
        target = torch.cat([1.0 - mask, mask], dim=1).clamp(self.smooth, 1.0 - self.smooth)
        p_t = (target * probabilities).sum(dim=1) + self.smooth
        return (-((1.0 - p_t) ** self.gamma) * p_t.log()).mean()


class RecSemLoss(nn.Module):
    """``L = w_r * MSE + w_c * compactness + w_s * separation + w_f * focal``.

    Args:
        reconstruction_weight: Weight of the squared reconstruction error.
        compactness_weight: Weight of the memory compactness loss (summed over scales).
        separation_weight: Weight of the memory separation loss (summed over scales).
        focal_weight: Weight of the focal segmentation loss.
    """

    def __init__(
        self,
        reconstruction_weight: float = 1.0,
        compactness_weight: float = 1.0,
        separation_weight: float = 1e-4,
        focal_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.weights = {
            "reconstruction": reconstruction_weight,
            "compactness": compactness_weight,
            "separation": separation_weight,
            "focal": focal_weight,
        }
        self.focal = FocalLoss()

    def forward(self, target: torch.Tensor, output: RecSemOutput, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Compute every term and the weighted total.

        Args:
            target: Defect-free image the reconstruction should match, in the networks'
                normalised space, ``(B, C, H, W)``.
            output: Training-mode output of :class:`RecSemModel`.
            mask: Synthetic defect mask, ``(B, 1, H, W)``.

        Returns:
            dict[str, torch.Tensor]: Unweighted terms under their names and the weighted
            sum under ``"loss"``.
        """
        # float32 whatever the autocast precision: softmax, log and the squared error of
        # nearly equal images are where bfloat16 loses most.
        terms = {
            "reconstruction": F.mse_loss(output.reconstruction.float(), target.float()),
            "compactness": output.compactness.float(),
            "separation": output.separation.float(),
            "focal": self.focal(torch.softmax(output.logits.float(), dim=1), mask.float()),
        }
        terms["loss"] = sum(self.weights[name] * value for name, value in terms.items())
        return terms
