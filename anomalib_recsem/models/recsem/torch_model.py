"""PyTorch model of RecSem (Wang & Jin, 2023).

RecSem reconstructs a defect-free version of its input with an encoder, a multi-scale
location-augmented prototype memory and a decoder, then segments defects with a
discriminative network that compares the reconstruction with the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import InferenceBatch
from anomalib.models.image.draem.torch_model import EncoderReconstructive
from torch import nn

from anomalib_recsem.options import check_flag, check_integer

from .components.decoder import ReconstructionDecoder
from .components.discriminator import build_discriminator
from .components.memory import MultiScalePrototypeMemory

#: The five-block encoder halves the resolution four times; the discriminator's six-block
#: U-Net five times, which is why image sides must be multiples of 32.
BOTTLENECK_STRIDE = 16
SIZE_MULTIPLE = 32
#: The image score's mean filter in the authors' evaluation, at their image size.
PAPER_SCORE_KERNEL_SIZE = 21
PAPER_IMAGE_SIZE = 256
#: The authors normalise images with ImageNet's statistics before the networks see them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RecSemOutput(NamedTuple):
    """Training-mode output of :class:`RecSemModel`.

    Attributes:
        reconstruction: Reconstructed image in the networks' normalised space (see
            :meth:`RecSemModel.normalize`), ``(B, C, H, W)``.
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


def default_score_kernel_size(image_size: tuple[int, int]) -> int:
    """The paper's 21 px mean filter at 256 px, scaled with the image size to the nearest odd side.

    The filter then covers the same share of the image at every size. At 128 px the paper's
    21 px would cover 3.6 times that share, averaging a small defect with that much more
    intact surface.

    Args:
        image_size: ``(height, width)``.

    Returns:
        int: An odd filter side, at least 1 (11 at 128 px, 5 at 64 px).
    """
    scaled = PAPER_SCORE_KERNEL_SIZE * max(image_size) / PAPER_IMAGE_SIZE
    return max(1, 2 * math.floor((scaled - 1) / 2 + 0.5) + 1)


def top_k_mean_filtered(anomaly_map: torch.Tensor, kernel_size: int, top_k: int) -> torch.Tensor:
    """The mean of the ``top_k`` largest values of the mean-filtered map (zero padding counts).

    Args:
        anomaly_map: ``(B, 1, H, W)``.
        kernel_size: Odd side of the mean filter.
        top_k: Values averaged (at most ``H * W``).

    Returns:
        torch.Tensor: Scores, ``(B,)``.
    """
    smoothed = F.avg_pool2d(anomaly_map, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=True)
    k = min(top_k, smoothed[0].numel())
    return smoothed.flatten(1).topk(k, dim=1).values.mean(dim=1)


class RecSemModel(nn.Module):
    """RecSem network: reconstruction through prototype memory, then discrimination.

    Images come in ``[0, 1]`` and are normalised with ImageNet's mean and standard deviation
    inside the model, as in the authors' code, so exported models need no extra step. Early in
    training this matters: a decoder that starts near 0 is near the mean image in normalised
    space, while in ``[0, 1]`` it must first learn the images' grey level and colour.

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
        normalize_query: L2-normalise memory queries to the prototypes' unit scale. On by
            default, unlike the authors' code: with unnormalised queries the compactness loss
            collapses the reconstruction (see the model README). ``False`` is the authors' unit.
        discriminator: ``"unet"`` (DRAEM's U-Net on the concatenated pair, as in the
            authors' code) or ``"fusion"`` (Siamese encoder with per-scale fusion, as in the
            paper's figure).
        detach_reconstruction: Stop the segmentation loss from training the reconstruction
            network.
        score_kernel_size: Side of the mean filter applied to the anomaly map before scoring
            (odd). ``None`` gives the paper's 21 at 256 px, scaled with the image size.
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
        normalize_query: bool = True,
        discriminator: str = "unet",
        detach_reconstruction: bool = False,
        score_kernel_size: int | None = None,
        score_top_k: int = 5,
    ) -> None:
        super().__init__()
        self.image_size = check_image_size(image_size)
        if score_kernel_size is None:
            score_kernel_size = default_score_kernel_size(self.image_size)
        score_kernel_size = check_integer("score_kernel_size", score_kernel_size, minimum=1)
        if score_kernel_size % 2 == 0:
            msg = f"score_kernel_size must be a positive odd integer, got {score_kernel_size!r}."
            raise ValueError(msg)
        score_top_k = check_integer("score_top_k", score_top_k, minimum=1)
        in_channels = check_integer("in_channels", in_channels, minimum=1)
        # The decoder halves 8 x reconstruction_width channels four times.
        reconstruction_width = check_integer("reconstruction_width", reconstruction_width, minimum=2)
        discriminator_width = check_integer("discriminator_width", discriminator_width, minimum=1)
        location_embedding, memory_skip, normalize_query, detach_reconstruction = (
            check_flag(name, value) for name, value in (
                ("location_embedding", location_embedding), ("memory_skip", memory_skip),
                ("normalize_query", normalize_query), ("detach_reconstruction", detach_reconstruction)))
        # Each scale is checked by the memory itself.
        if memory_scales is not None and (isinstance(memory_scales, (str, bytes))
                                          or not isinstance(memory_scales, Iterable)):
            msg = f"memory_scales must be a sequence of integers or None, got {memory_scales!r}."
            raise ValueError(msg)
        bottleneck = (self.image_size[0] // BOTTLENECK_STRIDE, self.image_size[1] // BOTTLENECK_STRIDE)
        channels = 8 * reconstruction_width
        self.encoder = EncoderReconstructive(in_channels, reconstruction_width)
        self.memory = MultiScalePrototypeMemory(
            channels,
            bottleneck,
            default_memory_scales(self.image_size) if memory_scales is None else tuple(memory_scales),
            num_prototypes=num_prototypes,
            location_embedding=location_embedding,
            skip=memory_skip,
            normalize_query=normalize_query,
        )
        self.memory_scales = self.memory.scales  # as checked: Python ints
        self.decoder = ReconstructionDecoder(channels, len(self.memory_scales), out_channels=in_channels)
        self.discriminator = build_discriminator(discriminator, in_channels, discriminator_width)
        self.detach_reconstruction = detach_reconstruction
        self.score_kernel_size = score_kernel_size
        self.score_top_k = score_top_k
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_channels == 3 else ((0.449,), (0.226,))  # noqa: PLR2004
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` to the networks' normalised space (ImageNet mean and std)."""
        return (image - self.pixel_mean) / self.pixel_std

    def _reconstruct(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        memory = self.memory(self.encoder(self.normalize(image)))
        return self.decoder(memory.features), memory.compactness, memory.separation

    def reconstruct(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Reconstruct a defect-free image.

        Args:
            image: Input images in ``[0, 1]``, ``(B, C, H, W)``.

        Returns:
            tuple: Reconstruction ``(B, C, H, W)`` in pixel space (``[0, 1]`` when it is
            good), then the memory's compactness and separation losses (``None`` in eval mode).
        """
        reconstruction, compactness, separation = self._reconstruct(image)
        return reconstruction * self.pixel_std + self.pixel_mean, compactness, separation

    def discriminate(self, reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Segment what differs between a reconstruction and an image.

        Args:
            reconstruction: Reconstructed images in normalised space (as :meth:`_reconstruct`
                gives them), ``(B, C, H, W)``.
            image: Images in ``[0, 1]`` to compare with, ``(B, C, H, W)``.

        Returns:
            torch.Tensor: Logits (normal, defect), ``(B, 2, H, W)``.
        """
        if self.detach_reconstruction:
            reconstruction = reconstruction.detach()
        return self.discriminator(reconstruction, self.normalize(image))

    def predict(self, logits: torch.Tensor) -> InferenceBatch:
        """Anomaly map and image score from the discriminator's logits.

        Args:
            logits: ``(B, 2, H, W)``.

        Returns:
            InferenceBatch: ``anomaly_map`` ``(B, H, W)`` (the defect probability) and
            ``pred_score`` ``(B,)`` (the mean of the ``score_top_k`` largest values of the
            mean-filtered map).
        """
        anomaly_map = torch.softmax(logits.float(), dim=1)[:, 1:]
        return InferenceBatch(pred_score=self.image_score(anomaly_map), anomaly_map=anomaly_map.squeeze(1))

    def detect(self, image: torch.Tensor) -> tuple[InferenceBatch, torch.Tensor]:
        """Eval-mode prediction together with the reconstruction behind it, in one pass.

        Args:
            image: Images in ``[0, 1]``, ``(B, C, H, W)``.

        Returns:
            tuple: The prediction (see :meth:`predict`) and the reconstruction in pixel space.
        """
        reconstruction, _, _ = self._reconstruct(image)
        prediction = self.predict(self.discriminate(reconstruction, image))
        return prediction, reconstruction * self.pixel_std + self.pixel_mean

    def forward(self, image: torch.Tensor, original: torch.Tensor | None = None) -> RecSemOutput | InferenceBatch:
        """Reconstruct and segment.

        Args:
            image: Images to reconstruct, ``(B, C, H, W)``; with synthetic defects in training.
            original: Image the discriminator compares the reconstruction with. ``None``
                means ``image``, which is always the case at inference.

        Returns:
            RecSemOutput in training mode, an ``InferenceBatch`` (see :meth:`predict`) in eval mode.
        """
        reconstruction, compactness, separation = self._reconstruct(image)
        logits = self.discriminate(reconstruction, image if original is None else original)
        if self.training:
            return RecSemOutput(reconstruction, logits, compactness, separation)
        return self.predict(logits)

    def image_score(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Image score from a pixel anomaly map.

        Padding counts as zero in the mean filter, so defects at the border weigh a little
        less, as in the authors' evaluation.

        Args:
            anomaly_map: Defect probability, ``(B, 1, H, W)``.

        Returns:
            torch.Tensor: Scores, ``(B,)``.
        """
        return top_k_mean_filtered(anomaly_map, self.score_kernel_size, self.score_top_k)
