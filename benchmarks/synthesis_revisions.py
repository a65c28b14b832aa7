"""Defect synthesis across git revisions: an interleaved A/B of ``SyntheticDefect`` on the CPU.

Timings of a few milliseconds drift by tens of percent between processes on a shared 2-core
machine, so two revisions are only comparable when measured side by side. Each revision's
``anomalib_recsem`` is extracted with ``git archive`` and timed in a process of its own
(``WORKTREE`` is the checkout as it is), and the rounds alternate the revisions. A call is
``synthesize`` on a batch of 8 random images, half of them chosen for a defect, with the
textures already decoded, as in training; each process reports the median of ``--calls``
calls after 5 untimed ones.

Rows go to ``benchmarks/results/synthesis_revisions.csv``; ``speed.py --summarise-only``
puts the medians over rounds into ``SPEED.md``. Command (repository root)::

    uv run python benchmarks/synthesis_revisions.py d3d6325 WORKTREE --sizes 128 256 --rounds 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

COLUMNS = ("revision", "commit", "source", "image_size", "batch_size", "round", "calls", "threads",
           "ms_per_batch", "device", "finished_at")
WORKTREE = "WORKTREE"

# Runs in a fresh interpreter with the revision's package first on the path. It uses only
# the API that every revision since the batched rewrite has.
_TIMER = r"""
import statistics, sys, time
root, size, calls, source, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
sys.path.insert(0, root)
import torch
torch.set_num_threads(threads)
import anomalib_recsem
assert anomalib_recsem.__file__.startswith(root), anomalib_recsem.__file__
from anomalib_recsem.data.synthetic_defect import SyntheticDefect
transform = SyntheticDefect(anomaly_source=None if source == "procedural" else source, seed=0)
folder = transform.texture_folder
if folder is not None:  # training decodes each file once (and resizes it, where the revision keeps it resized)
    from anomalib_recsem.data.texture_bank import fit_size
    shape = fit_size(size, size, folder.size)
    for start in range(0, len(folder.paths), 64):
        chunk = torch.arange(start, min(start + 64, len(folder.paths)))
        folder.textures(chunk, *shape) if hasattr(folder, "textures") else folder.load(chunk)
generator = torch.Generator().manual_seed(0)
images = torch.rand(8, 3, size, size, generator=generator)
durations = []
for _ in range(calls + 5):
    flags = torch.rand(8, generator=generator) < 0.5
    started = time.perf_counter()
    transform.synthesize(images, flags)
    durations.append(time.perf_counter() - started)
print(1000 * statistics.median(durations[5:]))
"""


def _git(*arguments: str, revision: str) -> str:
    try:
        return subprocess.run(["git", *arguments], cwd=harness.REPO_ROOT, check=True, capture_output=True,
                              text=True).stdout.strip()
    except subprocess.CalledProcessError as error:
        msg = f"revision {revision!r}: git {' '.join(arguments)} failed: {error.stderr.strip()}"
        raise SystemExit(msg) from error


def checkout(revision: str, folder: Path) -> tuple[Path, str]:
    """The folder holding ``revision``'s package, and its short commit.

    ``WORKTREE`` is the checkout itself: its commit is HEAD's, marked ``+changes`` when the
    package differs from HEAD.
    """
    if revision == WORKTREE:
        changed = _git("status", "--porcelain", "--", "anomalib_recsem", revision=revision)
        head = _git("rev-parse", "--short", "HEAD", revision=revision)
        return harness.REPO_ROOT, head + ("+changes" if changed else "")
    commit = _git("rev-parse", "--short", f"{revision}^{{commit}}", revision=revision)
    root = folder / commit
    root.mkdir(exist_ok=True)
    archive = subprocess.run(["git", "archive", commit, "anomalib_recsem"], cwd=harness.REPO_ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root, commit


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="+", help=f"git revisions to compare; {WORKTREE} is the checkout as it is")
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--source", default=str(harness.DTD_IMAGES),
                        help="texture folder, or 'procedural' (default: the DTD images)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100, help="timed calls per process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "synthesis_revisions.csv")
    args = parser.parse_args(argv)
    if args.source != "procedural" and not Path(args.source).is_dir():
        parser.error(f"--source: {args.source} is not a folder (pass 'procedural' for the built-in textures)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Time every revision at every size, alternating revisions within each round."""
    args = parse_arguments(argv)
    source_name = "procedural" if args.source == "procedural" else Path(args.source).parent.name
    with tempfile.TemporaryDirectory() as folder:
        roots = {revision: checkout(revision, Path(folder)) for revision in args.revisions}
        for round_index in range(args.rounds):
            for size in args.sizes:
                for revision, (root, commit) in roots.items():
                    result = subprocess.run(
                        [sys.executable, "-c", _TIMER, str(root), str(size), str(args.calls), args.source,
                         str(args.threads)], check=False, capture_output=True, text=True)
                    if result.returncode != 0:
                        msg = f"timing revision {revision!r} ({commit}) at {size} px failed:\n{result.stderr[-2000:]}"
                        raise SystemExit(msg)
                    row = {"revision": revision, "commit": commit, "source": source_name, "image_size": size,
                           "batch_size": 8, "round": round_index, "calls": args.calls, "threads": args.threads,
                           "ms_per_batch": float(result.stdout.split()[-1]),
                           "device": harness.device_name("cpu"), "finished_at": harness.now()}
                    print(row, flush=True)  # noqa: T201
                    harness.append_row(args.output, row, COLUMNS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
