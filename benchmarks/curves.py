"""Learning curves: RecSem and Draem trained like for like, evaluated every few optimiser steps.

Both models get the same antialiased resize, image size, batch size, first-block widths,
DTD textures and seeds, and are trained through anomalib's ``Engine`` for the same number
of optimiser steps. Every ``--every`` steps (and at step 0) the test set (by default every
second image, to keep evaluations cheap on a CPU) is scored: image
AUROC, pixel AUROC and AUPRO (FPR 0.3), and the reconstruction's health. Each point is a
row of the CSV (model, seed, step, samples, seconds, ...); ``seconds`` is training wall
clock, set-up included, evaluations excluded.

Resumable: a finished (model, seed) run is skipped; an interrupted one continues from the
checkpoint written at its last point (in ``<output>/checkpoints``, or ``--checkpoints``). A run
ends at ``--steps``, at ``--max-seconds`` of training, or, with ``--deadline``, in time to record
its last point before that wall-clock time. Commands (repository root)::

    uv run python benchmarks/curves.py                       # magnetic_tile, CPU preset, 3 seeds
    uv run python benchmarks/curves.py --plot-only           # redraw the PNG from the CSV
    uv run python benchmarks/curves.py --smoke --output /tmp/curves   # generated data, seconds
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything  # noqa: E402
from lightning.pytorch.callbacks import EMAWeightAveraging, WeightAveraging  # noqa: E402

from benchmarks import harness  # noqa: E402

COLUMNS = (
    "model", "seed", "step", "samples", "seconds", "epoch",
    "image_AUROC", "pixel_AUPRO", "pixel_AUROC",
    "reconstruction_error", "reconstruction_spread", "residual_pixel_AUROC",
    "category", "image_size", "batch_size", "width", "textures", "preset", "precision", "threads", "device",
    "load_average",
    "finished_at",
)
#: Models a curve can follow: RecSem variants (constructor overrides on the preset and ``--textures``) and Draem.
RECSEM_VARIANTS: dict[str, dict[str, Any]] = {
    "recsem": {},
    "recsem_authors_memory": {"normalize_query": False},
    "recsem_procedural_source": {"anomaly_source": None},  # the built-in texture bank
    "recsem_photos_source": {"anomaly_source": "photos"},  # crops of scikit-image's photographs
    "recsem_self_source": {"anomaly_source": "self"},
    # which sub-network's width limits the CPU preset: each doubled alone
    "recsem_wide_reconstruction": {"reconstruction_width": 32},
    "recsem_wide_discriminator": {"discriminator_width": 32},
    # the authors' 20 warm-up epochs are about 3 800 steps on magnetic_tile: a 2-hour CPU run
    # barely leaves them; 2 epochs let the cosine decay happen within a short run
    "recsem_short_warmup": {"warmup_epochs": 2},
    "recsem_ema": {},  # the preset, trained with the callback below
    # a fifth of the paper's rate: are the curves' swings from point to point the step size?
    "recsem_low_lr": {"learning_rate": 2e-4},
    # the memory's read-out without the input added back: can a defect still pass the bottleneck?
    "recsem_no_memory_skip": {"memory_skip": False},
    # the authors' code: the discriminator trains on (reconstruction, defect-free image), where the
    # input alone shows no defect, and is tested on (reconstruction, test image)
    "recsem_clean_pairs": {"discriminator_input": "clean"},
    # the default recipe with the segmentation loss kept out of the reconstruction network (the
    # authors' setting for cable, screw and transistor): a reconstruction trained only to reconstruct
    "recsem_detached": {"anomaly_source": "photos", "detach_reconstruction": True},
    # the default recipe with the paper figure's discriminator: one encoder applied to each image,
    # the two images' features fused at every scale
    "recsem_fusion": {"anomaly_source": "photos", "discriminator": "fusion"},
}
#: Variants that train with an extra Lightning callback; points score what validation would see.
CALLBACK_VARIANTS: dict[str, Callable[[], Callback]] = {
    # an exponential moving average of the weights (half-life ~350 steps, under two epochs of
    # magnetic_tile): do the averaged weights score steadier and higher than the last step's?
    "recsem_ema": lambda: EMAWeightAveraging(decay=0.998),
}
MODELS = (*RECSEM_VARIANTS, "draem")


class CurveRecorder(Callback):
    """Evaluate every ``every`` steps, append a row and save a checkpoint to resume from.

    A run ends at ``max_seconds`` of training, or early enough to record its last point before
    the wall-clock ``deadline`` (UNIX time; a point is assumed to take as long as the one before).
    """

    def __init__(self, data: harness.EvaluationSet, every: int, csv_path: Path, checkpoint: Path,
                 clock: harness.StepClock, fixed: dict[str, Any], max_seconds: float | None = None,
                 deadline: float | None = None) -> None:
        self.data, self.every, self.csv_path, self.checkpoint = data, every, csv_path, checkpoint
        self.clock, self.fixed, self.max_seconds, self.deadline = clock, fixed, max_seconds, deadline
        self.point_seconds = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The untrained model is the curve's first point."""
        if trainer.global_step == 0:
            self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:  # noqa: ANN401
        """A point every ``every`` steps and at the last step (also when the time budget ends the run)."""
        out_of_time = (self.max_seconds is not None and self.clock.elapsed() >= self.max_seconds) or (
            self.deadline is not None and time.time() + 1.5 * self.point_seconds >= self.deadline)
        if trainer.global_step % self.every == 0 or trainer.global_step >= trainer.max_steps or out_of_time:
            self._record(trainer, pl_module)
        if out_of_time:
            trainer.should_stop = True

    def _record(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.clock.pause()
        started = time.time()
        # Weight averaging swaps its averaged weights in for validation; a point scores those too.
        averaging = [callback for callback in trainer.callbacks if isinstance(callback, WeightAveraging)]
        for callback in averaging:
            callback.on_validation_epoch_start(trainer, pl_module)
        metrics = harness.evaluate(pl_module, self.data)
        for callback in averaging:
            callback.on_validation_epoch_end(trainer, pl_module)
        row = {
            **self.fixed,
            "step": trainer.global_step,
            "samples": trainer.global_step * self.fixed["batch_size"],
            "seconds": round(self.clock.seconds, 1),
            "epoch": trainer.current_epoch,
            **metrics,
            "load_average": harness.load_average(),
            "finished_at": harness.now(),
        }
        with _locked(self.csv_path):
            harness.append_rows(self.csv_path, [row], COLUMNS)
        if trainer.global_step > 0:
            trainer.save_checkpoint(self.checkpoint)
        if pl_module.device.type == "cuda":  # evaluation's larger batches: give their memory back to the other runs
            torch.cuda.empty_cache()
        logging.getLogger("curves").info("%s seed %s step %d: %s", row["model"], row["seed"], row["step"],
                                         {k: round(v, 3) for k, v in metrics.items()})
        self.point_seconds = time.time() - started
        self.clock.resume()


class _locked:  # noqa: N801  a context manager, named as one
    """An exclusive lock on ``<path>.lock``, so parallel runs append rows one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_suffix(path.suffix + ".lock")

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *args: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def run(model_name: str, seed: int, args: argparse.Namespace) -> None:
    """Train one model with one seed, recording its curve (or continue an interrupted run)."""
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    csv_path = args.output / f"curve_{args.category}.csv"
    checkpoint = (args.checkpoints or args.output / "checkpoints") / f"{args.category}_{model_name}_seed{seed}.ckpt"
    resume = checkpoint if checkpoint.is_file() else None
    with _locked(csv_path):  # keep only the points the checkpoint has reached
        rows = harness.read_rows(csv_path)
        reached = torch.load(resume, map_location="cpu", weights_only=False)["global_step"] if resume else -1
        harness.write_rows(csv_path, [row for row in rows if not (
            row["model"] == model_name and row["seed"] == str(seed) and int(row["step"]) > reached)], COLUMNS)

    seed_everything(seed, workers=True)
    if model_name in RECSEM_VARIANTS:
        settings = {"anomaly_source": args.textures, **RECSEM_VARIANTS[model_name]}
        module = harness.recsem(args.preset, image_size=args.image_size, visualizer=False, **settings)
        width, textures = module.hparams["reconstruction_width"], harness.texture_label(settings["anomaly_source"])
    else:
        width = harness.draem_width(args.width, args.preset)
        module = harness.draem(args.image_size, width=width if width > 0 else None, dtd=args.textures)
        textures = harness.texture_label(args.textures)
    clock = harness.StepClock()
    fixed = {"model": model_name, "seed": seed, "category": args.category, "image_size": args.image_size,
             "batch_size": args.batch_size, "width": width, "textures": textures, "preset": args.preset,
             "threads": args.threads, "precision": args.precision, "device": harness.device_name(args.accelerator)}
    data = harness.EvaluationSet(args.root, args.category, args.image_size, stride=args.eval_stride)
    recorder = CurveRecorder(data, args.every, csv_path, checkpoint, clock, fixed, args.max_seconds, args.deadline)
    datamodule = harness.datamodule(args.root, args.category, args.batch_size, num_workers=args.workers)
    with tempfile.TemporaryDirectory() as folder:
        # before the recorder, so that a point sees the average updated with that step
        extra = [CALLBACK_VARIANTS[model_name]()] if model_name in CALLBACK_VARIANTS else []
        engine = harness.engine(folder, args.accelerator, max_steps=args.steps, max_epochs=-1,
                                callbacks=[*extra, clock, recorder], limit_val_batches=0, num_sanity_val_steps=0,
                                precision=args.precision)
        engine.fit(module, datamodule=datamodule, ckpt_path=resume)


def summary_path(output: Path, category: str) -> Path:
    """The Markdown summary of ``category``'s curves (``CURVES.md`` for magnetic_tile, the main dataset)."""
    return output / ("CURVES.md" if category == "magnetic_tile" else f"CURVES_{category}.md")


def finished(csv_path: Path, model_name: str, seed: int, steps: int, max_seconds: float | None) -> bool:
    """Whether the CSV already holds the run's last point (its last step, or its time budget)."""
    return any(row["model"] == model_name and row["seed"] == str(seed)
               and (int(row["step"]) >= steps or (max_seconds is not None and float(row["seconds"]) >= max_seconds))
               for row in harness.read_rows(csv_path))


def machines(rows: Sequence[dict[str, str]]) -> str:
    """The devices that ran ``rows``, each with its seeds where there are several (their seconds differ)."""
    seeds: dict[str, dict[str, None]] = {}  # each device's seeds in order of first appearance
    for row in rows:
        seeds.setdefault(row["device"], {})[row["seed"]] = None
    if len(seeds) == 1:
        return next(iter(seeds))
    return ", ".join(f"{device} for seed{'s' * (len(mine) > 1)} {', '.join(mine)}" for device, mine in seeds.items())


def measured(rows: Sequence[dict[str, str]], column: str) -> bool:
    """Whether any row holds a value in ``column``: data with image labels only leaves the pixel columns NaN."""
    return any(math.isfinite(float(row[column])) for row in rows)


def plot(csv_path: Path, png: Path) -> None:
    """Each seed's curve (thin) and the mean over seeds (thick), against steps and against seconds.

    The mean is drawn only at the steps every seed of the model reached, so a seed that ran
    longer, or stopped at its time budget between two points, does not make the mean jump.
    """
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = harness.read_rows(csv_path)
    metrics = [metric for metric in ("image_AUROC", "pixel_AUPRO", "reconstruction_spread", "residual_pixel_AUROC")
               if measured(rows, metric)]
    figure, axes = plt.subplots(2, len(metrics), figsize=(max(4.2 * len(metrics), 12), 7), squeeze=False)
    for colour, model_name in enumerate(sorted({row["model"] for row in rows})):
        mine = [row for row in rows if row["model"] == model_name]
        runs = {seed: sorted((row for row in mine if row["seed"] == seed), key=lambda row: int(row["step"]))
                for seed in sorted({row["seed"] for row in mine}, key=int)}
        shared = sorted(set.intersection(*({int(row["step"]) for row in run} for run in runs.values())))
        points = [[row for row in mine if int(row["step"]) == step] for step in shared]
        for column, metric in enumerate(metrics):
            for line, x_name in enumerate(("step", "seconds")):
                axis = axes[line][column]
                for run in runs.values():
                    axis.plot([float(row[x_name]) for row in run], [float(row[metric]) for row in run],
                              color=f"C{colour}", alpha=0.3, linewidth=0.8)
                axis.plot([sum(float(r[x_name]) for r in group) / len(group) for group in points],
                          [sum(float(r[metric]) for r in group) / len(group) for group in points],
                          color=f"C{colour}", linewidth=2, label=f"{model_name} (mean of {len(runs)} seeds)")
                axis.set_xlabel("optimiser steps" if x_name == "step" else "training seconds")
                axis.set_title(metric)
                axis.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize="small")
    device = rows[0]["device"] if rows else ""
    figure.suptitle(f"{csv_path.stem}: each seed (thin) and their mean where all reached (thick), {device}")
    figure.tight_layout()
    figure.savefig(png, dpi=90)


#: The accuracy issue's budget: a run of at most 2 hours on the project's 2 cores.
BUDGET_SECONDS = 7200.0


def paired_comparison(rows: Sequence[dict[str, str]], model: str, baseline: str,
                      metric: str) -> list[tuple[int, int, float, float, int]]:
    """``model`` against ``baseline`` at each step both reached with the same seeds.

    Returns:
        ``(step, seeds, model mean, baseline mean, seeds where model >= baseline)`` per step, the
        means over the seeds that both runs reached, so an unfinished seed does not tilt either side.
    """
    values = {(row["model"], row["seed"], int(row["step"])): float(row[metric]) for row in rows}
    table = []
    for step in sorted({step for name, _, step in values if name == model}):
        seeds = sorted(seed for name, seed, at in values if name == model and at == step
                       and (baseline, seed, step) in values)
        if seeds:
            ours = [values[model, seed, step] for seed in seeds]
            theirs = [values[baseline, seed, step] for seed in seeds]
            table.append((step, len(seeds), sum(ours) / len(seeds), sum(theirs) / len(seeds),
                          sum(a >= b for a, b in zip(ours, theirs, strict=True))))
    return table


def within_budget(rows: Sequence[dict[str, str]], model: str, seconds: float = BUDGET_SECONDS) -> list[dict[str, Any]]:
    """Per seed: image AUROC and pixel AUPRO at the last point reached within ``seconds``, and their best."""
    table = []
    for seed in sorted({row["seed"] for row in rows if row["model"] == model}, key=int):
        points = [row for row in rows if row["model"] == model and row["seed"] == seed
                  and float(row["seconds"]) <= seconds and int(row["step"]) > 0]
        if points:
            last = max(points, key=lambda row: int(row["step"]))
            metrics = ("image_AUROC", "pixel_AUPRO")
            table.append({"seed": seed, "last_step": int(last["step"]), "last_seconds": float(last["seconds"]),
                          **{metric: float(last[metric]) for metric in metrics},
                          **{f"best_{metric}": max(float(row[metric]) for row in points) for metric in metrics}})
    return table


def summarise(csv_path: Path, path: Path, eval_stride: int = 2) -> Path:
    """CURVES.md: each model's mean ± std over seeds per step, RecSem against Draem, and the 2-hour goal.

    ``eval_stride``: the runs' ``--eval-stride`` (the CSV does not record it), named in the text.
    """
    rows = harness.read_rows(csv_path)
    scored = "the whole test set" if eval_stride == 1 else (
        "every second test image" if eval_stride == 2 else f"every {eval_stride}th test image")
    lines = [f"# Learning curves: `{csv_path.name}`", "",
             "Written by `benchmarks/curves.py` (redraw: `--plot-only`). Mean ± sample standard deviation over the",
             "seeds that reached each step; `seconds` is training wall clock (evaluations excluded). Scored on",
             f"{scored}. Spread: per-pixel standard deviation across images of the reconstructions over",
             "that of the inputs (0: one image whatever the input).", "",
             f"![curves]({csv_path.with_suffix('.png').name})", ""]
    columns = {key: name for key, name in {
        "seconds": "seconds", "image_AUROC": "image AUROC", "pixel_AUPRO": "pixel AUPRO", "pixel_AUROC": "pixel AUROC",
        "reconstruction_spread": "spread", "residual_pixel_AUROC": "residual pixel AUROC"}.items() if measured(rows, key)}
    goals = [metric for metric in ("image_AUROC", "pixel_AUPRO") if metric in columns]
    for model_name in sorted({row["model"] for row in rows}):
        mine = [row for row in rows if row["model"] == model_name]
        first = mine[0]
        table = []
        for step in sorted({int(row["step"]) for row in mine}):
            group = [row for row in mine if int(row["step"]) == step]
            cells = []
            for column in columns:
                mean, std = harness.mean_std([float(row[column]) for row in group])
                cells.append(f"{mean:.0f}" if column == "seconds" else f"{mean:.3f} ± {std:.3f}")
            table.append([step, len(group), *cells])
        lines += [f"## {model_name}", "",
                  f"{first['preset']} preset settings, {first['image_size']} px, batch {first['batch_size']}, width "
                  f"{first['width']}, textures {first['textures']}, {first['precision']}, {first['threads']} thread(s) "
                  f"per run on {machines(mine)}.", "",
                  *harness.markdown_table(["step", "seeds", *columns.values()], table), ""]
    models = {row["model"] for row in rows}
    if {"recsem", "draem"} <= models:
        lines += ["## RecSem against Draem, seed by seed", "",
                  "Means over the seeds that both models reached at that step; `≥` counts those seeds where",
                  "RecSem is at or above Draem.", ""]
        # the same rows give every metric the same steps and seeds
        compared = [paired_comparison(rows, "recsem", "draem", metric) for metric in goals]
        lines += [*harness.markdown_table(
            ["step", "seeds", *(cell for metric in goals for cell in (f"{columns[metric]} RecSem", "Draem", "≥"))],
            ([*entries[0][:2], *(cell for _, seeds, ours, theirs, wins in entries
                                 for cell in (f"{ours:.3f}", f"{theirs:.3f}", f"{wins}/{seeds}"))]
             for entries in zip(*compared, strict=True))), ""]
    lines += [f"## Within {BUDGET_SECONDS / 3600:.0f} hours of training", "",
              "Each run's last point within the budget, and its best image AUROC and pixel AUPRO among the points",
              "up to there (each chosen on the scored test images, so optimistic). Goal: 0.90 and 0.80. A run cut",
              "short by `--max-seconds` has not used the whole budget.", "",
              *harness.markdown_table(
                  ["model", "seed", "last step", "its seconds", *(columns[metric] for metric in goals),
                   *(f"best {columns[metric]}" for metric in goals)],
                  ([model_name, entry["seed"], entry["last_step"], f"{entry['last_seconds']:.0f}",
                    *(f"{entry[metric]:.3f}" for metric in goals),
                    *(f"{entry[f'best_{metric}']:.3f}" for metric in goals)]
                   for model_name in sorted(models) for entry in within_budget(rows, model_name))), ""]
    path.write_text("\n".join(lines))
    return path


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["recsem", "draem"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8000, help="optimiser steps per run")
    parser.add_argument("--every", type=int, default=500, help="steps between points")
    parser.add_argument("--eval-stride", type=int, default=2,
                        help="score every n-th test image (2: half the test set, every defect type kept)")
    parser.add_argument("--preset", default="recsem_small", help="RecSem preset (configs/<preset>.yaml)")
    parser.add_argument("--image-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--root", type=Path, default=harness.SHARED_DATASETS, help="MVTec AD-layout root")
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--textures", type=Path, default=harness.DTD_IMAGES, help="folder of defect textures (DTD)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    parser.add_argument("--max-seconds", type=float, default=None, help="training seconds per run at most")
    parser.add_argument("--width", type=int, default=None,
                        help="Draem's first-block widths: default the RecSem preset's reconstruction_width, 0 stock")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side")
    parser.add_argument("--workers", type=int, default=0, help="data-loader workers per run")
    parser.add_argument("--deadline", type=float, default=None,
                        help="UNIX time by which every run has recorded its last point and stopped")
    parser.add_argument("--output", type=Path, default=harness.RESULTS)
    parser.add_argument("--checkpoints", type=Path, default=None, help="where runs resume from (<output>/checkpoints)")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="generated data, tiny preset, a few steps")
    return harness.parse_with_smoke(parser, argv, category="dummy", preset="recsem_tiny", steps=4,
                                    every=2, seeds=[0], jobs=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the missing runs, then plot."""
    args = parse_arguments(argv)
    csv_path = args.output / f"curve_{args.category}.csv"
    failed: list[tuple[str, int]] = []
    if args.plot_only and not csv_path.is_file():
        print(f"--plot-only: no learning curves to draw, {csv_path} does not exist", file=sys.stderr)  # noqa: T201
        return 2
    if not args.plot_only:
        todo = [(model, seed) for seed in args.seeds for model in args.models
                if not finished(csv_path, model, seed, args.steps, args.max_seconds)]
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
            runs = {pool.submit(run, model, seed, args): (model, seed) for model, seed in todo}
            # Reported as each run ends, not after the last one: a failed run must not wait
            # hours for the others before anyone sees it.
            for future in as_completed(runs):
                if future.exception() is not None:
                    failed.append(runs[future])
                    logging.getLogger("curves").error("%s seed %s failed", *runs[future], exc_info=future.exception())
    if harness.read_rows(csv_path):  # runs that all failed before their first point leave nothing to draw
        plot(csv_path, csv_path.with_suffix(".png"))
        summary = summarise(csv_path, summary_path(args.output, args.category), args.eval_stride)
        print(f"{csv_path}\n{csv_path.with_suffix('.png')}\n{summary}")  # noqa: T201
    if failed:
        print(f"failed runs (model, seed): {failed}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
