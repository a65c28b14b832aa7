"""Properties of the prototype unit and the multi-scale memory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_recsem.models.recsem.components.memory import (
    MultiScalePrototypeMemory,
    PrototypeUnit,
    compactness_loss,
    pooled_size,
    separation_loss,
)


def _unit_with_identity_head() -> PrototypeUnit:
    unit = PrototypeUnit(channels=2, num_prototypes=2, size=(1, 2), location_embedding=False)
    with torch.no_grad():
        unit.prototype_head.weight.copy_(torch.eye(2))
    return unit


def test_unit_forward_hand_computed() -> None:
    """Two positions z1 = (1, 0), z2 = (0, 1) and a head W = I, worked out by hand.

    Prototype 1 weighs the positions by softmax(1, 0) = (a, 1 - a), a = e / (e + 1), so
    p1 = (a, 1 - a) / |.| and, by symmetry, p2 = (1 - a, a) / |.|. Position 1 addresses them
    with softmax(z1 . p1, z1 . p2) and reads out their normalised mix, plus itself (skip).
    """
    a = math.e / (math.e + 1)
    norm = math.hypot(a, 1 - a)
    p1 = (a / norm, (1 - a) / norm)
    p2 = (p1[1], p1[0])
    s = 1 / (1 + math.exp(-(p1[0] - p2[0])))  # softmax weight of p1 for z1
    mix = (s * p1[0] + (1 - s) * p2[0], s * p1[1] + (1 - s) * p2[1])
    read = (mix[0] / math.hypot(*mix), mix[1] / math.hypot(*mix))
    features = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (B=1, C=2, H=1, W=2): z1, z2

    output = _unit_with_identity_head()(features)

    expected = torch.tensor([[[[1 + read[0], read[1]]], [[read[1], 1 + read[0]]]]])
    assert torch.allclose(output.features, expected, atol=1e-6)
    # Compactness: each position against its nearest prototype, mean over 2 positions x 2 channels.
    assert output.compactness.item() == pytest.approx(((1 - p1[0]) ** 2 + p1[1] ** 2) / 2, rel=1e-5)
    # Separation: one pair at squared distance |p1 - p2|^2, hinge at 1.
    assert output.separation.item() == pytest.approx(1 - 2 * (p1[0] - p1[1]) ** 2, rel=1e-5)


def test_readout_is_unit_norm_plus_skip() -> None:
    torch.manual_seed(0)
    features = torch.randn(2, 8, 4, 4)
    with_skip = PrototypeUnit(8, 4, (4, 4), location_embedding=False, skip=True).eval()
    without_skip = PrototypeUnit(8, 4, (4, 4), location_embedding=False, skip=False).eval()
    without_skip.load_state_dict(with_skip.state_dict())
    plain = without_skip(features).features
    assert torch.allclose(plain.norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
    assert torch.allclose(with_skip(features).features, plain + features, atol=1e-6)


def test_location_embedding_is_added_and_optional() -> None:
    unit = PrototypeUnit(8, 4, (4, 4), location_embedding=False)
    assert unit.location is None
    assert not any("location" in name for name, _ in unit.named_parameters())
    embedded = PrototypeUnit(8, 4, (4, 4), location_embedding=True, skip=False).eval()
    plain = PrototypeUnit(8, 4, (4, 4), location_embedding=False, skip=False).eval()
    plain.prototype_head.load_state_dict(embedded.prototype_head.state_dict())
    features = torch.randn(1, 8, 4, 4)
    assert torch.allclose(embedded(features).features, plain(features + embedded.location).features, atol=1e-6)


def test_location_embedding_follows_other_sizes() -> None:
    unit = PrototypeUnit(8, 4, (4, 4)).eval()
    assert unit(torch.randn(2, 8, 6, 2)).features.shape == (2, 8, 6, 2)


def test_losses_only_in_training_mode() -> None:
    unit = PrototypeUnit(8, 4, (4, 4))
    features = torch.randn(2, 8, 4, 4)
    trained = unit.train()(features)
    assert trained.compactness is not None and trained.separation is not None
    evaluated = unit.eval()(features)
    assert evaluated.compactness is None and evaluated.separation is None


def test_compactness_hand_computed() -> None:
    queries = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])  # (B=1, N=2, C=2)
    prototypes = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, M=2, C)
    addressing = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]])  # nearest: 0, then 1
    # errors: (1-1)^2 + 0 + 0 + (3-1)^2 = 4 over 4 elements
    assert compactness_loss(queries, prototypes, addressing).item() == pytest.approx(1.0)


def test_separation_hand_computed() -> None:
    # Two identical prototypes (distance 0 -> hinge 1), two orthogonal ones (distance 2 -> 0).
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    orthogonal = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert separation_loss(same).item() == pytest.approx(1.0)
    assert separation_loss(orthogonal).item() == pytest.approx(0.0, abs=1e-6)
    # Three prototypes at 60 degrees pairwise apart have squared distance 1: the margin.
    angles = torch.tensor([0.0, 1.0, 2.0]) * torch.pi / 3
    fan = torch.stack([angles.cos(), angles.sin()], dim=-1)[None]
    # pairs (0,1) and (1,2) sit on the margin, (0,2) is beyond it -> 0
    assert separation_loss(fan).item() == pytest.approx(0.0, abs=1e-5)
    # Batch mean.
    assert separation_loss(torch.cat([same, orthogonal])).item() == pytest.approx(0.5)


def test_multiscale_output_and_paper_sizes() -> None:
    memory = MultiScalePrototypeMemory(channels=8, bottleneck_size=(16, 16), scales=(8, 16), num_prototypes=5)
    assert [tuple(unit.location.shape[-2:]) for unit in memory.units] == [(8, 8), (16, 16)]
    output = memory(torch.randn(2, 8, 16, 16))
    assert output.features.shape == (2, 16, 16, 16)
    assert output.compactness.ndim == 0 and output.separation.ndim == 0


def test_multiscale_concatenates_branches_in_scale_order() -> None:
    memory = MultiScalePrototypeMemory(channels=4, bottleneck_size=(4, 4), scales=(2, 4), num_prototypes=3).eval()
    features = torch.randn(1, 4, 4, 4)
    output = memory(features).features
    direct = memory.units[1](features).features
    assert torch.allclose(output[:, 4:], direct)
    pooled = memory.units[0](F.adaptive_max_pool2d(features, 2)).features
    assert torch.allclose(output[:, :4], F.interpolate(pooled, size=(4, 4), mode="bilinear", align_corners=False))


@pytest.mark.parametrize("scales", [(0,), (17,), ()])
def test_scale_the_bottleneck_cannot_hold(scales: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="memory_scales"):
        MultiScalePrototypeMemory(channels=4, bottleneck_size=(16, 16), scales=scales)


def test_pooled_size_non_square() -> None:
    assert pooled_size(16, (16, 16)) == (16, 16)
    assert pooled_size(8, (8, 16)) == (4, 8)
    assert pooled_size(1, (4, 8)) == (1, 1)


def test_normalize_query_puts_queries_on_the_prototype_scale() -> None:
    torch.manual_seed(0)
    features = 10 * torch.randn(2, 8, 4, 4)
    raw = PrototypeUnit(8, 4, (4, 4), location_embedding=False)
    normalised = PrototypeUnit(8, 4, (4, 4), location_embedding=False, normalize_query=True)
    normalised.load_state_dict(raw.state_dict())
    # Compactness compares queries with unit-norm prototypes: large with raw queries of norm ~28,
    # at most 4/C (unit vectors at distance <= 2) once queries are normalised.
    assert raw(features).compactness > 1.0
    assert normalised(features).compactness <= 4 / 8 + 1e-6
    # The skip connection still adds the unnormalised features.
    normalised.eval()
    readout = normalised(features).features
    assert torch.allclose((readout - features).norm(dim=1), torch.ones(2, 4, 4), atol=1e-5)
