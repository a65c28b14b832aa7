"""Tests of the synthetic DAGM 2007 writer."""

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from anomalib_recsem.data.dagm import DAGM_CATEGORIES, parse_dagm_labels
from anomalib_recsem.data.dagm.generator import (
    DEFECT_TYPES,
    MARKER,
    add_defect,
    elliptical_label,
    make_texture,
    write_dagm_dataset,
)

SMALL = {
    "num_train": 5,
    "num_train_defective": 2,
    "num_test_normal": 3,
    "num_test_defective": 4,
    "image_size": 64,
}


def _rows(split_dir: Path) -> list[list[str]]:
    text = (split_dir / "Label" / "Labels.txt").read_text(encoding="utf-8")
    return [line.split("\t") for line in text.split("\n")[1:] if line]


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_layout_and_labels_file_format(tmp_path: Path) -> None:
    """The exact DAGM layout: header line, 5 TAB fields, trailing TAB on unlabelled rows."""
    root = write_dagm_dataset(tmp_path, categories=("Class1", "Class2"), **SMALL)
    assert root == tmp_path
    for category in ("Class1", "Class2"):
        ids: list[str] = []
        for split, normal, defective in (("Train", 5, 2), ("Test", 3, 4)):
            split_dir = root / category / split
            text = (split_dir / "Label" / "Labels.txt").read_text(encoding="utf-8")
            assert text.startswith("1\n")
            assert text.endswith("\n")
            rows = _rows(split_dir)
            assert len(rows) == normal + defective
            for fields in rows:
                image_id, flag, image_name, reserved, label = fields[:5]
                assert len(image_id) == 4
                assert image_id.isdecimal()
                assert image_name == f"{image_id}.PNG"
                assert reserved == "0"
                if flag == "1":
                    assert len(fields) == 5
                    assert label == f"{image_id}_label.PNG"
                else:
                    assert flag == "0"
                    assert fields[4:] == ["0", ""]  # the trailing TAB
                ids.append(image_id)
            assert sum(fields[1] == "1" for fields in rows) == defective
            # Only defective images have label files.
            labels = sorted(path.name for path in (split_dir / "Label").glob("*_label.PNG"))
            assert labels == sorted(fields[4] for fields in rows if fields[1] == "1")
            assert len(list(split_dir.glob("*.PNG"))) == normal + defective
        # Ids are unique within a class, shared out between Train and Test.
        assert len(set(ids)) == len(ids) == 14
        assert sorted(int(image_id) for image_id in ids) == list(range(1, 15))


def test_images_and_masks(tmp_path: Path) -> None:
    """8-bit grayscale images, 0/255 masks of the same size, non-empty for defects."""
    root = write_dagm_dataset(tmp_path, **SMALL)
    for split in ("Train", "Test"):
        split_dir = root / "Class1" / split
        for row in parse_dagm_labels(split_dir / "Label" / "Labels.txt"):
            with Image.open(split_dir / row.image_name) as image:
                assert image.format == "PNG"
                assert image.mode == "L"
                assert image.size == (64, 64)
                pixels = np.asarray(image)
            assert pixels.std() > 5  # a texture, not a flat image
            if row.defective:
                assert row.label_name is not None
                with Image.open(split_dir / "Label" / row.label_name) as label:
                    assert label.mode == "L"
                    assert label.size == (64, 64)
                    mask = np.asarray(label)
                assert set(np.unique(mask).tolist()) == {0, 255}


def test_reproducible_and_seed_dependent(tmp_path: Path) -> None:
    first = _files(write_dagm_dataset(tmp_path / "a", seed=3, **SMALL))
    second = _files(write_dagm_dataset(tmp_path / "b", seed=3, **SMALL))
    other = _files(write_dagm_dataset(tmp_path / "c", seed=4, **SMALL))
    assert first == second
    assert first != other


def test_without_train_folder(tmp_path: Path) -> None:
    root = write_dagm_dataset(tmp_path, with_train=False, **SMALL)
    assert sorted(path.name for path in (root / "Class1").iterdir()) == [MARKER, "Test"]
    assert len(_rows(root / "Class1" / "Test")) == 7


def test_elliptical_labels_cover_exact_masks(tmp_path: Path) -> None:
    """Weak elliptical labels contain the exact defect and leave the images unchanged."""
    exact = write_dagm_dataset(tmp_path / "exact", **SMALL)
    weak = write_dagm_dataset(tmp_path / "weak", elliptical_labels=True, **SMALL)
    test_dir = Path("Class1") / "Test"
    for row in parse_dagm_labels(exact / test_dir / "Label" / "Labels.txt"):
        assert (exact / test_dir / row.image_name).read_bytes() == (weak / test_dir / row.image_name).read_bytes()
        if row.defective:
            exact_mask = np.asarray(Image.open(exact / test_dir / "Label" / str(row.label_name))) > 0
            weak_mask = np.asarray(Image.open(weak / test_dir / "Label" / str(row.label_name))) > 0
            assert weak_mask[exact_mask].all()
            assert weak_mask.sum() >= exact_mask.sum()


def test_elliptical_label_covers_thin_line() -> None:
    mask = np.zeros((40, 40), dtype=bool)
    mask[20, 5:35] = True  # degenerate: zero width
    mask[21, 30:36] = True
    ellipse = elliptical_label(mask)
    assert ellipse[mask].all()
    assert ellipse.sum() < 40 * 40 / 2


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_defects_are_visible_and_localised(kind: str) -> None:
    """Each defect clearly changes the pixels in its mask and nothing beyond a 1-pixel fringe."""
    for seed in range(6):
        clean = make_texture("Class2", 128, np.random.default_rng(seed))
        defective = clean.copy()
        mask = add_defect(defective, kind, np.random.default_rng(100 + seed))
        assert mask.dtype == bool
        assert 0 < mask.sum() < mask.size / 4
        diff = np.abs(defective - clean)
        fringe = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert diff[~fringe].max() < 1e-3
        assert diff[mask].mean() > 8.0


def test_categories_look_different() -> None:
    """Texture styles differ between classes (compare horizontal vs vertical roughness)."""
    signatures = []
    for category in DAGM_CATEGORIES:
        image = make_texture(category, 128, np.random.default_rng(0))
        assert image.shape == (128, 128)
        assert image.dtype == np.float32
        assert 90 < image.mean() < 170
        dx = np.abs(np.diff(image, axis=1)).mean()
        dy = np.abs(np.diff(image, axis=0)).mean()
        signatures.append((round(float(dx), 1), round(float(dy), 1)))
    assert len(set(signatures)) == len(DAGM_CATEGORIES)


def test_fast_enough(tmp_path: Path) -> None:
    """About 100 images at 256 px in a few seconds (generous bound for shared CPUs)."""
    start = time.perf_counter()
    write_dagm_dataset(
        tmp_path,
        categories=("Class1", "Class4"),
        num_train=25,
        num_train_defective=5,
        num_test_normal=10,
        num_test_defective=10,
        image_size=256,
    )
    assert len(list(tmp_path.rglob("*.PNG"))) == 2 * (50 + 15)  # images + label masks
    assert time.perf_counter() - start < 30


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'Class11'.*Class1, Class2"):
        write_dagm_dataset(tmp_path, categories=("Class11",))
    with pytest.raises(ValueError, match="defect_types"):
        write_dagm_dataset(tmp_path, defect_types=("crack",))
    with pytest.raises(ValueError, match="num_test_defective"):
        write_dagm_dataset(tmp_path, num_test_defective=-1)
    with pytest.raises(ValueError, match="image_size"):
        write_dagm_dataset(tmp_path, image_size=8)
    with pytest.raises(ValueError, match="defect type"):
        add_defect(np.zeros((32, 32), dtype=np.float32), "crack", np.random.default_rng(0))
    with pytest.raises(ValueError, match="category"):
        make_texture("Texture1", 32, np.random.default_rng(0))


def test_existing_folder_needs_overwrite(tmp_path: Path) -> None:
    write_dagm_dataset(tmp_path, **SMALL)
    with pytest.raises(FileExistsError, match="Class1"):
        write_dagm_dataset(tmp_path, **SMALL)
    write_dagm_dataset(tmp_path, overwrite=True, with_train=False, **SMALL)
    assert not (tmp_path / "Class1" / "Train").exists()


def test_a_folder_it_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    # Real data under the same name (the demo's --output pointed at a DAGM copy, say) stays.
    real = tmp_path / "Class1" / "Train" / "0001.PNG"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"a real image")
    write_dagm_dataset(tmp_path, categories=("Class2",), **SMALL)
    kept = tmp_path / "Class2" / "Test" / "kept.txt"  # gone if Class2 were replaced
    kept.write_text("written after the generator")
    with pytest.raises(FileExistsError, match=f"holds no {MARKER}"):
        write_dagm_dataset(tmp_path, categories=("Class2", "Class1"), overwrite=True, **SMALL)
    assert real.read_bytes() == b"a real image"
    assert kept.is_file()  # nothing is replaced before every folder has been checked


def test_single_defect_type(tmp_path: Path) -> None:
    root = write_dagm_dataset(tmp_path, categories=("Class3",), defect_types=("spot",), **SMALL)
    assert len(list((root / "Class3" / "Test" / "Label").glob("*_label.PNG"))) == 4
