"""Tests of the DAGM 2007 dataset, datamodule and Labels.txt parser."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data.utils import ValSplitMode
from anomalib.data.utils import split as anomalib_split
from PIL import Image

from anomalib_recsem.data.dagm import (
    DAGM,
    DAGM_CATEGORIES,
    DAGMDataset,
    DAGMFormatError,
    make_dagm_dataset,
    parse_dagm_labels,
)
from anomalib_recsem.data.dagm.generator import write_dagm_dataset

SIZE = 64
COUNTS = {"num_train": 6, "num_train_defective": 2, "num_test_normal": 4, "num_test_defective": 5}
NO_TRAIN_NORMALS = 10
NO_TRAIN_DEFECTIVE = 3
COLUMNS = ["path", "split", "label", "image_path", "mask_path", "label_index"]


@pytest.fixture(scope="module")
def dagm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class1 with Train and Test folders; Class2 with a Test folder only."""
    root = tmp_path_factory.mktemp("dagm")
    write_dagm_dataset(root, categories=("Class1",), image_size=SIZE, seed=1, **COUNTS)
    write_dagm_dataset(
        root,
        categories=("Class2",),
        num_test_normal=NO_TRAIN_NORMALS,
        num_test_defective=NO_TRAIN_DEFECTIVE,
        image_size=SIZE,
        seed=2,
        with_train=False,
    )
    return root


@pytest.fixture
def dagm_copy(dagm_root: Path, tmp_path: Path) -> Path:
    """A private copy that a test may damage."""
    root = tmp_path / "DAGM"
    shutil.copytree(dagm_root, root)
    return root


def _datamodule(root: Path, **kwargs: object) -> DAGM:
    options: dict[str, object] = {"root": root, "train_batch_size": 4, "eval_batch_size": 4, "num_workers": 0}
    options.update(kwargs)
    return DAGM(**options)  # type: ignore[arg-type]


def _write_png(path: Path, size: int = SIZE, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path, format="PNG")


def _minimal_split(split_dir: Path, labels_text: str) -> None:
    """Images 0001 (normal), 0002 (defective, with a mask), 0003 (normal)."""
    for name in ("0001.PNG", "0002.PNG", "0003.PNG"):
        _write_png(split_dir / name, value=120)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[10:20, 30:50] = 255
    (split_dir / "Label").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(split_dir / "Label" / "0002_label.PNG", format="PNG")
    (split_dir / "Label" / "Labels.txt").write_bytes(labels_text.encode())


EXACT_LABELS = "1\n0001\t0\t0001.PNG\t0\t0\t\n0002\t1\t0002.PNG\t0\t0002_label.PNG\n0003\t0\t0003.PNG\t0\t0\t\n"


# --------------------------------------------------------------------------- Labels.txt parsing


def test_parse_exact_format(tmp_path: Path) -> None:
    labels = tmp_path / "Labels.txt"
    labels.write_text(EXACT_LABELS, encoding="utf-8")
    rows = parse_dagm_labels(labels)
    assert [(r.image_id, r.defective, r.image_name, r.label_name, r.line_number) for r in rows] == [
        ("0001", False, "0001.PNG", None, 2),
        ("0002", True, "0002.PNG", "0002_label.PNG", 3),
        ("0003", False, "0003.PNG", None, 4),
    ]


def test_parse_tolerates_crlf_bom_trailing_whitespace_and_blank_lines(tmp_path: Path) -> None:
    labels = tmp_path / "Labels.txt"
    text = "\ufeff1 \r\n0001\t0\t0001.PNG\t0\t0\t  \r\n\r\n0002\t1\t0002.PNG\t0\t0002_label.PNG\t\r\n\r\n"
    labels.write_bytes(text.encode("utf-8"))
    rows = parse_dagm_labels(labels)
    assert [(r.image_name, r.label_name, r.line_number) for r in rows] == [
        ("0001.PNG", None, 2),
        ("0002.PNG", "0002_label.PNG", 4),
    ]


@pytest.mark.parametrize(
    ("text", "line", "pattern"),
    [
        ("", None, "empty"),
        ("0001\t0\t0001.PNG\t0\t0\t\n", 1, "header"),
        ("1\n0001\t0\t0001.PNG\t0\n", 2, "5 TAB-separated fields"),
        ("1\n0001 0 0001.PNG 0 0\n", 2, "5 TAB-separated fields"),
        ("1\n0001\t0\t0001.PNG\t0\t0\textra\n", 2, "5 TAB-separated fields"),
        ("1\nabc\t0\t0001.PNG\t0\t0\t\n", 2, "image id"),
        ("1\n0001\t2\t0001.PNG\t0\t0\t\n", 2, "defect flag"),
        ("1\n0001\t0\t0001.PNG\tx\t0\t\n", 2, "fourth field"),
        ("1\n0001\t0\t\t0\t0\t\n", 2, "image file name"),
        ("1\n0001\t0\t../0001.PNG\t0\t0\t\n", 2, "image file name"),
        ("1\n0001\t1\t0001.PNG\t0\tsub/0001_label.PNG\n", 2, "label file name"),
        ("1\n0001\t1\t0001.PNG\t0\t0\t\n", 2, "defective but has no label"),
        ("1\n0001\t0\t0001.PNG\t0\t0001_label.PNG\n", 2, "defect-free but names label"),
        ("1\n0001\t0\t0001.PNG\t0\t0\t\n0001\t0\t0001.PNG\t0\t0\t\n", 3, "already listed on line 2"),
    ],
)
def test_parse_rejects_malformed_content(tmp_path: Path, text: str, line: int | None, pattern: str) -> None:
    labels = tmp_path / "Labels.txt"
    labels.write_text(text, encoding="utf-8")
    with pytest.raises(DAGMFormatError) as error:
        parse_dagm_labels(labels)
    message = str(error.value)
    assert str(labels) in message
    assert re.search(pattern, message)
    if line is not None:
        assert f"line {line}" in message


def test_parse_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "Labels.txt"))):
        parse_dagm_labels(tmp_path / "Labels.txt")


# --------------------------------------------------------------------------- samples


def test_make_dataset_train_defects_to_test(dagm_root: Path) -> None:
    samples = make_dagm_dataset(dagm_root, "Class1")
    assert list(samples.columns) == COLUMNS
    assert samples.attrs["task"] == "segmentation"
    train = samples[samples.split == "train"]
    test = samples[samples.split == "test"]
    assert len(train) == COUNTS["num_train"]
    assert (train.label_index == 0).all()
    assert all("/Class1/Train/" in path for path in train.image_path)
    expected_test = COUNTS["num_test_normal"] + COUNTS["num_test_defective"] + COUNTS["num_train_defective"]
    assert len(test) == expected_test
    assert (test.label_index == 1).sum() == COUNTS["num_test_defective"] + COUNTS["num_train_defective"]
    # Defective Train images keep their Train masks.
    moved = test[test.image_path.str.contains("/Train/")]
    assert len(moved) == COUNTS["num_train_defective"]
    assert (moved.label_index == 1).all()
    assert all("/Train/Label/" in path for path in moved.mask_path)
    normal = samples[samples.label_index == 0]
    abnormal = samples[samples.label_index == 1]
    assert (normal.mask_path == "").all()
    assert (normal.label == "good").all()
    assert (abnormal.label == "defect").all()
    for _, row in abnormal.iterrows():
        assert Path(row.mask_path).is_file()
        assert Path(row.mask_path).name == Path(row.image_path).stem + "_label.PNG"
    assert (samples.path == str(dagm_root / "Class1")).all()


def test_make_dataset_drop_train_defects(dagm_root: Path) -> None:
    samples = make_dagm_dataset(dagm_root, "Class1", train_defects="drop")
    assert len(samples[samples.split == "train"]) == COUNTS["num_train"]
    test = samples[samples.split == "test"]
    assert len(test) == COUNTS["num_test_normal"] + COUNTS["num_test_defective"]
    assert not test.image_path.str.contains("/Train/").any()


@pytest.mark.parametrize("split", ["train", "test"])
def test_make_dataset_split_filter_keeps_task(dagm_root: Path, split: str) -> None:
    samples = make_dagm_dataset(dagm_root, "Class1", split=split)
    assert (samples.split == split).all()
    assert samples.attrs["task"] == "segmentation"
    assert list(samples.index) == list(range(len(samples)))


def test_minimal_hand_written_dataset(tmp_path: Path) -> None:
    """A hand-written Test-only class with CRLF line endings."""
    root = tmp_path / "DAGM"
    _minimal_split(root / "Class7" / "Test", EXACT_LABELS.replace("\n", "\r\n"))
    samples = make_dagm_dataset(root, "Class7", normal_split_ratio=0.5)
    assert len(samples) == 3
    defective = samples[samples.label_index == 1]
    assert [Path(p).name for p in defective.image_path] == ["0002.PNG"]
    assert defective.iloc[0].split == "test"
    assert Path(defective.iloc[0].mask_path) == root / "Class7" / "Test" / "Label" / "0002_label.PNG"
    normals = samples[samples.label_index == 0]
    assert sorted(normals.split) == ["test", "train"]


# --------------------------------------------------------------------------- datamodule


def test_datamodule_defaults() -> None:
    datamodule = DAGM()
    assert datamodule.name == "DAGM"
    assert datamodule.category == "Class1"
    assert datamodule.root == Path("./datasets/DAGM")
    assert datamodule.num_workers == 2
    assert datamodule.train_defects == "test"
    assert datamodule.test_split_mode == anomalib_split.TestSplitMode.FROM_DIR
    assert datamodule.val_split_mode == ValSplitMode.FROM_TEST


def test_datamodule_setup_and_dataloaders(dagm_root: Path) -> None:
    datamodule = _datamodule(dagm_root, category="Class1", seed=0)
    datamodule.prepare_data()
    datamodule.setup()
    assert isinstance(datamodule.train_data, DAGMDataset)
    assert datamodule.task == "segmentation"
    assert len(datamodule.train_data) == COUNTS["num_train"]
    assert not datamodule.train_data.has_anomalous
    # Validation comes from the test set, not as a copy of it.
    test_samples = datamodule.test_data.samples
    val_samples = datamodule.val_data.samples
    num_eval = COUNTS["num_test_normal"] + COUNTS["num_test_defective"] + COUNTS["num_train_defective"]
    assert len(test_samples) + len(val_samples) == num_eval
    assert not set(test_samples.image_path) & set(val_samples.image_path)
    assert datamodule.test_data.has_anomalous
    assert datamodule.test_data.has_normal
    assert datamodule.val_data.has_anomalous
    assert datamodule.val_data.has_normal

    batch = next(iter(datamodule.train_dataloader()))
    assert batch.image.shape == (4, 3, SIZE, SIZE)
    assert batch.image.dtype == torch.float32
    assert not batch.gt_label.any()
    assert batch.gt_mask.shape == (4, SIZE, SIZE)
    assert not batch.gt_mask.any()

    labels, masks = [], []
    for batch in datamodule.test_dataloader():
        assert batch.image.shape[1:] == (3, SIZE, SIZE)
        # Grayscale images are read as RGB with three identical channels.
        assert torch.equal(batch.image[:, 0], batch.image[:, 1])
        labels.append(batch.gt_label)
        masks.append(batch.gt_mask)
    gt_label = torch.cat(labels).bool()
    gt_mask = torch.cat(masks).bool()
    assert len(gt_label) == len(test_samples)
    assert gt_label.sum() == (test_samples.label_index == 1).sum()
    per_image = gt_mask.flatten(1).any(dim=1)
    assert torch.equal(per_image, gt_label)

    val_batch = next(iter(datamodule.val_dataloader()))
    assert val_batch.image.shape[1:] == (3, SIZE, SIZE)


def test_datamodule_drop_and_split_modes_as_strings(dagm_root: Path) -> None:
    datamodule = _datamodule(
        dagm_root,
        category="Class1",
        train_defects="drop",
        test_split_mode="from_dir",
        val_split_mode="same_as_test",
    )
    datamodule.setup()
    assert len(datamodule.train_data) == COUNTS["num_train"]
    assert len(datamodule.test_data) == COUNTS["num_test_normal"] + COUNTS["num_test_defective"]
    assert len(datamodule.val_data) == len(datamodule.test_data)


def test_datamodule_without_train_folder(dagm_root: Path) -> None:
    """Normal Test images are split by a seeded ratio; the split is reproducible."""

    def split_of(**kwargs: object) -> tuple[list[str], list[str]]:
        datamodule = _datamodule(dagm_root, category="Class2", val_split_mode="none", **kwargs)
        datamodule.setup()
        return sorted(datamodule.train_data.samples.image_path), sorted(datamodule.test_data.samples.image_path)

    train, test = split_of()
    assert len(train) == NO_TRAIN_NORMALS - 2
    assert len(test) == 2 + NO_TRAIN_DEFECTIVE
    assert not set(train) & set(test)
    assert split_of() == (train, test)
    assert split_of(seed=42) == (train, test)  # seed None means 42 for this split
    others = [split_of(seed=seed)[0] for seed in (0, 1, 2)]
    assert any(other != train for other in others)

    train_half, test_half = split_of(normal_split_ratio=0.5)
    assert len(train_half) == NO_TRAIN_NORMALS // 2
    assert len(test_half) == NO_TRAIN_NORMALS // 2 + NO_TRAIN_DEFECTIVE


def test_datamodule_from_train_validation(dagm_root: Path) -> None:
    datamodule = _datamodule(dagm_root, category="Class1", val_split_mode=ValSplitMode.FROM_TRAIN, seed=3)
    datamodule.setup()
    assert len(datamodule.train_data) + len(datamodule.val_data) == COUNTS["num_train"]


def test_cli_parses_string_arguments() -> None:
    """jsonargparse (the anomalib CLI) accepts the split modes and options as strings."""
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(DAGM, "data")
    config = parser.parse_args([
        "--data.root=/data/DAGM",
        "--data.category=Class3",
        "--data.train_defects=drop",
        "--data.val_split_mode=same_as_test",
        "--data.test_split_mode=from_dir",
        "--data.normal_split_ratio=0.3",
    ])
    datamodule = parser.instantiate_classes(config).data
    assert isinstance(datamodule, DAGM)
    assert datamodule.category == "Class3"
    assert datamodule.train_defects == "drop"
    assert datamodule.val_split_mode == ValSplitMode.SAME_AS_TEST


# --------------------------------------------------------------------------- errors


def test_invalid_arguments_name_argument_and_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"category must be one of Class1, Class2, .*Class10"):
        DAGM(root=tmp_path, category="class1")
    with pytest.raises(ValueError, match=r"train_defects must be 'test' or 'drop'"):
        DAGM(root=tmp_path, train_defects="keep")
    with pytest.raises(ValueError, match=r"normal_split_ratio"):
        DAGM(root=tmp_path, normal_split_ratio=1.0)
    with pytest.raises(ValueError, match=r"category must be one of"):
        make_dagm_dataset(tmp_path, "Class0")
    with pytest.raises(ValueError, match=r"train_defects must be"):
        DAGMDataset(root=tmp_path, train_defects="train")
    assert DAGM_CATEGORIES[-1] == "Class10"


def test_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    datamodule = _datamodule(root, category="Class4")
    with pytest.raises(FileNotFoundError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert str(root) in message
    assert "cannot be downloaded automatically" in message
    assert "Weakly Supervised Learning for Industrial Optical Inspection" in message
    assert "Kaggle" in message
    assert "Zenodo" in message
    assert "ClassN/Train/Label" in message
    with pytest.raises(FileNotFoundError, match=re.escape(str(root))):
        datamodule.setup()


def test_missing_class_lists_found_classes(dagm_root: Path) -> None:
    datamodule = _datamodule(dagm_root, category="Class10")
    for action in (datamodule.prepare_data, datamodule.setup):
        with pytest.raises(FileNotFoundError) as error:
            action()
        message = str(error.value)
        assert str(dagm_root / "Class10") in message
        assert "Classes found" in message
        assert "Class1, Class2" in message


def test_missing_test_folder(dagm_copy: Path) -> None:
    shutil.rmtree(dagm_copy / "Class1" / "Test")
    with pytest.raises(FileNotFoundError, match=re.escape(str(dagm_copy / "Class1" / "Test"))):
        make_dagm_dataset(dagm_copy, "Class1")


@pytest.mark.parametrize("split", ["Train", "Test"])
def test_missing_labels_file(dagm_copy: Path, split: str) -> None:
    labels = dagm_copy / "Class1" / split / "Label" / "Labels.txt"
    labels.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(labels))):
        _datamodule(dagm_copy, category="Class1").setup()


def test_malformed_row_names_file_and_line(dagm_copy: Path) -> None:
    labels = dagm_copy / "Class1" / "Test" / "Label" / "Labels.txt"
    lines = labels.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = lines[3].replace("\t", " ", 1)
    labels.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DAGMFormatError, match=re.escape(f"{labels}, line 4")):
        _datamodule(dagm_copy, category="Class1").setup()


def _first_row(labels: Path, defective: bool) -> tuple[str, str | None]:
    row = next(r for r in parse_dagm_labels(labels) if r.defective == defective)
    return row.image_name, row.label_name


def test_row_names_missing_image(dagm_copy: Path) -> None:
    labels = dagm_copy / "Class1" / "Train" / "Label" / "Labels.txt"
    image_name, _ = _first_row(labels, defective=False)
    (dagm_copy / "Class1" / "Train" / image_name).unlink()
    with pytest.raises(FileNotFoundError) as error:
        make_dagm_dataset(dagm_copy, "Class1")
    assert str(dagm_copy / "Class1" / "Train" / image_name) in str(error.value)
    assert str(labels) in str(error.value)


def test_row_names_missing_label(dagm_copy: Path) -> None:
    labels = dagm_copy / "Class1" / "Test" / "Label" / "Labels.txt"
    _, label_name = _first_row(labels, defective=True)
    assert label_name is not None
    (dagm_copy / "Class1" / "Test" / "Label" / label_name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(dagm_copy / "Class1" / "Test" / "Label" / label_name))):
        make_dagm_dataset(dagm_copy, "Class1")


def test_mask_size_mismatch(dagm_copy: Path) -> None:
    labels = dagm_copy / "Class1" / "Test" / "Label" / "Labels.txt"
    image_name, label_name = _first_row(labels, defective=True)
    mask_path = dagm_copy / "Class1" / "Test" / "Label" / str(label_name)
    _write_png(mask_path, size=SIZE // 2, value=255)
    with pytest.raises(DAGMFormatError) as error:
        _datamodule(dagm_copy, category="Class1").setup()
    message = str(error.value)
    assert str(mask_path) in message
    assert str(dagm_copy / "Class1" / "Test" / image_name) in message
    assert f"{SIZE // 2}x{SIZE // 2}" in message


@pytest.mark.parametrize("what", ["image", "mask"])
def test_unreadable_file(dagm_copy: Path, what: str) -> None:
    labels = dagm_copy / "Class1" / "Test" / "Label" / "Labels.txt"
    image_name, label_name = _first_row(labels, defective=True)
    split_dir = dagm_copy / "Class1" / "Test"
    broken = split_dir / image_name if what == "image" else split_dir / "Label" / str(label_name)
    broken.write_bytes(b"this is not a PNG file")
    with pytest.raises(DAGMFormatError) as error:
        make_dagm_dataset(dagm_copy, "Class1", split="test")
    assert str(broken) in str(error.value)
    assert f"Cannot read {what}" in str(error.value)


@pytest.mark.parametrize("what", ["image", "mask"])
def test_truncated_file(dagm_copy: Path, what: str) -> None:
    """A PNG cut in half has a valid header; it is still refused, by name, before training."""
    labels = dagm_copy / "Class1" / "Test" / "Label" / "Labels.txt"
    image_name, label_name = _first_row(labels, defective=True)
    split_dir = dagm_copy / "Class1" / "Test"
    broken = split_dir / image_name if what == "image" else split_dir / "Label" / str(label_name)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(DAGMFormatError, match=re.escape(f"Cannot read {what} {broken}")):
        _datamodule(dagm_copy, category="Class1").setup()


def test_unlisted_images_are_ignored_with_warning(dagm_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_png(dagm_copy / "Class1" / "Test" / "9999.PNG")
    with caplog.at_level("WARNING", logger="anomalib_recsem.data.dagm"):
        samples = make_dagm_dataset(dagm_copy, "Class1")
    assert not samples.image_path.str.endswith("9999.PNG").any()
    assert "9999.PNG" in caplog.text


def test_too_few_normals_to_split(tmp_path: Path) -> None:
    root = tmp_path / "DAGM"
    labels = "1\n0001\t0\t0001.PNG\t0\t0\t\n0002\t1\t0002.PNG\t0\t0002_label.PNG\n"
    _minimal_split(root / "Class5" / "Test", labels)
    with pytest.raises(DAGMFormatError, match="at least 2"):
        make_dagm_dataset(root, "Class5")
