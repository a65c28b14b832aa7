"""Accuracy benchmark: RecSem against anomalib's DRAEM on the Magnetic Tile Defect dataset.

Both models are trained and tested through anomalib's ``Engine`` on the same data, at the
same image size, batch size, number of epochs and seed, with defect textures from the same
DTD folder, and scored with the same metrics (image AUROC/F1, pixel AUROC/F1, pixel AUPRO
at FPR 0.3). Both are narrowed to a CPU preset (first-block widths 16/16 at 128 px), so the
comparison is of the two methods at equal size and budget, not of published checkpoints.

Commands (from the repository root)::

    uv run python benchmarks/accuracy.py                      # RecSem + DRAEM, seeds 0 1 2
    uv run python benchmarks/accuracy.py --ablation           # RecSem variants, seeds 0 1 2
    uv run python benchmarks/accuracy.py --summarise-only     # ACCURACY.md + chart
    uv run python benchmarks/accuracy.py --smoke --output /tmp/acc   # < 2 min check
    uv run python benchmarks/accuracy.py --preset paper --image-size 256 --epochs 20   # GPU: full widths

Results are appended to ``<output>/accuracy_<category>.csv`` (one row per run) and
``<output>/ablation_<category>.csv``; runs already recorded for the same
(model, variant, seed) are skipped, so a campaign can be run in parts. See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import logging
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Real data lives beside the project (``../shared/datasets`` from the repository root).
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results"
DEFAULT_CATEGORY = "magnetic_tile"
#: Both models draw defect textures from these files. DRAEM's PerlinAnomalyGenerator
#: ``rglob``s its ``dtd_dir`` and RecSem's texture folder does too, so handing both the same
#: folder gives them exactly the same 1200 JPEGs.
DEFAULT_TEXTURES = SHARED_DATASETS / "dtd" / "images"

#: Chosen from measured times on 2 idle CPU cores (benchmarks/README.md): a RecSem run at
#: the CPU preset on all 761 training images takes about 7 minutes, a DRAEM run about 5, and
#: 3 seeds x 2 models about 35 minutes, and the 3 x 3 ablation runs another hour.
DEFAULT_EPOCHS = 3
DEFAULT_TRAIN_LIMIT: int | None = None
#: 0 is anomalib's default: validate on the whole test set.
DEFAULT_VAL_FRACTION = 0.0

#: DifferNet's image AUROC on this dataset (Rudolph et al., WACV 2021), the goal to beat.
DIFFERNET_IMAGE_AUROC = 0.977

MODELS = ("recsem", "draem")
#: ``cpu``: both models narrowed to RecSem's CPU preset (widths 16/16, 20 prototypes, one
#: positive and one negative copy per image). ``paper``: RecSem as published (widths 128/64,
#: 50 prototypes, ratios 2/2) against anomalib's stock DRAEM (widths 128/64); GPU work.
PRESETS = ("cpu", "paper")
METRICS = ("image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO")
#: The main comparison uses the CPU preset of each model under this variant name.
BASELINE = "default"
#: RecSem ablations: each changes one thing from the baseline. ``memory_scales=None`` is
#: filled in per image size (the finest of the default scales, e.g. ``[8]`` at 128 px).
ABLATIONS: dict[str, dict[str, Any]] = {
    BASELINE: {},
    "one_scale": {"memory_scales": None},
    "no_location_embedding": {"location_embedding": False},
    "fusion_discriminator": {"discriminator": "fusion"},
}

COLUMNS = (
    "model",
    "variant",
    "seed",
    "category",
    "image_size",
    "epochs",
    "train_images",
    "subset_seed",
    "val_fraction",
    "val_images",
    "test_images",
    "batch_size",
    "reconstruction_width",
    "discriminator_width",
    "memory_scales",
    "location_embedding",
    "discriminator",
    "textures",
    "train_seconds",
    "train_seconds_per_epoch",
    "test_seconds",
    "train_cpu_seconds_per_epoch",
    "test_cpu_seconds",
    "load_average",
    *METRICS,
    "torch_threads",
    "accelerator",
    "device_name",
    "preset",
    "finished_at",
    "source",
    "error",
)
#: Settings that must agree between rows of one CSV for means over seeds to make sense.
SETTINGS_COLUMNS = (
    "category",
    "image_size",
    "epochs",
    "train_images",
    "subset_seed",
    "val_fraction",
    "batch_size",
    "reconstruction_width",
    "discriminator_width",
    "preset",
)

logger = logging.getLogger("benchmarks.accuracy")


@dataclass(frozen=True)
class Settings:
    """What every run of one invocation shares.

    Attributes:
        data_root: MVTec AD-layout root.
        category: Category folder under ``data_root``.
        textures: Folder of defect texture images given to both models.
        output: Folder for the CSVs, the summary and the log.
        image_size: Side the images are resized to (a multiple of 32).
        epochs: Training epochs.
        train_limit: Use a random subset of this many training images (``None``: all).
        subset_seed: Seed of that subset and of the validation split; fixed across models
            and seeds so every run sees the same images.
        val_fraction: ``0``: validate on the whole test set (anomalib's ``same_as_test``;
            thresholds, hence F1 scores, are then tuned on the test images). Otherwise move
            this fraction of the test images (stratified) into a separate validation set,
            which halves evaluation time and makes F1 honest, at the price of a smaller test set.
        batch_size: Train and eval batch size.
        num_workers: DataLoader workers.
        reconstruction_width: First-block width of both reconstruction networks.
        discriminator_width: First-block width of both discriminators.
        recsem_arguments: Other RecSem constructor arguments (the CPU preset).
        keep_runs: Keep anomalib's run folders (checkpoints) under ``output/runs``.
        progress: Show Lightning's progress bar.
        accelerator: Lightning accelerator (``auto``: the GPU where there is one).
        preset: A :data:`PRESETS` name; ``paper`` runs get their own CSV.
    """

    data_root: Path
    category: str
    textures: Path
    output: Path
    image_size: int = 128
    epochs: int = DEFAULT_EPOCHS
    train_limit: int | None = DEFAULT_TRAIN_LIMIT
    subset_seed: int = 0
    val_fraction: float = DEFAULT_VAL_FRACTION
    batch_size: int = 8
    num_workers: int = 0
    reconstruction_width: int = 16
    discriminator_width: int = 16
    recsem_arguments: dict[str, Any] = field(default_factory=dict)
    keep_runs: bool = False
    progress: bool = False
    accelerator: str = "auto"
    preset: str = "cpu"

    @property
    def accuracy_csv(self) -> Path:
        """Main comparison results."""
        suffix = "" if self.preset == "cpu" else f"_{self.preset}"
        return self.output / f"accuracy_{self.category}{suffix}.csv"

    @property
    def ablation_csv(self) -> Path:
        """RecSem ablation results."""
        return self.output / f"ablation_{self.category}.csv"

    def expected_train_images(self) -> int:
        """Training images a run will use, counted from the folder before any run starts."""
        from torchvision.datasets.folder import IMG_EXTENSIONS

        folder = self.data_root / self.category / "train" / "good"
        available = sum(1 for path in folder.iterdir() if path.suffix.lower() in IMG_EXTENSIONS)
        return available if self.train_limit is None else min(self.train_limit, available)


@dataclass(frozen=True)
class RunSpec:
    """One training + test run.

    Attributes:
        model: ``"recsem"`` or ``"draem"``.
        variant: :data:`BASELINE` or an :data:`ABLATIONS` key (RecSem only).
        seed: Seed for weights, shuffling and synthetic defects.
    """

    model: str
    variant: str
    seed: int

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the run in a CSV (all strings, as read back)."""
        return (self.model, self.variant, str(self.seed))

    def __str__(self) -> str:
        return f"{self.model}/{self.variant}/seed {self.seed}"


# --------------------------------------------------------------------------------------
# Building models and data
# --------------------------------------------------------------------------------------


def recsem_arguments(settings: Settings, variant: str) -> dict[str, Any]:
    """RecSem constructor arguments for a variant.

    Args:
        settings: Shared settings.
        variant: A key of :data:`ABLATIONS`.

    Returns:
        dict[str, Any]: Keyword arguments for :class:`anomalib_recsem.RecSem`.
    """
    from anomalib_recsem.models.recsem.torch_model import default_memory_scales

    arguments: dict[str, Any] = {
        **settings.recsem_arguments,
        "image_size": settings.image_size,
        "reconstruction_width": settings.reconstruction_width,
        "discriminator_width": settings.discriminator_width,
        "anomaly_source": str(settings.textures),
        "max_epochs": settings.epochs,
    }
    overrides = dict(ABLATIONS[variant])
    if "memory_scales" in overrides and overrides["memory_scales"] is None:
        # Keep the finer of the two default scales: the ablation removes the coarse one.
        overrides["memory_scales"] = [default_memory_scales((settings.image_size,) * 2)[-1]]
    arguments.update(overrides)
    return arguments


def build_model(spec: RunSpec, settings: Settings) -> Any:
    """Construct the model of a run with the shared metric set and no visualiser.

    Visualisation is off because it writes one PNG per test image, which costs time and
    measures nothing.

    Args:
        spec: The run.
        settings: Shared settings.

    Returns:
        AnomalibModule: RecSem or the narrowed DRAEM.

    Raises:
        FileNotFoundError: If DRAEM would find no texture files (it would otherwise
            download DTD, or silently fall back to Perlin noise for an empty folder).
    """
    from anomalib_recsem import RecSem

    if spec.model == "recsem":
        return RecSem(**recsem_arguments(settings, spec.variant), visualizer=False)

    from anomalib.models import Draem
    from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork, ReconstructiveSubNetwork

    if not settings.textures.is_dir():
        msg = f"Texture folder {settings.textures} does not exist; refusing to let DRAEM download DTD."
        raise FileNotFoundError(msg)
    size = (settings.image_size, settings.image_size)
    draem = Draem(
        dtd_dir=settings.textures,
        pre_processor=Draem.configure_pre_processor(size),
        # The same test metrics as RecSem (AUPRO included), so the rows are comparable.
        evaluator=RecSem.configure_evaluator(),
        visualizer=False,
    )
    if not draem.augmenter.anomaly_source_paths:
        msg = f"DRAEM found no texture images under {settings.textures}."
        raise FileNotFoundError(msg)
    if settings.preset == "paper":
        return draem
    # The stock widths (128/64, 97 M parameters) are GPU work; narrow them like RecSem's preset.
    draem.model.reconstructive_subnetwork = ReconstructiveSubNetwork(base_width=settings.reconstruction_width)
    draem.model.discriminative_subnetwork = DiscriminativeSubNetwork(
        in_channels=6,
        out_channels=2,
        base_width=settings.discriminator_width,
    )
    return draem


def build_datamodule(settings: Settings) -> Any:
    """MVTec AD datamodule, set up now so its training set can be subsampled.

    ``setup`` is called with a ``TrainerFn`` stage: only then does anomalib mark the
    datamodule as set up, so the Trainer's own ``setup`` call keeps the subset instead of
    re-reading the folder.

    Args:
        settings: Shared settings.

    Returns:
        MVTecAD: The datamodule.
    """
    from anomalib.data import MVTecAD
    from lightning.pytorch.trainer.states import TrainerFn

    split = {"val_split_mode": "from_test", "val_split_ratio": settings.val_fraction} if settings.val_fraction else {}
    datamodule = MVTecAD(
        root=settings.data_root,
        category=settings.category,
        train_batch_size=settings.batch_size,
        eval_batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        # The split must not change with the training seed, or seeds would see different test sets.
        seed=settings.subset_seed,
        **split,
    )
    datamodule.setup(TrainerFn.FITTING)
    available = len(datamodule.train_data)
    if settings.train_limit is not None and settings.train_limit < available:
        indices = sorted(random.Random(settings.subset_seed).sample(range(available), settings.train_limit))
        datamodule.train_data.subsample(indices, inplace=True)
    logger.info(
        "Data: %s/%s, %d of %d training images, %d validation and %d test images",
        settings.data_root,
        settings.category,
        len(datamodule.train_data),
        available,
        len(datamodule.val_data),
        len(datamodule.test_data),
    )
    return datamodule


def _epoch_timer() -> Any:
    """A callback timing the training batches of each epoch (validation excluded).

    It records wall-clock and process CPU time: on a shared machine the wall clock depends
    on what else runs, while the CPU time is the work the epoch needed.
    """
    from lightning.pytorch import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self.cpu_durations: list[float] = []
            self._start = self._last = (0.0, 0.0)

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            del trainer, pl_module
            self._start = self._last = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
            del args, kwargs
            self._last = (time.perf_counter(), time.process_time())

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            del trainer, pl_module
            self.durations.append(self._last[0] - self._start[0])
            self.cpu_durations.append(self._last[1] - self._start[1])

    return EpochTimer()


def _load_average() -> float | str:
    """1-minute load average (how busy the machine was), where the OS reports one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return ""


def _device_name(device: Any) -> str:
    """The hardware a run used, for the CSV (GPU name, or CPU model and cores).

    Args:
        device: The trainer's root device (the model itself is back on the CPU after testing).
    """
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores)"


def run_one(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    """Train and test one model; return its CSV row (without bookkeeping columns).

    Args:
        spec: The run.
        settings: Shared settings.

    Returns:
        dict[str, Any]: Settings, timings and test metrics of the run.

    Raises:
        RuntimeError: If testing returned no metrics or the subset was not used.
    """
    import torch
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    seed_everything(spec.seed, workers=True)
    datamodule = build_datamodule(settings)
    model = build_model(spec, settings)
    timer = _epoch_timer()
    loads = [_load_average()]
    with tempfile.TemporaryDirectory(prefix="recsem-accuracy-") as scratch:
        root = (
            settings.output / "runs" / f"{spec.model}_{spec.variant}_seed{spec.seed}"
            if settings.keep_runs
            else Path(scratch)
        )
        engine = Engine(
            accelerator=settings.accelerator,
            devices=1,
            max_epochs=settings.epochs,
            logger=False,
            default_root_dir=root,
            callbacks=[timer],
            # Validation only sets the F1 thresholds and normalisation (AUROC/AUPRO do not
            # depend on it), and it covers the whole test set: once, after the last epoch.
            check_val_every_n_epoch=settings.epochs,
            enable_progress_bar=settings.progress,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        engine.fit(model=model, datamodule=datamodule)
        train_seconds = time.perf_counter() - start
        loads.append(_load_average())
        start, cpu_start = time.perf_counter(), time.process_time()
        results = engine.test(model=model, datamodule=datamodule, verbose=False)
        test_seconds, test_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        loads.append(_load_average())
    if not results or not all(name in results[0] for name in METRICS):
        msg = f"Testing returned {results!r}, missing some of {METRICS}."
        raise RuntimeError(msg)
    used = len(datamodule.train_data)
    if settings.train_limit is not None and used > settings.train_limit:
        msg = f"Trained on {used} images, more than --train-limit {settings.train_limit}."
        raise RuntimeError(msg)

    known_loads = [load for load in loads if isinstance(load, float)]
    if spec.model == "recsem":
        arguments = recsem_arguments(settings, spec.variant)
        scales = ",".join(str(scale) for scale in model.model.memory_scales)
        location = str(bool(arguments.get("location_embedding", True)))
        discriminator = str(arguments.get("discriminator", "unet"))
    else:
        scales, location, discriminator = "", "", "draem"
    return {
        "model": spec.model,
        "variant": spec.variant,
        "seed": spec.seed,
        "category": settings.category,
        "image_size": settings.image_size,
        "epochs": settings.epochs,
        "train_images": used,
        "subset_seed": settings.subset_seed,
        "val_fraction": settings.val_fraction,
        "val_images": len(datamodule.val_data),
        "test_images": len(datamodule.test_data),
        "batch_size": settings.batch_size,
        "reconstruction_width": settings.reconstruction_width,
        "discriminator_width": settings.discriminator_width,
        "memory_scales": scales,
        "location_embedding": location,
        "discriminator": discriminator,
        "textures": str(settings.textures),
        "train_seconds": round(train_seconds, 2),
        "train_seconds_per_epoch": round(statistics.fmean(timer.durations), 2) if timer.durations else "",
        "test_seconds": round(test_seconds, 2),
        "train_cpu_seconds_per_epoch": round(statistics.fmean(timer.cpu_durations), 2) if timer.cpu_durations else "",
        "test_cpu_seconds": round(test_cpu_seconds, 2),
        "load_average": round(statistics.fmean(known_loads), 2) if known_loads else "",
        **{name: float(results[0][name]) for name in METRICS},
        "torch_threads": torch.get_num_threads(),
        "accelerator": type(engine.trainer.accelerator).__name__.removesuffix("Accelerator").lower(),
        "device_name": _device_name(engine.trainer.strategy.root_device),
        "preset": settings.preset,
    }


# --------------------------------------------------------------------------------------
# CSV bookkeeping
# --------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a results CSV (empty if it does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append a row, rewriting the file so a column added later still gets a header.

    The file is replaced atomically, so an interrupted campaign never leaves a torn CSV.
    """
    rows = [*read_rows(path), {key: "" if value is None else value for key, value in row.items()}]
    extra = sorted({key for existing in rows for key in existing} - set(COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=[*COLUMNS, *extra], restval="")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def succeeded(row: dict[str, str]) -> bool:
    """A row without an error whose metrics were written."""
    return not row.get("error") and bool(row.get("image_AUROC"))


def row_key(row: dict[str, str]) -> tuple[str, str, str]:
    """(model, variant, seed) of a CSV row."""
    return (row.get("model", ""), row.get("variant", ""), row.get("seed", ""))


def planned_settings(settings: Settings) -> dict[str, str]:
    """The :data:`SETTINGS_COLUMNS` a run with these settings will write, as strings."""
    return {
        "category": settings.category,
        "image_size": str(settings.image_size),
        "epochs": str(settings.epochs),
        "train_images": str(settings.expected_train_images()),
        "subset_seed": str(settings.subset_seed),
        "val_fraction": str(settings.val_fraction),
        "batch_size": str(settings.batch_size),
        "reconstruction_width": str(settings.reconstruction_width),
        "discriminator_width": str(settings.discriminator_width),
        "preset": settings.preset,
    }


def settings_conflicts(rows: list[dict[str, str]], planned: dict[str, str]) -> list[str]:
    """Differences between recorded successful rows and the settings about to be used."""
    conflicts = set()
    for row in rows:
        if not succeeded(row):
            continue
        for name, value in planned.items():
            if row.get(name, value) != value:
                conflicts.add(f"{name}: CSV has {row.get(name)!r}, this run would use {value!r}")
    return sorted(conflicts)


# --------------------------------------------------------------------------------------
# Campaign
# --------------------------------------------------------------------------------------


def run_campaign(specs: list[RunSpec], settings: Settings, csv_path: Path, resume: bool) -> list[RunSpec]:
    """Run the specs not yet recorded in ``csv_path``; record each as it finishes.

    Args:
        specs: Runs wanted.
        settings: Shared settings.
        csv_path: CSV to append to.
        resume: Skip runs that already have a successful row.

    Returns:
        list[RunSpec]: The runs that failed in this call.
    """
    done = {row_key(row) for row in read_rows(csv_path) if succeeded(row)}
    failed: list[RunSpec] = []
    for index, spec in enumerate(specs, start=1):
        if resume and spec.key in done:
            logger.info("[%d/%d] %s: already in %s, skipped", index, len(specs), spec, csv_path.name)
            continue
        if spec.variant == BASELINE and spec.model == "recsem" and csv_path == settings.ablation_csv:
            if resume and copy_baseline(spec, settings):
                continue
        logger.info("[%d/%d] %s: training %d epochs", index, len(specs), spec, settings.epochs)
        started = time.perf_counter()
        try:
            row = run_one(spec, settings)
        except Exception as error:  # noqa: BLE001 - every run is isolated; the failure is recorded and reported
            logger.exception("%s failed after %.0f s", spec, time.perf_counter() - started)
            failed.append(spec)
            message = " ".join(traceback.format_exception_only(type(error), error)).strip().replace("\n", " ")
            row = {
                "model": spec.model,
                "variant": spec.variant,
                "seed": spec.seed,
                **planned_settings(settings),
                "error": message[:500],
            }
        else:
            logger.info(
                "%s: image AUROC %.4f, pixel AUPRO %.4f, fit %.0f s",
                spec,
                row["image_AUROC"],
                row["pixel_AUPRO"],
                row["train_seconds"],
            )
        row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        append_row(csv_path, row)
    return failed


def copy_baseline(spec: RunSpec, settings: Settings) -> bool:
    """Reuse the main comparison's RecSem row as the ablation baseline when it matches.

    The ablation's ``default`` variant is exactly the RecSem run of the main comparison, so
    training it again would only cost time.

    Returns:
        bool: Whether a matching row was found and copied.
    """
    planned = planned_settings(settings)
    for row in reversed(read_rows(settings.accuracy_csv)):
        if row_key(row) == spec.key and succeeded(row) and all(row.get(k) == v for k, v in planned.items()):
            copied = {**row, "source": settings.accuracy_csv.name}
            append_row(settings.ablation_csv, copied)
            logger.info("%s: baseline copied from %s", spec, settings.accuracy_csv.name)
            return True
    return False


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


def latest_rows(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The last successful row per (model, variant, seed), and runs that never succeeded."""
    successes: dict[tuple[str, str, str], dict[str, str]] = {}
    failures: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in rows:
        key = row_key(row)
        if succeeded(row):
            successes[key] = row
            failures.pop(key, None)
        elif key not in successes:
            failures[key] = row
    return list(successes.values()), list(failures.values())


def _floats(rows: list[dict[str, str]], column: str) -> list[float]:
    values = []
    for row in rows:
        try:
            value = float(row.get(column, ""))
        except ValueError:
            continue
        if math.isfinite(value):
            values.append(value)
    return values


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN when undefined)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def standard_error(first: list[float], second: list[float]) -> float:
    """Standard error of the difference of two means over seeds (NaN with fewer than 2 runs each)."""
    if len(first) < 2 or len(second) < 2:
        return math.nan
    return math.sqrt(statistics.variance(first) / len(first) + statistics.variance(second) / len(second))


def fmt(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` (or the single value, or ``n/a``)."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "n/a"
    if math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _distinct(rows: list[dict[str, str]], column: str) -> str:
    values = sorted({row.get(column, "") for row in rows}, key=lambda value: (len(value), value))
    return ", ".join(value for value in values if value) or "n/a"


def summarise(output: Path, category: str) -> Path:
    """Write ``ACCURACY.md`` and the bar chart from the CSVs in ``output``.

    Args:
        output: Results folder.
        category: Dataset category whose CSVs to summarise.

    Returns:
        Path: The Markdown file.
    """
    accuracy_csv = output / f"accuracy_{category}.csv"
    ablation_csv = output / f"ablation_{category}.csv"
    rows, failures = latest_rows(read_rows(accuracy_csv))
    ablation_rows, ablation_failures = latest_rows(read_rows(ablation_csv))
    by_model = {
        model: [row for row in rows if row["model"] == model and row["variant"] == BASELINE] for model in MODELS
    }
    chart = output / f"accuracy_{category}.png"

    lines = [
        f"# Accuracy: RecSem vs DRAEM on `{category}`",
        "",
        f"Written by `benchmarks/accuracy.py` (rebuild: `uv run python benchmarks/accuracy.py --summarise-only`) "
        f"from `{accuracy_csv.name}`"
        f"{f' and `{ablation_csv.name}`' if ablation_rows else ''}"
        f" on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    if rows:
        lines += [
            "Both models are trained by anomalib's `Engine` on the same hardware with the same data, image size, batch "
            "size, epochs, "
            "seeds and DTD defect textures, and scored with the same metrics (pixel AUPRO at FPR ≤ 0.3). "
            "DRAEM is anomalib's `Draem` with both sub-networks narrowed to the same first-block widths as RecSem's "
            "CPU preset; its optimiser and loss are anomalib's.",
            "",
            "| setting | value |",
            "|---|---|",
            *(
                f"| {label} | {_distinct(rows, column)} |"
                for label, column in (
                    ("image size (px)", "image_size"),
                    ("epochs", "epochs"),
                    ("training images", "train_images"),
                    ("validation fraction of the test images (0: validate on all of them)", "val_fraction"),
                    ("test images", "test_images"),
                    ("batch size", "batch_size"),
                    ("reconstruction width", "reconstruction_width"),
                    ("discriminator width", "discriminator_width"),
                    ("seeds", "seed"),
                    ("hardware", "device_name"),
                    ("torch threads", "torch_threads"),
                )
            ),
            "",
            "| model | runs | image AUROC | image F1 | pixel AUROC | pixel F1 | pixel AUPRO | fit (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model, model_rows in by_model.items():
            if model_rows:
                cells = [fmt(_floats(model_rows, metric)) for metric in METRICS]
                cells.append(fmt(_floats(model_rows, "train_seconds"), 0))
                lines.append(f"| {model} | {len(model_rows)} | {' | '.join(cells)} |")
        lines += ["", "Mean ± sample standard deviation over seeds."]
        if any(float(row.get("val_fraction") or 0) == 0 for row in rows):
            lines += [
                "F1 scores use thresholds tuned on the test images themselves (validation set = test set, "
                "anomalib's default), so they are optimistic; AUROC and AUPRO do not depend on thresholds."
            ]
        lines.append("")
        lines += goal_lines(by_model)
        if plot(by_model, chart):
            lines += ["", f"![accuracy]({chart.name})", ""]
    else:
        lines += [f"No successful runs in `{accuracy_csv.name}` yet.", ""]

    lines += ablation_lines(ablation_rows)
    paper_rows, paper_failures = latest_rows(read_rows(output / f"accuracy_{category}_paper.csv"))
    lines += paper_lines(paper_rows)
    all_failures = [*failures, *ablation_failures, *paper_failures]
    if all_failures:
        lines += [
            "## Failed runs (no successful row yet)",
            "",
            "| model | variant | seed | error |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {row['model']} | {row['variant']} | {row['seed']} | {row.get('error', '').replace('|', '/')} |"
            for row in all_failures
        ]
        lines.append("")
    if category == DEFAULT_CATEGORY:
        dataset = (
            '- Dataset: Y. Huang, C. Qiu, K. Yuan, "Surface defect saliency of magnetic tile", '
            "*The Visual Computer* 36, 85–96 (2020): the Magnetic Tile Defect dataset, used in MVTec AD layout "
            "from `../shared/datasets/magnetic_tile`."
        )
    else:
        dataset = (
            f"- Dataset: category `{category}` ({_distinct([*rows, *ablation_rows], 'train_images')} training images)."
        )
    lines += [
        "## References",
        "",
        dataset,
        '- Defect textures: M. Cimpoi, S. Maji, I. Kokkinos, S. Mohamed, A. Vedaldi, "Describing Textures in the '
        'Wild", CVPR 2014 (a 10-class, 1200-image subset of DTD).',
        '- Goal figure: M. Rudolph, B. Wandt, B. Rosenhahn, "Same Same But DifferNet: Semi-Supervised Defect '
        'Detection with Normalizing Flows", WACV 2021 (image AUROC 97.7 on this dataset).',
        '- DRAEM: V. Zavrtanik, M. Kristan, D. Skočaj, "DRÆM – A discriminatively trained reconstruction embedding '
        "for surface anomaly detection\", ICCV 2021 (anomalib's implementation).",
        '- RecSem: Wang Shangshang, Jin Cheng, "Surface Anomaly Detection Based on Image Reconstruction and Semantic '
        'Difference Discrimination", Computer Science 50(11):151-159, 2023.',
        "",
    ]
    markdown = output / "ACCURACY.md"
    output.mkdir(parents=True, exist_ok=True)
    markdown.write_text("\n".join(lines), encoding="utf-8")
    return markdown


def goal_lines(by_model: dict[str, list[dict[str, str]]]) -> list[str]:
    """The goal: RecSem ahead of DRAEM on image AUROC and pixel AUPRO, and image AUROC ≥ DifferNet's."""
    lines = ["## Goal", ""]
    recsem, draem = by_model.get("recsem", []), by_model.get("draem", [])
    if not recsem:
        return [*lines, "Not assessed: no successful RecSem run.", ""]
    checks: list[tuple[str, bool, str]] = []
    for metric, label in (("image_AUROC", "image AUROC"), ("pixel_AUPRO", "pixel AUPRO")):
        ours = mean_std(_floats(recsem, metric))[0]
        theirs = mean_std(_floats(draem, metric))[0]
        if not draem or math.isnan(theirs) or math.isnan(ours):
            checks.append((f"RecSem ahead of DRAEM on {label}", False, "not assessed (no DRAEM result)"))
        else:
            gap = ours - theirs
            detail = f"{ours:.3f} vs {theirs:.3f}, gap {gap:+.3f}"
            error = standard_error(_floats(recsem, metric), _floats(draem, metric))
            if not math.isnan(error):
                # With 3 seeds a gap within ~2 standard errors is not a clear win either way.
                detail += f" (standard error of the gap {error:.3f})"
            checks.append((f"RecSem ahead of DRAEM on {label}", gap > 0, detail))
    ours = mean_std(_floats(recsem, "image_AUROC"))[0]
    gap = ours - DIFFERNET_IMAGE_AUROC
    checks.append(
        (f"RecSem image AUROC ≥ {DIFFERNET_IMAGE_AUROC} (DifferNet)", gap >= 0, f"{ours:.3f}, gap {gap:+.3f}")
    )
    lines += ["| criterion | met | detail |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if met else 'no'} | {detail} |" for name, met, detail in checks]
    verdict = "met" if all(met for _, met, _ in checks) else "not met"
    lines += [
        "",
        f"**Goal {verdict}.** DifferNet's 0.977 comes from a normalizing flow on features of an ImageNet-pretrained "
        f"network at 448 px; the runs here train narrow networks from scratch for {_distinct(recsem, 'epochs')} "
        "epoch(s) (the paper trains 700), so the gap to it says more about the budget than about the method.",
        "",
    ]
    return lines


def paper_lines(rows: list[dict[str, str]]) -> list[str]:
    """Markdown table of the paper-configuration runs (``--preset paper``), if any."""
    if not rows:
        return []
    lines = [
        "## Paper configuration",
        "",
        f"RecSem as published (widths 128/64, 50 prototypes, positive/negative ratios 2/2) against anomalib's stock "
        f"DRAEM (widths 128/64), {_distinct(rows, 'image_size')} px, {_distinct(rows, 'epochs')} epochs, "
        f"{_distinct(rows, 'train_images')} training images, seeds {_distinct(rows, 'seed')}, on "
        f"{_distinct(rows, 'device_name')}. The paper trains 700 epochs; these runs are what fitted in a GPU session.",
        "",
        "| model | runs | image AUROC | image F1 | pixel AUROC | pixel F1 | pixel AUPRO | fit (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        model_rows = [row for row in rows if row["model"] == model]
        if model_rows:
            cells = [fmt(_floats(model_rows, metric)) for metric in METRICS]
            cells.append(fmt(_floats(model_rows, "train_seconds"), 0))
            lines.append(f"| {model} | {len(model_rows)} | {' | '.join(cells)} |")
    return [*lines, ""]


def ablation_lines(rows: list[dict[str, str]]) -> list[str]:
    """Markdown table of the RecSem ablation, with differences to the baseline."""
    lines = ["## RecSem ablation", ""]
    if not rows:
        return [*lines, "No ablation runs yet (`uv run python benchmarks/accuracy.py --ablation`).", ""]
    baseline = [row for row in rows if row["variant"] == BASELINE]
    base = {metric: mean_std(_floats(baseline, metric))[0] for metric in ("image_AUROC", "pixel_AUPRO")}
    lines += [
        f"Settings: {_distinct(rows, 'image_size')} px, {_distinct(rows, 'epochs')} epochs, "
        f"{_distinct(rows, 'train_images')} training images, seeds {_distinct(rows, 'seed')}. "
        "Δ is the variant's mean minus the `default` variant's, ± the standard error of that difference "
        "over seeds (shown from two seeds per variant on); a Δ within about two standard errors is no "
        "evidence either way.",
        "",
        "| variant | memory scales | location embedding | discriminator | runs | image AUROC | Δ | pixel AUPRO | Δ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in [*ABLATIONS, *sorted({row["variant"] for row in rows} - set(ABLATIONS))]:
        variant_rows = [row for row in rows if row["variant"] == variant]
        if not variant_rows:
            continue
        cells = []
        for metric in ("image_AUROC", "pixel_AUPRO"):
            values = _floats(variant_rows, metric)
            delta = mean_std(values)[0] - base[metric] if baseline and variant != BASELINE else math.nan
            error = standard_error(values, _floats(baseline, metric))
            shown = "" if math.isnan(delta) else f"{delta:+.3f}" + ("" if math.isnan(error) else f" ± {error:.3f}")
            cells += [fmt(values), shown]
        described = [
            _distinct(variant_rows, column) for column in ("memory_scales", "location_embedding", "discriminator")
        ]
        lines.append(f"| {variant} | {' | '.join(described)} | {len(variant_rows)} | {' | '.join(cells)} |")
    return [*lines, ""]


def plot(by_model: dict[str, list[dict[str, str]]], path: Path) -> bool:
    """Grouped bar chart of the metrics per model with standard-deviation error bars.

    Returns:
        bool: Whether a chart was written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on CI or servers
    import matplotlib.pyplot as plt

    models = [model for model, rows in by_model.items() if rows]
    if not models:
        return False
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for offset, model in enumerate(models):
        stats = [mean_std(_floats(by_model[model], metric)) for metric in METRICS]
        means = [0.0 if math.isnan(mean) else mean for mean, _ in stats]
        errors = [0.0 if math.isnan(std) else std for _, std in stats]
        positions = [index + (offset - (len(models) - 1) / 2) * width for index in range(len(METRICS))]
        bars = axis.bar(positions, means, width, yerr=errors, capsize=3, label=f"{model} (n={len(by_model[model])})")
        axis.bar_label(bars, labels=[f"{mean:.2f}" for mean in means], fontsize=7, padding=2)
    axis.axhline(DIFFERNET_IMAGE_AUROC, color="grey", linestyle="--", linewidth=1)
    axis.text(len(METRICS) - 0.5, DIFFERNET_IMAGE_AUROC + 0.01, "DifferNet image AUROC 0.977", ha="right", fontsize=7)
    axis.set_xticks(range(len(METRICS)), [metric.replace("_", " ") for metric in METRICS], fontsize=8)
    axis.set_ylim(0, 1.08)
    axis.set_ylabel("score")
    axis.set_title("RecSem vs DRAEM, CPU preset (mean ± std over seeds)")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


# --------------------------------------------------------------------------------------
# Smoke data
# --------------------------------------------------------------------------------------


def write_smoke_data(root: Path) -> tuple[Path, Path]:
    """A tiny MVTec AD-layout dataset and texture folder, so ``--smoke`` needs no real data.

    Returns:
        tuple[Path, Path]: Dataset root (category ``smoke``) and texture folder.
    """
    import numpy as np
    from PIL import Image

    # tests/helpers is not a package on sys.path when this file runs as a script.
    spec = importlib.util.spec_from_file_location("_mvtec_helper", REPO_ROOT / "tests" / "helpers" / "mvtec.py")
    if spec is None or spec.loader is None:
        msg = "Cannot load tests/helpers/mvtec.py for the smoke dataset."
        raise ImportError(msg)
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    data_root = helper.write_mvtec_dataset(root / "data", category="smoke", num_train=12, size=64)
    textures = root / "textures"
    textures.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(4):
        noise = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((64, 64)).save(textures / f"texture_{index}.png")
    return data_root, textures


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Train and test RecSem and anomalib's DRAEM on an MVTec AD-layout dataset (default: Magnetic "
        "Tile Defect) at a CPU preset; append one CSV row per run and summarise them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="Models of the main comparison."
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="Seeds (default: 0 1 2).")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="Training epochs.")
    parser.add_argument(
        "--train-limit",
        type=int,
        default=DEFAULT_TRAIN_LIMIT or 0,
        help="Train on a seeded random subset of this many images; 0 for all.",
    )
    parser.add_argument("--subset-seed", type=int, default=0, help="Seed of the training subset (same for every run).")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="0: validate on the whole test set (anomalib's default); f in (0, 1): a stratified fraction f of the "
        "test images becomes a separate validation set (half the evaluation time, honest F1, smaller test set).",
    )
    parser.add_argument("--image-size", type=int, default=128, help="Image side in pixels (multiple of 32).")
    parser.add_argument("--batch-size", type=int, default=8, help="Train and eval batch size.")
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="cpu",
        help="cpu: both models at RecSem's CPU preset; paper: RecSem as published vs stock DRAEM (GPU work), "
        "into accuracy_<category>_paper.csv.",
    )
    parser.add_argument(
        "--reconstruction-width", type=int, help="Reconstruction width of both models (preset: cpu 16, paper 128)."
    )
    parser.add_argument(
        "--discriminator-width", type=int, help="Discriminator width of both models (preset: cpu 16, paper 64)."
    )
    parser.add_argument(
        "--accelerator", default="auto", help="Lightning accelerator: auto (a GPU where there is one), cpu, gpu."
    )
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers.")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="Run RecSem ablation variants into ablation_<category>.csv instead of the main comparison.",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(ABLATIONS),
        default=list(ABLATIONS),
        help="Ablation variants to run (the baseline is copied from the main CSV when it matches).",
    )
    parser.add_argument("--data-root", type=Path, default=SHARED_DATASETS, help="MVTec AD-layout dataset root.")
    parser.add_argument("--category", default=DEFAULT_CATEGORY, help="Category folder under --data-root.")
    parser.add_argument("--textures", type=Path, default=DEFAULT_TEXTURES, help="Defect texture folder (both models).")
    parser.add_argument("--output", type=Path, help="Results folder (default: benchmarks/results; smoke: .../smoke).")
    parser.add_argument("--summarise-only", action="store_true", help="Only write ACCURACY.md and the chart.")
    parser.add_argument(
        "--no-resume", action="store_true", help="Run again even if a (model, variant, seed) row exists."
    )
    parser.add_argument(
        "--fresh", action="store_true", help="Move existing CSVs aside (*.bak-<time>) and start new ones."
    )
    parser.add_argument("--keep-runs", action="store_true", help="Keep anomalib's run folders under <output>/runs.")
    parser.add_argument("--progress", action="store_true", help="Show Lightning's progress bar.")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="Pipeline check for CI: generated 64 px data, tiny widths, 1 epoch, seed 0 (< 2 minutes).",
    )
    arguments = parser.parse_args(argv)
    paper = arguments.preset == "paper"
    if arguments.reconstruction_width is None:
        arguments.reconstruction_width = 128 if paper else 16
    if arguments.discriminator_width is None:
        arguments.discriminator_width = 64 if paper else 16
    if paper and arguments.ablation:
        parser.error("--ablation runs at the cpu preset only.")
    for name in ("epochs", "image_size", "batch_size", "reconstruction_width", "discriminator_width"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive.")
    if arguments.train_limit < 0:
        parser.error("--train-limit must be 0 (all) or positive.")
    if not 0.0 <= arguments.val_fraction < 1.0:
        parser.error("--val-fraction must be in [0, 1).")
    return arguments


class _CampaignFilter(logging.Filter):
    """Our progress and warnings from everyone; Lightning's per-run banners would drown the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(("benchmarks", "anomalib_recsem"))


def configure_logging(output: Path) -> None:
    """Log to stderr and append to ``<output>/accuracy.log`` (tracebacks of failed runs included)."""
    output.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    # main() may run several times in one process (tests): replace our handlers, never stack them.
    for handler in [handler for handler in root.handlers if getattr(handler, "_accuracy_benchmark", False)]:
        root.removeHandler(handler)
        handler.close()
    for handler in (logging.StreamHandler(), logging.FileHandler(output / "accuracy.log", encoding="utf-8")):
        handler.setFormatter(formatter)
        handler.addFilter(_CampaignFilter())
        handler._accuracy_benchmark = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    # Known and harmless: num_workers=0 is deliberate on 2 cores, logger=False is deliberate,
    # DRAEM logs a tuple, and anomalib warns about a deprecated package on import.
    for message in (".*does not have many workers.*", ".*no logger configured.*", ".*infer the `batch_size`.*"):
        warnings.filterwarnings("ignore", message=message)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or only summarise it).

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        int: 0 when every run of this call succeeded, 1 when any failed, 2 on bad setup.
    """
    arguments = parse_arguments(argv)
    output = arguments.output or (DEFAULT_OUTPUT / "smoke" if arguments.smoke else DEFAULT_OUTPUT)
    output = output.resolve()
    configure_logging(output)
    category = "smoke" if arguments.smoke else arguments.category

    if arguments.summarise_only:
        markdown = summarise(output, category)
        print(f"Summary written to {markdown}")
        return 0

    scratch = tempfile.TemporaryDirectory(prefix="recsem-smoke-") if arguments.smoke else None
    try:
        from anomalib_recsem.demo import SMALL_PRESET

        # The paper preset is RecSem's own defaults.
        preset = (
            {key: value for key, value in SMALL_PRESET.items() if key not in {"image_size"}}
            if arguments.preset == "cpu"
            else {}
        )
        settings = Settings(
            data_root=arguments.data_root.resolve(),
            category=arguments.category,
            textures=arguments.textures.resolve(),
            output=output,
            image_size=arguments.image_size,
            epochs=arguments.epochs,
            train_limit=arguments.train_limit or None,
            subset_seed=arguments.subset_seed,
            val_fraction=arguments.val_fraction,
            batch_size=arguments.batch_size,
            num_workers=arguments.num_workers,
            reconstruction_width=arguments.reconstruction_width,
            discriminator_width=arguments.discriminator_width,
            recsem_arguments={
                k: v for k, v in preset.items() if k not in {"reconstruction_width", "discriminator_width"}
            },
            keep_runs=arguments.keep_runs,
            progress=arguments.progress,
            accelerator=arguments.accelerator,
            preset=arguments.preset,
        )
        seeds = arguments.seeds or [0, 1, 2]
        if arguments.smoke:
            data_root, textures = write_smoke_data(Path(scratch.name))
            settings = replace(
                settings,
                data_root=data_root,
                category="smoke",
                textures=textures,
                image_size=64,
                epochs=1,
                train_limit=8,
                # 4 of the 8 test images validate: both classes stay in each half.
                val_fraction=0.5,
                batch_size=4,
                reconstruction_width=8,
                discriminator_width=8,
                recsem_arguments={**settings.recsem_arguments, "num_prototypes": 10},
            )
            seeds = arguments.seeds or [0]
            logger.info("Smoke run: generated 64 px data, widths 8/8, 1 epoch, seeds %s", seeds)

        for path, label in ((settings.data_root / settings.category, "dataset"), (settings.textures, "texture folder")):
            if not path.is_dir():
                logger.error("The %s %s does not exist.", label, path)
                return 2

        if arguments.ablation:
            csv_path = settings.ablation_csv
            specs = [RunSpec("recsem", variant, seed) for seed in seeds for variant in arguments.variants]
        else:
            csv_path = settings.accuracy_csv
            specs = [RunSpec(model, BASELINE, seed) for seed in seeds for model in arguments.models]

        if arguments.fresh and csv_path.exists():
            backup = csv_path.with_name(f"{csv_path.name}.bak-{datetime.now():%Y%m%d-%H%M%S}")
            shutil.move(csv_path, backup)
            logger.info("Moved %s to %s", csv_path.name, backup.name)
        conflicts = settings_conflicts(read_rows(csv_path), planned_settings(settings))
        if conflicts:
            logger.error(
                "%s holds runs with other settings; means over them would mix conditions. Use the same settings, "
                "another --output, or --fresh. Differences: %s",
                csv_path,
                "; ".join(conflicts),
            )
            return 2

        logger.info(
            "%d run(s) -> %s (%s preset, %s px, %d epochs, %s training images, batch %d, widths %d/%d, textures %s, "
            "%d CPU cores, accelerator %s)",
            len(specs),
            csv_path,
            settings.preset,
            settings.image_size,
            settings.epochs,
            settings.train_limit or "all",
            settings.batch_size,
            settings.reconstruction_width,
            settings.discriminator_width,
            settings.textures,
            os.cpu_count() or 0,
            settings.accelerator,
        )
        failed = run_campaign(specs, settings, csv_path, resume=not arguments.no_resume)
    finally:
        if scratch is not None:
            scratch.cleanup()

    markdown = summarise(output, settings.category)
    if failed:
        logger.error(
            "%d run(s) failed: %s (tracebacks in %s)", len(failed), ", ".join(map(str, failed)), output / "accuracy.log"
        )
    print(f"{len(specs) - len(failed)}/{len(specs)} run(s) ok; results in {csv_path}; summary {markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
