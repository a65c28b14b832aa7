"""A GPU campaign within a fixed time budget: the speed grid, then RecSem and Draem learning curves.

The GPU machine has its own Python 3.12 with PyTorch, Lightning, torchvision, torchmetrics,
scikit-image and timm, but not anomalib or kornia, and nothing can be installed there from the
network; at most 64 MiB travel with the code (the tracked files included). So prepare here the
data and the missing packages as wheels, both ignored by git::

    uv run python benchmarks/gpu_campaign.py --prepare   # .gpu/data and .whl, and the size that travels

then run one command there, carrying ``.gpu`` and ``.whl``; what it measures lands in ``$OUT``::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 benchmarks/gpu_campaign.py --budget 480 --output "$OUT"

0. A minute of checks (:func:`preflight`): defects from every source made on the GPU, two
   steps of each curve model in ``bf16-mixed`` with evaluation and checkpoint, and two
   training steps in ``16-mixed``. If one fails, the campaign stops there.
1. ``speed.py --parts defects train`` on CUDA: defect synthesis per batch of 8 (procedural
   textures, scikit-image's photographs and the carried DTD subset, 128 and 256 px); then the
   paper configuration and CPU preset, fp32 and bf16 with channels-last off and on, then
   bf16 + compile with channels-last on (last, as each compiles afresh), each with the GPU
   memory it held, its host waits per step and the same steps run by ``Trainer.fit`` (a third
   of the budget; cells run until the slice is spent).
2. ``curves.py`` on magnetic_tile pre-resized to 256 px: RecSem with the paper's settings
   (bf16 mixed precision) and stock Draem (widths 128/64, same precision), seeds 0-2, all six
   runs side by side on the one GPU, each until it must stop to record its last point before
   the budget ends; a point every 250 steps. So short a run stays inside the paper's 20
   warm-up epochs (about 7 600 steps here), at about a tenth of the full learning rate.

Checkpoints (about 1 GB each for the paper configuration with Adam's state) stay in ``--work``;
``--output`` receives seven files, written as the campaign goes so that a call cut short still
brings back what it measured: the log, the speed CSVs and summary, the curve CSV, plot and
summary (within the 8 files that come back from the machine).

``--smoke`` runs the same steps on the CPU, packing and unpacking included, with a generated
dataset, the tiny preset and a few steps, so the first GPU window is not spent debugging the script.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import curves, harness, speed  # noqa: E402

DATA = REPO_ROOT / ".gpu" / "data"
WHEELS = REPO_ROOT / ".whl"
#: Texture files copied (of DTD's 1200 here): the same subset for both models.
TEXTURES_CARRIED = 300
#: JPEG quality of the carried images: magnetic_tile at 256 px takes 41 MiB as PNG, of the 64
#: that travel with 17 of tracked files and 9 of wheels; 17 MiB as JPEG at 90 (a mean change of
#: 1.3 grey levels of 255; the dataset's own images were JPEG). Masks stay PNG.
JPEG_QUALITY = 90
#: What travels with the code, at most (the device tool's limit).
CARRY_LIMIT_MIB = 64
#: The first stage's limit: a minute of imports and checks on the GPU, with room to spare.
PREFLIGHT_SECONDS = 150
#: Distributions that this project and its benchmarks import and the GPU machine's Python lacks,
#: carried as wheels at the versions installed here. FrEIA (imported by anomalib's model
#: registry) publishes source only and is built into a wheel.
DEVICE_WHEELS = ("anomalib", "kornia", "kornia_rs", "jsonargparse", "omegaconf", "FrEIA", "docstring_parser",
                 "rich_argparse", "typeshed_client", "platformdirs")
#: The GPU machine's interpreter and platform, for binary wheels (kornia_rs).
DEVICE_PLATFORM = ("--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                   "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64")


def pack(category: Path, textures: Path, data: Path, size: int = 256) -> None:
    """Write ``category`` resized to ``size`` (images JPEG, masks PNG) and a texture subset to ``data``.

    Args:
        category: An MVTec AD-layout category folder (``train/``, ``test/``, ``ground_truth/``).
        textures: A folder of texture images (searched recursively for ``*.jpg``).
        data: Where to write ``<category name>/`` and ``dtd/``, replacing what was there.
        size: Side of the square images.
    """
    target = data / category.name
    shutil.rmtree(target, ignore_errors=True)
    for path in sorted(category.rglob("*.png")):
        out = target / path.relative_to(category)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            if "ground_truth" in path.parts:
                image.convert("L").resize((size, size), Image.Resampling.NEAREST).save(out, optimize=True)
            else:
                resized = image.convert("L").resize((size, size), Image.Resampling.BILINEAR)
                resized.save(out.with_suffix(".jpg"), quality=JPEG_QUALITY)
    carried = data / "dtd"
    shutil.rmtree(carried, ignore_errors=True)
    files = sorted(textures.rglob("*.jpg"))
    for path in files[:: max(1, len(files) // TEXTURES_CARRIED)][:TEXTURES_CARRIED]:
        out = carried / path.relative_to(textures)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR).save(out, quality=90)


def unpack(data: Path, category: str, root: Path) -> Path:
    """Write the packed ``category`` back as PNG under ``root`` (anomalib's MVTec AD reader takes PNG only).

    Args:
        data: The folder :func:`pack` wrote.
        category: The packed category's name.
        root: Where to write ``<category>/``, replacing what was there.

    Returns:
        Path: ``root``, an MVTec AD-layout root holding ``category``.

    Raises:
        FileNotFoundError: If ``data`` holds no packed ``category``, naming the folder and the command that packs it.
    """
    source = data / category
    if not (source / "train").is_dir():
        msg = f"{source} holds no packed dataset: run `gpu_campaign.py --prepare` here and carry {data.parent.name}."
        raise FileNotFoundError(msg)
    target = root / category
    shutil.rmtree(target, ignore_errors=True)

    def write(path: Path) -> None:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jpg":
            with Image.open(path) as image:
                image.save(out.with_suffix(".png"))
        else:
            shutil.copyfile(path, out)

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:  # PIL codecs release the GIL
        list(pool.map(write, [path for path in source.rglob("*") if path.is_file()]))
    return root


def prepare_wheels(folder: Path) -> None:
    """Fetch :data:`DEVICE_WHEELS` at the versions installed here, for the GPU machine's Python (pip run by uvx)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pip = ["uvx", "pip", "-q"]  # the project's environment has no pip
    for name in DEVICE_WHEELS:
        wanted = f"{name}=={importlib.metadata.version(name)}"
        fetched = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", *DEVICE_PLATFORM,  # noqa: S603
                                  "-d", str(folder), wanted], check=False, capture_output=True)
        if fetched.returncode != 0:  # source only: a pure-Python package, built here
            subprocess.run([*pip, "wheel", "--no-deps", "-w", str(folder), wanted], check=True)  # noqa: S603


def carried_mib(*folders: Path) -> dict[str, float]:
    """MiB that a device call carries: the tracked files, then each folder."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True,  # noqa: S607
                             capture_output=True).stdout.decode().split("\0")
    sizes = {"tracked files": sum((REPO_ROOT / name).stat().st_size for name in tracked if name) / 2**20}
    for folder in folders:
        sizes[folder.name] = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20
    return sizes


def preflight(accelerator: str, textures: Path, work: Path) -> None:
    """Seconds of checks that fail where the campaign would fail minutes later.

    Defects made on the device from every source (30 batches of 8 at 256 px each, enough to
    reach the rarely drawn paths), then both curve models (RecSem's tiny preset, Draem at its
    width) through the curves' own run for two steps in ``bf16-mixed``: training in that
    precision, Draem's augmenter, evaluation on the device and checkpoints. On a GPU also two
    steps of the tiny preset through anomalib's Engine in ``16-mixed``.

    Raises:
        RuntimeError: If a synthesised batch leaves the device or is not finite.
    """
    import torch  # noqa: PLC0415

    from anomalib_recsem import SyntheticDefect  # noqa: PLC0415

    device = torch.device(accelerator)
    images = torch.rand(8, 3, 256, 256, device=device)
    for source in (None, "photos", textures):
        transform = SyntheticDefect(anomaly_source=source, seed=0)
        for _ in range(30):
            batch = transform.synthesize(images)
            if any(tensor.device != images.device or not bool(torch.isfinite(tensor).all()) for tensor in batch):
                msg = f"defects from {harness.texture_label(source)} left {device} or are not finite"
                raise RuntimeError(msg)
        print(f"preflight: defects from {harness.texture_label(source)} on {device}", flush=True)  # noqa: T201
    root, generated_textures = harness.smoke_data(work / "preflight")
    output = work / "preflight" / "curves"
    shutil.rmtree(output, ignore_errors=True)  # a run resumes from its checkpoint; this one starts afresh
    arguments = curves.parse_arguments([
        "--root", str(root), "--category", "dummy", "--preset", "recsem_tiny", "--textures", str(generated_textures),
        "--accelerator", accelerator, "--precision", "bf16-mixed", "--steps", "2", "--every", "1",
        "--output", str(output)])
    for model_name in ("recsem", "draem"):
        curves.run(model_name, 0, arguments)
        print(f"preflight: {model_name} curve run of two steps in bf16-mixed on {device}", flush=True)  # noqa: T201
    if device.type == "cuda":
        engine = harness.engine(work / "preflight" / "16-mixed", accelerator, max_steps=2, precision="16-mixed")
        engine.fit(model=harness.recsem("recsem_tiny"),
                   datamodule=harness.datamodule(root, "dummy", batch_size=4, num_workers=0))
        print(f"preflight: two training steps in 16-mixed on {device}", flush=True)  # noqa: T201


def _run(command: list[str], seconds: float, log: Path) -> int:
    """Run ``command`` for at most ``seconds``, its output into ``log``; 124 when it had to be stopped.

    It runs in its own process group, so that stopping it also stops the training processes
    it started, which would otherwise go on holding the GPU.
    """
    print(f"$ {' '.join(command)}  (at most {seconds:.0f} s)", flush=True)  # noqa: T201
    with log.open("a") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT,  # noqa: S603
                                   start_new_session=True)
        try:
            return process.wait(timeout=max(1.0, seconds))
        except subprocess.TimeoutExpired:
            for signal_number in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal_number)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
                    break
            return 124


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the data and wheels, or run the campaign."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="write what the GPU machine needs, then stop")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "gpu")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "recsem_campaign",
                        help="unpacked data and checkpoints, not brought back; a second call on the same "
                             "machine continues runs that a deadline cut short")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole campaign")
    parser.add_argument("--smoke", action="store_true", help="CPU, generated data, tiny preset, a few steps")
    parser.add_argument("--preflight", choices=("cpu", "cuda"), help=argparse.SUPPRESS)  # the first stage, alone
    args = parser.parse_args(argv)
    if args.preflight:
        preflight(args.preflight, args.data / "dtd", args.work)
        return 0
    if args.prepare:
        pack(harness.SHARED_DATASETS / "magnetic_tile", harness.DTD_IMAGES, args.data)
        prepare_wheels(WHEELS)
        sizes = carried_mib(args.data.parent, WHEELS)
        print(", ".join(f"{name} {mib:.1f}" for name, mib in sizes.items()),  # noqa: T201
              f"= {sum(sizes.values()):.1f} MiB of the {CARRY_LIMIT_MIB} that travel")
        return 0 if sum(sizes.values()) < CARRY_LIMIT_MIB else 1
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    python = sys.executable
    log = args.output / "campaign.log"
    data = args.data
    if args.smoke:  # packed into the work folder, so that the packed real data stays
        source, textures = harness.smoke_data(args.work / "generated")
        data = args.work / "packed"
        pack(source / "dummy", textures, data, size=64)
        shutil.rmtree(args.work / "checkpoints", ignore_errors=True)  # a smoke run starts afresh
        category = "dummy"
        speed_arguments = ["--accelerator", "cpu", "--presets", "recsem_tiny", "--steps", "1", "--warmup", "1"]
        curve_arguments = ["--accelerator", "cpu", "--preset", "recsem_tiny", "--steps", "4", "--every", "2",
                           "--seeds", "0", "--jobs", "2", "--precision", "bf16-mixed"]
    else:
        category = "magnetic_tile"
        speed_arguments = ["--accelerator", "cuda", "--presets", "recsem", "recsem_small", "--steps", "32",
                           "--warmup", "3"]
        curve_arguments = ["--accelerator", "cuda", "--preset", "recsem", "--steps", "100000",
                           "--every", "250", "--seeds", "0", "1", "2", "--jobs", "6", "--threads", "2",
                           "--workers", "2", "--precision", "bf16-mixed", "--width", "0"]
    root = unpack(data, category, args.work / "data")
    # A failure on the device shows within a minute, with time left in the window to mend and rerun.
    accelerator = "cpu" if args.smoke else "cuda"
    if _run([python, "benchmarks/gpu_campaign.py", "--preflight", accelerator, "--data", str(data),
             "--work", str(args.work)], PREFLIGHT_SECONDS, log) != 0:
        print(f"preflight failed: campaign stopped after {time.monotonic() - started:.0f} s; see {log}")  # noqa: T201
        return 2
    # Synthesis first: a few seconds, and the figure that says whether defects made on the
    # device stay a small part of a step there. Compiled cells last: compiling can take the
    # rest of the slice.
    speed_arguments += ["--output", str(args.output), "--textures", str(data / "dtd")]
    speed_end = time.monotonic() + args.budget / 3
    speed_status = _run([python, "benchmarks/speed.py", "--parts", "defects", "train", *speed_arguments,
                         "--precisions", "fp32", "bf16"], speed_end - time.monotonic(), log)
    if not args.smoke and speed_end - time.monotonic() > 20:
        # Each compiled cell compiles afresh, so the slice holds one or two: the paper
        # configuration first, in the memory format tensor cores prefer.
        speed_status = _run([python, "benchmarks/speed.py", "--parts", "train", *speed_arguments,
                             "--precisions", "bf16+compile", "--channels-last", "on"], speed_end - time.monotonic(), log)
    speed.summarise(args.output)  # also when the slice ran out before speed.py wrote it
    # The curves go straight to the output, so that a campaign cut short still brings them back;
    # each run stops in time to record its last point before the deadline.
    campaign_end = time.time() + args.budget - (time.monotonic() - started)
    curve_arguments += ["--root", str(root), "--category", category, "--textures", str(data / "dtd"),
                        "--output", str(args.output), "--checkpoints", str(args.work / "checkpoints"),
                        "--deadline", str(campaign_end - 30)]
    curves_status = _run([python, "benchmarks/curves.py", *curve_arguments], campaign_end - 10 - time.time(), log)
    csv_path = args.output / f"curve_{category}.csv"
    if curves_status != 0 and harness.read_rows(csv_path):  # stopped before its own plot and summary
        curves.plot(csv_path, csv_path.with_suffix(".png"))
        curves.summarise(csv_path, curves.summary_path(args.output, category))
    csv_path.with_suffix(".csv.lock").unlink(missing_ok=True)
    print(f"campaign done in {time.monotonic() - started:.0f} s (exit status: speed {speed_status}, "  # noqa: T201
          f"curves {curves_status}); results in {args.output}")
    return 0 if curves_status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
