"""Which recipe choices keep RecSem's reconstruction alive: variants on the demo's generated data.

Each variant trains the CPU preset through anomalib's ``Engine`` on the offline demo's data
(80 grey defect-free textures; 16 normal and 16 defective test images with scratches, spots,
dents and stains) and records the last validation: reconstruction health (spread across
images relative to the inputs, error on normal images, the residual's pixel AUROC) and
detection (image AUROC, pixel AUPRO). Rows go to ``ablation_demo.csv``; recorded runs are
skipped. No external data is needed.

    uv run python benchmarks/ablation.py                    # all variants, seed 0, 30 epochs (600 steps)
    uv run python benchmarks/ablation.py --variants default authors_memory --seeds 0 1
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

from lightning.pytorch import seed_everything  # noqa: E402

from anomalib_recsem.data.dagm import DAGM  # noqa: E402
from anomalib_recsem.data.dagm.generator import write_dagm_dataset  # noqa: E402
from benchmarks import harness  # noqa: E402

#: Constructor overrides on the CPU preset, and loss-weight overrides.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "default": ({}, {}),
    "authors_memory": ({"normalize_query": False}, {}),
    "authors_memory_no_compactness": ({"normalize_query": False}, {"compactness": 0.0}),
    "authors_memory_no_location_embedding": ({"normalize_query": False, "location_embedding": False}, {}),
    "discriminator_sees_clean_image": ({"discriminator_input": "clean"}, {}),
    "photos_source": ({"anomaly_source": "photos"}, {}),
    "procedural_source": ({"anomaly_source": None}, {}),
}
METRICS = ("reconstruction_spread", "reconstruction_error", "residual_pixel_AUROC", "image_AUROC", "pixel_AUPRO")
COLUMNS = ("variant", "seed", "epochs", "steps", *METRICS, "train_seconds", "device", "finished_at")


def run(variant: str, seed: int, epochs: int, data: Path) -> dict[str, Any]:
    """Train one variant and return its row."""
    overrides, weights = VARIANTS[variant]
    seed_everything(seed, workers=True)
    model = harness.recsem("recsem_small", visualizer=False, **overrides)
    model.loss.weights.update(weights)
    datamodule = DAGM(root=data, category="Class1", train_batch_size=8, eval_batch_size=8, num_workers=0,
                      val_split_mode="same_as_test")
    with tempfile.TemporaryDirectory() as folder:
        engine = harness.engine(folder, max_epochs=epochs, check_val_every_n_epoch=epochs)
        engine.fit(model, datamodule=datamodule)
        metrics = engine.trainer.callback_metrics
        steps = engine.trainer.global_step
    return {"variant": variant, "seed": seed, "epochs": epochs, "steps": steps,
            **{name: float(metrics[name]) for name in METRICS},
            "device": harness.device_name("cpu"), "finished_at": harness.now()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run what is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--output", type=Path, default=harness.RESULTS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    data = args.output / "demo_data"
    if not (data / "Class1").is_dir():
        write_dagm_dataset(data, categories=("Class1",), num_train=80, num_test_normal=16, num_test_defective=16,
                           num_train_defective=0, image_size=256, seed=42, overwrite=True)
    path = args.output / "ablation_demo.csv"
    done = {(row["variant"], row["seed"], row["epochs"]) for row in harness.read_rows(path)}
    for seed in args.seeds:
        for variant in args.variants:
            if (variant, str(seed), str(args.epochs)) not in done:
                started = time.perf_counter()
                row = run(variant, seed, args.epochs, data)
                row["train_seconds"] = time.perf_counter() - started
                print(row, flush=True)  # noqa: T201
                harness.append_rows(path, [row], COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
