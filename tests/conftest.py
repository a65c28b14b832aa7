"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset
from anomalib_recsem.presets import batch_sizes, model_arguments

#: The tiny preset (configs/recsem_tiny.yaml): RecSem trains in seconds on a CPU.
TINY_RECSEM = model_arguments("recsem_tiny")
#: Its datamodule's batch sizes, as keyword arguments of anomalib's datamodules.
TINY_BATCHES = dict(zip(("train_batch_size", "eval_batch_size"), batch_sizes("recsem_tiny"), strict=True))


@pytest.fixture(scope="session")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MVTec AD-layout dataset with category ``dummy``."""
    return write_mvtec_dataset(tmp_path_factory.mktemp("mvtec"))
