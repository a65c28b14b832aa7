"""DAGM 2007 dataset and datamodule for anomalib.

Description:
    The DAGM 2007 competition dataset "Weakly Supervised Learning for Industrial
    Optical Inspection" contains ten classes (``Class1`` ... ``Class10``) of
    synthetic 8-bit grayscale textures (512x512) with one kind of defect per
    class. Defects are labelled only weakly, by an ellipse roughly covering the
    defect.

    Expected layout (the one the public mirrors distribute)::

        <root>/
        └── Class1/
            ├── Train/
            │   ├── 0576.PNG
            │   ├── ...
            │   └── Label/
            │       ├── Labels.txt
            │       └── 0595_label.PNG
            └── Test/
                ├── 0001.PNG
                ├── ...
                └── Label/
                    ├── Labels.txt
                    └── 0002_label.PNG

    ``Labels.txt`` starts with a line holding a single number, followed by one
    TAB-separated row per image::

        <id>\\t<0|1>\\t<image file>\\t0\\t<label file | 0>

    where ``1`` marks a defective image. Rows without a label file end with an
    extra TAB.

    For one-class training, defect-free ``Train`` images form the training set;
    defective ``Train`` images are moved to the test set (default) or dropped.
    When a class has no ``Train`` folder, the defect-free ``Test`` images are
    split into train/test with a seeded ratio, like anomalib's Kolektor.

    The dataset cannot be downloaded automatically (no stable public URL with a
    checksum); :meth:`DAGM.prepare_data` explains where to obtain it.

Reference:
    M. Wieler, T. Hahn: "Weakly Supervised Learning for Industrial Optical
    Inspection", DAGM 2007 competition, Heidelberg Collaboratory for Image
    Processing (HCI).
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from pandas import DataFrame
from torchvision.transforms.v2 import Transform

from .validation import DataValidationError, read_image_size

logger = logging.getLogger(__name__)

DAGM_CATEGORIES: tuple[str, ...] = tuple(f"Class{index}" for index in range(1, 11))
"""Category names of DAGM 2007 (accepted values of ``category``)."""

TRAIN_DEFECTS_MODES: tuple[str, ...] = ("test", "drop")
"""Accepted values of ``train_defects``."""

LABELS_FILENAME = "Labels.txt"
LABEL_DIRNAME = "Label"
TRAIN_DIRNAME = "Train"
TEST_DIRNAME = "Test"

NORMAL_LABEL = "good"
ABNORMAL_LABEL = "defect"

DEFAULT_NORMAL_SPLIT_SEED = 42

_COLUMNS = ["path", "split", "label", "image_path", "mask_path", "label_index"]
_NUM_FIELDS = 5
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


class DAGMFormatError(DataValidationError):
    """Raised when DAGM files exist but their content is invalid.

    Covers malformed ``Labels.txt`` rows, unreadable or truncated images and
    masks whose size differs from their image. A ``ValueError``.
    """


@dataclass(frozen=True)
class DAGMLabelRow:
    """One parsed row of a DAGM ``Labels.txt`` file.

    Attributes:
        image_id: Zero-padded image id as written in the file (e.g. ``"0001"``).
        defective: Whether the row marks the image as defective.
        image_name: File name of the image, relative to the split folder.
        label_name: File name of the label mask, relative to the ``Label``
            folder, or ``None`` when the row has no label (``0``).
        line_number: 1-based line number of the row in ``Labels.txt``.
    """

    image_id: str
    defective: bool
    image_name: str
    label_name: str | None
    line_number: int


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


def _check_plain_filename(name: str, what: str, labels_file: Path, line_number: int) -> None:
    """Reject names that would escape the split folder or are empty."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        msg = f"{labels_file}, line {line_number}: invalid {what} {name!r} (expected a plain file name)."
        raise DAGMFormatError(msg)


def parse_dagm_labels(labels_file: str | Path) -> list[DAGMLabelRow]:
    """Parse a DAGM ``Labels.txt`` file.

    Trailing whitespace, trailing TABs, CRLF line endings, a UTF-8 BOM and
    blank lines are tolerated; anything else that deviates from the format is
    an error.

    Args:
        labels_file: Path to ``Labels.txt``.

    Returns:
        list[DAGMLabelRow]: The rows in file order.

    Raises:
        FileNotFoundError: If the file does not exist.
        DAGMFormatError: If the header or a row is malformed, if a row is
            inconsistent (defective without label or vice versa) or if an
            image is listed twice.
    """
    labels_file = Path(labels_file)
    if not labels_file.is_file():
        msg = f"DAGM labels file {labels_file} does not exist."
        raise FileNotFoundError(msg)
    try:
        text = labels_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        msg = f"{labels_file}: not a text file ({error})."
        raise DAGMFormatError(msg) from error

    # Blank lines carry no content; keep real line numbers for error messages.
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        msg = f"{labels_file}: file is empty (expected a header line and one row per image)."
        raise DAGMFormatError(msg)

    header_number, header = lines[0]
    if not header.isdecimal():
        msg = f"{labels_file}, line {header_number}: expected a header line holding a single number, got {header!r}."
        raise DAGMFormatError(msg)

    rows: list[DAGMLabelRow] = []
    seen: dict[str, int] = {}
    for number, line in lines[1:]:
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != _NUM_FIELDS:
            msg = (
                f"{labels_file}, line {number}: expected {_NUM_FIELDS} TAB-separated fields "
                f"'<id> <0|1> <image> 0 <label|0>', got {len(fields)}: {line!r}."
            )
            raise DAGMFormatError(msg)
        image_id, flag, image_name, reserved, label_field = fields
        if not image_id.isdecimal():
            msg = f"{labels_file}, line {number}: image id {image_id!r} is not a number: {line!r}."
            raise DAGMFormatError(msg)
        if flag not in {"0", "1"}:
            msg = f"{labels_file}, line {number}: defect flag {flag!r} must be 0 or 1: {line!r}."
            raise DAGMFormatError(msg)
        if not reserved.isdecimal():
            msg = f"{labels_file}, line {number}: fourth field {reserved!r} must be a number: {line!r}."
            raise DAGMFormatError(msg)
        _check_plain_filename(image_name, "image file name", labels_file, number)
        label_name = None if label_field == "0" else label_field
        if label_name is not None:
            _check_plain_filename(label_name, "label file name", labels_file, number)
        defective = flag == "1"
        if defective and label_name is None:
            msg = f"{labels_file}, line {number}: image {image_name!r} is marked defective but has no label file."
            raise DAGMFormatError(msg)
        if not defective and label_name is not None:
            msg = (
                f"{labels_file}, line {number}: image {image_name!r} is marked defect-free "
                f"but names label file {label_name!r}."
            )
            raise DAGMFormatError(msg)
        if image_name in seen:
            msg = f"{labels_file}, line {number}: image {image_name!r} is already listed on line {seen[image_name]}."
            raise DAGMFormatError(msg)
        seen[image_name] = number
        rows.append(DAGMLabelRow(image_id, defective, image_name, label_name, number))
    return rows


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


class DAGM(AnomalibDataModule):
    """DAGM 2007 datamodule.

    Args:
        root: Dataset root holding the ``ClassN`` folders.
            Defaults to ``"./datasets/DAGM"``.
        category: DAGM class, one of ``Class1`` ... ``Class10``.
            Defaults to ``"Class1"``.
        train_batch_size: Training batch size. Defaults to ``32``.
        eval_batch_size: Validation/test batch size. Defaults to ``32``.
        num_workers: DataLoader workers. Defaults to ``2``.
        train_augmentations: Augmentations for training images.
            Defaults to ``None``.
        val_augmentations: Augmentations for validation images.
            Defaults to ``None``.
        test_augmentations: Augmentations for test images.
            Defaults to ``None``.
        augmentations: Fallback for the stage-specific augmentations.
            Defaults to ``None``.
        train_defects: ``"test"`` moves defective ``Train`` images to the test
            set, ``"drop"`` discards them. Defaults to ``"test"``.
        normal_split_ratio: Test fraction of defect-free ``Test`` images when a
            class has no ``Train`` folder. Defaults to ``0.2``.
        test_split_mode: How the test subset is obtained.
            Defaults to ``TestSplitMode.FROM_DIR``.
        test_split_ratio: Fraction of train images moved to test if the test
            set had no normal images. Defaults to ``0.2``.
        val_split_mode: How the validation subset is obtained. The default
            takes part of the test set so validation is not the test set itself.
            Defaults to ``ValSplitMode.FROM_TEST``.
        val_split_ratio: Fraction of test (or train) images used for validation.
            Defaults to ``0.5``.
        seed: Seed for the anomalib splits; also seeds the split of normal
            ``Test`` images when there is no ``Train`` folder (``42`` if
            ``None``). Defaults to ``None``.

    Raises:
        ValueError: If ``category``, ``train_defects`` or
            ``normal_split_ratio`` is invalid.

    Example:
        >>> datamodule = DAGM(root="./datasets/DAGM", category="Class1")
        >>> datamodule.prepare_data()
        >>> datamodule.setup()
        >>> batch = next(iter(datamodule.train_dataloader()))
        >>> batch.image.shape
        torch.Size([32, 3, 512, 512])
    """

    def __init__(
        self,
        root: Path | str = "./datasets/DAGM",
        category: str = "Class1",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 2,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        train_defects: str = "test",
        normal_split_ratio: float = 0.2,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float = 0.2,
        val_split_mode: ValSplitMode | str = ValSplitMode.FROM_TEST,
        val_split_ratio: float = 0.5,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            test_split_mode=test_split_mode,
            test_split_ratio=test_split_ratio,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
        self.root = Path(root)
        self.category = validate_category(category)
        self.train_defects = validate_train_defects(train_defects)
        self.normal_split_ratio = validate_normal_split_ratio(normal_split_ratio)

    @property
    def normal_split_seed(self) -> int:
        """Seed of the train/test split of normal images for classes without ``Train``."""
        return self.seed if self.seed is not None else DEFAULT_NORMAL_SPLIT_SEED

    def _setup(self, _stage: str | None = None) -> None:
        """Create the train and test datasets; anomalib then derives validation.

        Args:
            _stage: Unused; all subsets are created at once because validation
                is carved out of the test set.
        """
        common = {
            "root": self.root,
            "category": self.category,
            "train_defects": self.train_defects,
            "normal_split_ratio": self.normal_split_ratio,
            "seed": self.normal_split_seed,
        }
        self.train_data = DAGMDataset(split=Split.TRAIN, **common)
        self.test_data = DAGMDataset(split=Split.TEST, **common)

    def prepare_data(self) -> None:
        """Check that the dataset is present; DAGM 2007 is never downloaded.

        Raises:
            FileNotFoundError: If ``<root>/<category>`` does not exist. The
                message names the path, the classes found under ``root`` and
                where to obtain DAGM 2007.
        """
        if (self.root / self.category).is_dir():
            logger.info("Found the DAGM dataset at %s.", self.root / self.category)
            return
        raise FileNotFoundError(missing_dataset_message(self.root, self.category))


__all__ = [
    "DAGM",
    "DAGM_CATEGORIES",
    "TRAIN_DEFECTS_MODES",
    "DAGMDataset",
    "DAGMFormatError",
    "DAGMLabelRow",
    "make_dagm_dataset",
    "parse_dagm_labels",
]
