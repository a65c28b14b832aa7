"""What a training step sees: the authors' epoch, shuffled as one set, over images read once."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.data.datasets.image.mvtecad import MVTecADDataset
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from anomalib_recsem.models.recsem.components.training_data import DefectEpochs, InMemoryTrainingData, keep_batch
from tests.host_waits import BlockingCopies


def _epoch(images: int, positive: int, negative: int, batch_size: int = 8) -> list:
    torch.manual_seed(0)
    stored = torch.arange(images, dtype=torch.float16).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    loader = DataLoader(DefectEpochs(stored, positive, negative), batch_size=batch_size, shuffle=True,
                        collate_fn=keep_batch)
    return list(loader)


def test_every_image_appears_negative_times_clean_and_positive_times_with_a_defect() -> None:
    batches = _epoch(images=20, positive=2, negative=3)
    assert sum(len(batch.image) for batch in batches) == 20 * 5
    index = torch.cat([batch.image[:, 0, 0, 0] for batch in batches]).long()
    defect = torch.cat([batch.gt_label for batch in batches])
    for image in range(20):
        assert int(((index == image) & defect).sum()) == 2
        assert int(((index == image) & ~defect).sum()) == 3
    assert batches[0].image.dtype == torch.float32


def test_a_step_sees_nearly_as_many_distinct_images_as_the_authors() -> None:
    """The authors shuffle the N x (pos + neg) samples: about 7.85 distinct images per step of 8
    for an MVTec-sized category, and few steps hold one image both clean and with a defect.
    Repeating each loader batch (pos + neg) times instead gives 5.6 and 93 %."""
    batches = _epoch(images=200, positive=2, negative=2)[:-1]
    distinct = [len(set(batch.image[:, 0, 0, 0].long().tolist())) for batch in batches]
    both_ways = [
        bool(set(batch.image[batch.gt_label, 0, 0, 0].tolist()) & set(batch.image[~batch.gt_label, 0, 0, 0].tolist()))
        for batch in batches
    ]
    assert sum(distinct) / len(distinct) > 7.7
    assert sum(both_ways) / len(both_ways) < 0.2


def test_images_come_from_their_device_and_the_defect_flags_from_the_host() -> None:
    # The defect synthesis reads the flags on the host; on a GPU that read would wait for it.
    stored = torch.empty(6, 3, 2, 2, dtype=torch.float16, device="meta")
    with BlockingCopies() as copies:  # a blocking copy to a GPU would wait for the last step
        batch = DefectEpochs(stored, positive=1, negative=1).__getitems__([0, 7, 11])
    assert copies.found == []
    assert batch.image.device == torch.device("meta") and batch.image.dtype == torch.float32
    assert batch.gt_label.device == torch.device("cpu")
    assert batch.gt_label.tolist() == [False, True, True]


@pytest.mark.parametrize(("augmentations", "random"), [
    (None, False),
    (v2.Resize(32), False),  # what anomalib's datamodule adds from the model's pre-processor
    (v2.RandomHorizontalFlip(), True),
    (v2.Compose([v2.RandomHorizontalFlip(), v2.Resize(32)]), True),
])
def test_the_training_sets_random_augmentations_are_said_to_be_drawn_once(
    mvtec_root: Path, augmentations: v2.Transform | None, random: bool,
) -> None:
    dataset = MVTecADDataset(root=mvtec_root, category="dummy", split="train", augmentations=augmentations)
    loader = DataLoader(dataset, batch_size=4, collate_fn=ImageBatch.collate)
    source = SimpleNamespace(instance=loader, dataloader=lambda: loader)
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(_data_source=source),
                              strategy=SimpleNamespace(root_device=torch.device("cpu")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        InMemoryTrainingData(1, 1).setup(trainer, SimpleNamespace(pre_processor=None), "fit")
    said = [str(warning.message) for warning in caught if "drawn once" in str(warning.message)]
    assert len(said) == random
    assert not random or "RandomHorizontalFlip" in said[0]
    assert len(source.instance.dataset) == 2 * len(dataset)  # the in-memory epoch is installed either way
