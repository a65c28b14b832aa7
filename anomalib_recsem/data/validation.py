"""Checks of a datamodule's images and masks before anything trains or tests on them.

anomalib reads each image only when a DataLoader asks for it, so a bad file otherwise
shows up mid-epoch, often inside a worker process, as ``OSError: image file is
truncated`` without a file name; an empty training folder shows up as ``num_samples
should be a positive integer value, but got num_samples=0``; and a mask whose size
differs from its image is silently resized with it. :func:`validate_stage_data` (run at
``setup``, after the datamodule's ``setup`` and before any DataLoader exists) turns each of these into an error that names
the folder or file.

:class:`DataValidation` runs it as a Lightning callback; RecSem installs it. The image check
is cheap: PNG files are verified chunk by chunk (CRC checks, no
decompression), which catches truncated files; other formats are decoded, JPEG at 1/8
scale.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from anomalib.data.datasets.image.mvtecad import MVTecADDataset
from PIL import Image

logger = logging.getLogger(__name__)

_DRAFT_SCALE = 8


class DataValidationError(ValueError):
    """An image, mask or dataset that cannot be used as it is; the message names it."""


def read_image_size(
    path: str | Path,
    what: str = "image",
    error_type: type[Exception] = DataValidationError,
) -> tuple[int, int]:
    """Check that ``path`` is a complete, readable image and return its ``(width, height)``.

    Args:
        path: Image or mask file.
        what: What the file is, for the message (``"image"``, ``"mask"``, ...).
        error_type: Exception raised when the file cannot be read.

    Returns:
        tuple[int, int]: Width and height.

    Raises:
        Exception: ``error_type`` (``DataValidationError`` by default), naming the file,
            if it is missing, not an image or truncated.
    """
    try:
        with Image.open(path) as image:
            size = image.size
            if image.format == "PNG":
                image.verify()
            else:
                image.draft(image.mode, (max(1, size[0] // _DRAFT_SCALE), max(1, size[1] // _DRAFT_SCALE)))
                image.load()
    except Exception as error:  # noqa: BLE001  PIL raises many types; all mean "unreadable".
        msg = f"Cannot read {what} {path}: {error}"
        raise error_type(msg) from error
    return size


def check_eight_bit(path: str | Path, what: str = "image") -> None:
    """Refuse an image with grey levels above 255, which anomalib would read as white.

    anomalib reads images through PIL's conversion to 8-bit RGB, which clips 16-bit grey
    levels (common from industrial cameras) instead of scaling them. Only the header is read,
    unless the image is 32-bit integer or float, whose levels may still fit in 8 bits.

    Args:
        path: A readable image file.
        what: What the file is, for the message.

    Raises:
        DataValidationError: Naming the file and how to convert it.
    """
    with Image.open(path) as image:
        mode = image.mode
        wide = mode.startswith("I;16") or (mode in ("I", "F") and image.getextrema()[1] > 255)  # noqa: PLR2004
    if wide:
        msg = (
            f"Cannot use {what} {path}: it has grey levels above 255 (PIL mode {mode}), and anomalib reads images "
            f"through PIL's 8-bit RGB conversion, which clips them to white. Convert the images to 8 bits first "
            f"(16-bit levels divided by 257)."
        )
        raise DataValidationError(msg)


def _is_path(value: Any) -> bool:  # noqa: ANN401
    return isinstance(value, (str, Path)) and str(value) != ""


def expected_folder(dataset: Any, split: str) -> str:  # noqa: ANN401
    """Where ``dataset`` looks for the images of ``split``, as precisely as the dataset tells.

    Args:
        dataset: An anomalib dataset (MVTec AD layout, DAGM, Folder, ...).
        split: ``"train"`` or ``"test"``.

    Returns:
        str: A folder (or a description when the dataset names none).
    """
    if hasattr(dataset, "expected_folder"):  # datasets of this package name their folders
        return dataset.expected_folder(split)
    root = getattr(dataset, "root_category", None)
    if isinstance(dataset, MVTecADDataset):
        return str(Path(root) / split / "good") if split == "train" else str(Path(root) / split)
    for attribute in ("normal_dir", "root_category", "root"):  # Folder, other anomalib datasets
        value = getattr(dataset, attribute, None)
        if value is not None and not isinstance(value, (list, tuple)):
            return str(value)
    return f"the {split} data of {type(dataset).__name__}"


def validate_dataset(dataset: Any, subset: str, require_samples: bool = False) -> None:  # noqa: ANN401
    """Check every image and mask of an anomalib dataset.

    Args:
        dataset: A dataset with a ``samples`` DataFrame (``image_path``, optionally
            ``mask_path``); anything else is skipped.
        subset: ``"train"``, ``"val"`` or ``"test"``, for the messages.
        require_samples: Fail when the dataset has no samples.

    Raises:
        DataValidationError: If the dataset is empty (when required), an image or mask is
            unreadable or truncated, an image has 16-bit levels, or a mask's size differs
            from its image's. The message names the folder or the files.
    """
    try:
        samples = dataset.samples
    except (AttributeError, RuntimeError):  # not an anomalib dataset, or no samples assigned
        return
    if samples is None or not hasattr(samples, "columns") or "image_path" not in samples.columns:
        return
    if len(samples) == 0:
        if require_samples:
            split = "train" if subset == "train" else "test"
            msg = (
                f"The {subset} set is empty: no defect-free images found in {expected_folder(dataset, split)}. "
                f"RecSem trains on defect-free images; put them there (or point the datamodule's "
                f"root/category at the right folder)."
            )
            raise DataValidationError(msg)
        return
    has_masks = "mask_path" in samples.columns
    for row in samples.itertuples(index=False):
        image_size = read_image_size(row.image_path, f"{subset} image")
        check_eight_bit(row.image_path, f"{subset} image")
        mask_path = getattr(row, "mask_path", None) if has_masks else None
        if not _is_path(mask_path):
            continue
        mask_size = read_image_size(mask_path, f"{subset} mask")
        if mask_size != image_size:
            msg = (
                f"Mask {mask_path} has size {mask_size[0]}x{mask_size[1]} but its image {row.image_path} "
                f"has size {image_size[0]}x{image_size[1]}; a mask must have its image's size "
                f"(resizing it would misplace the defect)."
            )
            raise DataValidationError(msg)
    logger.debug("Checked the %d %s images of %s.", len(samples), subset, type(dataset).__name__)


def validate_stage_data(trainer: Any, stage: str) -> None:  # noqa: ANN401
    """Check the datamodule subsets a trainer stage is about to read.

    ``fit`` checks the training set (which must not be empty) and the validation set,
    ``validate`` the validation set and ``test`` the test set. Nothing is checked without
    a datamodule (data passed as DataLoaders) or for ``predict``.

    Args:
        trainer: The Lightning trainer (may be ``None``).
        stage: The trainer function (``"fit"``, ``"validate"``, ``"test"``, ``"predict"``).

    Raises:
        DataValidationError: See :func:`validate_dataset`.
    """
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        return
    stage = str(getattr(stage, "value", stage))
    subsets = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ())
    for subset in subsets:
        dataset = getattr(datamodule, f"{subset}_data", None)
        if dataset is None:
            continue
        validate_dataset(dataset, subset, require_samples=subset == "train")


class DataValidation(pl.Callback):
    """Check the data a stage will read before any of it is loaded (see :func:`validate_stage_data`)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the datamodule's subsets for ``stage``."""
        validate_stage_data(trainer, stage)


__all__ = [
    "DataValidation",
    "DataValidationError",
    "check_eight_bit",
    "expected_folder",
    "read_image_size",
    "validate_dataset",
    "validate_stage_data",
]
