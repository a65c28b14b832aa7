"""Multi-scale, location-augmented dynamic prototype memory (the paper's mul-lcDPU).

A :class:`PrototypeUnit` summarises a feature map into a handful of per-image prototypes
and rebuilds every position from them. Normal training images teach the unit prototypes
that describe normal texture, so a defect, which no prototype describes, is not rebuilt.
:class:`MultiScalePrototypeMemory` runs one unit per spatial scale of the encoder's
bottleneck and concatenates the up-sampled results.

The unit follows the Dynamic Prototype Unit of MPN (Lv et al., CVPR 2021) as adapted by
Wang & Jin (2023). For a map ``Z`` (features plus location embedding) with positions
``z_n`` and a bias-free linear head ``W`` (``M x C``):

* position weights ``A = softmax_N(Z W^T)`` (each prototype attends over positions);
* prototypes ``p_m = normalize(sum_n A_nm z_n)``;
* addressing ``S = softmax_M(Z p^T)`` and read-out ``r_n = normalize(sum_m S_nm p_m)``;
* output ``r_n + z_n`` (the skip connection);
* compactness ``mean (z_n - p_k(n))^2`` with ``k(n) = argmax_m S_nm``, and separation
  ``mean_{i<j} max(0, 1 - |p_i - p_j|^2)``.

Under mixed precision the unit runs in float32: its softmaxes over hundreds of positions
and its normalisations lose too much in bfloat16.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from anomalib_recsem.options import check_integer


class PrototypeReadout(NamedTuple):
    """What a prototype unit returns.

    Attributes:
        features: Read-out features, shape ``(B, C, H, W)``.
        compactness: Mean squared distance of each position to its nearest prototype
            (scalar). ``None`` in eval mode.
        separation: Hinge loss pushing prototypes of an image apart (scalar). ``None`` in
            eval mode.
    """

    features: torch.Tensor
    compactness: torch.Tensor | None = None
    separation: torch.Tensor | None = None


class PrototypeUnit(nn.Module):
    """Dynamic prototype unit with an optional learned location embedding.

    For a feature map ``Z`` (after adding the location embedding) flattened to ``N``
    positions, a linear head gives each of ``M`` prototypes an attention over the
    positions (softmax over ``N``). Prototypes are the attention-weighted averages of the
    positions, L2-normalised. Every position then reads a softmax-weighted mix of the
    prototypes (softmax over ``M``), which is L2-normalised and, with ``skip``, added to
    ``Z``.

    Args:
        channels: Number of feature channels ``C``.
        num_prototypes: Number of prototypes ``M`` per image.
        size: Spatial size ``(h, w)`` the unit is built for. The location embedding has
            this size; feature maps of another size get a bilinearly resized copy.
        location_embedding: Add a learned ``(1, C, h, w)`` embedding to the features
            before addressing, so prototypes can depend on where a texture occurs.
        skip: Add the (embedded) input features to the read-out.
        normalize_query: L2-normalise each position before it forms and addresses the
            prototypes. The authors compare unnormalised queries with unit-norm
            prototypes, so the compactness loss mixes two scales; this puts both on one
            scale.
    """

    def __init__(
        self,
        channels: int,
        num_prototypes: int = 50,
        size: tuple[int, int] = (16, 16),
        location_embedding: bool = True,
        skip: bool = True,
        normalize_query: bool = False,
    ) -> None:
        super().__init__()
        # At least 2: the separation loss compares pairs.
        num_prototypes = check_integer("num_prototypes", num_prototypes, minimum=2)
        self.num_prototypes = num_prototypes
        self.skip = skip
        self.normalize_query = normalize_query
        self.location: nn.Parameter | None = (
            nn.Parameter(torch.randn(1, channels, *size)) if location_embedding else None
        )
        self.prototype_head = nn.Linear(channels, num_prototypes, bias=False)
        # The original initialises the head with bound 1/sqrt(M), not nn.Linear's 1/sqrt(C).
        bound = 1.0 / math.sqrt(num_prototypes)
        nn.init.uniform_(self.prototype_head.weight, -bound, bound)

    def forward(self, features: torch.Tensor) -> PrototypeReadout:
        """Rebuild a feature map from its prototypes.

        Args:
            features: Feature map, shape ``(B, C, H, W)``.

        Returns:
            PrototypeReadout: Features of shape ``(B, C, H, W)``; in training mode also the
            compactness and separation losses.
        """
        if torch.is_autocast_enabled(features.device.type):
            with torch.autocast(features.device.type, enabled=False):
                return self.forward(features.float())
        batch, channels, height, width = features.shape
        if self.location is not None:
            location = self.location
            if location.shape[-2:] != features.shape[-2:]:
                location = F.interpolate(location, size=(height, width), mode="bilinear", align_corners=False)
            features = features + location
        embedded = features.flatten(2).transpose(1, 2)  # (B, N, C)
        queries = F.normalize(embedded, dim=-1) if self.normalize_query else embedded

        # Softmax over positions: each prototype is a convex combination of positions.
        position_weights = torch.softmax(self.prototype_head(queries), dim=1)  # (B, N, M)
        prototypes = F.normalize(position_weights.transpose(1, 2) @ queries, dim=-1)  # (B, M, C)

        addressing = torch.softmax(queries @ prototypes.transpose(1, 2), dim=-1)  # (B, N, M)
        readout = F.normalize(addressing @ prototypes, dim=-1)  # (B, N, C)
        if self.skip:
            readout = readout + embedded
        readout = readout.transpose(1, 2).reshape(batch, channels, height, width)

        if not self.training:
            return PrototypeReadout(readout)
        return PrototypeReadout(
            readout,
            compactness=compactness_loss(queries, prototypes, addressing),
            separation=separation_loss(prototypes),
        )


def compactness_loss(queries: torch.Tensor, prototypes: torch.Tensor, addressing: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between each query and the prototype it attends to most.

    Args:
        queries: Position features, shape ``(B, N, C)``.
        prototypes: Unit-norm prototypes, shape ``(B, M, C)``.
        addressing: Attention of positions over prototypes, shape ``(B, N, M)``.

    Returns:
        torch.Tensor: Scalar loss, averaged over ``B``, ``N`` and ``C``.
    """
    nearest = addressing.argmax(dim=-1, keepdim=True).expand(-1, -1, prototypes.shape[-1])
    return F.mse_loss(queries, torch.gather(prototypes, 1, nearest))


def separation_loss(prototypes: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Hinge on the squared distance between every pair of an image's prototypes.

    For unit vectors a pair costs something while its squared distance is below
    ``margin`` (cosine above 0.5 for the default margin of 1).

    Args:
        prototypes: Unit-norm prototypes, shape ``(B, M, C)``.
        margin: Squared distance from which a pair costs nothing.

    Returns:
        torch.Tensor: Scalar loss: the mean over pairs ``i < j``, then over the batch.
    """
    num_prototypes = prototypes.shape[1]
    squared_distance = torch.cdist(prototypes, prototypes).pow(2)  # (B, M, M)
    # A 0/1 weight, not a boolean index: indexing by a mask has a data-dependent shape, which
    # breaks the graph that torch.compile traces.
    pairs = torch.triu(torch.ones_like(squared_distance[0]), diagonal=1)
    hinge = F.relu(margin - squared_distance) * pairs  # (B, M, M), zero off the pairs i < j
    return hinge.sum(dim=(1, 2)).mul(2.0 / (num_prototypes * (num_prototypes - 1))).mean()


def pooled_size(scale: int, bottleneck: tuple[int, int]) -> tuple[int, int]:
    """Size a memory scale pools a bottleneck to.

    The longer side of the bottleneck becomes ``scale`` and the shorter side shrinks in
    proportion, so for a square bottleneck a scale ``s`` means ``s x s`` as in the paper.

    Args:
        scale: Memory scale, at most the longer side of the bottleneck.
        bottleneck: Bottleneck size ``(h, w)``.

    Returns:
        tuple[int, int]: Pooled size ``(h', w')``.
    """
    longest = max(bottleneck)
    scale = min(scale, longest)
    return tuple(max(1, round(side * scale / longest)) for side in bottleneck)  # type: ignore[return-value]


class MultiScalePrototypeMemory(nn.Module):
    """One prototype unit per scale, run on pooled copies of the bottleneck.

    Each scale max-pools the bottleneck (identity when the scale equals its size),
    passes it through its own :class:`PrototypeUnit`, up-samples the result bilinearly to
    the bottleneck size and concatenates all scales along channels, in the given order.

    Args:
        channels: Bottleneck channels ``C``.
        bottleneck_size: Bottleneck size ``(h, w)`` for the configured image size.
        scales: Memory scales (sizes of the longer pooled side), each in
            ``1..max(bottleneck_size)``. The paper uses ``(8, 16)`` for a 16x16 bottleneck.
        num_prototypes: Prototypes per unit.
        location_embedding: Give every unit a learned location embedding.
        skip: Add each unit's input to its read-out.
        normalize_query: L2-normalise queries in every unit (see :class:`PrototypeUnit`).

    Raises:
        ValueError: If ``scales`` is empty or a scale does not fit the bottleneck.
    """

    def __init__(
        self,
        channels: int,
        bottleneck_size: tuple[int, int],
        scales: Sequence[int] = (8, 16),
        num_prototypes: int = 50,
        location_embedding: bool = True,
        skip: bool = True,
        normalize_query: bool = False,
    ) -> None:
        super().__init__()
        scales = tuple(check_integer("memory_scales", scale, minimum=1) for scale in scales)
        longest = max(bottleneck_size)
        if not scales or any(not 1 <= scale <= longest for scale in scales):
            msg = (
                f"memory_scales {list(scales)} do not fit the {bottleneck_size[0]}x{bottleneck_size[1]} bottleneck: "
                f"each scale must be an integer in 1..{longest} (the bottleneck is image_size/16)."
            )
            raise ValueError(msg)
        self.scales = scales
        self.units = nn.ModuleList(
            PrototypeUnit(
                channels,
                num_prototypes,
                pooled_size(scale, bottleneck_size),
                location_embedding=location_embedding,
                skip=skip,
                normalize_query=normalize_query,
            )
            for scale in scales
        )

    def forward(self, features: torch.Tensor) -> PrototypeReadout:
        """Run every scale and concatenate.

        Args:
            features: Bottleneck, shape ``(B, C, h, w)``.

        Returns:
            PrototypeReadout: Features of shape ``(B, C * len(scales), h, w)``; in training
            mode the compactness and separation losses summed over scales.
        """
        height, width = features.shape[-2:]
        outputs, compactness, separation = [], [], []
        for unit, scale in zip(self.units, self.scales, strict=True):
            # Sizes follow the actual bottleneck, so an image size other than the configured
            # one still works; the unit then resizes its location embedding.
            size = pooled_size(scale, (height, width))
            pooled = features if size == (height, width) else F.adaptive_max_pool2d(features, size)
            readout = unit(pooled)
            branch = readout.features
            if size != (height, width):
                branch = F.interpolate(branch, size=(height, width), mode="bilinear", align_corners=False)
            outputs.append(branch)
            compactness.append(readout.compactness)
            separation.append(readout.separation)
        merged = torch.cat(outputs, dim=1)
        if not self.training:
            return PrototypeReadout(merged)
        return PrototypeReadout(merged, torch.stack(compactness).sum(), torch.stack(separation).sum())
