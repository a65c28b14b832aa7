"""A GPU campaign within a fixed time budget: the speed grid, then RecSem and Draem learning curves.

Prepare the data here (small enough to copy beside the code: under 64 MiB), then run one command on
the GPU machine; everything it measures lands in ``--output``::

    uv run python benchmarks/gpu_campaign.py --prepare          # writes .gpu/data (ignored by git)
    # on the GPU machine, with .gpu and .venv copied beside the code:
    .venv/bin/python benchmarks/gpu_campaign.py --budget 540 --output gpu_results

1. ``speed.py --parts defects train`` on CUDA: defect synthesis per batch of 8 (procedural
   textures, 128 and 256 px); then the paper configuration and CPU preset, fp32 / bf16 /
   bf16 + compile, channels-last off and on (about a third of the budget, cells run until
   the slice is spent).
2. ``curves.py`` on magnetic_tile pre-resized to 256 px: RecSem with the paper's settings
   (bf16 mixed precision) and stock Draem (widths 128/64, same precision), seeds 0-2, all six
   runs side by side on the one GPU, each for the rest of the budget; a point every 250 steps.

``--smoke`` runs the same two stages on the CPU with the tiny preset and a few steps, so the
first GPU window is not spent debugging the script.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import harness  # noqa: E402

DATA = REPO_ROOT / ".gpu" / "data"
#: Texture files copied (of DTD's 1200 here): the same subset for both models.
TEXTURES_CARRIED = 300


def prepare(data: Path, size: int = 256) -> None:
    """Write magnetic_tile resized to ``size`` (antialiased; masks nearest) and a DTD subset to ``data``."""
    source = harness.SHARED_DATASETS / "magnetic_tile"
    target = data / "magnetic_tile"
    shutil.rmtree(target, ignore_errors=True)
    for path in sorted(source.rglob("*.png")):
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        mask = "ground_truth" in path.parts
        with Image.open(path) as image:
            resized = image.convert("L").resize((size, size), Image.Resampling.NEAREST if mask else Image.Resampling.BILINEAR)
            resized.save(out, optimize=True)
    textures = data / "dtd"
    shutil.rmtree(textures, ignore_errors=True)
    files = sorted(harness.DTD_IMAGES.rglob("*.jpg"))
    for path in files[:: max(1, len(files) // TEXTURES_CARRIED)][:TEXTURES_CARRIED]:
        out = textures / path.relative_to(harness.DTD_IMAGES)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR).save(out, quality=90)
    total = sum(path.stat().st_size for path in data.rglob("*") if path.is_file())
    print(f"{data}: {total / 2**20:.1f} MiB")  # noqa: T201


def _run(command: list[str], seconds: float, log: Path) -> int:
    """Run ``command`` for at most ``seconds``; its output goes to ``log``."""
    print(f"$ {' '.join(command)}  (at most {seconds:.0f} s)", flush=True)  # noqa: T201
    with log.open("a") as handle:
        try:
            return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=seconds,  # noqa: S603
                                  check=False, cwd=REPO_ROOT).returncode
        except subprocess.TimeoutExpired:
            return 124


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the data, or run the campaign."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="write the data to copy to the GPU machine, then stop")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "gpu")
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole campaign")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny preset, a few steps")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.data)
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    python = sys.executable
    log = args.output / "campaign.log"
    if args.smoke:
        speed = ["--accelerator", "cpu", "--presets", "recsem_tiny", "--steps", "1", "--warmup", "1",
                 "--precisions", "fp32", "bf16"]
        curves = ["--accelerator", "cpu", "--preset", "recsem_tiny", "--image-size", "64", "--steps", "4",
                  "--every", "2", "--seeds", "0", "--jobs", "2", "--precision", "bf16-mixed", "--batch-size", "4"]
        root, textures = harness.smoke_data(args.output / "data")
        curves += ["--root", str(root), "--category", "dummy", "--textures", str(textures)]
    else:
        speed = ["--accelerator", "cuda", "--presets", "recsem", "recsem_small", "--steps", "10", "--warmup", "3"]
        curves = ["--accelerator", "cuda", "--preset", "recsem", "--image-size", "256", "--steps", "100000",
                  "--every", "250", "--seeds", "0", "1", "2", "--jobs", "6", "--threads", "2", "--workers", "2",
                  "--precision", "bf16-mixed", "--width", "0", "--root", str(args.data),
                  "--textures", str(args.data / "dtd")]
    # Synthesis first: a few seconds, and the figure that says whether defects made on the
    # device stay a small part of a step there.
    _run([python, "benchmarks/speed.py", "--parts", "defects", "train", "--output", str(args.output), *speed],
         args.budget / 3, log)
    left = args.budget - (time.monotonic() - started)
    # Each run trains for what is left, minus start-up (data, first evaluation) and the last point.
    curves += ["--max-seconds", str(max(30.0, left - 90)), "--output", str(args.output)]
    _run([python, "benchmarks/curves.py", *curves], left - 10, log)
    print(f"campaign done in {time.monotonic() - started:.0f} s; results in {args.output}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
