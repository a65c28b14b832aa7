"""A second real dataset: ELPV solar cells, written in MVTec AD layout with image labels only.

ELPV (Deitsch et al., "Automatic classification of defective photovoltaic module cells in
electroluminescence images", Solar Energy 2019; data CC BY-NC-SA 4.0) holds 2 624 grey 300x300
electroluminescence images of mono- and polycrystalline solar cells, each labelled by experts
with the probability that it is defective (0, 1/3, 2/3 or 1): cracks, broken fingers and dark,
inactive regions, on a surface with busbars and, for polycrystalline cells, a grain texture.
Nothing in this project was tuned on it, so it checks that what was chosen on magnetic_tile
holds for other surface defects.

The data ships as the PyPI package ``elpv-dataset`` (90 MB, in the ``elpv`` dependency group,
not installed by default). This script writes it, unchanged pixel for pixel, as category
``elpv`` of an MVTec AD-layout root that ``curves.py --root <root> --category elpv`` reads
(with anomalib's ``Folder``, since there are no masks)::

    uv run --group elpv python benchmarks/elpv.py                 # writes datasets/elpv (ignored by git)
    uv run python benchmarks/curves.py --root datasets --category elpv --output benchmarks/results/elpv

Split: cells with probability 0 are defect-free; every fourth of them (sorted by name) goes to
``test/good``, the rest to ``train/good``; cells with probability 1 go to ``test/defective``. The
uncertain ones (1/3 and 2/3) are left out: neither label can be trusted for them.

Defective cells are darker as a whole, so the script also writes the bar an image AUROC on ELPV
has to pass: the test set ranked by darkness alone (``grey_level_elpv.csv`` in ``--output``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Columns of ``grey_level_<category>.csv``.
GREY_LEVEL_COLUMNS = ("category", "score", "images", "good_images", "image_AUROC")
#: Every n-th defect-free cell (sorted by file name) is held out for the test set.
TEST_STRIDE = 4


def labels_file() -> Path:
    """``labels.csv`` of the installed ``elpv-dataset`` package (its images sit beside it).

    Raises:
        ModuleNotFoundError: If the package is not installed, with the command that installs it.
    """
    try:
        import elpv_dataset  # noqa: PLC0415
    except ModuleNotFoundError as error:
        msg = "ELPV comes from the package elpv-dataset: run this script with `uv run --group elpv`."
        raise ModuleNotFoundError(msg) from error
    return Path(elpv_dataset.__file__).parent / "data" / "labels.csv"


def read_labels(labels: Path) -> list[tuple[str, float]]:
    """``(image path relative to labels.csv, defect probability)`` per line of ELPV's ``labels.csv``.

    Raises:
        ValueError: If a line is not ``<path> <probability> <type>``, naming the file and line.
    """
    rows = []
    for number, line in enumerate(labels.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            path, probability, _cell_type = fields
            rows.append((path, float(probability)))
        except ValueError as error:
            msg = f"{labels}, line {number}: expected '<image path> <probability> <cell type>', got {line!r}."
            raise ValueError(msg) from error
    return rows


def prepare(root: Path, labels: Path | None = None, category: str = "elpv") -> dict[str, int]:
    """Write ELPV as ``root/category`` (MVTec AD layout, no masks), replacing what was there.

    Args:
        root: The MVTec AD-layout root to write into.
        labels: ELPV's ``labels.csv`` (default: the installed package's).
        category: Folder name of the category.

    Returns:
        dict[str, int]: Images written per folder (``train/good``, ``test/good``, ``test/defective``).
    """
    labels = labels or labels_file()
    rows = sorted(read_labels(labels))
    normal = [path for path, probability in rows if probability == 0]
    folders = {
        "train/good": [path for index, path in enumerate(normal) if index % TEST_STRIDE != 0],
        "test/good": normal[::TEST_STRIDE],
        "test/defective": [path for path, probability in rows if probability == 1],
    }
    target = root / category
    shutil.rmtree(target, ignore_errors=True)
    for folder, paths in folders.items():
        (target / folder).mkdir(parents=True)
        for path in paths:
            shutil.copyfile(labels.parent / path, target / folder / Path(path).name)
    return {folder: len(paths) for folder, paths in folders.items()}


def grey_level_row(root: Path, category: str = "elpv") -> dict[str, str | int | float]:
    """Image AUROC of ``root/category``'s test set ranked by darkness alone.

    Each test image, as stored, is scored by its negative mean grey level (darker = more
    anomalous); every folder of ``test/`` but ``good`` is defective.

    Raises:
        FileNotFoundError: If ``root/category/test`` holds no PNG images, naming the folder.
    """
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from benchmarks import harness  # noqa: PLC0415

    paths = sorted((root / category / "test").glob("*/*.png"))
    if not paths:
        msg = f"{root / category / 'test'} holds no <folder>/*.png images: write the category first (elpv.py)."
        raise FileNotFoundError(msg)
    darkness, labels = [], []
    for path in paths:
        with Image.open(path) as image:
            darkness.append(-float(np.asarray(image.convert("L"), dtype=np.float64).mean()))
        labels.append(int(path.parent.name != "good"))
    label_tensor = torch.tensor(labels)
    return {"category": category, "score": "negative mean grey level", "images": len(paths),
            "good_images": int((label_tensor == 0).sum()),
            "image_AUROC": harness.auroc(torch.tensor(darkness), label_tensor)}


def main(argv: Sequence[str] | None = None) -> int:
    """Write the category, say how many images went where, and write the grey-level bar."""
    from benchmarks import harness  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "datasets", help="MVTec AD-layout root to write into")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "elpv",
                        help="folder for grey_level_elpv.csv")
    args = parser.parse_args(argv)
    counts = prepare(args.root)
    print(f"{args.root / 'elpv'}: " + ", ".join(f"{folder} {count}" for folder, count in counts.items()))  # noqa: T201
    row = grey_level_row(args.root)
    harness.write_rows(args.output / "grey_level_elpv.csv", [row], GREY_LEVEL_COLUMNS)
    print(f"test set ranked by darkness alone: image AUROC {row['image_AUROC']:.3f}")  # noqa: T201
    return 0

if __name__ == "__main__":
    sys.exit(main())
