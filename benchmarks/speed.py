"""Speed: training steps and model-FLOP utilisation, defect synthesis, and inference throughput.

Three parts, each writing its CSV in ``benchmarks/results/`` (rows are appended; the machine
is named in every row):

* ``train`` (``train_step.csv``): seconds per optimiser step, samples per second and MFU
  for each preset x precision (fp32, bf16, bf16 + ``torch.compile``) x channels-last off/on.
  A step is what training runs: :meth:`RecSem.training_loss` (a batch gathered from images
  kept on the device, synthetic defects, forward, losses), the finite-loss check, backward,
  Adam; Lightning's own work is timed apart (``lightning_seconds_per_step``).
  ``mfu`` = model FLOPs per step / seconds per step / the device's peak for that dtype
  (:data:`PEAK_TFLOPS`); model FLOPs are counted by ``torch.utils.flop_counter`` on one
  forward and backward pass. ``outside_share`` is the share of a step spent outside the
  networks' forward and backward (gathering the batch and making the defects): 1 - the time
  of the same steps on one batch whose defects were made once / the step's, both timed back to
  back as training runs them, so that on a GPU only what keeps the device waiting counts;
  ``lightning_outside_share`` is the same against steps of ``Trainer.fit``. On CUDA,
  ``gpu_reserved_mb`` is the most memory PyTorch's allocator held for the training steps
  (``max_memory_reserved``; the CUDA context comes on top), which sizes the runs that share
  one GPU in ``gpu_campaign.py``.
* ``defects`` (``defects.csv``): :class:`SyntheticDefect` per batch, and its share of a
  training step of the same size.
* ``inference`` (``speed.csv``): images per second of the eager PyTorch model and of its
  OpenVINO f32 export, against anomalib's Draem.

Commands (repository root)::

    uv run python benchmarks/speed.py                       # all parts, CPU presets sized for 2 cores
    uv run python benchmarks/speed.py --parts train --presets recsem recsem_small --accelerator cuda
    uv run python benchmarks/speed.py --summarise-only      # SPEED.md from the CSVs
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
import warnings
from datetime import datetime, timedelta
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from anomalib.data import ImageBatch, ImageItem  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from anomalib_recsem import SyntheticDefect  # noqa: E402
from anomalib_recsem.data.texture_bank import TextureFolder, fit_size  # noqa: E402
from anomalib_recsem.presets import batch_sizes, model_arguments  # noqa: E402
from benchmarks import harness  # noqa: E402

#: Dense peak throughput per device in TFLOPS (vendor data sheets; SXM parts), without
#: sparsity. bf16 and tf32 are tensor-core peaks, fp32 the plain vector peak. cuDNN runs fp32
#: convolutions in TF32 unless told not to (``torch.backends.cudnn.allow_tf32``, on by default,
#: and what ``anomalib train`` gets), so an fp32 cell on such a GPU is measured against tf32.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.1},
}
#: CPU peak FLOPs per core and cycle: the first row whose ``/proc/cpuinfo`` vendor and flag
#: match. Two FMA pipes of 256 bits (AMD's Zen, which runs AVX-512 on them too) make 2 x 8 x 2
#: = 32 float32 FLOPs, two of 512 bits (Intel's server cores with AVX-512) 64; bfloat16 dot
#: products double that, and Intel's AMX tiles do 1024 bfloat16 FLOPs a cycle. Without
#: bfloat16 instructions bfloat16 is computed no faster than float32 (on a Zen 3 EPYC a
#: bfloat16 matrix product ran 100 times slower), so it gets the float32 peak.
CPU_FLOPS_PER_CYCLE: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("AuthenticAMD", "avx512_bf16", {"fp32": 32, "bf16": 64}),
    ("AuthenticAMD", "", {"fp32": 32, "bf16": 32}),
    ("GenuineIntel", "amx_bf16", {"fp32": 64, "bf16": 1024}),
    ("GenuineIntel", "avx512_bf16", {"fp32": 64, "bf16": 128}),
    ("GenuineIntel", "avx512f", {"fp32": 64, "bf16": 64}),
    ("GenuineIntel", "", {"fp32": 32, "bf16": 32}),
)
#: A pause between two rows of ``synthesis_revisions.csv`` that ends an invocation: within one,
#: rows are seconds apart (a round, or starting the next size's processes).
PAUSE = timedelta(minutes=2)
#: Timed steps in a row before the networks alone take a turn (see :func:`time_training`).
INTERLEAVED_STEPS = 8
#: Training steps over which host syncs are counted on a GPU: about one draw of masks and
#: textures ahead, and few enough to leave the campaign's speed slice to the timings.
SYNC_COUNT_STEPS = 16
#: Synthesis calls timed per cell: a call takes milliseconds, and its cost varies with the draw.
DEFECT_REPS = 50
#: Synthesis calls whose operations are counted: about ten of the calls that draw 64 defects ahead.
COUNTED_CALLS = 160

TRAIN_COLUMNS = (
    "model", "family", "image_size", "batch_size", "seconds_per_step", "ms_per_image", "synthesis_s",
    "synthesis_share", "augmenter", "parameters", "gflops", "peak_rss_mb", "peak_delta_mb", "baseline_rss_mb",
    "memory_method", "threads", "reps", "warmup", "status", "note",
    "precision", "channels_last", "compile", "samples_per_second", "step_tflop", "peak_tflops", "mfu",
    "outside_share", "gpu_reserved_mb", "host_syncs_per_step", "device", "finished_at", "networks_seconds_per_step",
    "lightning_seconds_per_step", "lightning_outside_share",
)
DEFECT_COLUMNS = (
    "generator", "source", "cache", "image_size", "batch_size", "probability", "ms_per_batch", "ms_per_image",
    "operations_per_batch", "reference_step_model", "share_of_reference_step", "reps", "warmup", "status", "note",
    "device", "finished_at",
)
INFERENCE_COLUMNS = (
    "model", "runtime", "image_size", "batch_size", "ms_per_image", "images_per_second", "ms_per_batch",
    "parameters", "gflops", "threads", "precision", "reps", "warmup", "export_s", "compile_s", "max_abs_diff",
    "status", "note", "device", "finished_at",
)
CHANNELS_LAST = {"off": (False,), "on": (True,), "both": (False, True)}
PRECISIONS = {"fp32": (torch.float32, False), "bf16": (torch.bfloat16, False), "bf16+compile": (torch.bfloat16, True)}


def peak_tflops(device: torch.device, dtype: str) -> float:
    """The device's dense peak for ``dtype`` (``"fp32"``, ``"tf32"`` or ``"bf16"``), in TFLOPS.

    On a CPU from its clock as ``/proc/cpuinfo`` gives it, which under a hypervisor is the
    nominal one: cores that boost above it can show an MFU above 1. CPUs that
    :data:`CPU_FLOPS_PER_CYCLE` does not describe (neither AMD nor Intel) get NaN.
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in PEAK_TFLOPS.items():
            if key in name:
                return peaks[dtype]
        return float("nan")
    fields = harness.cpuinfo_fields()
    vendor, flags = fields.get("vendor_id", ""), fields.get("flags", "").split()
    per_cycle = next((row for maker, flag, row in CPU_FLOPS_PER_CYCLE if maker == vendor and (not flag or flag in flags)),
                     None)
    if per_cycle is None:
        return float("nan")
    megahertz = max(float(line.split(":")[1]) for line in harness.CPUINFO.read_text().splitlines()
                    if line.startswith("cpu MHz"))  # the fastest core, not the first
    return torch.get_num_threads() * megahertz * 1e6 * per_cycle[dtype] / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_host_syncs(step: Callable[[], None], steps: int) -> float:
    """How many times per step the host waits for the GPU without being asked to, on average.

    Each such wait (a blocking copy, ``.item()``, ``nonzero`` on the device...) drains the
    GPU's queue, and the GPU idles until the host has queued work again. Counted with
    ``torch.cuda.set_sync_debug_mode("warn")``, which warns at every one; an explicit
    ``torch.cuda.synchronize`` is not counted, and the steps run none.
    """
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    # Matched exactly: setting the mode also warns once that it is a prototype.
    return sum("called a synchronizing CUDA operation" in str(warning.message) for warning in caught) / steps


def step_flops(model: harness.RecSem, images: torch.Tensor, flags: torch.Tensor) -> float:
    """Model FLOPs of one training step (forward and backward of the networks), counted once."""
    with FlopCounterMode(display=False) as counter:
        model.training_loss(images, flags)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


#: Training images the Lightning steps cycle through: an epoch of the CPU preset's 1 + 1 copies
#: in batches of 8 is then 128 steps, more than a cell's Lightning steps, which so see no epoch
#: boundary (on magnetic_tile, 761 images, an epoch of the paper's 2 + 2 copies is 380 steps).
LIGHTNING_IMAGES = 512


def grow_draws(model: harness.RecSem, images: torch.Tensor) -> None:
    """Take the draws of masks and textures past their first, growing sizes (8 rows, then 16, ... 64).

    So the timed steps see what the rest of a run sees: one draw of 64 every 16 steps or so.
    """
    for _ in range(16):
        model.synthetic_defect.synthesize(images, torch.ones(len(images), dtype=torch.bool))


class BatchStarts(pl.Callback):
    """The wall-clock time at the start of every training batch.

    Before the first, it grows the draws of masks and textures (:func:`grow_draws`), which
    every epoch start discards, as :func:`time_training` does before its steps.
    """

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: harness.RecSem, batch: ImageBatch,
                             batch_idx: int) -> None:
        del trainer, batch_idx
        if not self.starts:
            grow_draws(pl_module, batch.image)
        self.starts.append(time.perf_counter())


def lightning_seconds_per_step(model: harness.RecSem, image_size: int, batch: int, precision: str,
                               device: torch.device, steps: int, warmup: int) -> float:
    """Mean seconds of ``steps`` steps of ``Trainer.fit`` after ``warmup``.

    Everything Lightning and RecSem add to :func:`time_training`'s step is in it: the hooks,
    logging and the optimiser's closure, with the in-memory training data; not the epoch's
    start and end. The host waits at every step's finite-loss check, so it never runs more
    than a step ahead, and the time between batch starts is the device's pace.
    """
    generator = torch.Generator().manual_seed(0)
    items = [ImageItem(image=torch.rand(3, image_size, image_size, generator=generator), gt_label=torch.tensor(0))
             for _ in range(LIGHTNING_IMAGES)]
    clock = BatchStarts()
    trainer = pl.Trainer(accelerator=device.type, devices=1, max_steps=warmup + steps + 1, limit_val_batches=0,
                         precision="32-true" if precision == "fp32" else "bf16-mixed", callbacks=[clock], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=DataLoader(items, batch_size=batch, collate_fn=ImageBatch.collate))
    return (clock.starts[warmup + steps] - clock.starts[warmup]) / steps


def time_training(preset: str, image_size: int, batch: int, precision: str, channels_last: bool,
                  device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` (compilation happens in the warm-up).

    Means, not medians: about one step in 16 also draws the next 64 defects' masks and
    textures (:class:`~anomalib_recsem.data.draw_ahead.DrawAhead`), and a median would
    leave it out. ``outside_share`` compares the steps with the same steps on one batch
    whose defects were made once, timed in turns; ``synthesis_share`` is gathering and
    synthesis timed alone, waited for, over a step: their cost if nothing overlapped them.
    """
    dtype, compiled = PRECISIONS[precision]
    torch.manual_seed(0)
    model = harness.recsem(preset, image_size=image_size, channels_last=channels_last, compile=compiled)
    model.to(device)
    model.on_fit_start()
    optimizer = model.configure_optimizers()
    # Training images kept on the device and the defect flags on the host, as the in-memory
    # training data gives them.
    stored = torch.rand(64, 3, image_size, image_size, device=device)
    gather = lambda: (stored[torch.randint(0, 64, (batch,)).to(device, non_blocking=True)],  # noqa: E731
                      torch.rand(batch) < 0.5)
    flops = step_flops(harness.recsem(preset, image_size=image_size).to(device), *gather())
    if device.type == "cuda":  # from here on, what one training process holds (its counted copy is gone)
        gc.collect()  # the counted copy sits in reference cycles; its GPU memory goes only with them
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    synthesize = model.synthetic_defect.synthesize

    def step(batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            terms = model.training_loss(*batch())
        model.check_finite_loss(terms)  # as training_step: the host waits here for the forward pass
        terms["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def run_steps(batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], count: int) -> float:
        # Back to back, waited for only at the end: a GPU's host queues the next step's work
        # while the device runs the last one, as in training, so only the work that keeps the
        # device waiting costs time.
        _sync(device)
        started = time.perf_counter()
        for _ in range(count):
            step(batch)
        _sync(device)
        return time.perf_counter() - started

    grow_draws(model, stored[:8])
    for _ in range(warmup):
        step(gather)
    # Gathering and synthesis alone, each waited for: their cost if nothing overlapped them.
    outside: list[float] = []
    for _ in range(steps):
        _sync(device)
        started = time.perf_counter()
        synthesize(*gather())
        _sync(device)
        outside.append(time.perf_counter() - started)
    # The steps, and the networks alone (the same steps on one batch whose defects were made
    # once), in alternating blocks: on a shared CPU whose speed drifts by 10 % within minutes,
    # both then see the same machine.
    images, flags = gather()
    made = synthesize(images, flags)
    block = min(steps, INTERLEAVED_STEPS)
    blocks = math.ceil(steps / block)
    seconds = networks_seconds = 0.0
    for _ in range(blocks):
        seconds += run_steps(gather, block) / (block * blocks)
        model.synthetic_defect.synthesize = lambda *_, **__: made  # type: ignore[method-assign]
        networks_seconds += run_steps(lambda: (images, flags), block) / (block * blocks)
        model.synthetic_defect.synthesize = synthesize  # type: ignore[method-assign]
    measured: dict[str, float] = {}
    if device.type == "cuda":
        measured["gpu_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
        try:
            measured["host_syncs_per_step"] = count_host_syncs(lambda: step(gather), SYNC_COUNT_STEPS)
        except Exception as error:  # noqa: BLE001  the timings above stand without the count
            print(f"host syncs not counted: {type(error).__name__}: {error}", flush=True)  # noqa: T201
            measured["host_syncs_per_step"] = float("nan")
    try:  # last: Lightning's teardown moves the model back to the CPU
        lightning_seconds = lightning_seconds_per_step(model, image_size, batch, precision, device, steps, warmup)
    except Exception as error:  # noqa: BLE001  the timings above stand without it
        print(f"Trainer.fit not timed: {type(error).__name__}: {error}", flush=True)  # noqa: T201
        lightning_seconds = float("nan")
    tf32 = dtype == torch.float32 and device.type == "cuda" and torch.backends.cudnn.allow_tf32
    peak = peak_tflops(device, "bf16" if dtype != torch.float32 else "tf32" if tf32 else "fp32")
    return {
        "seconds_per_step": seconds,
        "ms_per_image": 1000 * seconds / batch,
        "samples_per_second": batch / seconds,
        "synthesis_s": statistics.mean(outside),
        "synthesis_share": statistics.mean(outside) / seconds,
        "networks_seconds_per_step": networks_seconds,
        "outside_share": 1 - networks_seconds / seconds,
        "lightning_seconds_per_step": lightning_seconds,
        "lightning_outside_share": 1 - networks_seconds / lightning_seconds,
        "step_tflop": flops / 1e12,
        "gflops": flops / 3 / batch / 1e9,  # forward, per image
        "peak_tflops": peak,
        "mfu": flops / seconds / (peak * 1e12),
        "parameters": sum(parameter.numel() for parameter in model.model.parameters()),
        "augmenter": f"SyntheticDefect({harness.texture_label(model.anomaly_source)})",
        "note": "convolutions in TF32 (cuDNN's default; matrix products stay fp32); MFU against the TF32 peak"
                if tf32 else "",
    } | measured


def run_train(args: argparse.Namespace, device: torch.device) -> None:
    """The training grid: preset x precision x channels-last."""
    path = args.output / "train_step.csv"
    for preset in args.presets:
        image_size, batch = args.sizes[preset]
        for precision in args.precisions:
            for channels_last in CHANNELS_LAST[args.channels_last]:
                row = {"model": preset, "family": "recsem", "image_size": image_size, "batch_size": batch,
                       "precision": precision, "channels_last": channels_last, "compile": "compile" in precision,
                       "threads": torch.get_num_threads(), "reps": args.steps, "warmup": args.warmup,
                       "device": harness.device_name(device.type),
                       "finished_at": harness.now()}
                try:
                    row |= time_training(preset, image_size, batch, precision, channels_last, device, args.steps,
                                         args.warmup)
                    row["status"] = "ok"
                except Exception as error:  # noqa: BLE001  a failing cell is a result, not a crash
                    row |= {"status": "error", "note": f"{type(error).__name__}: {error}"[:300]}
                print({key: row.get(key) for key in ("model", "precision", "channels_last", "seconds_per_step",  # noqa: T201
                                                     "mfu", "outside_share", "status", "note")}, flush=True)
                harness.append_rows(path, [row], TRAIN_COLUMNS)


class OperationCount(TorchDispatchMode):
    """Counts the tensor operations run inside it, views left out.

    On a GPU each operation is a kernel launch, a fixed cost of several microseconds of the
    host whatever the tensor's size; for a batch of 8 images that cost, more than the
    arithmetic, decides how long defect synthesis takes there. Views launch nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:  # noqa: ANN401
        if not func.is_view:
            self.count += 1
        return func(*args, **(kwargs or {}))


def time_synthesis(source: str | Path | None, size: int, device: torch.device, warmup: int) -> dict[str, float]:
    """Milliseconds of :meth:`SyntheticDefect.synthesize` per batch of 8 at ``size`` px (mean of the reps).

    The mean: about one call in 16 also draws the next 64 defects' masks and textures.
    """
    transform = SyntheticDefect(anomaly_source=source, seed=0)
    textures = transform.texture_folder
    if isinstance(textures, TextureFolder):  # training decodes and resizes each file once; time what follows
        shape = fit_size(size, size, textures.size)
        for start in range(0, len(textures.paths), 64):
            textures.textures(torch.arange(start, min(start + 64, len(textures.paths))), *shape)
    images = torch.rand(8, 3, size, size, device=device)
    durations = []
    for index in range(warmup + DEFECT_REPS):
        flags = torch.rand(8) < 0.5
        _sync(device)
        started = time.perf_counter()
        transform.synthesize(images, flags)
        _sync(device)
        if index >= warmup:
            durations.append(time.perf_counter() - started)
    seconds = statistics.mean(durations)
    with OperationCount() as operations:  # after the timing: counting slows every operation down
        for _ in range(COUNTED_CALLS):
            transform.synthesize(images, torch.rand(8) < 0.5)
    return {"ms_per_batch": 1000 * seconds, "ms_per_image": 1000 * seconds / 8,
            "operations_per_batch": operations.count / COUNTED_CALLS}


def run_defects(args: argparse.Namespace, device: torch.device) -> None:
    """SyntheticDefect per batch of 8, procedural textures, photographs and DTD, at 128 and 256 px."""
    path = args.output / "defects.csv"
    sources = {"procedural": None, "photos": "photos", "dtd": args.textures if args.textures.is_dir() else None}
    for size in (128, 256):
        for name, source in sources.items():
            if name == "dtd" and source is None:
                continue
            row = {"generator": "SyntheticDefect", "source": name, "image_size": size, "batch_size": 8,
                   "probability": 0.5, "reps": DEFECT_REPS, "warmup": args.warmup,
                   "device": harness.device_name(device.type), "finished_at": harness.now()}
            try:
                row |= time_synthesis(source, size, device, args.warmup) | {"status": "ok"}
            except Exception as error:  # noqa: BLE001  e.g. photographs missing: a result, not a crash
                row |= {"status": "error", "note": f"{type(error).__name__}: {error}"[:300]}
            print(row, flush=True)  # noqa: T201
            harness.append_rows(path, [row], DEFECT_COLUMNS)


class _Outputs(torch.nn.Module):
    """The eval-mode network with plain tensor outputs, for OpenVINO's converter."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.network(images)
        return output.pred_score, output.anomaly_map


def _throughput(call: Callable[[], Any], steps: int, warmup: int) -> float:
    durations = []
    for index in range(warmup + steps):
        started = time.perf_counter()
        call()
        if index >= warmup:
            durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def run_inference(args: argparse.Namespace, device: torch.device) -> None:
    """Eager PyTorch and OpenVINO f32 throughput at 256 px, batch 1, CPU."""
    import openvino as ov  # noqa: PLC0415

    path = args.output / "speed.csv"
    networks = {
        "recsem_paper": harness.recsem("recsem", image_size=256).model,
        "recsem_cpu": harness.recsem("recsem_small", image_size=256).model,
        "draem": __import__("anomalib.models.image.draem.torch_model", fromlist=["DraemModel"]).DraemModel(),
    }
    images = torch.rand(1, 3, 256, 256)
    for name, network in networks.items():
        network = _Outputs(network.eval())
        base = {"model": name, "image_size": 256, "batch_size": 1, "threads": torch.get_num_threads(),
                "precision": "f32", "reps": args.steps, "warmup": args.warmup, "status": "ok",
                "parameters": sum(parameter.numel() for parameter in network.parameters()),
                "device": harness.device_name("cpu"), "finished_at": harness.now()}
        with torch.no_grad():
            reference = network(images)
            seconds = _throughput(lambda network=network: network(images), args.steps, args.warmup)
        rows = [{**base, "runtime": "torch_eager_cpu", "ms_per_batch": 1000 * seconds}]
        started = time.perf_counter()
        compiled = ov.Core().compile_model(ov.convert_model(network, example_input=images), "CPU",
                                           {"INFERENCE_PRECISION_HINT": "f32"})
        export_seconds = time.perf_counter() - started
        result = compiled(images.numpy())
        difference = float(abs(result[1] - reference[1].numpy()).max())
        seconds = _throughput(lambda compiled=compiled: compiled(images.numpy()), args.steps, args.warmup)
        rows.append({**base, "runtime": "openvino_f32_cpu", "ms_per_batch": 1000 * seconds, "export_s": export_seconds,
                     "max_abs_diff": difference})
        for row in rows:
            row |= {"ms_per_image": row["ms_per_batch"], "images_per_second": 1000 / row["ms_per_batch"]}
            print(row, flush=True)  # noqa: T201
            harness.append_rows(path, [row], INFERENCE_COLUMNS)


def _milliseconds(row: dict[str, str]) -> str:
    """A synthesis row's time per batch, or why it has none."""
    return f"{float(row['ms_per_batch']):.1f}" if row["status"] == "ok" else f"{row['status']}: {row['note'][:60]}"


def _operations(row: dict[str, str]) -> str:
    """A synthesis row's operations per batch; rows from before they were counted have none."""
    return f"{float(row['operations_per_batch']):.0f}" if row.get("operations_per_batch") else "–"


def summarise(output: Path) -> Path:
    """SPEED.md: the latest row of every cell."""
    lines = ["# Speed", "", "Written by `benchmarks/speed.py --summarise-only` from the CSVs beside it; every row names",
             "its device. MFU = model FLOPs per step / seconds per step / the device's dense peak for the dtype",
             "(peaks: `PEAK_TFLOPS` and `CPU_FLOPS_PER_CYCLE` in `speed.py`).", ""]
    steps, synthesis = harness.read_rows(output / "train_step.csv"), harness.read_rows(output / "defects.csv")
    inference_rows = harness.read_rows(output / "speed.csv")
    train = [row for row in steps if row.get("precision")]
    latest: dict[tuple, dict[str, str]] = {}
    for row in train:
        latest[(row["device"], row["model"], row["precision"], row["channels_last"], row["batch_size"])] = row
    table = []
    for row in latest.values():
        cell = [row["device"], row["model"], row["image_size"], row["batch_size"], row["precision"],
                row["channels_last"]]
        if row["status"] != "ok":
            table.append([*cell, f"{row['status']}: {row['note'][:60]}", *[""] * 7])
            continue
        memory = f"{float(row['gpu_reserved_mb']) / 1024:.1f} GiB" if row.get("gpu_reserved_mb") else "–"
        syncs = f"{float(row['host_syncs_per_step']):.1f}" if row.get("host_syncs_per_step") else "–"
        alone, fitting = (f"{100 * float(row[key]):.1f} %" if row.get(key) else "–"
                          for key in ("synthesis_share", "lightning_outside_share"))
        table.append([*cell, f"{float(row['seconds_per_step']):.3f}", f"{float(row['samples_per_second']):.1f}",
                      f"{float(row['mfu']):.3f}", f"{100 * float(row['outside_share']):.1f} %", fitting, alone,
                      memory, syncs])
    lines += ["## Training step", "", *harness.markdown_table(
        ["device", "preset", "px", "batch", "precision", "channels-last", "s/step", "samples/s", "MFU",
         "outside fwd/bwd", "in Lightning", "synthesis alone", "GPU memory", "host syncs/step"], table)]
    lines += ["", "Outside fwd/bwd and in Lightning: 1 - the time of the same steps on one batch whose defects were "
              "made once / the time of the step (timed steps, or steps of `Trainer.fit`), all run back to back; on a "
              "CPU, where nothing overlaps, within a few percent of noise either way. Synthesis alone: gathering "
              "and synthesis timed alone, each call waited for, over a step."]
    defects = [row for row in synthesis if row.get("device")]
    if defects:
        lines += ["", "## Defect synthesis (batch of 8)", "", *harness.markdown_table(
            ["device", "source", "px", "ms per batch", "operations per batch", "measured", "note"],
            ([r["device"], r["source"], r["image_size"], _milliseconds(r), _operations(r), r["finished_at"][:10],
              r.get("note") or ""] for r in defects))]
    revisions = harness.read_rows(output / "synthesis_revisions.csv")
    if revisions:
        # One group per invocation, named by its first row's time: revisions are compared only
        # within the rounds that interleaved them. An invocation times each (round, size,
        # revision) once, so a repeat starts the next one, and so does a pause of more than
        # PAUSE (invocations of other revisions may follow one another). Each revision is also put against the
        # invocation's first revision round by round: the median of those ratios is what the
        # interleaving makes comparable when the machine's speed drifts between rounds.
        cells: dict[tuple[str, str, str, str, str, str], dict[str, float]] = {}
        first: dict[str, str] = {}
        started, seen, previous = "", set(), None
        for row in revisions:
            timed = (row["round"], row["image_size"], row["revision"])
            moment = datetime.fromisoformat(row["finished_at"])
            if not started or timed in seen or moment - previous > PAUSE:
                started, seen = row["finished_at"][:16].replace("T", " "), set()
                first[started] = row["revision"]
            seen.add(timed)
            previous = moment
            key = (started, row["device"], row["source"], row["image_size"], row["revision"], row["commit"])
            cells.setdefault(key, {})[row["round"]] = float(row["ms_per_batch"])
        reference = {(run, size): rounds for (run, _, _, size, revision, _), rounds in cells.items()
                     if revision == first[run]}

        def ratio(run: str, size: str, rounds: dict[str, float]) -> str:
            baseline = reference.get((run, size), {})
            shared = [rounds[key] / baseline[key] for key in rounds if key in baseline]
            return f"{statistics.median(shared):.2f}" if shared else "-"

        lines += ["", "## Defect synthesis across revisions (`synthesis_revisions.py`: interleaved, batch of 8)", "",
                  *harness.markdown_table(
                      ["run started", "device", "source", "px", "revision", "commit", "rounds", "median ms per batch",
                       "range", "vs first revision"],
                      ([run, device, source, size, revision, commit, len(rounds),
                        f"{statistics.median(rounds.values()):.1f}",
                        f"{min(rounds.values()):.1f}-{max(rounds.values()):.1f}", ratio(run, size, rounds)]
                       for (run, device, source, size, revision, commit), rounds in sorted(
                           cells.items(), key=lambda item: (item[0][0], item[0][1], item[0][2], int(item[0][3])))))]
    # Rows without a device column come from the first version of this benchmark, on the same
    # 2-core machine: the baselines the speed goals were set against.
    earlier_steps = [row for row in steps if not row.get("device")
                     and row["model"] == "recsem_cpu" and row["image_size"] == "128" and row["batch_size"] == "8"]
    earlier_defects = [row for row in synthesis if not row.get("device")
                       and row["generator"] == "SyntheticDefect" and row.get("cache") != "cold"]
    earlier_inference = [row for row in inference_rows if not row.get("device")
                         and row.get("status") == "ok"]
    if earlier_steps or earlier_defects or earlier_inference:
        lines += ["", "## Earlier measurements (first version of this benchmark, same machine, 2 threads)", ""]
        lines += [f"* CPU preset, 128 px, batch 8, fp32: {float(r['seconds_per_step']):.3f} s per step."
                  for r in earlier_steps]
        lines += [f"* SyntheticDefect, {r['source']} textures, {r['image_size']} px, batch 8: "
                  f"{float(r['ms_per_batch']):.1f} ms per batch." for r in earlier_defects]
        if earlier_inference:
            lines += ["", *harness.markdown_table(
                ["model", "runtime", "px", "batch", "images/s"],
                ([r["model"], r["runtime"], r["image_size"], r["batch_size"], f"{float(r['images_per_second']):.2f}"]
                 for r in earlier_inference))]
    inference = [row for row in inference_rows if row.get("device")]
    if inference:
        lines += ["", "## Inference, 256 px, batch 1", "", *harness.markdown_table(
            ["device", "model", "runtime", "images/s"],
            ([r["device"], r["model"], r["runtime"], f"{float(r['images_per_second']):.2f}"] for r in inference))]
    path = output / "SPEED.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("train", "defects", "inference"),
                        default=["train", "defects", "inference"])
    parser.add_argument("--presets", nargs="+", default=["recsem_small", "recsem"])
    parser.add_argument("--precisions", nargs="+", choices=tuple(PRECISIONS), default=list(PRECISIONS))
    parser.add_argument("--channels-last", choices=tuple(CHANNELS_LAST), default="both",
                        help="memory formats of the training cells")
    parser.add_argument("--accelerator", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=5,
                        help="timed repetitions per training and inference cell (synthesis: 50)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (compilation)")
    parser.add_argument("--paper-batch", type=int, default=None,
                        help="batch for the paper preset (default: the preset's on a GPU, 2 on a CPU)")
    parser.add_argument("--textures", type=Path, default=harness.DTD_IMAGES,
                        help="folder of texture images timed as the 'dtd' source, when it exists")
    parser.add_argument("--output", type=Path, default=harness.RESULTS)
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args(argv)
    # Each preset's image size and batch from its YAML (an unknown preset fails here, naming
    # the accepted ones). The paper's batch of 8 at 256 px takes a minute a step on 2 CPU cores.
    args.sizes = {preset: (model_arguments(preset)["image_size"], batch_sizes(preset)[0]) for preset in args.presets}
    if "recsem" in args.sizes:
        paper_batch = args.paper_batch or (args.sizes["recsem"][1] if args.accelerator == "cuda" else 2)
        args.sizes["recsem"] = (args.sizes["recsem"][0], paper_batch)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts, then summarise."""
    args = parse_arguments(argv)
    device = torch.device(args.accelerator)
    if not args.summarise_only:
        for part in args.parts:
            {"train": run_train, "defects": run_defects, "inference": run_inference}[part](args, device)
    print(summarise(args.output))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
