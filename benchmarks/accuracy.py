"""Accuracy at the end of a run: RecSem against anomalib's Draem, and RecSem's ablations.

Each run trains through anomalib's ``Engine`` for ``--epochs`` and tests on the whole test
set (anomalib's default: validation = test, so F1 thresholds are optimistic; AUROC and AUPRO
are not affected). Both models get the same antialiased resize, image size, batch size,
widths, DTD textures and seeds. Rows are appended to ``accuracy_<category>.csv`` (or
``ablation_<category>.csv``); a run already recorded is skipped. ``curves.py`` follows the
same comparison step by step.

Commands (repository root)::

    uv run python benchmarks/accuracy.py                        # RecSem + Draem, CPU preset, seeds 0 1 2
    uv run python benchmarks/accuracy.py --ablation             # RecSem variants, seeds 0 1 2
    uv run python benchmarks/accuracy.py --summarise-only       # ACCURACY.md from the CSVs
    uv run python benchmarks/accuracy.py --smoke --output /tmp/accuracy   # generated data, seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from lightning.pytorch import seed_everything  # noqa: E402

from benchmarks import harness  # noqa: E402

METRICS = ("image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO")
COLUMNS = (
    "model", "variant", "seed", "category", "image_size", "epochs", "train_images", "subset_seed", "val_fraction",
    "val_images", "test_images", "batch_size", "reconstruction_width", "discriminator_width", "memory_scales",
    "location_embedding", "discriminator", "textures", "train_seconds", "train_seconds_per_epoch", "test_seconds",
    "train_cpu_seconds_per_epoch", "test_cpu_seconds", "load_average", *METRICS, "torch_threads", "accelerator",
    "device_name", "preset", "finished_at", "source", "error",
)
#: RecSem ablations: each changes one thing from the preset.
ABLATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "one_scale": {"memory_scales": "finest"},
    "no_location_embedding": {"location_embedding": False},
    "fusion_discriminator": {"discriminator": "fusion"},
}
#: DifferNet's image AUROC on magnetic_tile (Rudolph et al., WACV 2021), with a pretrained backbone.
DIFFERNET_IMAGE_AUROC = 0.977
#: The day the collapsed reconstruction was fixed (normalised memory queries): rows finished
#: earlier measured a RecSem whose reconstruction was one image for every input.
RECONSTRUCTION_FIX = "2026-12-01"
REFERENCES = (
    "- Dataset: Y. Huang, C. Qiu, K. Yuan, \"Surface defect saliency of magnetic tile\", *The Visual Computer* 36, "
    "85-96 (2020), in MVTec AD layout.",
    "- Defect textures: M. Cimpoi et al., \"Describing Textures in the Wild\", CVPR 2014 (DTD).",
    "- Reference figure: M. Rudolph, B. Wandt, B. Rosenhahn, \"Same Same But DifferNet\", WACV 2021 (image AUROC "
    "97.7 on this dataset, with an ImageNet-pretrained backbone at 448 px).",
    "- DRAEM: V. Zavrtanik, M. Kristan, D. Skočaj, ICCV 2021 (anomalib's `Draem`).",
    "- RecSem: Wang Shangshang, Jin Cheng, \"Surface Anomaly Detection Based on Image Reconstruction and Semantic "
    "Difference Discrimination\", Computer Science 50(11):151-159, 2023.",
)


def build(model_name: str, variant: str, args: argparse.Namespace) -> harness.LightningModule:
    """The model of one run."""
    if model_name == "draem":
        return harness.draem(args.image_size, width=harness.draem_width(args.width, args.preset) or None,
                             dtd=args.textures)
    overrides = dict(ABLATIONS[variant])
    if overrides.get("memory_scales") == "finest":
        overrides["memory_scales"] = [args.image_size // 16]
    return harness.recsem(args.preset, image_size=args.image_size, anomaly_source=args.textures, visualizer=False,
                          **overrides)


def run(model_name: str, variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train and test one run; the row to record."""
    seed_everything(seed, workers=True)
    module = build(model_name, variant, args)
    hparams = dict(module.hparams) if model_name == "recsem" else {}
    width = harness.draem_width(args.width, args.preset)  # Draem's; 0 is its stock 128/64
    datamodule = harness.datamodule(args.root, args.category, args.batch_size, num_workers=args.workers)
    row: dict[str, Any] = {
        "model": model_name, "variant": variant, "seed": seed, "category": args.category,
        "image_size": args.image_size, "epochs": args.epochs, "batch_size": args.batch_size,
        "reconstruction_width": hparams.get("reconstruction_width", width or 128),
        "discriminator_width": hparams.get("discriminator_width", width or 64),
        "memory_scales": hparams.get("memory_scales") or "", "location_embedding": hparams.get("location_embedding", ""),
        "discriminator": hparams.get("discriminator", "draem"), "textures": args.textures.name,
        "torch_threads": torch.get_num_threads(), "accelerator": args.accelerator,
        "device_name": harness.device_name(args.accelerator), "preset": args.preset, "val_fraction": 0.0,
    }
    with tempfile.TemporaryDirectory() as folder:
        engine = harness.engine(folder, args.accelerator, max_epochs=args.epochs, check_val_every_n_epoch=args.epochs)
        started, cpu = time.perf_counter(), time.process_time()
        engine.fit(module, datamodule=datamodule)
        row["train_seconds"] = time.perf_counter() - started
        row["train_seconds_per_epoch"] = row["train_seconds"] / args.epochs
        row["train_cpu_seconds_per_epoch"] = (time.process_time() - cpu) / args.epochs
        started, cpu = time.perf_counter(), time.process_time()
        (metrics,) = engine.test(module, datamodule=datamodule)
        row["test_seconds"], row["test_cpu_seconds"] = time.perf_counter() - started, time.process_time() - cpu
    row |= {name: metrics.get(name, "") for name in METRICS}
    row |= {"train_images": len(datamodule.train_data), "test_images": len(datamodule.test_data),
            "val_images": len(datamodule.val_data), "load_average": harness.load_average(),
            "finished_at": harness.now()}
    return row


def summarise(output: Path, category: str) -> Path:
    """ACCURACY.md: mean ± standard deviation over the rows of each setting, device and code (before the fix or not)."""
    lines = [f"# Accuracy: RecSem vs Draem on `{category}`", "",
             "Written by `benchmarks/accuracy.py --summarise-only` from the CSVs beside it. Mean ± sample standard",
             "deviation over seeds; each row names its hardware.", ""]
    for name in (f"accuracy_{category}", f"ablation_{category}", f"accuracy_{category}_paper",
                 f"accuracy_{category}_6_epochs"):
        rows = [row for row in harness.read_rows(output / f"{name}.csv") if not row.get("error")]
        if not rows:
            continue
        groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
        for row in rows:  # rows from before the fix are never averaged with later ones
            groups.setdefault((row["model"], row["variant"], row["preset"], row["image_size"], row["epochs"],
                               row["device_name"], row.get("finished_at", "")[:10] < RECONSTRUCTION_FIX),
                              []).append(row)
        table = []
        for key, group in groups.items():
            measured = min(row.get("finished_at", "")[:10] for row in group)
            cells = []
            for metric in ("image_AUROC", "pixel_AUPRO", "pixel_AUROC"):
                values = [float(row[metric]) for row in group if row.get(metric)]
                mean, std = harness.mean_std(values) if values else (float("nan"), 0.0)
                cells.append(f"{mean:.3f} ± {std:.3f}")
            if measured and measured < RECONSTRUCTION_FIX:
                measured += " (before the fix)"
            table.append([*key[:-1], len(group), *cells, measured])
        lines += [f"## `{name}.csv`", "", *harness.markdown_table(
            ["model", "variant", "preset", "px", "epochs", "device", "runs", "image AUROC", "pixel AUPRO",
             "pixel AUROC", "measured"], table), ""]
    lines += [f"Rows measured before {RECONSTRUCTION_FIX} ran the code before the reconstruction fix (normalised",
              "memory queries), when RecSem reconstructed one image for every input; they are kept as history.",
              f"DifferNet reports image AUROC {DIFFERNET_IMAGE_AUROC} on magnetic_tile. Learning curves of the same",
              "comparison: `CURVES.md`.", "", "## References", "", *REFERENCES, ""]
    path = output / "ACCURACY.md"
    path.write_text("\n".join(lines))
    return path


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation", action="store_true", help="RecSem variants instead of RecSem vs Draem")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--preset", default="recsem_small")
    parser.add_argument("--image-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--width", type=int, default=None, help="Draem's widths (default RecSem's; 0 stock)")
    parser.add_argument("--root", type=Path, default=harness.SHARED_DATASETS)
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--textures", type=Path, default=harness.DTD_IMAGES)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=harness.RESULTS)
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="generated data, tiny preset, one epoch")
    return harness.parse_with_smoke(parser, argv, category="dummy", preset="recsem_tiny", epochs=1,
                                    seeds=[0], workers=0, accelerator="cpu")


def main(argv: Sequence[str] | None = None) -> int:
    """Run what is missing, then summarise."""
    args = parse_arguments(argv)
    warnings.filterwarnings("ignore")
    csv_path = args.output / f"{'ablation' if args.ablation else 'accuracy'}_{args.category}.csv"
    if not args.summarise_only:
        runs = ([("recsem", variant) for variant in ABLATIONS] if args.ablation
                else [("recsem", "default"), ("draem", "default")])
        done = {(row["model"], row["variant"], row["seed"], row["epochs"], row["preset"])
                for row in harness.read_rows(csv_path) if not row.get("error")}
        for seed in args.seeds:
            for model_name, variant in runs:
                if (model_name, variant, str(seed), str(args.epochs), args.preset) in done:
                    continue
                try:
                    row = run(model_name, variant, seed, args)
                except Exception as error:  # noqa: BLE001  a failed run is recorded, the others go on
                    row = {"model": model_name, "variant": variant, "seed": seed, "epochs": args.epochs,
                           "preset": args.preset, "error": f"{type(error).__name__}: {error}"[:300],
                           "finished_at": harness.now()}
                harness.append_rows(csv_path, [row], COLUMNS)
    print(summarise(args.output, args.category))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
