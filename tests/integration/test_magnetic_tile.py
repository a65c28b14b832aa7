"""RecSem on real photographs: Magnetic Tile Defects (MVTec AD layout, in ``$RECSEM_DATASETS``).

The images are grayscale, of varying non-square sizes, and four ``uneven`` tiles have an
all-zero mask. A subset keeps the run short; the test skips when the data is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType, OpenVINOInferencer
from anomalib.engine import Engine
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

from anomalib_recsem import RecSem
from benchmarks.harness import SHARED_DATASETS
from tests.conftest import TINY_RECSEM

CATEGORY = SHARED_DATASETS / "magnetic_tile"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CATEGORY.is_dir(), reason=f"real data not found at {CATEGORY}"),
]


def _empty_mask_indices(samples) -> list[int]:  # noqa: ANN001
    return [index for index, path in enumerate(samples.mask_path)
            if path and not np.asarray(Image.open(path)).any()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    datamodule = MVTecAD(root=SHARED_DATASETS, category="magnetic_tile", train_batch_size=8, eval_batch_size=8,
                         num_workers=0, seed=0)
    # Only the trainer's stage marks the datamodule as set up; a plain setup() would be
    # redone by fit() and the subsets lost.
    datamodule.setup(TrainerFn.FITTING)
    rng = np.random.default_rng(0)
    datamodule.train_data.subsample(rng.choice(len(datamodule.train_data), 24, replace=False).tolist(), inplace=True)
    test_samples = datamodule.test_data.samples
    empty = _empty_mask_indices(test_samples)
    normal = np.flatnonzero(test_samples.label_index.to_numpy() == 0)
    defective = np.setdiff1d(np.flatnonzero(test_samples.label_index.to_numpy() == 1), empty)
    chosen = [*empty, *rng.choice(normal, 8, replace=False).tolist(), *rng.choice(defective, 8, replace=False).tolist()]
    datamodule.test_data.subsample(chosen, inplace=True)
    datamodule.val_data.subsample(chosen, inplace=True)  # same_as_test: thresholds from these images

    project = tmp_path_factory.mktemp("magnetic_tile")
    model = RecSem(**TINY_RECSEM)
    engine = Engine(default_root_dir=project, max_epochs=1, logger=False, accelerator="cpu", devices=1,
                    enable_progress_bar=False)
    engine.fit(model=model, datamodule=datamodule)
    return {"engine": engine, "model": model, "datamodule": datamodule, "empty": len(empty), "project": project}


def test_subset_contains_the_all_zero_masks(trained: dict) -> None:
    assert trained["empty"] == 4


def test_test_metrics_are_finite_and_rank_what_predict_returns(trained: dict) -> None:
    """The all-zero masks leave every metric finite, and the AUROCs are those of the predictions.

    scikit-learn ranks the scores and maps that ``Engine.predict`` returns for the same images,
    so a metric fed the wrong field, or one that drops or reorders batches, would not match.
    """
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415

    (results,) = trained["engine"].test(model=trained["model"], datamodule=trained["datamodule"])
    for name in ("image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO"):
        assert np.isfinite(results[name]) and 0.0 <= results[name] <= 1.0, name
    batches = trained["engine"].predict(model=trained["model"], datamodule=trained["datamodule"])
    scores = torch.cat([batch.pred_score.flatten() for batch in batches]).numpy()
    labels = torch.cat([batch.gt_label.flatten() for batch in batches]).numpy()
    maps = torch.cat([batch.anomaly_map.flatten() for batch in batches]).numpy()
    masks = torch.cat([batch.gt_mask.flatten() for batch in batches]).numpy()
    assert len(scores) == len(trained["datamodule"].test_data) and labels.min() == 0 and labels.max() == 1
    assert results["image_AUROC"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
    assert results["pixel_AUROC"] == pytest.approx(roc_auc_score(masks, maps), abs=1e-4)


def test_openvino_matches_pytorch_on_native_sizes(trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export parity on real images at their native, non-square sizes."""
    monkeypatch.chdir(tmp_path)
    model = trained["model"].eval()
    exported = trained["engine"].export(model=model, export_type=ExportType.OPENVINO, export_root=tmp_path)
    inferencer = OpenVINOInferencer(path=exported, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    paths = list(trained["datamodule"].test_data.samples.image_path[:6])
    sizes = set()
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        sizes.add(image.shape[:2])
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            expected = model(tensor)  # the same graph as exported: resize, network, post-processing
        result = inferencer.predict(image)
        assert float(np.asarray(result.pred_score).reshape(-1)[0]) == pytest.approx(float(expected.pred_score[0]), abs=1e-3)
        difference = np.abs(np.asarray(result.anomaly_map).squeeze() - expected.anomaly_map.squeeze().numpy())
        assert difference.max() < 1e-3, path
    assert len(sizes) > 1 and any(height != width for height, width in sizes)
