"""CPU speed benchmark of RecSem against anomalib's Draem.

Three measurements, each written to a CSV under ``--output`` (default ``benchmarks/results``):

* ``speed.csv``: inference latency and throughput of the torch models (``RecSemModel``,
  ``DraemModel``) with PyTorch eager and with OpenVINO (f32 hint, and no hint), for several
  image sizes and batch sizes, plus parameter counts and GFLOPs per image.
* ``train_step.csv``: seconds per optimiser step (defect synthesis + forward + loss +
  backward + Adam step on one batch) and peak resident memory, each cell in its own process.
* ``defects.csv``: time to synthesise a batch of defects with ``SyntheticDefect`` and with
  anomalib's ``PerlinAnomalyGenerator``, and its share of a RecSem training step.

``machine.txt`` describes the machine and library versions, and ``SPEED.md`` compares the
figures with the project's speed goals (``--summarise-only`` rebuilds it from the CSVs).

How things are measured:

* Timing: wall clock (``time.perf_counter``) of synchronous calls, median of the timed
  repetitions after warm-up (2 warm-up calls, only 1 when a call takes more than 5 s;
  then at least ``--min-reps`` and at most ``--max-reps`` timed calls, stopping once
  ``--target-seconds`` have been spent). A cell whose estimated cost (from its FLOPs and
  the speed measured so far) would not fit ``--cell-budget`` is skipped and recorded as
  such; a cell that runs out of budget after fewer than ``--min-reps`` calls is kept with
  status ``partial``.
* PyTorch: ``model.eval()``, ``torch.inference_mode()``, ``torch.set_num_threads(--threads)``,
  and ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it: with libgomp's default
  spinning, 2 threads on a 2-core machine shared with other work ran 4-10x slower than 1.
* OpenVINO: the torch model (its eval forward returns ``InferenceBatch``; a wrapper returns
  ``(pred_score, anomaly_map)``) is captured with ``torch.export.export`` (batch dimension
  dynamic) and converted with ``openvino.convert_model(ExportedProgram)``; the model is then
  reshaped to the static input ``(B, 3, S, S)`` and compiled with
  ``core.compile_model(model, "CPU", config)``. ``config`` holds
  ``INFERENCE_NUM_THREADS=--threads`` and, for ``openvino_cpu_f32``,
  ``INFERENCE_PRECISION_HINT=f32``; ``openvino_cpu_default`` leaves the precision to the
  plugin (bf16 on CPUs with AVX-512 BF16 / AMX, f32 otherwise; the ``precision`` column
  says which). This path was chosen over ``torch.onnx.export(dynamo=True)`` + ONNX import
  because it converted 30-60 % faster here with identical outputs, and over
  ``openvino.convert_model(module, example_input=...)`` because that traces with TorchScript,
  which fails on RecSem's memory module. ``max_abs_diff`` is the largest anomaly-map
  difference from PyTorch eager on the same input.
* GFLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one image of the eval forward
  (run on the meta device, so it costs nothing), divided by 1e9. FlopCounterMode counts a
  multiply-add as 2 FLOPs, so MACs are half of these figures.
* Training cells run in processes forked from this one before it computes anything (an
  OpenMP thread pool does not survive ``fork``: a child of a process that has already run
  parallel torch code hangs), so every cell starts from the same clean state and its
  peak memory is its own: ``VmHWM`` from ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` once the model, optimiser and data are built.

Usage::

    uv run python benchmarks/speed.py                       # everything (~1 h on 2 busy cores)
    uv run python benchmarks/speed.py --smoke               # tiny configuration, < 90 s
    uv run python benchmarks/speed.py --models recsem_cpu --sizes 256 --benchmarks inference
    uv run python benchmarks/speed.py --summarise-only      # SPEED.md from existing CSVs

Results of partial runs are merged into existing CSVs (a re-measured cell replaces its
old row); ``--fresh`` starts the CSVs anew. With the default budgets on 2 cores, the
full-width models' 512 px batch-8 inference cells are skipped (a few minutes per call);
run them on their own with a larger budget, e.g.
``--benchmarks inference --models recsem_paper,draem --sizes 512 --batches 8 --cell-budget 1500``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import gc
import inspect
import logging
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# libgomp's default busy-waiting makes 2 OpenMP threads on a shared 2-core machine up to 10x
# slower than 1 thread (each parallel region waits for a descheduled peer); passive waiting
# costs little on an idle machine. It must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

# anomalib's imports are slow and warn about optional extras; none of that is ours to fix.
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

import anomalib  # noqa: E402
import openvino as ov  # noqa: E402
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator  # noqa: E402
from anomalib.models.image.draem.loss import DraemLoss  # noqa: E402
from anomalib.models.image.draem.torch_model import (  # noqa: E402
    DiscriminativeSubNetwork,
    DraemModel,
    ReconstructiveSubNetwork,
)

from anomalib_recsem import RecSem, SyntheticDefect  # noqa: E402
from anomalib_recsem.demo import SMALL_PRESET  # noqa: E402

logger = logging.getLogger("benchmarks.speed")

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
#: The shared data folder sits beside the project; nothing here needs it except DTD rows.
DEFAULT_DTD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "dtd" / "images"

RUNTIMES = ("torch_eager_cpu", "openvino_cpu_f32", "openvino_cpu_default")
BENCHMARKS = ("train", "defects", "inference")

SPEED_FIELDS = [
    "model", "runtime", "image_size", "batch_size", "ms_per_image", "images_per_second", "ms_per_batch",
    "parameters", "gflops", "threads", "precision", "reps", "warmup", "export_s", "compile_s",
    "max_abs_diff", "status", "note",
]  # fmt: skip
TRAIN_FIELDS = [
    "model", "family", "image_size", "batch_size", "seconds_per_step", "ms_per_image", "synthesis_s",
    "synthesis_share", "augmenter", "parameters", "gflops", "peak_rss_mb", "peak_delta_mb", "baseline_rss_mb",
    "memory_method", "threads", "reps", "warmup", "status", "note",
]  # fmt: skip
DEFECT_FIELDS = [
    "generator", "source", "cache", "image_size", "batch_size", "probability", "ms_per_batch", "ms_per_image",
    "reference_step_model", "share_of_reference_step", "reps", "warmup", "status", "note",
]  # fmt: skip
SPEED_KEY = ("model", "runtime", "image_size", "batch_size")
TRAIN_KEY = ("model", "image_size", "batch_size")
DEFECT_KEY = ("generator", "source", "cache", "image_size", "batch_size")

#: A warm-up call slower than this absorbs all one-time costs, so a second one is skipped.
SLOW_CALL_S = 5.0
#: GFLOP/s assumed before anything is measured, deliberately low so no cell starts that
#: cannot finish; measured rates replace it after the first cell.
INITIAL_RATE = {"inference": 15.0, "train": 8.0}
#: A training step costs about forward + 2x forward for the backward pass.
TRAIN_FLOP_FACTOR = 3.0


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


class NarrowDraemModel(DraemModel):
    """``DraemModel`` with configurable widths (anomalib hard-codes 128 and 64).

    ``DraemModel.__init__`` is bypassed because it would first allocate the full-width
    97 M-parameter subnetworks; the forward pass is inherited unchanged.

    Args:
        reconstruction_width: ``base_width`` of the ``ReconstructiveSubNetwork``.
        discriminator_width: ``base_width`` of the ``DiscriminativeSubNetwork``.
    """

    def __init__(self, reconstruction_width: int, discriminator_width: int) -> None:
        nn.Module.__init__(self)
        self.reconstructive_subnetwork = ReconstructiveSubNetwork(base_width=reconstruction_width)
        self.discriminative_subnetwork = DiscriminativeSubNetwork(
            in_channels=6, out_channels=2, base_width=discriminator_width
        )


class TensorOutputs(nn.Module):
    """Expose an anomalib torch model's eval output as plain tensors, for export.

    Args:
        model: Module whose eval-mode forward returns an ``InferenceBatch``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(pred_score, anomaly_map)``."""
        output = self.model(image)
        return output.pred_score, output.anomaly_map


@dataclass(frozen=True)
class ModelSpec:
    """A model configuration under test.

    Attributes:
        name: Name used in the CSVs.
        family: ``"recsem"`` or ``"draem"``.
        arguments: For RecSem, ``RecSem`` constructor arguments (``image_size`` is added);
            for Draem, ``reconstruction_width`` / ``discriminator_width`` (empty: anomalib's
            ``DraemModel``).
        description: One line for the summary.
    """

    name: str
    family: str
    arguments: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def lightning(self, image_size: int) -> RecSem:
        """The RecSem Lightning module (RecSem only), without anomalib's callbacks."""
        return RecSem(
            image_size=image_size,
            **self.arguments,
            pre_processor=False,
            post_processor=False,
            evaluator=False,
            visualizer=False,
        )

    def build(self, image_size: int) -> nn.Module:
        """The torch model at ``image_size`` (RecSem sizes its memory for it; Draem does not care)."""
        if self.family == "recsem":
            return self.lightning(image_size).model
        if self.arguments:
            return NarrowDraemModel(**self.arguments)
        return DraemModel()


def _recsem_defaults() -> dict[str, Any]:
    """RecSem's constructor defaults, so ``recsem_paper`` follows the plugin if they change."""
    signature = inspect.signature(RecSem.__init__)
    return {name: parameter.default for name, parameter in signature.parameters.items() if name != "self"}


_PAPER = _recsem_defaults()
_CPU = {name: value for name, value in SMALL_PRESET.items() if name != "image_size"}
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "recsem_cpu",
            "recsem",
            _CPU,
            f"RecSem, CPU preset (widths {_CPU['reconstruction_width']}/{_CPU['discriminator_width']}, "
            f"{_CPU['num_prototypes']} prototypes)",
        ),
        ModelSpec(
            "recsem_paper",
            "recsem",
            {},
            f"RecSem, paper defaults (widths {_PAPER['reconstruction_width']}/{_PAPER['discriminator_width']}, "
            f"{_PAPER['num_prototypes']} prototypes)",
        ),
        ModelSpec("draem", "draem", {}, "anomalib DraemModel (widths 128/64)"),
        ModelSpec(
            "draem_narrow",
            "draem",
            {"reconstruction_width": 16, "discriminator_width": 16},
            "Draem subnetworks at widths 16/16 (CPU-preset comparison)",
        ),
        ModelSpec(
            "recsem_tiny",
            "recsem",
            {"reconstruction_width": 8, "discriminator_width": 8, "num_prototypes": 10,
             "positive_aug_ratio": 1, "negative_aug_ratio": 1},
            "RecSem, smoke-test widths 8/8",
        ),  # fmt: skip
        ModelSpec(
            "draem_tiny",
            "draem",
            {"reconstruction_width": 8, "discriminator_width": 8},
            "Draem subnetworks at widths 8/8 (smoke test)",
        ),
    )
}


@dataclass
class Plan:
    """What to measure and how hard to try."""

    inference_models: list[str]
    train_models: list[str]
    sizes: list[int]
    batches: list[int]
    runtimes: list[str]
    train_sizes: list[int]
    train_batch: int
    defect_size: int
    defect_batch: int
    benchmarks: list[str]
    threads: int
    warmup: int
    min_reps: int
    max_reps: int
    target_s: float
    cell_budget_s: float
    train_cell_budget_s: float
    total_budget_s: float | None
    dtd: Path | None
    warm_dtd_cache: bool
    seed: int = 0

    def measure(
        self,
        call: Callable[[], object],
        *,
        warmup: int | None = None,
        budget_s: float | None = None,
        setup: Callable[[], object] | None = None,
    ) -> Timing:
        """:func:`measure` with this plan's repetitions; warm-up and budget default to an inference cell's."""
        return measure(
            call,
            warmup=self.warmup if warmup is None else warmup,
            min_reps=self.min_reps,
            max_reps=self.max_reps,
            target_s=self.target_s,
            budget_s=self.cell_budget_s if budget_s is None else budget_s,
            setup=setup,
        )


FULL_DEFAULTS: dict[str, Any] = {
    "models": ["recsem_cpu", "recsem_paper", "draem"],
    "train_models": ["recsem_cpu", "draem_narrow", "recsem_paper", "draem"],
    "sizes": [128, 256, 512],
    "batches": [1, 8],
    "train_sizes": [128, 256],
    "train_batch": 8,
    "defect_size": 256,
    "defect_batch": 8,
}
SMOKE_DEFAULTS: dict[str, Any] = {
    "models": ["recsem_tiny", "draem_tiny"],
    "train_models": ["recsem_tiny", "draem_tiny"],
    "sizes": [64],
    "batches": [1, 2],
    "train_sizes": [64],
    "train_batch": 2,
    "defect_size": 64,
    "defect_batch": 2,
}


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Result of :func:`measure`.

    Attributes:
        median_s: Median of the timed calls (NaN if none ran).
        reps: Number of timed calls.
        warmup: Number of warm-up calls.
        status: ``"ok"``, or ``"partial"`` when the budget stopped it before ``min_reps``.
    """

    median_s: float
    reps: int
    warmup: int
    status: str


def measure(
    call: Callable[[], object],
    *,
    warmup: int,
    min_reps: int,
    max_reps: int,
    target_s: float,
    budget_s: float,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``call``: warm-up, then adaptive repetitions, within a budget.

    Args:
        call: The work to time.
        warmup: Warm-up calls wanted (fewer if one call is slower than ``SLOW_CALL_S``).
        min_reps: Timed calls wanted at the least (fewer only when ``budget_s`` runs out).
        max_reps: Timed calls at the most.
        target_s: Stop adding timed calls once this much time has been spent on them
            (and ``min_reps`` is reached).
        budget_s: Whole-cell budget, warm-up included. At least one timed call always runs.
        setup: Untimed preparation before every call.

    Returns:
        Timing: Median and counts.
    """
    started = time.perf_counter()
    warmed = 0
    last = 0.0
    for _ in range(warmup):
        if setup is not None:
            setup()
        tick = time.perf_counter()
        call()
        last = time.perf_counter() - tick
        warmed += 1
        if last > SLOW_CALL_S:
            break
    times: list[float] = []
    while len(times) < max_reps:
        if len(times) >= min_reps and sum(times) >= target_s:
            break
        # The next call is expected to take as long as the last one.
        if times and time.perf_counter() - started + times[-1] > budget_s:
            break
        if setup is not None:
            setup()
        tick = time.perf_counter()
        call()
        times.append(time.perf_counter() - tick)
    status = "ok" if len(times) >= min_reps else "partial"
    return Timing(statistics.median(times) if times else math.nan, len(times), warmed, status)


class Budget:
    """Estimates a cell's cost from FLOPs and the speed measured so far, and the total budget.

    Args:
        total_s: Budget for the whole run, or ``None``.
    """

    def __init__(self, total_s: float | None) -> None:
        self.total_s = total_s
        self.started = time.perf_counter()
        self.rates: dict[tuple[str, str], float] = {}

    def rate(self, kind: str, model: str, runtime: str) -> float:
        """GFLOP/s expected for ``model`` on ``runtime``: its own last rate, else the lowest
        measured on that runtime, else a conservative guess."""
        if (model, runtime) in self.rates:
            return self.rates[model, runtime]
        known = [rate for (_, other), rate in self.rates.items() if other == runtime]
        return min(known) if known else INITIAL_RATE[kind]

    def record(self, model: str, runtime: str, gflops: float, seconds: float) -> None:
        """Remember a measured rate (``gflops`` per call)."""
        if seconds > 0 and math.isfinite(seconds) and gflops > 0:
            self.rates[model, runtime] = gflops / seconds

    def exhausted(self) -> bool:
        """Whether the whole-run budget is spent."""
        return self.total_s is not None and time.perf_counter() - self.started > self.total_s


def skip_reason(estimate_s: float, calls: int, budget_s: float) -> str | None:
    """Why a cell should not start, if its estimated cost exceeds its budget.

    Args:
        estimate_s: Estimated seconds per call.
        calls: Calls it needs at the least (one warm-up + one timed).
        budget_s: The per-cell budget.

    Returns:
        str | None: The reason, or ``None`` to go ahead.
    """
    if estimate_s * calls <= budget_s:
        return None
    return f"estimated {estimate_s:.0f} s per call x {calls} calls exceeds the {budget_s:.0f} s cell budget"


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(parameter.numel() for parameter in model.parameters())


def model_cost(spec: ModelSpec, image_size: int) -> tuple[float, int]:
    """GFLOPs of the eval forward for one image, as FlopCounterMode counts them (a
    multiply-add is 2 FLOPs), and the number of parameters.

    The model is built and run on the meta device: shapes only, no arithmetic, which also
    keeps the process fit to fork training cells from.
    """
    with torch.device("meta"):
        model = spec.build(image_size).eval()
        image = torch.empty(1, 3, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    return counter.get_total_flops() / 1e9, count_parameters(model)


def sample_images(batch: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random RGB images in [0, 1] (upsampled noise), like textured surfaces."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(1, size // 8), max(1, size // 8), generator=generator)
    fine = torch.rand(batch, 3, size, size, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (0.8 * smooth + 0.2 * fine).clamp_(0, 1)


def _status_kb(name: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); ``False`` if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV, or none if it does not exist."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class CsvTable:
    """A results CSV that merges new rows into existing ones by key and is rewritten per row,
    so an interrupted run keeps what it measured.

    Args:
        path: CSV file.
        fields: Column names.
        key: Columns identifying a cell.
        fresh: Ignore existing rows.
    """

    def __init__(self, path: Path, fields: list[str], key: Sequence[str], fresh: bool) -> None:
        self.path = path
        self.fields = fields
        self.key = tuple(key)
        existing = [] if fresh else read_rows(path)
        self.rows: dict[tuple[str, ...], dict[str, str]] = {
            tuple(row.get(name, "") for name in self.key): row for row in existing
        }
        self.new: list[dict[str, str]] = []

    def add(self, row: dict[str, object]) -> None:
        """Add or replace a row and rewrite the file."""
        text = {name: _fmt(row.get(name)) for name in self.fields}
        self.rows[tuple(text[name] for name in self.key)] = text
        self.new.append(text)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows.values())
        temporary.replace(self.path)


# --------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------


def describe_machine(threads: int) -> str:
    """CPU, cores, memory, load and library versions, one ``key: value`` per line."""
    cpu_model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu_model in {"unknown", "x86_64", ""}:
                cpu_model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    interesting = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"]
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
        memory = f"{total_kb / 2**20:.1f} GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        ov_name = ov.Core().get_property("CPU", "FULL_DEVICE_NAME")
    except RuntimeError:
        ov_name = "unknown"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    lines = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model,
        "openvino_cpu_name": ov_name,
        "cpu_flags": " ".join(flag for flag in interesting if flag in flags) or "none of " + ", ".join(interesting),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "threads": f"{threads} (torch.set_num_threads and OpenVINO INFERENCE_NUM_THREADS)",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "memory": memory,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "openvino": ov.get_version(),
        "anomalib": anomalib.__version__,
        "platform": platform.platform(),
    }
    return "".join(f"{key}: {value}\n" for key, value in lines.items())


# --------------------------------------------------------------------------------------
# Training step (runs in forked children)
# --------------------------------------------------------------------------------------


def _recsem_step(spec: ModelSpec, images: torch.Tensor, synthesis: list[float]) -> tuple[Callable[[], None], str]:
    """One RecSem optimiser step on one chunk of ``B`` samples, as in ``RecSem.training_step``."""
    module = spec.lightning(images.shape[-1])
    model = module.model.train()
    defect = module.synthetic_defect
    optimizer = torch.optim.Adam(model.parameters(), lr=module.learning_rate, weight_decay=module.weight_decay)

    def step() -> None:
        tick = time.perf_counter()
        defects = defect.synthesize(images)
        synthesis.append(time.perf_counter() - tick)
        original = defects.defective if module.discriminator_input == "augmented" else defects.clean
        output = model(defects.defective, original)
        terms = module.loss(defects.clean, output, defects.mask)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()

    source = "procedural" if defect.anomaly_source is None else str(defect.anomaly_source)
    return step, f"SyntheticDefect(anomaly_source={source}, p={defect.probability:g})"


def _draem_step(
    spec: ModelSpec, images: torch.Tensor, synthesis: list[float], dtd: Path | None
) -> tuple[Callable[[], None], str]:
    """One Draem optimiser step, as in ``Draem.training_step`` (Adam 1e-4, DraemLoss)."""
    model = spec.build(images.shape[-1]).train()
    # Draem's own augmenter settings (lightning_model.py): p=0.5, blend (0.1, 1.0), DTD.
    augmenter = PerlinAnomalyGenerator(anomaly_source_path=dtd, probability=0.5, blend_factor=(0.1, 1.0))
    loss = DraemLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        tick = time.perf_counter()
        augmented, mask = augmenter(images)
        synthesis.append(time.perf_counter() - tick)
        reconstruction, prediction = model(augmented)
        value = loss(images, reconstruction, mask, prediction)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()

    return step, f"PerlinAnomalyGenerator(anomaly_source_path={dtd or 'None'}, p=0.5)"


def train_cell(spec: ModelSpec, image_size: int, batch: int, plan: Plan, budget_s: float) -> dict[str, object]:
    """Measure one training cell in the current process (meant to be a fresh fork).

    Returns:
        dict[str, object]: The ``train_step.csv`` row, less the columns the parent fills.
    """
    torch.set_num_threads(plan.threads)
    torch.manual_seed(plan.seed)
    images = sample_images(batch, image_size, plan.seed)
    synthesis: list[float] = []
    if spec.family == "recsem":
        step, augmenter = _recsem_step(spec, images, synthesis)
    else:
        step, augmenter = _draem_step(spec, images, synthesis, plan.dtd)
    baseline_kb = _status_kb("VmRSS")
    reset = _reset_peak_rss()
    # One warm-up step: it allocates Adam's state and oneDNN primitives.
    timing = plan.measure(step, warmup=1, budget_s=budget_s)
    peak_kb = _status_kb("VmHWM")
    timed_synthesis = synthesis[timing.warmup :]
    synthesis_s = statistics.median(timed_synthesis) if timed_synthesis else math.nan
    return {
        "seconds_per_step": timing.median_s,
        "ms_per_image": 1e3 * timing.median_s / batch,
        "synthesis_s": synthesis_s,
        "synthesis_share": synthesis_s / timing.median_s if timing.median_s > 0 else math.nan,
        "augmenter": augmenter,
        "peak_rss_mb": peak_kb / 1024 if peak_kb else None,
        "peak_delta_mb": (peak_kb - baseline_kb) / 1024 if peak_kb and baseline_kb and reset else None,
        "baseline_rss_mb": baseline_kb / 1024 if baseline_kb else None,
        "memory_method": "VmHWM after clear_refs reset, forked process" if reset else "VmHWM (process lifetime)",
        "reps": timing.reps,
        "warmup": timing.warmup,
        "status": timing.status,
    }


def _train_child(
    connection: Any,  # noqa: ANN401 - a multiprocessing Connection
    spec_name: str,
    image_size: int,
    batch: int,
    plan: Plan,
    budget_s: float,
) -> None:
    try:
        result: tuple[str, object] = ("ok", train_cell(MODELS[spec_name], image_size, batch, plan, budget_s))
    except BaseException as error:  # noqa: BLE001 - reported to the parent as the cell's status
        result = ("error", f"{type(error).__name__}: {error}")
    connection.send(result)
    connection.close()


def run_train(plan: Plan, table: CsvTable, budget: Budget) -> None:
    """Training-step cells, each in a forked child (see the module docstring)."""
    context = mp.get_context("fork")
    for image_size in plan.train_sizes:
        for name in plan.train_models:
            spec = MODELS[name]
            gflops, parameters = model_cost(spec, image_size)
            row: dict[str, object] = {
                "model": name,
                "family": spec.family,
                "image_size": image_size,
                "batch_size": plan.train_batch,
                "parameters": parameters,
                "gflops": gflops,
                "threads": plan.threads,
            }
            estimate = TRAIN_FLOP_FACTOR * gflops * plan.train_batch / budget.rate("train", name, "train")
            reason = (
                "total budget exhausted" if budget.exhausted() else skip_reason(estimate, 2, plan.train_cell_budget_s)
            )
            if reason:
                logger.info("train %s %d px: skipped (%s)", name, image_size, reason)
                table.add({**row, "status": "skipped", "note": reason})
                continue
            logger.info("train %s %d px batch %d ...", name, image_size, plan.train_batch)
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(
                target=_train_child,
                args=(sender, name, image_size, plan.train_batch, plan, plan.train_cell_budget_s),
            )
            child.start()
            sender.close()
            # A step that overruns its budget still finishes; allow it and the set-up.
            timeout = 2 * plan.train_cell_budget_s + 120
            if receiver.poll(timeout):
                try:
                    outcome, payload = receiver.recv()
                except EOFError:
                    outcome, payload = "error", "worker exited without a result (killed for memory?)"
            else:
                outcome, payload = "error", f"no result within {timeout:.0f} s"
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
            if outcome == "ok" and isinstance(payload, dict):
                row.update(payload)
                work = TRAIN_FLOP_FACTOR * gflops * plan.train_batch
                budget.record(name, "train", work, float(payload["seconds_per_step"]))
                logger.info("  %.3f s/step", payload["seconds_per_step"])
            else:
                row.update({"status": "error", "note": str(payload)})
                logger.warning("train %s %d px failed: %s", name, image_size, payload)
            table.add(row)


# --------------------------------------------------------------------------------------
# Defect synthesis
# --------------------------------------------------------------------------------------


@dataclass
class DefectCase:
    """One defect generator configuration."""

    generator: str
    source: str
    cache: str
    make: Callable[[], Callable[[torch.Tensor], object]]
    fresh_each_call: bool = False


def defect_cases(plan: Plan) -> list[DefectCase]:
    """The generators to compare, at the training probability 0.5."""
    dtd = plan.dtd
    cases = [
        DefectCase("SyntheticDefect", "procedural", "", lambda: SyntheticDefect(None, probability=0.5).synthesize),
        DefectCase("SyntheticDefect", "self", "", lambda: SyntheticDefect("self", probability=0.5).synthesize),
    ]
    if dtd is not None:
        # Textures are decoded on first use: "cold" is the first epoch, "warm" the others.
        cases.append(
            DefectCase("SyntheticDefect", "dtd", "cold", lambda: SyntheticDefect(dtd, probability=0.5).synthesize, True)
        )
        if plan.warm_dtd_cache:

            def warm() -> Callable[[torch.Tensor], object]:
                defect = SyntheticDefect(dtd, probability=0.5)
                assert defect.texture_folder is not None
                defect.texture_folder.load(torch.arange(len(defect.texture_folder)))
                return defect.synthesize

            cases.append(DefectCase("SyntheticDefect", "dtd", "warm", warm))
        cases.append(
            DefectCase(
                "PerlinAnomalyGenerator",
                "dtd",
                "",
                lambda: PerlinAnomalyGenerator(anomaly_source_path=dtd, probability=0.5, blend_factor=(0.1, 1.0)),
            )
        )
    cases.append(
        DefectCase(
            "PerlinAnomalyGenerator",
            "none",
            "",
            lambda: PerlinAnomalyGenerator(anomaly_source_path=None, probability=0.5, blend_factor=(0.1, 1.0)),
        )
    )
    return cases


def _reference_step(train_rows: list[dict[str, str]], image_size: int, batch: int) -> tuple[str, float] | None:
    """The fastest measured RecSem training step at this size and batch (the strictest
    reference for the synthesis share)."""
    steps = []
    for row in train_rows:
        with contextlib.suppress(ValueError):
            if (
                row.get("family") == "recsem"
                and int(row["image_size"]) == image_size
                and int(row["batch_size"]) == batch
                and row.get("seconds_per_step")
            ):
                steps.append((float(row["seconds_per_step"]), row["model"]))
    if not steps:
        return None
    seconds, model = min(steps)
    return model, seconds


def run_defects(plan: Plan, table: CsvTable, train_rows: list[dict[str, str]], budget: Budget) -> None:
    """Time each defect generator on a batch."""
    size, batch = plan.defect_size, plan.defect_batch
    images = sample_images(batch, size, plan.seed)
    reference = _reference_step(train_rows, size, batch)
    for case in defect_cases(plan):
        row: dict[str, object] = {
            "generator": case.generator,
            "source": case.source,
            "cache": case.cache,
            "image_size": size,
            "batch_size": batch,
            "probability": 0.5,
        }
        if budget.exhausted():
            table.add({**row, "status": "skipped", "note": "total budget exhausted"})
            continue
        logger.info("defects %s (%s%s) ...", case.generator, case.source, f", {case.cache}" if case.cache else "")
        torch.manual_seed(plan.seed)
        holder: dict[str, Callable[[torch.Tensor], object]] = {"run": case.make()}

        def setup(case: DefectCase = case, holder: dict = holder) -> None:
            if case.fresh_each_call:
                holder["run"] = case.make()

        timing = plan.measure(lambda holder=holder: holder["run"](images), setup=setup)
        row.update(
            {
                "ms_per_batch": 1e3 * timing.median_s,
                "ms_per_image": 1e3 * timing.median_s / batch,
                "reps": timing.reps,
                "warmup": timing.warmup,
                "status": timing.status,
            }
        )
        if reference is not None:
            row["reference_step_model"] = reference[0]
            row["share_of_reference_step"] = timing.median_s / reference[1]
        if case.fresh_each_call:
            row["note"] = "new instance (empty texture cache) per call, construction untimed"
        table.add(row)


# --------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------


@dataclass
class Exported:
    """An OpenVINO model converted from a torch model."""

    model: ov.Model
    method: str
    seconds: float

    def fits(self, batch: int) -> bool:
        """Whether it can run ``batch`` (a dynamic batch fits any)."""
        shape = self.model.input(0).get_partial_shape()
        return shape.is_dynamic or shape.to_shape()[0] == batch


def export_openvino(model: nn.Module, image_size: int, batch: int) -> Exported:
    """Convert the torch model to OpenVINO through ``torch.export``.

    The batch dimension is exported dynamic so one conversion serves every batch size
    (the caller reshapes to a static shape before compiling); if that export fails, the
    model is exported at the static ``batch``.

    Returns:
        Exported: The model, how it was exported and how long that took.
    """
    started = time.perf_counter()
    wrapper = TensorOutputs(model).eval()
    example = (torch.rand(max(batch, 2), 3, image_size, image_size),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dynamic = ({0: torch.export.Dim("batch", min=1, max=1024)},)
            program = torch.export.export(wrapper, example, dynamic_shapes=dynamic)
            method = "torch.export (dynamic batch) + ov.convert_model"
        except Exception:  # noqa: BLE001 - any failure of the dynamic path falls back to static
            logger.info("  dynamic-batch export failed; exporting at batch %d", batch)
            program = torch.export.export(wrapper, (torch.rand(batch, 3, image_size, image_size),))
            method = f"torch.export (static batch {batch}) + ov.convert_model"
        converted = ov.convert_model(program)
    return Exported(converted, method, time.perf_counter() - started)


def _openvino_config(runtime: str, threads: int) -> dict[str, Any]:
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
    if runtime == "openvino_cpu_f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


def run_inference(plan: Plan, table: CsvTable, budget: Budget) -> None:
    """Inference cells: model x size x runtime x batch."""
    core = ov.Core()
    for name in plan.inference_models:
        spec = MODELS[name]
        for image_size in plan.sizes:
            gflops, parameters = model_cost(spec, image_size)
            torch.manual_seed(plan.seed)
            model = spec.build(image_size).eval()
            references: dict[int, np.ndarray] = {}
            exported: Exported | None = None
            for runtime in plan.runtimes:
                for batch in plan.batches:
                    row: dict[str, object] = {
                        "model": name,
                        "runtime": runtime,
                        "image_size": image_size,
                        "batch_size": batch,
                        "parameters": parameters,
                        "gflops": gflops,
                        "threads": plan.threads,
                    }
                    estimate = gflops * batch / budget.rate("inference", name, runtime)
                    reason = (
                        "total budget exhausted" if budget.exhausted() else skip_reason(estimate, 2, plan.cell_budget_s)
                    )
                    if reason:
                        logger.info("%s %s %d px batch %d: skipped (%s)", name, runtime, image_size, batch, reason)
                        table.add({**row, "status": "skipped", "note": reason})
                        continue
                    logger.info("%s %s %d px batch %d ...", name, runtime, image_size, batch)
                    images = sample_images(batch, image_size, plan.seed)
                    try:
                        if runtime == "torch_eager_cpu":
                            row.update(_eager_cell(model, images, plan, references))
                        else:
                            if exported is None or not exported.fits(batch):
                                exported = export_openvino(model, image_size, batch)
                            row.update(_openvino_cell(core, exported, runtime, images, plan, references))
                    except Exception as error:  # noqa: BLE001 - one failing cell must not end the run
                        logger.warning("  failed: %s: %s", type(error).__name__, error)
                        row.update({"status": "error", "note": f"{type(error).__name__}: {error}"[:300]})
                    else:
                        budget.record(name, runtime, gflops * batch, float(row["ms_per_batch"]) / 1e3)
                        logger.info("  %.1f ms/image", row["ms_per_image"])
                    table.add(row)
                    gc.collect()
            del model, exported
            gc.collect()


def _eager_cell(
    model: nn.Module, images: torch.Tensor, plan: Plan, references: dict[int, np.ndarray]
) -> dict[str, object]:
    # The last call's map is the reference for OpenVINO's, saving a call on slow cells.
    last: dict[str, torch.Tensor] = {}

    def call() -> None:
        with torch.inference_mode():
            last["anomaly_map"] = model(images).anomaly_map

    timing = plan.measure(call)
    references[images.shape[0]] = last["anomaly_map"].numpy()
    return _timing_columns(timing, images.shape[0]) | {"precision": "f32"}


def _openvino_cell(
    core: ov.Core,
    exported: Exported,
    runtime: str,
    images: torch.Tensor,
    plan: Plan,
    references: dict[int, np.ndarray],
) -> dict[str, object]:
    batch = images.shape[0]
    ov_model = exported.model
    if ov_model.input(0).get_partial_shape().is_dynamic:
        # Reshape a copy: the dynamic original serves the next batch size.
        ov_model = ov_model.clone()
        ov_model.reshape({ov_model.input(0): ov.PartialShape(list(images.shape))})
    tick = time.perf_counter()
    compiled = core.compile_model(ov_model, "CPU", _openvino_config(runtime, plan.threads))
    compile_s = time.perf_counter() - tick
    request = compiled.create_infer_request()
    data = images.numpy()

    def call() -> None:
        request.infer({0: data})

    timing = plan.measure(call)
    anomaly_map = request.get_output_tensor(1).data
    reference = references.get(batch)
    return _timing_columns(timing, batch) | {
        "precision": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
        "export_s": exported.seconds,
        "compile_s": compile_s,
        "max_abs_diff": float(np.abs(anomaly_map - reference).max()) if reference is not None else None,
        "note": exported.method,
    }


def _type_name(value: object) -> str:
    """``f32``/``bf16`` for an OpenVINO element type, ``str`` for anything else."""
    name = getattr(value, "get_type_name", None)
    return name() if callable(name) else str(value)


def _timing_columns(timing: Timing, batch: int) -> dict[str, object]:
    return {
        "ms_per_batch": 1e3 * timing.median_s,
        "ms_per_image": 1e3 * timing.median_s / batch,
        "images_per_second": batch / timing.median_s if timing.median_s > 0 else math.nan,
        "reps": timing.reps,
        "warmup": timing.warmup,
        "status": timing.status,
    }


# --------------------------------------------------------------------------------------
# Summary (SPEED.md)
# --------------------------------------------------------------------------------------


def _number(row: dict[str, str], name: str) -> float | None:
    try:
        value = float(row.get(name, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _measured(rows: list[dict[str, str]], value: str) -> list[dict[str, str]]:
    return [row for row in rows if row.get("status") in {"ok", "partial"} and _number(row, value) is not None]


def _pick_size(sizes: set[int], wanted: int) -> tuple[int | None, str]:
    if wanted in sizes:
        return wanted, ""
    if not sizes:
        return None, ""
    chosen = max(sizes)
    return chosen, f" ({wanted} px not measured; compared at {chosen} px)"


def _met(value: bool | None) -> str:
    return "n/a" if value is None else ("**met**" if value else "**not met**")


def _inference_goal(speed: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    rows = _measured(speed, "images_per_second")
    by_family: dict[str, set[int]] = {}
    for row in rows:
        if row["runtime"].startswith("openvino"):
            family = "recsem" if row["model"].startswith("recsem") else "draem"
            by_family.setdefault(family, set()).add(int(row["image_size"]))
    size, note = _pick_size(by_family.get("recsem", set()) & by_family.get("draem", set()), 256)
    goal = "RecSem OpenVINO throughput at 256 px >= Draem's" + note
    if size is None:
        return [(goal, "not measured", _met(None))]
    index = {(row["model"], row["runtime"], int(row["image_size"]), int(row["batch_size"])): row for row in rows}
    lines = []
    for (model, runtime, image_size, batch), row in sorted(index.items()):
        if image_size != size or not model.startswith("recsem") or not runtime.startswith("openvino"):
            continue
        for draem in sorted({key[0] for key in index if key[0].startswith("draem")}):
            other = index.get((draem, runtime, size, batch))
            if other is None:
                continue
            mine, theirs = float(row["images_per_second"]), float(other["images_per_second"])
            lines.append(
                (
                    goal,
                    f"{model} vs {draem}, {runtime}, batch {batch}: {mine:.3g} vs {theirs:.3g} images/s "
                    f"({mine / theirs:.2f}x)",
                    _met(mine >= theirs),
                )
            )
    return lines or [(goal, "no matching RecSem/Draem pair", _met(None))]


def _train_goal(train: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    rows = _measured(train, "seconds_per_step")
    goal = "RecSem training step no slower than Draem's"
    index = {(row["model"], int(row["image_size"]), int(row["batch_size"])): row for row in rows}
    # Compare like with like: the widest RecSem with full Draem, narrower ones with narrow Draem.
    pairs = [
        ("recsem_paper", "draem"),
        ("recsem_cpu", "draem_narrow"),
        ("recsem_cpu", "draem"),
        ("recsem_tiny", "draem_tiny"),
    ]
    lines = []
    for (model, size, batch), row in sorted(index.items(), key=lambda item: (item[0][1], item[0][0])):
        for mine_name, draem in pairs:
            other = index.get((draem, size, batch))
            if model != mine_name or other is None:
                continue
            mine, theirs = float(row["seconds_per_step"]), float(other["seconds_per_step"])
            lines.append(
                (
                    goal,
                    f"{model} vs {draem}, {size} px, batch {batch}: {mine:.3g} vs {theirs:.3g} s/step "
                    f"({theirs / mine:.2f}x Draem's speed)",
                    _met(mine <= theirs),
                )
            )
    return lines or [(goal, "no matching RecSem/Draem pair", _met(None))]


def _defect_goals(defects: list[dict[str, str]], train: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    rows = _measured(defects, "ms_per_batch")
    goal_speed = "Defect synthesis >= 10x faster than PerlinAnomalyGenerator"
    goal_share = "Defect synthesis < 5% of a RecSem training step"
    ours = [row for row in rows if row["generator"] == "SyntheticDefect"]
    perlin = [row for row in rows if row["generator"] == "PerlinAnomalyGenerator"]
    lines = []
    default = next((row for row in ours if row["source"] == "procedural"), None)
    comparisons = [(default, other) for other in perlin]
    # Same texture source on both sides, for a like-for-like reading.
    for source_ours, cache, source_theirs in (("dtd", "warm", "dtd"), ("dtd", "cold", "dtd")):
        mine = next((row for row in ours if row["source"] == source_ours and row["cache"] == cache), None)
        theirs = next((row for row in perlin if row["source"] == source_theirs), None)
        comparisons.append((mine, theirs))
    for mine, theirs in comparisons:
        if mine is None or theirs is None:
            continue
        speedup = float(theirs["ms_per_batch"]) / float(mine["ms_per_batch"])
        label = f"{mine['source']}{', ' + mine['cache'] + ' cache' if mine['cache'] else ''}"
        lines.append(
            (
                goal_speed,
                f"SyntheticDefect ({label}) {float(mine['ms_per_batch']):.3g} ms vs PerlinAnomalyGenerator "
                f"({theirs['source']}) {float(theirs['ms_per_batch']):.3g} ms per batch of {mine['batch_size']} at "
                f"{mine['image_size']} px: {speedup:.1f}x",
                _met(speedup >= 10),
            )
        )
    if not lines:
        lines.append((goal_speed, "not measured", _met(None)))
    steps = _measured(train, "seconds_per_step")
    share_lines = []
    if default is not None:
        size, batch = int(default["image_size"]), int(default["batch_size"])
        for step in steps:
            if step["family"] != "recsem" or int(step["image_size"]) != size or int(step["batch_size"]) != batch:
                continue
            share = float(default["ms_per_batch"]) / (1e3 * float(step["seconds_per_step"]))
            share_lines.append(
                (
                    goal_share,
                    f"SyntheticDefect (procedural) {float(default['ms_per_batch']):.3g} ms vs {step['model']} step "
                    f"{float(step['seconds_per_step']):.3g} s at {size} px, batch {batch}: {100 * share:.2f}%",
                    _met(share < 0.05),
                )
            )
    return lines + (share_lines or [(goal_share, "no RecSem step at the defect benchmark's size/batch", _met(None))])


def _status_text(row: dict[str, str]) -> str:
    """A row's status, with its note when the cell did not run cleanly."""
    return row["status"] + (f" ({row['note']})" if row["status"] != "ok" and row.get("note") else "")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _short(value: str, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}g}"
    except ValueError:
        return value or "-"


def write_summary(output: Path) -> Path:
    """Write ``SPEED.md`` from the CSVs in ``output`` (any of them may be missing).

    Args:
        output: Folder holding ``speed.csv``, ``train_step.csv``, ``defects.csv`` and
            ``machine.txt``.

    Returns:
        Path: The Markdown file.
    """
    speed = read_rows(output / "speed.csv")
    train = read_rows(output / "train_step.csv")
    defects = read_rows(output / "defects.csv")
    machine_path = output / "machine.txt"
    machine = machine_path.read_text().strip() if machine_path.is_file() else "not recorded"
    goals = _inference_goal(speed) + _train_goal(train) + _defect_goals(defects, train)
    # Name each goal once, on the first of its rows.
    goal_rows = [[goal if index == 0 or goals[index - 1][0] != goal else "", measured, met]
                 for index, (goal, measured, met) in enumerate(goals)]  # fmt: skip
    caveats = []
    if "mode: smoke" in machine:
        caveats.append("Smoke run: tiny models at tiny sizes; the figures say nothing about the goals.")
    loads = [line for line in machine.splitlines() if line.startswith("load_average_at_")]
    cores = next((line for line in machine.splitlines() if line.startswith("cores:")), "")
    with contextlib.suppress(ValueError, IndexError):
        usable = int(cores.split(",")[1].split()[0])
        busiest = max(float(line.split(":")[1].split(",")[0]) for line in loads)
        if busiest > usable:
            caveats.append(
                f"The machine was busy (1-minute load average up to {busiest:.1f} on {usable} usable cores): "
                "other work shared the CPU, so times are inflated and noisy."
            )
    parts = [
        "# RecSem speed benchmark (CPU)",
        "",
        "Generated by `benchmarks/speed.py` from `speed.csv`, `train_step.csv` and `defects.csv`; "
        "rebuild with `uv run python benchmarks/speed.py --summarise-only --output <folder>`.",
        "",
        "## Machine",
        "",
        "```",
        machine,
        "```",
        "",
        *[f"> {caveat}\n" for caveat in caveats],
        "## Goals",
        "",
        _markdown_table(["goal", "measured", "status"], goal_rows),
        "",
        "## Inference",
        "",
        "Median wall-clock time per image of synchronous calls after warm-up; GFLOPs per image as counted by "
        "`FlopCounterMode` (a multiply-add is 2 FLOPs). OpenVINO models come from `torch.export` + "
        "`openvino.convert_model`, reshaped to the static input and compiled for `CPU`.",
        "",
        _markdown_table(
            ["model", "size", "batch", "runtime", "precision", "ms/image", "images/s", "params (M)", "GFLOPs", "status"],
            [
                [
                    row["model"], row["image_size"], row["batch_size"], row["runtime"], row.get("precision") or "-",
                    _short(row["ms_per_image"], 4), _short(row["images_per_second"]),
                    _short(str(float(row["parameters"]) / 1e6) if row.get("parameters") else ""),
                    _short(row["gflops"], 4),
                    _status_text(row),
                ]
                for row in speed
            ],
        ),  # fmt: skip
        "",
        "## Training step",
        "",
        "One optimiser step on one batch: defect synthesis + forward + loss + backward + Adam. Per batch of "
        "training images RecSem takes `positive_aug_ratio + negative_aug_ratio` such steps (2 with the CPU "
        "preset, 4 with the paper's defaults) and Draem one, so compare epochs accordingly. Peak memory is the "
        "process's `VmHWM` after a reset once model, optimiser and data exist; `delta` is the growth over that "
        "baseline (activations, gradients, Adam state).",
        "",
        _markdown_table(
            ["model", "size", "batch", "s/step", "synthesis share", "peak RSS (MB)", "delta (MB)", "augmenter", "status"],
            [
                [
                    row["model"], row["image_size"], row["batch_size"], _short(row["seconds_per_step"], 4),
                    _short(row["synthesis_share"], 2), _short(row["peak_rss_mb"], 5), _short(row["peak_delta_mb"], 5),
                    row.get("augmenter") or "-",
                    _status_text(row),
                ]
                for row in train
            ],
        ),  # fmt: skip
        "",
        "## Defect synthesis",
        "",
        "Time to synthesise one batch (probability 0.5, as in training). `share` is relative to the fastest "
        "RecSem training step measured at the same size and batch.",
        "",
        _markdown_table(
            ["generator", "source", "cache", "size", "batch", "ms/batch", "share of step", "reference step", "status"],
            [
                [
                    row["generator"], row["source"], row.get("cache") or "-", row["image_size"], row["batch_size"],
                    _short(row["ms_per_batch"], 4), _short(row["share_of_reference_step"], 2),
                    row.get("reference_step_model") or "-", row["status"],
                ]
                for row in defects
            ],
        ),  # fmt: skip
        "",
    ]
    path = output / "SPEED.md"
    path.write_text("\n".join(parts))
    return path


# --------------------------------------------------------------------------------------
# Report and command line
# --------------------------------------------------------------------------------------


def format_report(speed: list[dict[str, str]], train: list[dict[str, str]], defects: list[dict[str, str]]) -> str:
    """The compact plain-text table printed at the end of a run."""

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(item) for item in column) for column in zip(header, *rows, strict=False)]
        return [
            "  ".join(item.ljust(width) for item, width in zip(line, widths, strict=True)).rstrip()
            for line in [header, *rows]
        ]

    lines: list[str] = []
    if speed:
        lines += ["Inference", *table(
            ["model", "runtime", "size", "batch", "ms/img", "img/s", "prec", "status"],
            [[r["model"], r["runtime"], r["image_size"], r["batch_size"], _short(r["ms_per_image"], 4),
              _short(r["images_per_second"]), r.get("precision") or "-", r["status"]] for r in speed],
        ), ""]  # fmt: skip
    if train:
        lines += ["Training step", *table(
            ["model", "size", "batch", "s/step", "synth", "peak MB", "delta MB", "status"],
            [[r["model"], r["image_size"], r["batch_size"], _short(r["seconds_per_step"], 4),
              _short(r["synthesis_share"], 2), _short(r["peak_rss_mb"], 5), _short(r["peak_delta_mb"], 5),
              r["status"]] for r in train],
        ), ""]  # fmt: skip
    if defects:
        lines += ["Defect synthesis", *table(
            ["generator", "source", "cache", "size", "batch", "ms/batch", "share", "status"],
            [[r["generator"], r["source"], r.get("cache") or "-", r["image_size"], r["batch_size"],
              _short(r["ms_per_batch"], 4), _short(r["share_of_reference_step"], 2), r["status"]] for r in defects],
        ), ""]  # fmt: skip
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _choice_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [value for value in values if value not in choices]
        if unknown or not values:
            raise argparse.ArgumentTypeError(f"unknown {unknown or text!r}; choose from {', '.join(choices)}")
        return values

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="CPU speed benchmark of RecSem vs Draem (inference, training step, defect synthesis).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny configuration for CI (64 px, 1 timed rep)")
    parser.add_argument("--output", type=Path, default=None, help=f"results folder (default {DEFAULT_OUTPUT}; "
                        "a temporary folder with --smoke)")  # fmt: skip
    parser.add_argument("--summarise-only", action="store_true", help="only rebuild SPEED.md from existing CSVs")
    parser.add_argument("--benchmarks", type=_choice_list(BENCHMARKS), default=list(BENCHMARKS),
                        help="which parts to run")  # fmt: skip
    parser.add_argument("--models", type=_choice_list(list(MODELS)), help="inference models")
    parser.add_argument("--train-models", type=_choice_list(list(MODELS)), help="training-step models")
    parser.add_argument("--sizes", type=_int_list, help="inference image sizes (multiples of 32)")
    parser.add_argument("--batches", type=_int_list, help="inference batch sizes")
    parser.add_argument("--runtimes", type=_choice_list(RUNTIMES), default=list(RUNTIMES))
    parser.add_argument("--train-sizes", type=_int_list, help="training-step image sizes")
    parser.add_argument("--train-batch", type=int, help="training-step batch size")
    parser.add_argument("--defect-size", type=int, help="defect-synthesis image size")
    parser.add_argument("--defect-batch", type=int, help="defect-synthesis batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenVINO threads")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up calls per cell")
    parser.add_argument("--min-reps", type=int, default=3, help="timed calls per cell, at the least")
    parser.add_argument("--max-reps", type=int, default=10, help="timed calls per cell, at the most")
    parser.add_argument("--target-seconds", type=float, default=10.0, help="stop timing a cell after this long")
    parser.add_argument("--cell-budget", type=float, default=150.0, help="seconds per inference/defect cell")
    parser.add_argument("--train-cell-budget", type=float, default=600.0, help="seconds per training cell")
    parser.add_argument("--total-budget", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--dtd", type=Path, default=DEFAULT_DTD, help="DTD images folder (rows needing it are "
                        "left out when it is missing)")  # fmt: skip
    parser.add_argument("--fresh", action="store_true", help="discard existing rows instead of merging")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def make_plan(args: argparse.Namespace) -> Plan:
    """Turn parsed arguments into a :class:`Plan`, filling smoke or full defaults."""
    defaults = SMOKE_DEFAULTS if args.smoke else FULL_DEFAULTS
    sizes = args.sizes or defaults["sizes"]
    train_sizes = args.train_sizes or defaults["train_sizes"]
    defect_size = args.defect_size or defaults["defect_size"]
    for size in [*sizes, *train_sizes]:
        if size % 32:
            msg = f"image sizes must be multiples of 32 (Draem pools 5 times), got {size}"
            raise SystemExit(msg)
    dtd = args.dtd if args.dtd is not None and Path(args.dtd).is_dir() else None
    if dtd is None:
        logger.warning("DTD folder %s not found: DTD rows are left out and Draem trains on Perlin noise", args.dtd)
    return Plan(
        inference_models=args.models or defaults["models"],
        train_models=args.train_models or defaults["train_models"],
        sizes=sizes,
        batches=args.batches or defaults["batches"],
        runtimes=args.runtimes,
        train_sizes=train_sizes,
        train_batch=args.train_batch or defaults["train_batch"],
        defect_size=defect_size,
        defect_batch=args.defect_batch or defaults["defect_batch"],
        benchmarks=args.benchmarks,
        threads=args.threads,
        warmup=1 if args.smoke else args.warmup,
        min_reps=1 if args.smoke else args.min_reps,
        max_reps=1 if args.smoke else args.max_reps,
        target_s=args.target_seconds,
        cell_budget_s=args.cell_budget,
        train_cell_budget_s=args.train_cell_budget,
        total_budget_s=args.total_budget,
        dtd=dtd,
        # Decoding every DTD image takes seconds, too long for a smoke run.
        warm_dtd_cache=not args.smoke,
    )


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Training cells fork this process, which is only safe before it has run parallel
    torch code, so call this from a fresh process (as the command line does).

    Args:
        argv: Arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        int: Exit status.
    """
    args = build_parser().parse_args(argv)
    if args.summarise_only:
        output = args.output or DEFAULT_OUTPUT
        if not output.is_dir():
            build_parser().error(f"--summarise-only: no results folder {output}")
        print(f"Wrote {write_summary(output)}")  # noqa: T201 - the report
        return 0

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")  # fmt: skip
    # Per-model initialisation and texture-folder messages would drown the progress lines.
    for name in ("anomalib", "anomalib_recsem", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    output = args.output or (Path(tempfile.mkdtemp(prefix="recsem-speed-")) if args.smoke else DEFAULT_OUTPUT)
    output.mkdir(parents=True, exist_ok=True)

    plan = make_plan(args)
    # Runs done in parts append their descriptions, as their rows are merged too.
    machine = output / "machine.txt"
    previous = "" if args.fresh or not machine.is_file() else machine.read_text() + "---\n"
    arguments = " ".join(argv if argv is not None else sys.argv[1:]) or "(defaults)"
    mode = "smoke" if args.smoke else "full"
    machine.write_text(f"{previous}mode: {mode}\narguments: {arguments}\n{describe_machine(plan.threads)}")
    budget = Budget(plan.total_budget_s)
    speed = CsvTable(output / "speed.csv", SPEED_FIELDS, SPEED_KEY, args.fresh)
    train = CsvTable(output / "train_step.csv", TRAIN_FIELDS, TRAIN_KEY, args.fresh)
    defects = CsvTable(output / "defects.csv", DEFECT_FIELDS, DEFECT_KEY, args.fresh)
    with _torch_threads(plan.threads):
        # Training first: its cells fork this process, which must not have computed yet.
        if "train" in plan.benchmarks:
            run_train(plan, train, budget)
        if "defects" in plan.benchmarks:
            run_defects(plan, defects, list(train.rows.values()), budget)
        if "inference" in plan.benchmarks:
            run_inference(plan, speed, budget)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    with (output / "machine.txt").open("a") as handle:
        handle.write(f"load_average_at_end: {load}\nbenchmark_seconds: {time.perf_counter() - budget.started:.0f}\n")
    summary = write_summary(output)
    report = format_report(speed.new, train.new, defects.new)
    print(f"{report}\nResults in {output} (summary: {summary.name})")  # noqa: T201 - the report
    return 0


if __name__ == "__main__":
    sys.exit(main())
