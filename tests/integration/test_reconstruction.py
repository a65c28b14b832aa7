"""A short training run yields reconstructions that follow their inputs (the memory does not collapse them),
and a detector that ranks defects it never saw (dark discs) first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from PIL import Image

from anomalib_recsem import RecSem
from tests.conftest import TINY_RECSEM

pytestmark = pytest.mark.slow

EPOCHS = 20  # 32 images x 2 copies / batch 8: 160 optimiser steps


def _surfaces(root: Path, size: int = 64) -> Path:
    """Grey surfaces that differ from image to image in brightness and shading, as lit parts do."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:size, 0:size] / size
    base = root / "dummy"
    for folder, count in (("train/good", 32), ("test/good", 8), ("test/defect", 8)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            angle, level, slope = rng.uniform(0, 2 * np.pi), rng.uniform(60, 190), rng.uniform(-60, 60)
            image = level + slope * (np.cos(angle) * xs + np.sin(angle) * ys) + rng.normal(0, 3, (size, size))
            if folder == "test/defect":
                mask = (ys - 0.5) ** 2 + (xs - 0.5) ** 2 < 0.01
                image[mask] = 20
                (base / "ground_truth/defect").mkdir(parents=True, exist_ok=True)
                Image.fromarray((mask * 255).astype(np.uint8)).save(base / "ground_truth/defect" / f"{index:03d}_mask.png")
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(base / folder / f"{index:03d}.png")
    return root


def _train(normalize_query: bool, root: Path, project: Path) -> tuple[float, dict[str, float]]:
    """The reconstructions' spread after training, and the test metrics."""
    seed_everything(3)
    model = RecSem(**{**TINY_RECSEM, "normalize_query": normalize_query}, visualizer=False)
    datamodule = MVTecAD(root=root, category="dummy", train_batch_size=8, eval_batch_size=8, num_workers=0)
    engine = Engine(default_root_dir=project, max_epochs=EPOCHS, check_val_every_n_epoch=EPOCHS, logger=False,
                    accelerator="cpu", devices=1, enable_progress_bar=False)
    engine.fit(model=model, datamodule=datamodule)
    spread = float(engine.trainer.callback_metrics["reconstruction_spread"])
    (metrics,) = engine.test(model=model, datamodule=datamodule, verbose=False)
    return spread, metrics


def test_reconstructions_differ_across_inputs_and_defects_are_found(tmp_path: Path) -> None:
    # After 160 steps the reconstructions already vary across the test images by a third as much as
    # the images do (measured: 0.34); the collapsed reconstruction this guards against varied by
    # 0.0001 of the inputs' spread. The authors' memory unit (normalize_query=False) is not held to
    # a number here: whether it collapses depends on the run (0.02 and 0.28 measured in this setting
    # with two versions of the defect synthesis), see the model README.
    fixed, metrics = _train(normalize_query=True, root=_surfaces(tmp_path / "data"), project=tmp_path / "fixed")
    assert fixed > 0.25, fixed
    # Dark discs on surfaces that vary only in shading: measured, image AUROC 1.0 and pixel AUROC 0.82
    # after these 160 steps; scores that were inverted would read near 0 and 0.2.
    assert metrics["image_AUROC"] > 0.9, metrics
    assert metrics["pixel_AUROC"] > 0.7, metrics
