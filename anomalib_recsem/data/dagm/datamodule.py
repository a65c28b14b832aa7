"""DAGM 2007 datamodule for anomalib."""

import logging
from pathlib import Path

from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.utils import Split, TestSplitMode, ValSplitMode
from torchvision.transforms.v2 import Transform

from .dataset import (
    DEFAULT_NORMAL_SPLIT_SEED,
    DAGMDataset,
    missing_dataset_message,
    validate_category,
    validate_normal_split_ratio,
    validate_train_defects,
)

logger = logging.getLogger(__name__)


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
