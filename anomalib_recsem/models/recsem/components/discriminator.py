"""Discriminative networks that segment defects from (reconstruction, input) pairs.

Two designs are offered:

* ``"unet"``: DRAEM's discriminative U-Net on the channel concatenation of the two images
  (the network in the authors' code, reused from anomalib);
* ``"fusion"``: the multi-scale deep-feature-fusion network of the paper's figure: one
  encoder with shared weights applied to each image, the two feature maps concatenated
  at each of the six scales and decoded by a U-Net decoder with doubled skip inputs.
"""

from __future__ import annotations

import torch
from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork, EncoderDiscriminative
from torch import nn

from .decoder import conv_bn_relu

DISCRIMINATORS = ("unet", "fusion")


class ConcatDiscriminator(nn.Module):
    """DRAEM's U-Net on ``concat(reconstruction, image)``, with a 1x1 output convolution.

    Args:
        in_channels: Channels of one image.
        base_width: Width of the first encoder block.
    """

    def __init__(self, in_channels: int = 3, base_width: int = 64) -> None:
        super().__init__()
        self.network = DiscriminativeSubNetwork(in_channels=2 * in_channels, out_channels=2, base_width=base_width)
        # anomalib's U-Net ends in a 3x3 convolution; the authors' copy of DRAEM's ends in a 1x1.
        self.network.decoder_segment.fin_out = nn.Conv2d(base_width, 2, kernel_size=1)

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Segment.

        Args:
            reconstruction: Reconstructed image, shape ``(B, C, H, W)``.
            image: The image to compare with, shape ``(B, C, H, W)``.

        Returns:
            torch.Tensor: Logits (normal, defect), shape ``(B, 2, H, W)``.
        """
        return self.network(torch.cat([reconstruction, image], dim=1))


class FusionDiscriminator(nn.Module):
    """Siamese encoder whose per-scale features of both images are fused in the decoder.

    Args:
        in_channels: Channels of one image.
        base_width: Width of the first encoder block.
    """

    def __init__(self, in_channels: int = 3, base_width: int = 64) -> None:
        super().__init__()
        self.encoder = EncoderDiscriminative(in_channels, base_width)
        b = base_width
        # (fused skip channels, output channels) per up-stage, deepest first; skips are
        # doubled because both images contribute features at every scale.
        stages = [(2 * 8 * b, 8 * b), (2 * 8 * b, 4 * b), (2 * 4 * b, 2 * b), (2 * 2 * b, b), (2 * b, b)]
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        below = 2 * 8 * b
        for index, (skip, out) in enumerate(stages):
            # As in DRAEM's decoder, the first up-sampling keeps 8b channels.
            up_out = out if index else 8 * b
            self.up.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                    *conv_bn_relu(below, up_out),
                ),
            )
            self.merge.append(nn.Sequential(*conv_bn_relu(up_out + skip, out), *conv_bn_relu(out, out)))
            below = out
        self.head = nn.Conv2d(b, 2, kernel_size=1)

    def forward(self, reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Segment.

        Args:
            reconstruction: Reconstructed image, shape ``(B, C, H, W)``.
            image: The image to compare with, shape ``(B, C, H, W)``.

        Returns:
            torch.Tensor: Logits (normal, defect), shape ``(B, 2, H, W)``.
        """
        # Two separate passes rather than one over the stacked pair: batch norm then sees
        # each image set on its own, as in the authors' code.
        fused = [
            torch.cat(pair, dim=1) for pair in zip(self.encoder(reconstruction), self.encoder(image), strict=True)
        ]
        x = fused[-1]
        for up, merge, skip in zip(self.up, self.merge, reversed(fused[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_discriminator(name: str, in_channels: int, base_width: int) -> nn.Module:
    """Build a discriminator by name.

    Args:
        name: ``"unet"`` or ``"fusion"``.
        in_channels: Channels of one image.
        base_width: Width of the first encoder block.

    Returns:
        nn.Module: A module called as ``module(reconstruction, image)``.

    Raises:
        ValueError: For an unknown name.
    """
    if name == "unet":
        return ConcatDiscriminator(in_channels, base_width)
    if name == "fusion":
        return FusionDiscriminator(in_channels, base_width)
    msg = f"discriminator must be one of {DISCRIMINATORS}, got {name!r}."
    raise ValueError(msg)
