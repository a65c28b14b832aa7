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

from .datamodule import DAGM
from .dataset import (
    ABNORMAL_LABEL,
    DAGM_CATEGORIES,
    DEFAULT_NORMAL_SPLIT_SEED,
    NORMAL_LABEL,
    TRAIN_DEFECTS_MODES,
    DAGMDataset,
    make_dagm_dataset,
    missing_dataset_message,
    validate_category,
    validate_normal_split_ratio,
    validate_train_defects,
)
from .labels import (
    LABEL_DIRNAME,
    LABELS_FILENAME,
    TEST_DIRNAME,
    TRAIN_DIRNAME,
    DAGMFormatError,
    DAGMLabelRow,
    parse_dagm_labels,
)

__all__ = [
    "ABNORMAL_LABEL",
    "DAGM",
    "DAGM_CATEGORIES",
    "DEFAULT_NORMAL_SPLIT_SEED",
    "LABELS_FILENAME",
    "LABEL_DIRNAME",
    "NORMAL_LABEL",
    "TEST_DIRNAME",
    "TRAIN_DEFECTS_MODES",
    "TRAIN_DIRNAME",
    "DAGMDataset",
    "DAGMFormatError",
    "DAGMLabelRow",
    "make_dagm_dataset",
    "missing_dataset_message",
    "parse_dagm_labels",
    "validate_category",
    "validate_normal_split_ratio",
    "validate_train_defects",
]
