"""Resuming from a checkpoint continues a run exactly; the same seed gives the same run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_recsem import RecSem
from tests.conftest import TINY_BATCHES, TINY_RECSEM

pytestmark = pytest.mark.slow


def _fit(mvtec_root: Path, root: Path, epochs: int, ckpt_path: Path | None = None) -> tuple[RecSem, Engine]:
    seed_everything(7)
    datamodule = MVTecAD(root=mvtec_root, category="dummy", **TINY_BATCHES, num_workers=0)
    model = RecSem(**TINY_RECSEM)
    engine = Engine(default_root_dir=root, max_epochs=epochs, logger=False, accelerator="cpu", devices=1,
                    enable_progress_bar=False)
    engine.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, engine


def _checkpoint(root: Path) -> Path:
    return root / "RecSem" / "MVTecAD" / "dummy" / "v0" / "weights" / "lightning" / "model.ckpt"


def test_resume_matches_uninterrupted_run(mvtec_root: Path, tmp_path: Path) -> None:
    whole, whole_engine = _fit(mvtec_root, tmp_path / "whole", epochs=3)
    _fit(mvtec_root, tmp_path / "first", epochs=1)
    stopped = torch.load(_checkpoint(tmp_path / "first"), map_location="cpu", weights_only=True)
    assert stopped["epoch"] == 0
    resumed, resumed_engine = _fit(mvtec_root, tmp_path / "resumed", epochs=3, ckpt_path=_checkpoint(tmp_path / "first"))

    assert resumed_engine.trainer.current_epoch == whole_engine.trainer.current_epoch == 3
    assert resumed_engine.trainer.global_step == whole_engine.trainer.global_step
    whole_lr = whole_engine.trainer.optimizers[0].param_groups[0]["lr"]
    assert resumed_engine.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(whole_lr, rel=1e-12)
    # Adam's moments were restored too, otherwise the weights would drift apart.
    resumed_state = resumed.state_dict()
    differing = [name for name, value in whole.state_dict().items()
                 if not torch.allclose(value.float(), resumed_state[name].float(), atol=1e-6)]
    assert differing == []


def test_same_seed_same_metrics(mvtec_root: Path, tmp_path: Path) -> None:
    results = []
    for run in ("a", "b"):
        model, engine = _fit(mvtec_root, tmp_path / run, epochs=1)
        datamodule = MVTecAD(root=mvtec_root, category="dummy", eval_batch_size=4, num_workers=0)
        (metrics,) = engine.test(model=model, datamodule=datamodule)
        results.append((metrics, {name: value.clone() for name, value in model.state_dict().items()}))
    (metrics_a, state_a), (metrics_b, state_b) = results
    assert metrics_a == metrics_b
    assert all(torch.equal(value, state_b[name]) for name, value in state_a.items())
