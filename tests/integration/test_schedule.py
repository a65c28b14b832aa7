"""The learning-rate schedule follows the run's length, also when the run is set in optimiser steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_recsem import RecSem
from anomalib_recsem.models.recsem.lightning_model import warmup_cosine
from tests.conftest import TINY_BATCHES, TINY_RECSEM

pytestmark = pytest.mark.slow


class _Rates(Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []
        self.batches = 0

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.batches = trainer.num_training_batches


@pytest.mark.parametrize("length", [{"max_epochs": 6}, {"max_steps": 30, "max_epochs": -1},
                                    # 4 batches an epoch in 2 optimiser steps, the second of one batch
                                    {"max_steps": 12, "max_epochs": -1, "accumulate_grad_batches": 3}])
def test_warm_up_then_cosine_over_the_whole_run(mvtec_root: Path, tmp_path: Path, length: dict[str, int]) -> None:
    datamodule = MVTecAD(root=mvtec_root, category="dummy", **TINY_BATCHES, num_workers=0)
    model = RecSem(**{**TINY_RECSEM, "warmup_epochs": 2, "learning_rate": 0.01})
    rates = _Rates()
    engine = Engine(default_root_dir=tmp_path, logger=False, accelerator="cpu", devices=1, callbacks=[rates],
                    enable_progress_bar=False, limit_val_batches=0, num_sanity_val_steps=0, **length)
    engine.fit(model=model, datamodule=datamodule)
    steps_per_epoch = math.ceil(rates.batches / length.get("accumulate_grad_batches", 1))
    epochs = length["max_epochs"] if length["max_epochs"] > 0 else math.ceil(length["max_steps"] / steps_per_epoch)
    assert epochs > 3  # noqa: PLR2004  (warm-up and some decay)
    assert rates.rates == pytest.approx([0.01 * warmup_cosine(epoch, epochs, 2) for epoch in range(len(rates.rates))])
    assert rates.rates[-1] < rates.rates[2]  # the cosine has started to fall within the run
