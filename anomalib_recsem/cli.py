"""``anomalib-recsem``: commands that are not anomalib's own.

Training, testing and exporting go through the stock ``anomalib`` command
(``anomalib train --model RecSem ...``). This command adds the offline demo.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"must be a positive integer, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        msg = f"must be an integer from 0 to {2**32 - 1} (what NumPy and Lightning seed with), got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomalib-recsem", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="generate a small defect dataset, train RecSem on the CPU, test, export to OpenVINO and report",
    )
    demo.add_argument("--output", type=Path, default=Path("demo_output"), help="folder for everything written")
    demo.add_argument("--epochs", type=_positive_int, default=30, help="training epochs (default: 30)")
    demo.add_argument("--train-images", type=_positive_int, default=80, help="defect-free training images (default: 80)")
    demo.add_argument("--test-images", type=_positive_int, default=16,
                      help="defect-free test images, and as many defective ones (default: 16)")
    demo.add_argument("--seed", type=_seed, default=42, help="seed for data and training (default: 42)")
    demo.add_argument("--quick", action="store_true",
                      help="the tiny preset (configs/recsem_tiny.yaml), to check that everything runs; "
                           "data and --epochs as given")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anomalib-recsem`` console script."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from anomalib_recsem.demo import DemoSettings, run_demo  # noqa: PLC0415

    settings = DemoSettings(
        output=arguments.output,
        epochs=arguments.epochs,
        num_train=arguments.train_images,
        num_test=arguments.test_images,
        seed=arguments.seed,
        quick=arguments.quick,
        progress=not arguments.no_progress,
    )
    result = run_demo(settings)
    print(f"\nReport: {result.report}")  # noqa: T201
    print(f"OpenVINO model: {result.openvino_model}")  # noqa: T201
    for name, value in sorted(result.metrics.items()):
        print(f"  {name:24s} {value:.4f}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
