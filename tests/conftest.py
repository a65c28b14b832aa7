"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.mvtec import write_mvtec_dataset

#: Real data sits beside the project; tests that need it skip when it is absent.
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

#: Constructor arguments that make RecSem train in seconds on a CPU.
TINY_RECSEM = {
    "image_size": 64,
    "reconstruction_width": 8,
    "discriminator_width": 8,
    "num_prototypes": 10,
    "positive_aug_ratio": 1,
    "negative_aug_ratio": 1,
}


@pytest.fixture(scope="session")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MVTec AD-layout dataset with category ``dummy``."""
    return write_mvtec_dataset(tmp_path_factory.mktemp("mvtec"))
