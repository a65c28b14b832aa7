"""DAGM 2007 samples and dataset: which images of a class are train and test, checked."""

import logging
import re
from pathlib import Path

import numpy as np
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, Split
from pandas import DataFrame
from torchvision.transforms.v2 import Transform

from anomalib_recsem.data.validation import read_image_size

from .labels import (
    LABEL_DIRNAME,
    LABELS_FILENAME,
    TEST_DIRNAME,
    TRAIN_DIRNAME,
    DAGMFormatError,
    parse_dagm_labels,
)

logger = logging.getLogger(__name__)

DAGM_CATEGORIES: tuple[str, ...] = tuple(f"Class{index}" for index in range(1, 11))
"""Category names of DAGM 2007 (accepted values of ``category``)."""

TRAIN_DEFECTS_MODES: tuple[str, ...] = ("test", "drop")
"""Accepted values of ``train_defects``."""

NORMAL_LABEL = "good"
ABNORMAL_LABEL = "defect"

DEFAULT_NORMAL_SPLIT_SEED = 42

_COLUMNS = ["path", "split", "label", "image_path", "mask_path", "label_index"]
_CATEGORY_PATTERN = re.compile(r"^Class\d+$")

_WHERE_TO_FIND = (
    "DAGM 2007 cannot be downloaded automatically. It is the DAGM 2007 competition dataset "
    "'Weakly Supervised Learning for Industrial Optical Inspection' published by the Heidelberg "
    "Collaboratory for Image Processing (HCI, Heidelberg University); copies are hosted on Kaggle "
    "and Zenodo (search for 'DAGM 2007'). Download it manually and extract it so that the "
    "layout is:\n"
    "    <root>/ClassN/Train/*.PNG and <root>/ClassN/Train/Label/{Labels.txt,NNNN_label.PNG}\n"
    "    <root>/ClassN/Test/*.PNG  and <root>/ClassN/Test/Label/{Labels.txt,NNNN_label.PNG}\n"
    "with ClassN one of Class1 ... Class10 (the Train folder is optional)."
)


def validate_category(category: str) -> str:
    """Check that ``category`` is a DAGM 2007 class name.

    Args:
        category: Category name such as ``"Class1"``.

    Returns:
        str: The unchanged category.

    Raises:
        ValueError: If ``category`` is not one of :data:`DAGM_CATEGORIES`.
    """
    if category not in DAGM_CATEGORIES:
        msg = f"Invalid category {category!r}: category must be one of {', '.join(DAGM_CATEGORIES)}."
        raise ValueError(msg)
    return category


def validate_train_defects(train_defects: str) -> str:
    """Check the ``train_defects`` option.

    Args:
        train_defects: What to do with defective ``Train`` images.

    Returns:
        str: The unchanged value.

    Raises:
        ValueError: If ``train_defects`` is not ``"test"`` or ``"drop"``.
    """
    if train_defects not in TRAIN_DEFECTS_MODES:
        accepted = " or ".join(repr(mode) for mode in TRAIN_DEFECTS_MODES)
        msg = f"Invalid train_defects {train_defects!r}: train_defects must be {accepted}."
        raise ValueError(msg)
    return train_defects


def validate_normal_split_ratio(normal_split_ratio: float) -> float:
    """Check the ``normal_split_ratio`` option.

    Args:
        normal_split_ratio: Fraction of normal ``Test`` images kept for testing
            when a class has no ``Train`` folder.

    Returns:
        float: The ratio as a float.

    Raises:
        ValueError: If the ratio is not strictly between 0 and 1.
    """
    ratio = float(normal_split_ratio)
    if not 0.0 < ratio < 1.0:
        msg = f"Invalid normal_split_ratio {normal_split_ratio!r}: normal_split_ratio must be > 0 and < 1."
        raise ValueError(msg)
    return ratio


def _found_categories(root: Path) -> list[str]:
    """List the ``ClassN`` folders under ``root``, in natural order."""
    found = [child.name for child in root.iterdir() if child.is_dir() and _CATEGORY_PATTERN.match(child.name)]
    return sorted(found, key=lambda name: int(name[len("Class") :]))


def missing_dataset_message(root: Path, category: str) -> str:
    """Explain that ``<root>/<category>`` is missing and where to get DAGM 2007.

    Args:
        root: Dataset root directory.
        category: Requested category.

    Returns:
        str: A message naming the missing path, the classes present under
        ``root`` (if it exists) and how to obtain the dataset.
    """
    class_dir = root / category
    if not root.is_dir():
        head = f"DAGM dataset root {root} does not exist (needed for category {category!r} at {class_dir})."
    else:
        found = _found_categories(root)
        found_text = ", ".join(found) if found else "none"
        head = f"DAGM category folder {class_dir} does not exist. Classes found under {root}: {found_text}."
    return f"{head}\n{_WHERE_TO_FIND}"


def _image_size(path: Path, what: str) -> tuple[int, int]:
    """Read an image's size, checking that the file is a complete image (PNG: CRCs, no decoding)."""
    return read_image_size(path, what, error_type=DAGMFormatError)


def _read_split_folder(split_dir: Path) -> list[dict[str, object]]:
    """Turn ``<split_dir>/Label/Labels.txt`` into sample records.

    Checks that every file named in ``Labels.txt`` exists; header checks are
    done later, only for the samples actually kept.
    """
    labels_file = split_dir / LABEL_DIRNAME / LABELS_FILENAME
    if not labels_file.is_file():
        msg = f"DAGM labels file {labels_file} does not exist (every Train/Test folder needs Label/{LABELS_FILENAME})."
        raise FileNotFoundError(msg)
    rows = parse_dagm_labels(labels_file)

    records: list[dict[str, object]] = []
    for row in rows:
        image_path = split_dir / row.image_name
        if not image_path.is_file():
            msg = f"{labels_file}, line {row.line_number}: image file {image_path} does not exist."
            raise FileNotFoundError(msg)
        mask_path = ""
        if row.label_name is not None:
            label_path = split_dir / LABEL_DIRNAME / row.label_name
            if not label_path.is_file():
                msg = f"{labels_file}, line {row.line_number}: label file {label_path} does not exist."
                raise FileNotFoundError(msg)
            mask_path = str(label_path)
        records.append({
            "image_path": str(image_path),
            "mask_path": mask_path,
            "label_index": int(LabelName.ABNORMAL if row.defective else LabelName.NORMAL),
        })

    # Labels.txt is authoritative; images it does not list are ignored, but say so.
    listed = {row.image_name for row in rows}
    unlisted = sorted(
        child.name
        for child in split_dir.iterdir()
        if child.is_file() and child.suffix.lower() == ".png" and child.name not in listed
    )
    if unlisted:
        logger.warning(
            "%d image(s) in %s are not listed in %s and are ignored: %s%s",
            len(unlisted),
            split_dir,
            labels_file,
            ", ".join(unlisted[:5]),
            ", ..." if len(unlisted) > 5 else "",
        )
    return records


def _split_normals(records: list[dict[str, object]], normal_split_ratio: float, seed: int) -> None:
    """Assign normal test records to train/test in place with a seeded permutation."""
    normals = sorted(
        (record for record in records if record["label_index"] == LabelName.NORMAL),
        key=lambda record: str(record["image_path"]),
    )
    if len(normals) < 2:  # noqa: PLR2004
        msg = (
            f"Cannot split the defect-free Test images into train/test: found {len(normals)}, need at least 2 "
            "(the category has no Train folder)."
        )
        raise DAGMFormatError(msg)
    # Keep at least one image on each side so that neither subset is empty.
    num_test = min(max(round(len(normals) * normal_split_ratio), 1), len(normals) - 1)
    order = np.random.default_rng(seed).permutation(len(normals))
    test_positions = set(order[:num_test].tolist())
    for position, record in enumerate(normals):
        record["split"] = Split.TEST.value if position in test_positions else Split.TRAIN.value


def make_dagm_dataset(
    root: str | Path,
    category: str = "Class1",
    split: str | Split | None = None,
    train_defects: str = "test",
    normal_split_ratio: float = 0.2,
    seed: int = DEFAULT_NORMAL_SPLIT_SEED,
) -> DataFrame:
    """Create DAGM samples from ``<root>/<category>``.

    Args:
        root: Dataset root holding the ``ClassN`` folders.
        category: DAGM class, one of ``Class1`` ... ``Class10``.
        split: ``"train"``, ``"test"`` or ``None`` for both.
        train_defects: ``"test"`` moves defective ``Train`` images to the test
            set, ``"drop"`` discards them.
        normal_split_ratio: Fraction of defect-free ``Test`` images used for
            testing when the class has no ``Train`` folder (the rest train).
        seed: Seed of that split.

    Returns:
        DataFrame: Columns ``path, split, label, image_path, mask_path,
        label_index``; ``mask_path`` is ``""`` for normal images and
        ``attrs["task"]`` is ``"segmentation"``.

    Raises:
        ValueError: If ``category``, ``train_defects`` or
            ``normal_split_ratio`` is invalid.
        FileNotFoundError: If the root, the class folder, its ``Test`` folder,
            a ``Labels.txt`` or a file named in it is missing.
        DAGMFormatError: If a ``Labels.txt`` is malformed, an image or mask
            cannot be read, or a mask's size differs from its image's.

    Example:
        >>> samples = make_dagm_dataset("./datasets/DAGM", "Class1", split="train")
        >>> samples.columns.tolist()
        ['path', 'split', 'label', 'image_path', 'mask_path', 'label_index']
    """
    validate_category(category)
    validate_train_defects(train_defects)
    normal_split_ratio = validate_normal_split_ratio(normal_split_ratio)
    root = Path(root)
    class_dir = root / category
    if not class_dir.is_dir():
        raise FileNotFoundError(missing_dataset_message(root, category))

    test_dir = class_dir / TEST_DIRNAME
    if not test_dir.is_dir():
        msg = f"DAGM test folder {test_dir} does not exist (every category needs {TEST_DIRNAME}/).\n{_WHERE_TO_FIND}"
        raise FileNotFoundError(msg)
    test_records = _read_split_folder(test_dir)

    train_dir = class_dir / TRAIN_DIRNAME
    if train_dir.is_dir():
        for record in test_records:
            record["split"] = Split.TEST.value
        train_records = _read_split_folder(train_dir)
        kept_train_records = []
        for record in train_records:
            if record["label_index"] == LabelName.NORMAL:
                record["split"] = Split.TRAIN.value
            elif train_defects == "test":
                record["split"] = Split.TEST.value
            else:
                continue
            kept_train_records.append(record)
        records = kept_train_records + test_records
    else:
        logger.info(
            "No %s folder in %s: splitting the defect-free test images %.0f/%.0f into train/test (seed %d).",
            TRAIN_DIRNAME,
            class_dir,
            100 * (1 - normal_split_ratio),
            100 * normal_split_ratio,
            seed,
        )
        for record in test_records:
            record["split"] = Split.TEST.value
        _split_normals(test_records, normal_split_ratio, seed)
        records = test_records

    split_value = (split.value if isinstance(split, Split) else str(split)) if split else None
    if split_value is not None:
        if split_value not in {Split.TRAIN.value, Split.TEST.value}:
            msg = f"Invalid split {split!r}: split must be 'train', 'test' or None."
            raise ValueError(msg)
        records = [record for record in records if record["split"] == split_value]

    # File checks (complete images, mask sizes) only for the samples returned: what will be loaded.
    for record in records:
        image_size = _image_size(Path(str(record["image_path"])), "image")
        if record["mask_path"]:
            mask_size = _image_size(Path(str(record["mask_path"])), "mask")
            if mask_size != image_size:
                msg = (
                    f"Mask {record['mask_path']} has size {mask_size[0]}x{mask_size[1]} but its image "
                    f"{record['image_path']} has size {image_size[0]}x{image_size[1]}."
                )
                raise DAGMFormatError(msg)

    for record in records:
        record["path"] = str(class_dir)
        record["label"] = ABNORMAL_LABEL if record["label_index"] == LabelName.ABNORMAL else NORMAL_LABEL
    samples = DataFrame.from_records(records, columns=_COLUMNS)
    samples["label_index"] = samples["label_index"].astype(int)
    samples = samples.sort_values(by="image_path", ignore_index=True)
    # Pandas may drop attrs on filtering/sorting, so set the task last.
    samples.attrs["task"] = "segmentation"
    return samples


class DAGMDataset(AnomalibDataset):
    """DAGM 2007 dataset.

    Args:
        root: Dataset root holding the ``ClassN`` folders.
            Defaults to ``"./datasets/DAGM"``.
        category: DAGM class, one of ``Class1`` ... ``Class10``.
            Defaults to ``"Class1"``.
        augmentations: Augmentations applied to image and mask.
            Defaults to ``None``.
        split: ``"train"``, ``"test"`` or ``None`` for both.
            Defaults to ``None``.
        train_defects: ``"test"`` (default) moves defective ``Train`` images to
            the test set, ``"drop"`` discards them.
        normal_split_ratio: Test fraction of defect-free ``Test`` images when
            the class has no ``Train`` folder. Defaults to ``0.2``.
        seed: Seed of that split. Defaults to ``42``.

    Example:
        >>> dataset = DAGMDataset(root="./datasets/DAGM", category="Class1", split="train")
        >>> dataset[0].image.shape
        torch.Size([3, 512, 512])
    """

    def __init__(
        self,
        root: Path | str = "./datasets/DAGM",
        category: str = "Class1",
        augmentations: Transform | None = None,
        split: str | Split | None = None,
        train_defects: str = "test",
        normal_split_ratio: float = 0.2,
        seed: int = DEFAULT_NORMAL_SPLIT_SEED,
    ) -> None:
        super().__init__(augmentations=augmentations)
        self.root = Path(root)
        self.category = validate_category(category)
        self.split = split
        self.train_defects = validate_train_defects(train_defects)
        self.normal_split_ratio = validate_normal_split_ratio(normal_split_ratio)
        self.seed = seed
        self.root_category = self.root / category
        self.samples = make_dagm_dataset(
            self.root,
            category=category,
            split=split,
            train_defects=train_defects,
            normal_split_ratio=normal_split_ratio,
            seed=seed,
        )

    def expected_folder(self, split: str) -> str:
        """Where this dataset looks for the images of ``split`` (``"train"`` or ``"test"``), for messages."""
        train_dir = self.root_category / TRAIN_DIRNAME
        if split == "train" and not train_dir.is_dir():  # normal Test images are split instead
            return str(self.root_category / TEST_DIRNAME)
        return str(train_dir if split == "train" else self.root_category / TEST_DIRNAME)
