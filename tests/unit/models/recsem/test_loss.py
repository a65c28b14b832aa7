"""The focal and total losses on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from anomalib_recsem.models.recsem.loss import FocalLoss, RecSemLoss
from anomalib_recsem.models.recsem.torch_model import RecSemOutput


def test_focal_hand_computed() -> None:
    probabilities = torch.tensor([0.8, 0.2, 0.3, 0.7]).view(1, 2, 1, 2)  # pixel 0: (0.8, 0.3), pixel 1: (0.2, 0.7)
    mask = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    smooth = 1e-5

    def pixel(p_true: float, p_false: float) -> float:
        p_t = (1 - smooth) * p_true + smooth * p_false + smooth
        return -((1 - p_t) ** 2) * math.log(p_t)

    expected = (pixel(0.8, 0.3) + pixel(0.7, 0.2)) / 2
    assert FocalLoss()(probabilities, mask).item() == pytest.approx(expected, rel=1e-5)


def test_focal_is_small_for_confident_correct_and_large_for_wrong() -> None:
    mask = torch.ones(1, 1, 4, 4)
    right = torch.cat([torch.full_like(mask, 0.01), torch.full_like(mask, 0.99)], dim=1)
    wrong = right.flip(1)
    assert FocalLoss()(right, mask) < 1e-4 < FocalLoss()(wrong, mask)


def test_total_is_weighted_sum() -> None:
    target = torch.zeros(1, 3, 4, 4)
    output = RecSemOutput(
        reconstruction=torch.ones(1, 3, 4, 4),
        logits=torch.zeros(1, 2, 4, 4),
        compactness=torch.tensor(2.0),
        separation=torch.tensor(10.0),
    )
    terms = RecSemLoss()(target, output, torch.zeros(1, 1, 4, 4))
    assert terms["reconstruction"].item() == pytest.approx(1.0)
    p_t = 0.5 * (1 - 1e-5) + 0.5 * 1e-5 + 1e-5
    assert terms["focal"].item() == pytest.approx(-((1 - p_t) ** 2) * math.log(p_t), rel=1e-5)
    expected = 1.0 + 2.0 + 1e-4 * 10.0 + terms["focal"].item()
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-6)
