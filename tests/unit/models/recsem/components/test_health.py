"""Reconstruction health metrics on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from anomalib_recsem.models.recsem.components.health import ReconstructionError, ReconstructionSpread, ResidualAUROC


def test_error_counts_normal_images_only() -> None:
    metric = ReconstructionError()
    images = torch.zeros(2, 1, 2, 2)
    reconstructions = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 3.0)])
    metric.update(images, reconstructions, torch.tensor([0, 1]))
    assert metric.compute().item() == pytest.approx(0.25)


def test_spread_is_zero_for_a_constant_reconstruction_and_one_for_a_copy() -> None:
    images = torch.rand(6, 3, 4, 4)
    collapsed, copied = ReconstructionSpread(), ReconstructionSpread()
    collapsed.update(images, torch.full_like(images, 0.3))
    copied.update(images, images)
    assert collapsed.compute().item() == pytest.approx(0.0, abs=1e-6)
    assert copied.compute().item() == pytest.approx(1.0)
    half = ReconstructionSpread()
    half.update(images, 0.5 * images + 0.1)
    assert half.compute().item() == pytest.approx(0.5, rel=1e-4)


def test_residual_auroc_ranks_the_defect() -> None:
    images = torch.zeros(1, 3, 4, 4)
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, :2] = True
    removed = images.clone()
    removed[0, :, :2] = 0.5  # the reconstruction differs exactly where the defect is
    good, bad = ResidualAUROC(), ResidualAUROC()
    good.update(images, removed, masks)
    bad.update(images, removed, ~masks)
    assert good.compute().item() == pytest.approx(1.0)
    assert bad.compute().item() == pytest.approx(0.0)


def test_metrics_reset_in_inference_mode_update_afterwards() -> None:
    """``Engine.validate`` runs in inference mode; a later fit validates under ``no_grad``."""
    images, masks = torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8)
    masks[0, :2] = 1
    metrics = [ReconstructionError(), ReconstructionSpread(), ResidualAUROC()]
    with torch.inference_mode():
        for metric in metrics:
            metric.reset()
    with torch.no_grad():
        metrics[0].update(images, images.flip(0), torch.tensor([0, 1]))
        metrics[1].update(images, images.flip(0))
        metrics[2].update(images, images.flip(0), masks)
    assert all(torch.isfinite(metric.compute()) for metric in metrics)
