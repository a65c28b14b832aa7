"""``benchmarks/harness.py``: the AUROC every benchmark reports, and the texture column."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from benchmarks import harness


@pytest.mark.parametrize("offset", [0.0, -500.0, 500.0])
def test_auroc_of_scores_far_outside_0_1_is_the_rank_auroc(offset: float) -> None:
    # Defect scores 3, 5, 5 against defect-free 1, 5, 6: of the 9 pairs the defect wins
    # (3,1), (5,1), (5,1), loses (3,5), (3,6), (5,6), (5,6) and ties (5,5) twice: (3 + 1) / 9.
    scores = torch.tensor([3.0, 5.0, 5.0, 1.0, 5.0, 6.0]) + offset  # float32: a sigmoid would tie them all
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    assert harness.auroc(scores, labels) == pytest.approx(4 / 9)


def test_auroc_is_nan_with_one_class() -> None:
    assert math.isnan(harness.auroc(torch.tensor([0.2, 0.7]), torch.tensor([1, 1])))


def test_texture_column_names_the_folder_the_image_itself_or_the_procedural_bank(tmp_path: Path) -> None:
    labels = [harness.texture_label(source) for source in ("self", None, "photos", tmp_path / "dtd")]
    assert labels == ["self", "procedural", "photos", "dtd"]
