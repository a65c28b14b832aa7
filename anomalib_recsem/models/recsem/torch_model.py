"""PyTorch model of RecSem (Wang & Jin, 2023).

RecSem reconstructs a defect-free version of its input with an encoder, a multi-scale
location-augmented prototype memory and a decoder, then segments defects with a
discriminative network that compares the reconstruction with the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import InferenceBatch
from anomalib.models.image.draem.torch_model import EncoderReconstructive
from torch import nn

from .decoder import ReconstructionDecoder
from .discriminator import build_discriminator
from .memory import MultiScalePrototypeMemory

#: The five-block encoder halves the resolution four times; the discriminator's six-block
#: U-Net five times, which is why image sides must be multiples of 32.
BOTTLENECK_STRIDE = 16
SIZE_MULTIPLE = 32


class RecSemOutput(NamedTuple):
    """Training-mode output of :class:`RecSemModel`.

    Attributes:
        reconstruction: Reconstructed image, ``(B, C, H, W)``.
        logits: Discriminator logits (normal, defect), ``(B, 2, H, W)``.
        compactness: Memory compactness loss summed over scales (scalar).
        separation: Memory separation loss summed over scales (scalar).
    """

    reconstruction: torch.Tensor
    logits: torch.Tensor
    compactness: torch.Tensor
    separation: torch.Tensor


def check_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """Normalise ``image_size`` to ``(height, width)`` and check it.

    Args:
        image_size: An int for square images or ``(height, width)``.

    Returns:
        tuple[int, int]: ``(height, width)``.

    Raises:
        ValueError: If a side is not a positive multiple of 32.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(side) for side in image_size)
    if len(size) != 2 or any(side <= 0 or side % SIZE_MULTIPLE for side in size):
        msg = (
            f"image_size must be an int or (height, width) whose sides are positive multiples of {SIZE_MULTIPLE} "
            f"(e.g. 64, 128, 256, 512), got {image_size!r}."
        )
        raise ValueError(msg)
    return size  # type: ignore[return-value]


def default_memory_scales(image_size: tuple[int, int]) -> tuple[int, int]:
    """The paper's scales ``(8, 16)`` at 256 px, scaled with the image size.

    Args:
        image_size: ``(height, width)``.

    Returns:
        tuple[int, int]: Half the bottleneck's longer side, and the whole of it.
    """
    longest = max(image_size) // BOTTLENECK_STRIDE
    return (max(1, longest // 2), longest)


class RecSemModel(nn.Module):
    """RecSem network: reconstruction through prototype memory, then discrimination.

    Args:
        image_size: ``(height, width)`` the network is built for; sides must be multiples of
            32. It sizes the location embeddings; other sizes still run (the embeddings are
            resized) but are not what the model was trained on.
        in_channels: Image channels.
        reconstruction_width: Width of the first encoder block; the bottleneck has
            ``8 * reconstruction_width`` channels.
        discriminator_width: Width of the first discriminator block.
        memory_scales: Memory scales (longer side of each pooled bottleneck). ``None``
            gives the paper's ``(8, 16)`` at 256 px, scaled with the image size.
        num_prototypes: Prototypes per memory unit.
        location_embedding: Learned location embedding in every memory unit.
        memory_skip: Add each memory unit's input to its read-out.
        normalize_query: L2-normalise memory queries (an ablation of method.md D18; off in
            the paper).
        discriminator: ``"unet"`` (DRAEM's U-Net on the concatenated pair, as in the
            authors' code) or ``"fusion"`` (Siamese encoder with per-scale fusion, as in the
            paper's figure).
        detach_reconstruction: Stop the segmentation loss from training the reconstruction
            network.
        score_kernel_size: Side of the mean filter applied to the anomaly map before scoring.
        score_top_k: The image score is the mean of this many largest filtered values.

    Example:
        >>> model = RecSemModel((64, 64), reconstruction_width=8, discriminator_width=4).eval()
        >>> output = model(torch.rand(2, 3, 64, 64))
        >>> output.anomaly_map.shape, output.pred_score.shape
        (torch.Size([2, 64, 64]), torch.Size([2]))
    """

    def __init__(
        self,
        image_size: int | Sequence[int] = (256, 256),
        in_channels: int = 3,
        reconstruction_width: int = 128,
        discriminator_width: int = 64,
        memory_scales: Sequence[int] | None = None,
        num_prototypes: int = 50,
        location_embedding: bool = True,
        memory_skip: bool = True,
        normalize_query: bool = False,
        discriminator: str = "unet",
        detach_reconstruction: bool = False,
        score_kernel_size: int = 21,
        score_top_k: int = 5,
    ) -> None:
        super().__init__()
        self.image_size = check_image_size(image_size)
        if score_kernel_size < 1 or score_kernel_size % 2 == 0:
            msg = f"score_kernel_size must be a positive odd integer, got {score_kernel_size}."
            raise ValueError(msg)
        if score_top_k < 1:
            msg = f"score_top_k must be a positive integer, got {score_top_k}."
            raise ValueError(msg)
        bottleneck = (self.image_size[0] // BOTTLENECK_STRIDE, self.image_size[1] // BOTTLENECK_STRIDE)
        channels = 8 * reconstruction_width
        self.memory_scales = tuple(memory_scales) if memory_scales is not None else default_memory_scales(self.image_size)
        self.encoder = EncoderReconstructive(in_channels, reconstruction_width)
        self.memory = MultiScalePrototypeMemory(
            channels,
            bottleneck,
            self.memory_scales,
            num_prototypes=num_prototypes,
            location_embedding=location_embedding,
            skip=memory_skip,
            normalize_query=normalize_query,
        )
        self.decoder = ReconstructionDecoder(channels, len(self.memory_scales), out_channels=in_channels)
        self.discriminator = build_discriminator(discriminator, in_channels, discriminator_width)
        self.detach_reconstruction = detach_reconstruction
        self.score_kernel_size = score_kernel_size
        self.score_top_k = score_top_k

    def reconstruct(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Reconstruct a defect-free image.

        Args:
            image: Input images, ``(B, C, H, W)``.

        Returns:
            tuple: Reconstruction ``(B, C, H, W)``, then the memory's compactness and
            separation losses (``None`` in eval mode).
        """
        memory = self.memory(self.encoder(image))
        return self.decoder(memory.features), memory.compactness, memory.separation

    def forward(self, image: torch.Tensor, original: torch.Tensor | None = None) -> RecSemOutput | InferenceBatch:
        """Reconstruct and segment.

        Args:
            image: Images to reconstruct, ``(B, C, H, W)``; with synthetic defects in training.
            original: Image the discriminator compares the reconstruction with. ``None``
                means ``image``, which is always the case at inference.

        Returns:
            RecSemOutput in training mode. In eval mode an ``InferenceBatch`` with
            ``anomaly_map`` (``(B, H, W)``, the defect probability) and ``pred_score``
            (``(B,)``, the mean of the ``score_top_k`` largest values of the mean-filtered
            map).
        """
        reconstruction, compactness, separation = self.reconstruct(image)
        discriminator_input = reconstruction.detach() if self.detach_reconstruction else reconstruction
        logits = self.discriminator(discriminator_input, image if original is None else original)
        if self.training:
            return RecSemOutput(reconstruction, logits, compactness, separation)

        anomaly_map = torch.softmax(logits, dim=1)[:, 1:]
        return InferenceBatch(pred_score=self.image_score(anomaly_map), anomaly_map=anomaly_map.squeeze(1))

    def image_score(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Image score from a pixel anomaly map.

        Padding counts as zero in the mean filter, so defects at the border weigh a little
        less, as in the authors' evaluation.

        Args:
            anomaly_map: Defect probability, ``(B, 1, H, W)``.

        Returns:
            torch.Tensor: Scores, ``(B,)``.
        """
        smoothed = F.avg_pool2d(
            anomaly_map,
            self.score_kernel_size,
            stride=1,
            padding=self.score_kernel_size // 2,
            count_include_pad=True,
        )
        k = min(self.score_top_k, smoothed[0].numel())
        return smoothed.flatten(1).topk(k, dim=1).values.mean(dim=1)
