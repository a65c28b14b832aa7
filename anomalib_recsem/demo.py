"""The offline demo: generate data, train, test, export to OpenVINO, infer, report.

Everything runs on a CPU with no files or network: a small DAGM-layout dataset of
procedural textures is generated, with defects (scratches, spots, dents, stains) drawn by
a process unrelated to the synthetic defects RecSem trains on, so the demo measures
generalisation to unseen defect types rather than recall of its own training signal.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from anomalib.deploy import ExportType, OpenVINOInferencer
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from matplotlib import colormaps
from PIL import Image
from sklearn.metrics import roc_auc_score

from anomalib_recsem.data.dagm import DAGM
from anomalib_recsem.data.dagm.generator import write_dagm_dataset
from anomalib_recsem.models.recsem import RecSem
from anomalib_recsem.presets import batch_sizes, model_arguments

logger = logging.getLogger(__name__)

#: Below this, the reconstructions vary too little across images to follow their inputs:
#: spread = per-pixel standard deviation across images of the reconstructions / of the inputs.
FOLLOWS_INPUT_SPREAD = 0.5

#: OpenVINO computes in bf16 by default on CPUs that support it; f32 matches PyTorch.
OPENVINO_F32 = {"INFERENCE_PRECISION_HINT": "f32"}


@dataclass
class DemoSettings:
    """What the demo generates and how long it trains.

    Attributes:
        output: Folder for data, results, the exported model and the report.
        epochs: Training epochs.
        num_train: Defect-free training images.
        num_test: Defect-free and (as many) defective test images.
        data_size: Side of the generated images (the model resizes them).
        seed: Seed for data generation and training.
        quick: The tiny preset, for a check that everything runs (``configs/recsem_tiny.yaml``);
            otherwise the CPU preset (``configs/recsem_small.yaml``).
        progress: Show Lightning's progress bar.
    """

    output: Path = Path("demo_output")
    epochs: int = 30
    num_train: int = 80
    num_test: int = 16
    data_size: int = 256
    seed: int = 42
    quick: bool = False
    progress: bool = True
    model_arguments: dict[str, object] = field(init=False)
    batch_sizes: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        for name in ("epochs", "num_train", "num_test", "data_size"):
            if getattr(self, name) < 1:
                msg = f"{name} must be a positive integer, got {getattr(self, name)}."
                raise ValueError(msg)
        preset = "recsem_tiny" if self.quick else "recsem_small"
        self.model_arguments = model_arguments(preset)
        self.batch_sizes = batch_sizes(preset)


@dataclass
class DemoResult:
    """Where the demo put things and what it measured."""

    metrics: dict[str, float]
    report: Path
    openvino_model: Path
    overlays: list[Path]
    seconds: dict[str, float]


def run_demo(settings: DemoSettings) -> DemoResult:
    """Run the whole demo.

    Args:
        settings: What to generate and how long to train.

    Returns:
        DemoResult: Metrics, timings and the paths written.
    """
    seconds: dict[str, float] = {}
    output = settings.output
    started = time.perf_counter()
    data_root = write_dagm_dataset(
        output / "data",
        categories=("Class1",),
        num_train=settings.num_train,
        num_test_normal=settings.num_test,
        num_test_defective=settings.num_test,
        num_train_defective=0,
        image_size=settings.data_size,
        seed=settings.seed,
        overwrite=True,
    )
    seconds["generate data"] = time.perf_counter() - started

    seed_everything(settings.seed, workers=True)
    # No validation split: thresholds come from the test images, as anomalib does by default
    # for MVTec AD; the demo's F1 scores are therefore optimistic, AUROC and AUPRO are not.
    datamodule = DAGM(
        root=data_root,
        category="Class1",
        train_batch_size=settings.batch_sizes[0],
        eval_batch_size=settings.batch_sizes[1],
        num_workers=0,
        val_split_mode="same_as_test",
        seed=settings.seed,
    )
    model = RecSem(**settings.model_arguments)
    engine = Engine(
        default_root_dir=output / "results",
        accelerator="cpu",
        devices=1,
        logger=False,
        max_epochs=settings.epochs,
        enable_progress_bar=settings.progress,
        deterministic="warn",
    )
    started = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    seconds["train"] = time.perf_counter() - started
    # Logged by the last validation (on the test images): is the reconstruction doing its job?
    health = {name: float(engine.trainer.callback_metrics[name])
              for name in ("reconstruction_error", "reconstruction_spread", "residual_pixel_AUROC")}

    started = time.perf_counter()
    (metrics,) = engine.test(model=model, datamodule=datamodule)
    seconds["test"] = time.perf_counter() - started

    started = time.perf_counter()
    openvino_model = engine.export(model=model, export_type=ExportType.OPENVINO, export_root=output / "export")
    seconds["export"] = time.perf_counter() - started

    started = time.perf_counter()
    samples = datamodule.test_data.samples
    inferencer = OpenVINOInferencer(path=openvino_model, device="CPU", config=OPENVINO_F32)
    predictions = [inferencer.predict(Path(path)) for path in samples.image_path]
    seconds["openvino inference"] = time.perf_counter() - started
    scores = np.array([float(np.asarray(prediction.pred_score).reshape(-1)[0]) for prediction in predictions])
    labels = samples.label_index.to_numpy()
    metrics = {name: float(value) for name, value in metrics.items()} | health
    metrics["openvino_image_AUROC"] = float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else float("nan")

    report_dir = output / "report"
    overlays = write_overlays(model, samples, predictions, report_dir / "overlays")
    report = write_report(report_dir, metrics, seconds, settings, overlays)
    return DemoResult(metrics=metrics, report=report, openvino_model=Path(openvino_model), overlays=overlays,
                      seconds=seconds)


def _to_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) floats in [0, 1] -> (H, W, 3) uint8."""
    if array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
        array = array if array.shape[-1] == 3 else np.repeat(array[..., :1], 3, axis=-1)
    else:
        array = np.repeat(array[..., None], 3, axis=-1)
    return (np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)


def write_overlays(model: RecSem, samples, predictions: list, folder: Path) -> list[Path]:  # noqa: ANN001
    """One PNG per test image: input | reconstruction | anomaly map over input | ground truth.

    The reconstruction comes from the PyTorch model (OpenVINO exports only the map and
    score); the anomaly map is OpenVINO's.

    Returns:
        list[Path]: The PNG files, in the order of ``samples``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    heat = colormaps["jet"]
    model = model.eval().cpu()
    paths = []
    for (_, sample), prediction in zip(samples.iterrows(), predictions, strict=True):
        image = torch.from_numpy(np.asarray(Image.open(sample.image_path).convert("RGB"), dtype=np.float32) / 255.0)
        image = model.pre_processor(image.permute(2, 0, 1)[None])
        with torch.no_grad():
            reconstruction = model.model.reconstruct(image)[0][0].numpy()
        image = image[0].numpy()
        anomaly_map = np.asarray(prediction.anomaly_map, dtype=np.float32).squeeze()
        overlay = (0.5 * _to_rgb(image) + 0.5 * heat(anomaly_map)[..., :3] * 255).astype(np.uint8)
        height, width = anomaly_map.shape
        if sample.mask_path:
            truth = np.asarray(Image.open(sample.mask_path).convert("L").resize((width, height), Image.NEAREST)) / 255.0
        else:
            truth = np.zeros((height, width))
        panels = [_to_rgb(image), _to_rgb(reconstruction), overlay, _to_rgb(truth)]
        gap = np.full((height, 4, 3), 255, dtype=np.uint8)
        row = np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)
        path = folder / f"{Path(sample.image_path).stem}_{sample.label}.png"
        Image.fromarray(row).save(path)
        paths.append(path)
    return paths


def reconstruction_verdict(metrics: dict[str, float]) -> str:
    """One plain sentence on whether the reconstructions follow their inputs."""
    spread = metrics["reconstruction_spread"]
    numbers = (
        f"(spread across images {spread:.2f} of the inputs'; error on normal images "
        f"{metrics['reconstruction_error']:.4f}; the residual |input - reconstruction| alone finds defect pixels "
        f"with AUROC {metrics['residual_pixel_AUROC']:.2f})"
    )
    if spread < FOLLOWS_INPUT_SPREAD:
        return (
            f"**The reconstructions do not follow the inputs** {numbers}: they are close to one image whatever the "
            "input, so the anomaly maps below come from the discriminator alone. Train longer."
        )
    return f"The reconstructions follow the inputs {numbers}."


def write_report(folder: Path, metrics: dict[str, float], seconds: dict[str, float], settings: DemoSettings,
                 overlays: list[Path]) -> Path:
    """Write ``metrics.csv`` and ``report.md`` and return the latter."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metric", "value"])
        writer.writerows(sorted(metrics.items()))
    lines = [
        "# RecSem demo report",
        "",
        f"Generated DAGM-layout data: {settings.num_train} defect-free training images, {settings.num_test} "
        f"defect-free and {settings.num_test} defective test images ({settings.data_size} px; scratches, spots, dents, "
        "stains). Model: RecSem " + ", ".join(f"{key}={value}" for key, value in settings.model_arguments.items())
        + f", {settings.epochs} epochs, CPU.",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items())],
        "",
        "`openvino_image_AUROC` is computed from the exported OpenVINO model's scores (f32).",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {value:.1f} |" for name, value in seconds.items()],
        "",
        "## Reconstructions",
        "",
        reconstruction_verdict(metrics),
        "",
        "Overlays (input | reconstruction | anomaly map | ground truth):",
        "",
        *[f"![{path.stem}](overlays/{path.name})" for path in overlays],
        "",
    ]
    report = folder / "report.md"
    report.write_text("\n".join(lines))
    return report
