"""RecSem's training epochs, built from images decoded and resized once per run.

The authors' epoch holds every training image ``negative_aug_ratio`` times as it is and
``positive_aug_ratio`` times with a synthetic defect, shuffled as one set, in batches of
``B``: one batch is one optimiser step. :class:`DefectEpochs` is that epoch over images
kept in memory (on the training device when they fit), so after the first pass an epoch
reads no files and a batch is one gather. :class:`InMemoryTrainingData` is the Lightning
callback that reads the datamodule's training set once, through its own loader (so its
workers decode and the model's resize is applied), and points the fit loop at the new
loader.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
from anomalib.data import ImageBatch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

logger = logging.getLogger(__name__)

#: Share of the free accelerator memory the images may take before they stay in host memory.
DEVICE_MEMORY_SHARE = 0.25
#: How far outside [0, 1] a pre-processed pixel may lie: a bicubic resize overshoots sharp
#: edges by about a tenth, a Normalize moves pixels by whole units.
PIXEL_RANGE_SLACK = 0.25
#: Transforms that give the same output at every call, so applying them once per run loses nothing.
DETERMINISTIC_TRANSFORMS = (v2.Resize, v2.CenterCrop, v2.Normalize, v2.ToDtype, v2.Grayscale, v2.ToImage)


class DefectEpochs(Dataset):
    """The authors' epoch: each image ``negative`` times clean, ``positive`` times to be made defective.

    Index ``i`` is image ``i mod N``; indices from ``N * negative`` on are the defect copies.
    A shuffled ``DataLoader`` over it therefore sees the same mix and order statistics as
    the authors' ``DataLoader(shuffle=True)`` over ``N * (negative + positive)`` samples.

    Args:
        images: Training images ``(N, C, H, W)`` in ``[0, 1]``, at the model's size. Kept
            as they are (any dtype and device); batches come out as float32 on that
            device, their flags on the CPU.
        positive: Copies of each image with a defect per epoch.
        negative: Copies of each image without one.

    Example:
        >>> epochs = DefectEpochs(torch.rand(5, 3, 32, 32), positive=1, negative=2)
        >>> len(epochs)
        15
        >>> batch = epochs.__getitems__([0, 11])
        >>> batch.gt_label.tolist()
        [False, True]
    """

    def __init__(self, images: torch.Tensor, positive: int, negative: int) -> None:
        self.images = images
        self.positive = positive
        self.negative = negative

    def __len__(self) -> int:
        return len(self.images) * (self.positive + self.negative)

    def __getitems__(self, indices: list[int]) -> ImageBatch:
        """Gather one batch.

        Args:
            indices: Sample indices in ``[0, len(self))``.

        Returns:
            ImageBatch: ``image`` ``(B, C, H, W)`` float32 on the images' device and
            ``gt_label`` ``(B,)`` bool on the CPU, true for the samples that get a synthetic
            defect (read on the host, where reading them does not wait for a GPU).
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        count = len(self.images)
        # Copied without waiting: a blocking copy to a GPU would wait for the previous step.
        image = self.images[(index % count).to(self.images.device, non_blocking=True)].float()
        return ImageBatch(image=image, gt_label=index >= count * self.negative)

    def __getitem__(self, index: int) -> ImageBatch:
        return self.__getitems__([index])


def random_transforms(transform: Any) -> list[str]:  # noqa: ANN401
    """Names of the parts of a torchvision transform that may give another output at each call.

    Args:
        transform: A transform, a ``Compose`` of transforms, or None.

    Returns:
        list[str]: Class names of the parts that are not :data:`DETERMINISTIC_TRANSFORMS`.
    """
    if transform is None:
        return []
    if isinstance(transform, v2.Compose):
        return [name for part in transform.transforms for name in random_transforms(part)]
    return [] if isinstance(transform, DETERMINISTIC_TRANSFORMS) else [type(transform).__name__]


def _pre_processed_when_read(*args: Any, **kwargs: Any) -> None:  # noqa: ANN401
    """Stands in for the pre-processor's training-batch hook while the in-memory images train."""
    del args, kwargs


def keep_batch(batch: ImageBatch) -> ImageBatch:
    """Collate function for :class:`DefectEpochs`: its batches are already collated."""
    return batch


def read_training_images(loader: DataLoader, transform: Any | None) -> torch.Tensor:  # noqa: ANN401
    """Decode every training image once, in dataset order.

    Args:
        loader: The datamodule's training loader; its dataset, batch size, workers and
            collate function are reused, without shuffling and without drawing from the
            global random generators.
        transform: The model's pre-processing transform (applied as in training), or None.

    Returns:
        torch.Tensor: ``(N, C, H, W)`` float16 images on the CPU.

    Raises:
        ValueError: If an image has NaN or infinite pixels (the message names the files), or
            the transform leaves the pixel range ``[0, 1]`` (a ``Normalize``).
    """
    once = DataLoader(
        loader.dataset,
        batch_size=loader.batch_size or 1,
        shuffle=False,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        generator=torch.Generator(),
    )
    images = []
    for batch in once:
        image = batch.image if transform is None else transform(batch.image)
        finite = torch.isfinite(image.flatten(1)).all(dim=1)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten().tolist()
            paths = [str(batch.image_path[i]) for i in bad] if batch.image_path is not None else bad
            msg = f"Training images contain NaN or infinite pixel values: {paths}. Fix or remove these files."
            raise ValueError(msg)
        low, high = float(image.min()), float(image.max())
        if low < -PIXEL_RANGE_SLACK or high > 1 + PIXEL_RANGE_SLACK:
            msg = (
                f"Training images must have pixels in [0, 1] after the model's pre-processor, but its transform "
                f"({transform}) gives values in [{low:.3g}, {high:.3g}]. RecSem draws its synthetic defects in [0, 1] "
                f"and normalises inside the network (so exported models include it): remove a Normalize from "
                f"the pre-processor's transform."
            )
            raise ValueError(msg)
        # float16 halves the memory; the rounding (below 2.5e-4 in [0, 1]) is far under
        # what an image's own noise is.
        images.append(image.to(torch.float16))
    return torch.cat(images)


def storage_device(images: torch.Tensor, device: torch.device) -> torch.device:
    """Where the images should live: the accelerator when they take a small share of its free memory."""
    if device.type != "cuda":
        return torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(device)
    size = images.numel() * images.element_size()
    return device if size <= DEVICE_MEMORY_SHARE * free else torch.device("cpu")


class InMemoryTrainingData(pl.Callback):
    """Replace the training loader with :class:`DefectEpochs` over images read once.

    At ``setup("fit")`` the datamodule's (or the given) training loader is read once, and
    the fit loop's data source becomes a loader over :class:`DefectEpochs` with the same
    batch size. Lightning still adds its distributed sampler under DDP, and the shuffle
    draws from the global generator, so seeding and resuming behave as with any loader.

    Args:
        positive: Copies of each image with a defect per epoch.
        negative: Copies of each image without one.
    """

    def __init__(self, positive: int, negative: int) -> None:
        self.positive = positive
        self.negative = negative
        self._original: Any = None
        self._pre_processor: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Read the training images and install the in-memory loader (fit only)."""
        if stage != "fit":
            return
        # Lightning keeps where the training loader comes from (a datamodule, the module or a
        # loader) in the fit loop's data source; it has no public setter.
        source = trainer.fit_loop._data_source  # noqa: SLF001
        self._original = source.instance
        loader = source.dataloader()
        pre_processor = getattr(pl_module, "pre_processor", None)
        transform = getattr(pre_processor, "transform", None)
        drawn_once = random_transforms(getattr(loader.dataset, "augmentations", None)) + random_transforms(transform)
        if drawn_once:
            rank_zero_warn(
                f"RecSem reads the training images once per run and keeps them, pre-processed, so their random "
                f"transforms ({', '.join(drawn_once)}) were drawn once: each image keeps the same draw for the whole "
                "run. RecSem's own light augmentation and synthetic defects are drawn afresh at every step.",
            )
        images = read_training_images(loader, transform)
        if transform is not None:
            # anomalib's pre-processor transforms every training batch; these were transformed when read.
            pre_processor.on_train_batch_start = _pre_processed_when_read
            self._pre_processor = pre_processor
        images = images.to(storage_device(images, trainer.strategy.root_device))
        logger.info("Training on %d images kept in %s memory.", len(images), images.device.type)
        source.instance = DataLoader(
            DefectEpochs(images, self.positive, self.negative),
            batch_size=loader.batch_size,
            shuffle=True,
            collate_fn=keep_batch,
        )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Give the fit loop its original data source and the pre-processor its training hook back."""
        if stage == "fit":
            self._restore(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Restore as at teardown, which Lightning skips when a fit fails."""
        self._restore(trainer)

    def _restore(self, trainer: pl.Trainer) -> None:
        if self._original is not None:
            trainer.fit_loop._data_source.instance = self._original  # noqa: SLF001
            self._original = None
        if self._pre_processor is not None:
            vars(self._pre_processor).pop("on_train_batch_start", None)
            self._pre_processor = None
