"""Defect synthesis across git revisions: an interleaved A/B of ``SyntheticDefect`` on the CPU.

Timings of a few milliseconds drift by tens of percent within minutes on a shared 2-core
machine: the same revision, timed over 100 calls in processes a minute apart, gave medians
from 12.6 to 22.9 ms. So each revision's ``anomalib_recsem`` (extracted with ``git archive``;
``WORKTREE`` is the checkout as it is) runs in a process of its own that stays alive, and the
processes take turns, ``--calls`` calls at a time (one by default), only one of them running
at a time: every round of every revision sees the same machine state within a fraction of a second. A call is
``synthesize`` on a batch of 8 random images, half of them chosen for a defect, with the
textures already decoded, as in training, after 5 untimed calls.

Rows (one per revision and round, the mean of its calls; rows written before 2026-12-07
with more than one call per round hold their median) go to ``benchmarks/results/synthesis_revisions.csv``;
``speed.py --summarise-only`` puts into ``SPEED.md`` the median over rounds and, per revision,
the median over rounds of its ratio to the first revision in the same round. Command
(repository root)::

    uv run python benchmarks/synthesis_revisions.py de4a60a WORKTREE --sizes 128 256 --rounds 40 --calls 32

A revision that draws masks and textures ahead spends most of its time in about one call in 16;
time it with ``--calls 32`` so that every round holds such calls.
"""

from __future__ import annotations

import argparse
import statistics
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
# the API that every revision since the batched rewrite has. After set-up it prints "ready",
# then for each number n read from stdin times n calls and prints their milliseconds; 0 ends it.
_TIMER = r"""
import sys, time
root, size, source, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
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
def call():
    flags = torch.rand(8, generator=generator) < 0.5
    started = time.perf_counter()
    transform.synthesize(images, flags)
    return 1000 * (time.perf_counter() - started)
for _ in range(5):
    call()
print("ready", flush=True)
for line in sys.stdin:
    if int(line) == 0:
        break
    print(" ".join(f"{call():.4f}" for _ in range(int(line))), flush=True)
"""


class _Timer:
    """One revision's timing process at one image size, idle until asked for a round."""

    def __init__(self, revision: str, commit: str, root: Path, size: int, args: argparse.Namespace,
                 log: Path) -> None:
        self.revision, self.commit, self.log = revision, commit, log
        self.errors = log.open("w")
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", _TIMER, str(root), str(size), args.source, str(args.threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True)
        try:
            self._read()  # "ready"
        except SystemExit:
            self.errors.close()
            raise

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            msg = (f"timing revision {self.revision!r} ({self.commit}) failed:\n"
                   f"{self.log.read_text(errors='replace')[-2000:]}")
            raise SystemExit(msg)
        return line

    def time(self, calls: int) -> float:
        """The mean milliseconds of ``calls`` calls.

        The mean, not the median: since 2026-12-07 about one call in 16 also draws the next 64
        defects' masks and textures (``DrawAhead``), which a median would leave out.
        """
        self.process.stdin.write(f"{calls}\n")
        self.process.stdin.flush()
        return statistics.mean(float(value) for value in self._read().split())

    def close(self) -> None:
        """End the process (it is idle, waiting for a number)."""
        if self.process.poll() is None:
            self.process.stdin.write("0\n")
            self.process.stdin.close()
            self.process.wait()
        self.errors.close()


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
    parser.add_argument("--rounds", type=int, default=200, help="turns each revision takes, alternating")
    parser.add_argument("--calls", type=int, default=1, help="timed calls per turn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=harness.RESULTS / "synthesis_revisions.csv")
    args = parser.parse_args(argv)
    if args.source != "procedural" and not Path(args.source).is_dir():
        parser.error(f"--source: {args.source} is not a folder (pass 'procedural' for the built-in textures)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Time every revision at every size, the revisions taking turns round by round."""
    args = parse_arguments(argv)
    source_name = "procedural" if args.source == "procedural" else Path(args.source).parent.name
    with tempfile.TemporaryDirectory() as folder:
        roots = {revision: checkout(revision, Path(folder)) for revision in args.revisions}
        for size in args.sizes:
            timers: list[_Timer] = []
            try:
                for index, (revision, (root, commit)) in enumerate(roots.items()):
                    log = Path(folder) / f"timer{index}_{size}.log"
                    timers.append(_Timer(revision, commit, root, size, args, log))
                rows = []
                for round_index in range(args.rounds):
                    # Who goes first rotates, so that no revision always follows the same one.
                    turn = round_index % len(timers)
                    for timer in timers[turn:] + timers[:turn]:
                        milliseconds = timer.time(args.calls)
                        rows.append({
                            "revision": timer.revision, "commit": timer.commit, "source": source_name,
                            "image_size": size, "batch_size": 8, "round": round_index, "calls": args.calls,
                            "threads": args.threads, "ms_per_batch": milliseconds,
                            "device": harness.device_name("cpu"), "finished_at": harness.now()})
                        message = f"{size} px, round {round_index}: {timer.revision} {milliseconds:.1f} ms"
                        print(message, flush=True)  # noqa: T201
                # Written once per size: rewriting the CSV after every call would put file I/O
                # between the timed calls, thousands of times.
                harness.append_rows(args.output, rows, COLUMNS)
            finally:
                for timer in timers:
                    timer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
