"""RecSem through anomalib's Engine: fit, validate, test, predict, export and inference.

Mirrors the model test harness in anomalib's repository (tests/integration/model/test_models.py) on a
small generated MVTec AD-layout dataset, with tiny widths so it runs on a CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from anomalib.data import Folder, MVTecAD
from anomalib.data.utils import read_image
from anomalib.deploy import ExportType, OpenVINOInferencer, TorchInferencer
from anomalib.engine import Engine
from anomalib.metrics import AUPRO
from anomalib.pre_processing import PreProcessor
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging
from PIL import Image
from sklearn.metrics import roc_auc_score
from torchvision.transforms import v2

from anomalib_recsem import RecSem
from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset
from anomalib_recsem.models.recsem.components.export import ONNX_OPSET
from tests.conftest import TINY_BATCHES, TINY_RECSEM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Fit RecSem for two epochs and return the pieces the tests share."""
    project = tmp_path_factory.mktemp("project")
    datamodule = MVTecAD(root=mvtec_root, category="dummy", **TINY_BATCHES, num_workers=0)
    model = RecSem(**TINY_RECSEM)
    engine = Engine(default_root_dir=project, max_epochs=2, logger=False, accelerator="cpu", devices=1)
    engine.fit(model=model, datamodule=datamodule)
    checkpoint = project / "RecSem" / "MVTecAD" / "dummy" / "v0" / "weights" / "lightning" / "model.ckpt"
    assert checkpoint.is_file()
    return {"project": project, "datamodule": datamodule, "model": model, "engine": engine, "checkpoint": checkpoint}


def test_fit_learns_thresholds(trained: dict) -> None:
    post_processor = trained["model"].post_processor
    assert torch.isfinite(post_processor.image_threshold)
    assert torch.isfinite(post_processor.pixel_threshold)


def test_weight_averaging_leaves_nan_thresholds_as_recsem_warns(mvtec_root: Path, tmp_path: Path) -> None:
    """The behaviour behind RecSem's warning: if Lightning or anomalib ever fix it, this fails and the warning goes."""
    datamodule = MVTecAD(root=mvtec_root, category="dummy", **TINY_BATCHES, num_workers=0)
    model = RecSem(**TINY_RECSEM)
    engine = Engine(default_root_dir=tmp_path, max_epochs=2, logger=False, accelerator="cpu", devices=1,
                    callbacks=[EMAWeightAveraging(decay=0.5)])
    with pytest.warns(UserWarning, match="WeightAveraging"):
        engine.fit(model=model, datamodule=datamodule)
    assert torch.isnan(model.post_processor.image_threshold)
    engine.validate(model=model, datamodule=datamodule)  # what the warning tells the user to do
    assert torch.isfinite(model.post_processor.image_threshold)


def test_data_with_image_labels_only_trains_and_tests_on_image_metrics(mvtec_root: Path, tmp_path: Path) -> None:
    """anomalib's Folder without masks (as for ELPV, or a user's good/defective folders): no pixel metric, no crash."""
    datamodule = Folder(name="dummy", root=mvtec_root / "dummy", normal_dir="train/good", normal_test_dir="test/good",
                        abnormal_dir="test/defect", **TINY_BATCHES, num_workers=0)
    model = RecSem(**TINY_RECSEM)
    engine = Engine(default_root_dir=tmp_path, max_epochs=1, logger=False, accelerator="cpu", devices=1)
    engine.fit(model=model, datamodule=datamodule)
    assert torch.isfinite(model.post_processor.image_threshold)
    (results,) = engine.test(model=model, datamodule=datamodule)
    batches = engine.predict(model=model, datamodule=datamodule)
    labels = torch.cat([batch.gt_label.flatten() for batch in batches]).numpy()
    scores = torch.cat([batch.pred_score.flatten() for batch in batches]).numpy()
    assert results["image_AUROC"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert not [name for name in results if name.startswith("pixel_")]


def test_test_reports_metrics_including_aupro(trained: dict) -> None:
    (results,) = trained["engine"].test(model=trained["model"], datamodule=trained["datamodule"],
                                         ckpt_path=trained["checkpoint"])
    for name in ("image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO"):
        assert name in results
        assert 0.0 <= results[name] <= 1.0
    # The visualiser wrote one image per test sample.
    images = list((trained["project"] / "RecSem" / "MVTecAD" / "dummy").rglob("images/**/*.png"))
    assert len(images) == 8


def test_test_image_auroc_ranks_the_predicted_scores(trained: dict) -> None:
    """The reported image AUROC is the ranking of the scores predict gives, by an independent count."""
    (results,) = trained["engine"].test(model=trained["model"], datamodule=trained["datamodule"],
                                         ckpt_path=trained["checkpoint"])
    batches = trained["engine"].predict(model=trained["model"], datamodule=trained["datamodule"],
                                        ckpt_path=trained["checkpoint"])
    scores = torch.cat([batch.pred_score.flatten() for batch in batches]).tolist()
    labels = torch.cat([batch.gt_label.flatten() for batch in batches]).tolist()
    defective = [score for score, label in zip(scores, labels, strict=True) if label]
    normal = [score for score, label in zip(scores, labels, strict=True) if not label]
    # AUROC = P(defective score > normal score), ties counted half (Mann-Whitney).
    wins = sum((d > n) + 0.5 * (d == n) for d in defective for n in normal)
    assert results["image_AUROC"] == pytest.approx(wins / (len(defective) * len(normal)), abs=1e-6)
    # The pixel AUROC likewise, over every pixel of the predicted maps against the masks.
    maps = torch.cat([batch.anomaly_map.flatten() for batch in batches]).numpy()
    masks = torch.cat([batch.gt_mask.flatten() for batch in batches]).numpy().astype(bool)
    assert results["pixel_AUROC"] == pytest.approx(roc_auc_score(masks, maps), abs=1e-4)


def test_validate_reports_validation_metrics(trained: dict) -> None:
    (results,) = trained["engine"].validate(model=trained["model"], datamodule=trained["datamodule"],
                                             ckpt_path=trained["checkpoint"])
    assert {"image_AUROC", "pixel_AUPRO"} <= set(results)


def test_checkpoint_reload_restores_evaluator_with_aupro(trained: dict) -> None:
    model = RecSem.load_from_checkpoint(trained["checkpoint"])
    assert any(isinstance(metric, AUPRO) for metric in model.evaluator.test_metrics)
    assert any(isinstance(metric, AUPRO) for metric in model.evaluator.val_metrics)
    assert model.hparams["image_size"] == TINY_RECSEM["image_size"]
    state = torch.load(trained["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())


def _numpy(value: object) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _predict(trained: dict, image: Path) -> tuple[float, np.ndarray]:
    (batch,) = trained["engine"].predict(model=trained["model"], data_path=image, ckpt_path=trained["checkpoint"])
    return float(batch.pred_score[0]), batch.anomaly_map[0].squeeze().cpu().numpy()


@pytest.fixture(scope="module")
def large_image(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A defective test image enlarged to 150 x 110 px with fine noise: the model must shrink it."""
    source = next((mvtec_root / "dummy" / "test" / "defect").glob("*.png"))
    image = np.asarray(Image.open(source).convert("RGB").resize((110, 150), Image.Resampling.BICUBIC), dtype=float)
    noise = np.random.default_rng(0).normal(0, 25, image.shape)
    path = tmp_path_factory.mktemp("large") / "large.png"
    Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8)).save(path)
    return path


def test_training_and_prediction_resize_with_antialiasing(trained: dict, large_image: Path) -> None:
    model = trained["model"]
    pixels = torch.from_numpy(np.asarray(Image.open(large_image), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    size = model.model.image_size
    antialiased = torch.nn.functional.interpolate(pixels, size=size, mode="bilinear", antialias=True)
    assert model.pre_processor.transform.antialias is True
    assert torch.allclose(model.pre_processor.transform(pixels), antialiased, atol=1e-5)
    assert torch.allclose(model.pre_processor(pixels), antialiased, atol=1e-5)  # what gets exported


class _StoredImages(Callback):
    """Keeps a copy of the images that training batches are gathered from."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: ARG002
        self.images = trainer.train_dataloader.dataset.images.float().clone()


def test_training_batches_come_from_antialiased_images(tmp_path: Path) -> None:
    """What training stores is the exported resize of each file, not a resize that aliases."""
    root = write_mvtec_dataset(tmp_path / "data", num_train=4, num_test_good=2, num_test_defective=2, size=128)
    datamodule = MVTecAD(root=root, category="dummy", **TINY_BATCHES, num_workers=0)
    stored = _StoredImages()
    model = RecSem(**TINY_RECSEM)
    engine = Engine(default_root_dir=tmp_path / "project", max_steps=1, logger=False, accelerator="cpu", devices=1,
                    callbacks=[stored])
    engine.fit(model=model, datamodule=datamodule)
    files = torch.stack([torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)
                         for path in datamodule.train_data.samples.image_path]).permute(0, 3, 1, 2)
    size = model.model.image_size
    assert files.shape[-2:] == (128, 128) and stored.images.shape[-2:] == size
    antialiased = torch.nn.functional.interpolate(files, size=size, mode="bilinear", antialias=True)
    aliased = torch.nn.functional.interpolate(files, size=size, mode="bilinear", antialias=False)
    assert (stored.images - antialiased).abs().max() < 1e-3  # float16 storage
    assert (stored.images - aliased).abs().max() > 1e-2


def _fit_recording_training_images(root: Path, project: Path, pre_processor: PreProcessor) -> list[torch.Tensor]:
    """The images each training step gets, after a short fit with ``pre_processor``."""
    datamodule = MVTecAD(root=root, category="dummy", **TINY_BATCHES, num_workers=0)
    model = RecSem(**TINY_RECSEM, pre_processor=pre_processor)
    seen: list[torch.Tensor] = []
    training_loss = model.training_loss

    def recording(images: torch.Tensor, with_defect: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(images.detach().clone())
        return training_loss(images, with_defect)

    model.training_loss = recording
    engine = Engine(default_root_dir=project, max_steps=2, logger=False, accelerator="cpu", devices=1)
    engine.fit(model=model, datamodule=datamodule)
    assert "on_train_batch_start" not in vars(pre_processor)  # its own hook is back for later fits
    return seen


def test_a_users_pre_processing_reaches_training_once(tmp_path: Path) -> None:
    """anomalib applies the pre-processor to every training batch; RecSem has applied it to the stored images."""
    root = write_mvtec_dataset(tmp_path / "data", num_train=4, num_test_good=2, num_test_defective=2, size=96)
    size = TINY_RECSEM["image_size"]
    transform = v2.Compose([v2.Resize(2 * size, antialias=True), v2.CenterCrop(size)])
    seen = _fit_recording_training_images(root, tmp_path / "project", PreProcessor(transform=transform))
    files = torch.stack([torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)
                         for path in sorted((root / "dummy" / "train" / "good").glob("*.png"))]).permute(0, 3, 1, 2)
    once = transform(files)
    assert seen and all(images.shape[-2:] == once.shape[-2:] for images in seen)
    for image in torch.cat(seen):  # each training image is one file cropped once, not a crop of a crop
        assert (once - image).abs().flatten(1).max(dim=1).values.min() < 1e-3


def test_pre_processing_that_leaves_the_pixel_range_is_refused(tmp_path: Path) -> None:
    root = write_mvtec_dataset(tmp_path / "data", num_train=4, num_test_good=2, num_test_defective=2, size=64)
    normalise = v2.Compose([v2.Resize(TINY_RECSEM["image_size"]), v2.Normalize(mean=[0.485, 0.456, 0.406],
                                                                                std=[0.229, 0.224, 0.225])])
    with pytest.raises(ValueError, match=r"(?s)pre-processor.*Normalize.*\[0, 1\]"):
        _fit_recording_training_images(root, tmp_path / "project", PreProcessor(transform=normalise))


def test_onnx_export_writes_its_opset_without_a_conversion_traceback(
    trained: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        exported = trained["model"].to_onnx(tmp_path)
    opsets = {entry.domain: entry.version for entry in onnx.load(exported, load_external_data=False).opset_import}
    assert opsets[""] == ONNX_OPSET
    assert not [record for record in caplog.records if record.exc_info or "convert" in record.getMessage()]


def test_validate_then_fit_then_export_without_a_pre_processor(mvtec_root: Path, tmp_path: Path) -> None:
    """Validation states left by ``Engine.validate`` (inference mode) take a fit's updates; with nothing
    to resize its input, the exported graph is fixed at the network's size."""
    datamodule = MVTecAD(root=mvtec_root, category="dummy", **TINY_BATCHES, num_workers=0)
    model = RecSem(**TINY_RECSEM, pre_processor=False)
    engine = Engine(default_root_dir=tmp_path, max_epochs=1, logger=False, accelerator="cpu", devices=1)
    engine.validate(model=model, datamodule=datamodule)
    engine.fit(model=model, datamodule=datamodule)
    exported = engine.export(model=model, export_type=ExportType.ONNX, export_root=tmp_path)
    session = onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, *model.model.image_size]
    pixels = np.random.default_rng(0).random((1, 3, *model.model.image_size), dtype=np.float32)
    score = session.run(["pred_score"], {session.get_inputs()[0].name: pixels})[0]
    assert np.isfinite(score).all()


@pytest.mark.parametrize("export_type", [ExportType.TORCH, ExportType.ONNX, ExportType.OPENVINO])
@pytest.mark.parametrize("at_model_size", [True, False], ids=["model-size", "shrunk"])
def test_export_and_inference_match_engine_predict(
    trained: dict, mvtec_root: Path, large_image: Path, export_type: ExportType, at_model_size: bool,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # OpenVINO writes a cache folder into the working directory.
    exported = trained["engine"].export(
        model=trained["model"], export_type=export_type, export_root=tmp_path, ckpt_path=trained["checkpoint"],
    )
    assert exported is not None and Path(exported).is_file()
    image = next((mvtec_root / "dummy" / "test" / "defect").glob("*.png")) if at_model_size else large_image
    score, anomaly_map = _predict(trained, image)

    if export_type == ExportType.TORCH:
        monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
        result = TorchInferencer(path=exported, device="cpu").predict(image)
    elif export_type == ExportType.OPENVINO:
        # f32: on CPUs with bf16 support OpenVINO otherwise computes in bf16 by default.
        result = OpenVINOInferencer(path=exported, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"}).predict(image)
    else:  # ONNX Runtime, the reference runtime for the format, fed as anomalib's inferencers feed a model
        session = onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"])
        pixels = OpenVINOInferencer.pre_process(read_image(image, as_tensor=False))
        outputs = session.run(None, {session.get_inputs()[0].name: pixels})
        result = SimpleNamespace(**dict(zip([output.name for output in session.get_outputs()], outputs, strict=True)))
    exported_score = float(_numpy(result.pred_score).reshape(-1)[0])
    exported_map = _numpy(result.anomaly_map).squeeze()
    assert exported_score == pytest.approx(score, abs=1e-3)
    assert exported_map.shape == anomaly_map.shape
    assert np.abs(exported_map - anomaly_map).max() < 1e-3
