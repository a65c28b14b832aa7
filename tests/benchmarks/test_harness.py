"""``benchmarks/harness.py``: the AUROC every benchmark reports, the texture column, and settings from presets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from anomalib_recsem.presets import preset_config
from benchmarks import harness


@pytest.mark.parametrize("offset", [0.0, -500.0, 500.0])
def test_auroc_of_scores_far_outside_0_1_is_the_rank_auroc(offset: float) -> None:
    # Defect scores 3, 5, 5 against defect-free 1, 5, 6: of the 9 pairs the defect wins
    # (3,1), (5,1), (5,1), loses (3,5), (3,6), (5,6), (5,6) and ties (5,5) twice: (3 + 1) / 9.
    scores = torch.tensor([3.0, 5.0, 5.0, 1.0, 5.0, 6.0]) + offset  # float32: a sigmoid would tie them all
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    assert harness.auroc(scores, labels) == pytest.approx(4 / 9)


def test_auroc_is_nan_with_one_class() -> None:
    assert math.isnan(harness.auroc(torch.tensor([0.2, 0.7]), torch.tensor([1, 1])))


def test_texture_column_names_the_folder_the_image_itself_or_the_procedural_bank(tmp_path: Path) -> None:
    labels = [harness.texture_label(source) for source in ("self", None, "photos", tmp_path / "dtd")]
    assert labels == ["self", "procedural", "photos", "dtd"]


@pytest.mark.parametrize(("preset", "size", "batch", "epochs"), [("recsem", 256, 8, 700), ("recsem_tiny", 64, 4, 2)])
def test_sizes_and_epochs_not_given_come_from_the_preset(preset: str, size: int, batch: int, epochs: int) -> None:
    from benchmarks import accuracy, curves  # noqa: PLC0415

    config = preset_config(preset)
    assert (size, batch, epochs) == (config["model"]["init_args"]["image_size"],
                                     config["data"]["init_args"]["train_batch_size"], config["trainer"]["max_epochs"])
    args = curves.parse_arguments(["--preset", preset])
    assert (args.image_size, args.batch_size) == (size, batch)
    assert accuracy.parse_arguments(["--preset", preset]).epochs == epochs
    given = curves.parse_arguments(["--preset", preset, "--image-size", "96", "--batch-size", "3"])
    assert (given.image_size, given.batch_size) == (96, 3)


@pytest.mark.parametrize(("flags", "named"), [("fma avx2", "AVX2"), ("avx2 avx512f avx512_bf16", "AVX-512 BF16"),
                                              ("sse2", None)])
def test_a_cpu_is_named_with_its_widest_vector_instructions(
    flags: str, named: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"model name\t: AMD EPYC\nflags\t\t: {flags}\nmodel name\t: other\nflags\t\t: avx512f\n")
    monkeypatch.setattr(harness, "CPUINFO", cpuinfo)
    monkeypatch.setattr(harness.os, "sched_getaffinity", lambda _: {0, 1})
    assert harness.device_name("cpu") == f"AMD EPYC (2 cores{f', {named}' if named else ''})"


def test_markdown_table_has_a_rule_and_a_line_per_row() -> None:
    assert harness.markdown_table(["model", "seed", "AUROC"], [["recsem", 0, "0.800"], ["draem", 1, "0.700"]]) == [
        "| model | seed | AUROC |", "|---|---|---|", "| recsem | 0 | 0.800 |", "| draem | 1 | 0.700 |"]
    assert harness.markdown_table(["empty"], []) == ["| empty |", "|---|"]
