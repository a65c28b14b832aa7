"""Decoder of RecSem's reconstruction network."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> list[nn.Module]:
    """Convolution (same padding), batch norm and ReLU, as a list to splice into a Sequential."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class ReconstructionDecoder(nn.Module):
    """Turns the prototype memory's output back into an image.

    A 1x1 fusion (``C * num_scales -> C -> C``) merges the memory scales, then four stages
    of [bilinear x2, 2 x (Conv3x3-BN-ReLU)] halve the channels and double the resolution,
    and a 1x1 convolution maps to image channels. There is no output activation: the
    output is compared with the target image directly.

    Args:
        channels: Bottleneck channels ``C`` (8 x the reconstruction width).
        num_scales: Number of memory scales concatenated in the input.
        out_channels: Image channels.

    Example:
        >>> decoder = ReconstructionDecoder(channels=1024, num_scales=2)
        >>> decoder(torch.randn(2, 2048, 16, 16)).shape
        torch.Size([2, 3, 256, 256])
    """

    def __init__(self, channels: int, num_scales: int, out_channels: int = 3) -> None:
        super().__init__()
        self.fusion = nn.Sequential(
            *conv_bn_relu(channels * num_scales, channels, kernel_size=1),
            *conv_bn_relu(channels, channels, kernel_size=1),
        )
        stages = []
        width = channels
        for _ in range(4):
            stages.append(
                nn.Sequential(
                    nn.UpsamplingBilinear2d(scale_factor=2),
                    *conv_bn_relu(width, width // 2),
                    *conv_bn_relu(width // 2, width // 2),
                ),
            )
            width //= 2
        self.stages = nn.Sequential(*stages)
        self.output = nn.Conv2d(width, out_channels, kernel_size=1)

    def forward(self, memory_features: torch.Tensor) -> torch.Tensor:
        """Decode.

        Args:
            memory_features: Concatenated memory read-outs, shape ``(B, C * K, h, w)``.

        Returns:
            torch.Tensor: Reconstruction, shape ``(B, out_channels, 16h, 16w)``.
        """
        return self.output(self.stages(self.fusion(memory_features)))
