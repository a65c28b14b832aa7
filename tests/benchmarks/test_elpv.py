"""``benchmarks/elpv.py`` and the harness on a category with image labels only, on generated cells."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import Folder, MVTecAD
from PIL import Image

from benchmarks import elpv, harness

# (probability, cell type) of 10 generated cells: 5 defect-free, 2 uncertain, 3 defective.
CELLS = [(0.0, "mono"), (1.0, "mono"), (0.0, "poly"), (1 / 3, "poly"), (0.0, "mono"),
         (1.0, "poly"), (2 / 3, "mono"), (0.0, "poly"), (1.0, "mono"), (0.0, "mono")]


def _write_elpv(folder: Path) -> Path:
    """ELPV's layout: ``labels.csv`` beside ``images/cellNNNN.png`` (grey, brighter for defective cells)."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for index, (probability, cell_type) in enumerate(CELLS, start=1):
        name = f"images/cell{index:04d}.png"
        level = 60 + int(120 * probability) + index
        Image.fromarray(np.full((40, 40), level, dtype=np.uint8)).save(folder / name)
        lines.append(f"{name}  {probability}  {cell_type}")
    labels = folder / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return labels


def test_prepare_splits_by_probability_and_leaves_out_the_uncertain_cells(tmp_path: Path) -> None:
    labels = _write_elpv(tmp_path / "package")
    stale = tmp_path / "root" / "elpv" / "train" / "good" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    counts = elpv.prepare(tmp_path / "root", labels)
    category = tmp_path / "root" / "elpv"
    written = {folder: sorted(path.name for path in (category / folder).iterdir()) for folder in counts}
    # Defect-free cells 1, 3, 5, 8, 10 sorted by name: the first and every 4th after it go to the test set.
    assert written == {"train/good": ["cell0003.png", "cell0005.png", "cell0008.png"],
                       "test/good": ["cell0001.png", "cell0010.png"],
                       "test/defective": ["cell0002.png", "cell0006.png", "cell0009.png"]}
    assert counts == {folder: len(names) for folder, names in written.items()}
    assert not stale.exists()  # the category is replaced, not merged
    # Pixels unchanged.
    assert (category / "test" / "defective" / "cell0002.png").read_bytes() == (
        tmp_path / "package" / "images" / "cell0002.png").read_bytes()


def test_a_malformed_labels_line_names_the_file_and_line(tmp_path: Path) -> None:
    labels = _write_elpv(tmp_path / "package")
    labels.write_text(labels.read_text() + "images/cell0011.png  high  mono\n")
    with pytest.raises(ValueError, match=r"labels\.csv, line 11: expected"):
        elpv.prepare(tmp_path / "root", labels)
    assert not (tmp_path / "root" / "elpv").exists()  # nothing written from a file that does not parse


def test_without_masks_the_harness_reads_folder_and_reports_image_metrics_only(tmp_path: Path) -> None:
    elpv.prepare(tmp_path, _write_elpv(tmp_path / "package"))
    assert isinstance(harness.datamodule(tmp_path, "elpv", batch_size=2, num_workers=0), Folder)
    data = harness.EvaluationSet(tmp_path, "elpv", image_size=32)
    assert data.masks is None
    assert data.defect_types == ["defective", "defective", "defective", "good", "good"]  # sorted by path
    assert data.labels.tolist() == [1, 1, 1, 0, 0]
    torch.manual_seed(0)
    module = harness.recsem("recsem_tiny", image_size=32, visualizer=False, anomaly_source=None)
    metrics = harness.evaluate(module, data)
    for name in ("pixel_AUROC", "pixel_AUPRO", "residual_pixel_AUROC"):
        assert math.isnan(metrics[name])
    scores = harness.predictions(module, data.images).scores
    defective, good = scores[data.labels == 1], scores[data.labels == 0]
    wins = (defective[:, None] > good[None]).float() + 0.5 * (defective[:, None] == good[None]).float()
    assert metrics["image_AUROC"] == pytest.approx(float(wins.mean()))  # the rank AUROC, computed by hand
    by_type = harness.evaluate_by_defect_type(data, *harness.predictions(module, data.images)[:2])
    assert [row["defect_type"] for row in by_type] == ["good", "defective"]
    assert math.isnan(by_type[1]["pixel_AUROC"]) and by_type[1]["images"] == 3


def test_a_category_with_masks_is_still_read_as_mvtec(tmp_path: Path) -> None:
    from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset  # noqa: PLC0415

    root = write_mvtec_dataset(tmp_path, num_train=2, num_test_good=2, num_test_defective=2)
    assert isinstance(harness.datamodule(root, "dummy", batch_size=2, num_workers=0), MVTecAD)
    data = harness.EvaluationSet(root, "dummy", image_size=32)
    assert data.masks is not None and data.masks.shape == (4, 32, 32) and data.masks.any()
    assert sorted(set(data.defect_types)) != ["good"] and "good" in data.defect_types


@pytest.mark.parametrize("with_masks", [True, False])
def test_curve_summary_leaves_out_pixel_columns_only_for_data_without_masks(tmp_path: Path, with_masks: bool) -> None:
    from benchmarks import curves  # noqa: PLC0415

    pixel = 0.5 if with_masks else math.nan
    rows = [{"model": model, "seed": 0, "step": step, "samples": 8 * step, "seconds": step, "epoch": 0,
             "image_AUROC": 0.6, "pixel_AUPRO": pixel, "pixel_AUROC": pixel, "reconstruction_error": 0.01,
             "reconstruction_spread": 0.9, "residual_pixel_AUROC": pixel, "preset": "recsem_small", "image_size": 128,
             "batch_size": 8, "width": 16, "textures": "images", "precision": "32-true", "threads": 1, "device": "cpu"}
            for model in ("recsem", "draem") for step in (0, 250)]
    harness.write_rows(tmp_path / "curve_elpv.csv", rows, curves.COLUMNS)
    text = curves.summarise(tmp_path / "curve_elpv.csv", tmp_path / "CURVES_elpv.md").read_text()
    tables = [line for line in text.splitlines() if line.startswith("| ")]
    assert ("pixel AUPRO" in tables[0]) is with_masks
    assert ("nan" in text) is False
    assert any(line.startswith("| 250 | 1 | 0.600 | 0.600 | 1/1 |") for line in tables)
    assert "Scored on\nevery second test image." in text
    text = curves.summarise(tmp_path / "curve_elpv.csv", tmp_path / "CURVES_elpv.md", eval_stride=8).read_text()
    assert "Scored on\nevery 8th test image." in text


def test_grey_level_bar_ranks_the_test_cells_by_darkness(tmp_path: Path) -> None:
    elpv.prepare(tmp_path, _write_elpv(tmp_path / "package"))
    # Generated defective cells are the brighter ones (grey 182, 186, 189 against 61, 70), so
    # darkness ranks every defective cell below every defect-free one.
    row = elpv.grey_level_row(tmp_path)
    assert row == {"category": "elpv", "score": "negative mean grey level", "images": 5, "good_images": 2,
                   "image_AUROC": 0.0}


def test_grey_level_bar_without_images_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"elpv/test holds no"):
        elpv.grey_level_row(tmp_path)
