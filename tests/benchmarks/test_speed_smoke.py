"""The speed benchmark's smoke configuration runs end to end and writes well-formed CSVs.

Timings are never compared with thresholds: CI machines are too noisy for that.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"

#: Columns each CSV must have, and those of them that must hold positive finite numbers
#: in every measured row.
REQUIRED = {
    "speed.csv": (
        ["model", "runtime", "image_size", "batch_size", "ms_per_image", "images_per_second", "parameters", "gflops"],
        ["image_size", "batch_size", "ms_per_image", "images_per_second", "parameters", "gflops"],
    ),
    "train_step.csv": (
        ["model", "image_size", "batch_size", "seconds_per_step", "peak_rss_mb"],
        ["image_size", "batch_size", "seconds_per_step", "peak_rss_mb"],
    ),
    "defects.csv": (
        ["generator", "source", "image_size", "batch_size", "ms_per_batch"],
        ["image_size", "batch_size", "ms_per_batch"],
    ),
}


def _positive_finite(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run ``speed.py --smoke`` once in a fresh process (its training cells fork it, which is
    only safe in a process that has not run parallel torch code yet)."""
    output = tmp_path_factory.mktemp("speed")
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--quiet", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return output


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_smoke_writes_csv(smoke_output: Path, name: str) -> None:
    columns, numeric = REQUIRED[name]
    with (smoke_output / name).open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert set(columns) <= set(reader.fieldnames or [])
        rows = list(reader)
    measured = [row for row in rows if row["status"] in {"ok", "partial"}]
    assert measured, f"no measured row in {name}: {rows}"
    for row in measured:
        for column in numeric:
            assert _positive_finite(row[column]), f"{name}: {column}={row[column]!r} in {row}"


@pytest.mark.slow
def test_smoke_covers_every_runtime_and_writes_summary(smoke_output: Path) -> None:
    with (smoke_output / "speed.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    runtimes = {row["runtime"] for row in rows if row["status"] == "ok"}
    assert runtimes == {"torch_eager_cpu", "openvino_cpu_f32", "openvino_cpu_default"}
    assert "torch: " in (smoke_output / "machine.txt").read_text()
    summary = (smoke_output / "SPEED.md").read_text()
    assert "## Goals" in summary


@pytest.mark.slow
def test_summarise_only_rebuilds_summary(smoke_output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process is safe here: --summarise-only only reads CSVs and writes Markdown.
    specification = importlib.util.spec_from_file_location("benchmarks_speed", SCRIPT)
    assert specification is not None and specification.loader is not None
    speed = importlib.util.module_from_spec(specification)
    # Dataclasses resolve string annotations through sys.modules; the module also sets
    # OMP_WAIT_POLICY when unset, which must not leak into later tests.
    monkeypatch.setitem(sys.modules, specification.name, speed)
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    specification.loader.exec_module(speed)
    (smoke_output / "SPEED.md").unlink()
    assert speed.main(["--summarise-only", "--output", str(smoke_output)]) == 0
    summary = (smoke_output / "SPEED.md").read_text()
    assert "| goal | measured | status |" in summary
    assert "Smoke run" in summary
