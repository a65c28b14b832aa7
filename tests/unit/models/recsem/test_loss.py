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


def _flat_images(recon_level: float, target_level: float) -> tuple[torch.Tensor, RecSemOutput, torch.Tensor, torch.Tensor]:
    """Flat RGB images in the networks' normalised space, and the normalisation they were made with."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    target = (torch.full((1, 3, 16, 16), target_level) - mean) / std
    output = RecSemOutput(
        reconstruction=(torch.full((1, 3, 16, 16), recon_level) - mean) / std,
        logits=torch.zeros(1, 2, 16, 16),
        compactness=torch.tensor(0.0),
        separation=torch.tensor(0.0),
    )
    return target, output, mean, std


def test_structure_term_is_one_minus_ssim_in_pixel_space() -> None:
    # Two flat images: SSIM's contrast and structure factors are 1, its luminance factor
    # (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) with C1 = 0.01^2 for the [0, 1] range.
    target, output, mean, std = _flat_images(0.2, 0.6)
    c1 = 0.01**2
    expected = 1 - (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    loss = RecSemLoss(structure_weight=2.0, pixel_mean=mean, pixel_std=std)
    terms = loss(target, output, torch.zeros(1, 1, 16, 16))
    assert terms["structure"].item() == pytest.approx(expected, rel=1e-4)
    weighted = terms["reconstruction"] + 2.0 * terms["structure"] + terms["focal"]
    assert terms["loss"].item() == pytest.approx(weighted.item(), rel=1e-6)
    same = loss(target, output._replace(reconstruction=target), torch.zeros(1, 1, 16, 16))
    assert same["structure"].item() == pytest.approx(0.0, abs=1e-6)


def test_structure_term_is_absent_at_weight_zero() -> None:
    target, output, mean, std = _flat_images(0.2, 0.6)
    terms = RecSemLoss(pixel_mean=mean, pixel_std=std)(target, output, torch.zeros(1, 1, 16, 16))
    assert "structure" not in terms
    assert terms["loss"].item() == pytest.approx((terms["reconstruction"] + terms["focal"]).item(), rel=1e-6)
