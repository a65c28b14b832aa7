"""Square tiles instead of a squashed image: does keeping the aspect ratio find the thin defects?

anomalib resizes every image to one square, so a wide image shrinks more across than down and
a thin defect that runs down it can fall below a pixel. This script tries the alternative for
datasets of mixed shapes: each image is resized, keeping its aspect ratio, until its shorter
side is ``--short-side``, and cut into overlapping square tiles of the model's size, placed
evenly from edge to edge. ``write`` stores the tiles of every split in MVTec AD layout, so the
stock pipeline (and ``curves.py --root``) trains on them with no resize left to do. ``score``
runs each checkpoint trained on tiles over the original test images tile by tile, stitches
the tiles' anomaly maps (overlaps averaged) and scores the whole map with RecSem's rule, so its
image AUROC compares with a model trained on the squashed images, per defect type and within
each half by stored size (``tiles_<category>.csv``), beside how wide each defect type's marked
regions are as stored, squashed and tiled (``mask_geometry_<category>.csv``; both in
``TILES.md``). The curves' own points score single tiles, each labelled with its image's folder
even where it shows none of the defect: read the stitched scores instead. Commands::

    uv run python benchmarks/tiles.py write --output /tmp/tiles256       # magnetic_tile, short side 256
    uv run python benchmarks/curves.py --models recsem --seeds 0 1 --steps 1500 --every 500 --eval-stride 8 \\
        --root /tmp/tiles256 --output benchmarks/results/tiles
    uv run python benchmarks/tiles.py score --output benchmarks/results/tiles
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from anomalib.data.utils import read_image  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms.v2.functional import InterpolationMode, resize  # noqa: E402

from anomalib_recsem import RecSem  # noqa: E402
from anomalib_recsem.models.recsem.torch_model import default_score_kernel_size, top_k_mean_filtered  # noqa: E402
from benchmarks import harness  # noqa: E402

COLUMNS = ("model", "seed", "step", "short_side", "tile", "half", "defect_type", "images", "good_images",
           "image_AUROC", "pixel_AUROC", "window", "category", "device", "finished_at")

GEOMETRY_COLUMNS = ("half", "defect_type", "images", "vertical", "width_stored", "width_square", "width_tiled")


def tile_starts(length: int, tile: int) -> list[int]:
    """Start of each tile along a side of ``length`` px: as few tiles as cover it, evenly spaced, edge to edge.

    >>> tile_starts(128, 128), tile_starts(300, 128)
    ([0], [0, 86, 172])
    """
    if length < tile:
        msg = f"a side of {length} px cannot hold a tile of {tile} px"
        raise ValueError(msg)
    count = math.ceil(length / tile)
    if count == 1:
        return [0]
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def aspect_resize(image: torch.Tensor, short_side: int, mask: bool = False) -> torch.Tensor:
    """``image`` ``(C, H, W)`` resized so its shorter side is ``short_side``, aspect ratio kept.

    Images are resized bilinearly with antialiasing, as the models' pre-processing does;
    masks by nearest neighbour, so they stay binary.
    """
    height, width = image.shape[-2:]
    scale = short_side / min(height, width)
    size = [max(short_side, round(height * scale)), max(short_side, round(width * scale))]
    if mask:
        return resize(image, size, interpolation=InterpolationMode.NEAREST)
    return resize(image, size, antialias=True)


def tiles(image: torch.Tensor, tile: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The square tiles of ``image`` ``(C, H, W)`` as ``(T, C, tile, tile)``, and each tile's ``(top, left)``."""
    corners = [(top, left) for top in tile_starts(image.shape[-2], tile) for left in tile_starts(image.shape[-1], tile)]
    return torch.stack([image[:, top:top + tile, left:left + tile] for top, left in corners]), corners


def stitch(maps: torch.Tensor, corners: Sequence[tuple[int, int]], size: tuple[int, int]) -> torch.Tensor:
    """The tiles' maps ``(T, tile, tile)`` placed back into one ``size`` map, overlaps averaged."""
    total, count = torch.zeros(size), torch.zeros(size)
    side = maps.shape[-1]
    for tile_map, (top, left) in zip(maps, corners, strict=True):
        total[top:top + side, left:left + side] += tile_map
        count[top:top + side, left:left + side] += 1
    return total / count


def _mask_path(image_path: str | Path, kind: str) -> Path:
    """The MVTec AD-layout mask of a defective image: ``<category>/ground_truth/<kind>/<stem>_mask.png``."""
    return Path(image_path).parents[2] / "ground_truth" / kind / f"{Path(image_path).stem}_mask.png"


def _read(path: Path) -> torch.Tensor:
    """An image file as a plain ``(C, H, W)`` tensor in ``[0, 1]``, RGB, read as anomalib's datasets read it."""
    return read_image(path, as_tensor=True).as_subclass(torch.Tensor)


def _save(image: torch.Tensor, path: Path) -> None:
    """Save ``(C, H, W)`` in ``[0, 1]`` as an 8-bit PNG (grey when the channels are equal)."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    grey = bool((array == array[..., :1]).all())
    Image.fromarray(array[..., 0] if grey else array).save(path)


def write(source: Path, category: str, output: Path, short_side: int, tile: int) -> int:
    """Write every image of ``source/category`` as tiles in MVTec AD layout under ``output/category``.

    A defective tile keeps its image's folder, even where the tile itself shows none of the
    defect: its mask says so. Returns the number of tiles written.
    """
    paths = sorted((source / category).glob("t*/*/*"))  # train/ and test/
    if not paths:
        msg = f"no images in {source / category}/train or test: is --root an MVTec AD-layout root?"
        raise FileNotFoundError(msg)
    written = 0
    for path in paths:
        split, kind = path.parent.parent.name, path.parent.name
        image = aspect_resize(_read(path), short_side)
        image_tiles, corners = tiles(image, tile)
        mask_tiles = None
        if kind != "good":
            mask = _read(_mask_path(path, kind))[:1]
            mask_tiles, _ = tiles(aspect_resize(mask, short_side, mask=True), tile)
        for index, (top, left) in enumerate(corners):
            name = f"{path.stem}_y{top}_x{left}"
            (output / category / split / kind).mkdir(parents=True, exist_ok=True)
            _save(image_tiles[index], output / category / split / kind / f"{name}.png")
            if mask_tiles is not None:
                masks_folder = output / category / "ground_truth" / kind
                masks_folder.mkdir(parents=True, exist_ok=True)
                _save(mask_tiles[index].expand(3, -1, -1), masks_folder / f"{name}_mask.png")
            written += 1
    return written


@torch.no_grad()
def stitched_maps(module: RecSem, data: harness.EvaluationSet, short_side: int) -> tuple[list[torch.Tensor],
                                                                                        list[torch.Tensor | None]]:
    """Each test image's anomaly map from its tiles, and its mask, both at the tiled scale."""
    module.eval()
    tile = module.model.image_size[0]
    maps, masks = [], []
    for path, kind in zip(data.image_paths, data.defect_types, strict=True):
        image = aspect_resize(_read(Path(path)), short_side)
        image_tiles, corners = tiles(image, tile)
        output, _ = module.model.detect(image_tiles)
        maps.append(stitch(output.anomaly_map.reshape(-1, tile, tile).float(), corners, image.shape[-2:]))
        masks.append(None if kind == "good" else aspect_resize(_read(_mask_path(path, kind))[:1], short_side,
                                                                mask=True)[0] > 0.5)
    return maps, masks


def image_scores(maps: list[torch.Tensor], window: int) -> torch.Tensor:
    """``(N,)`` RecSem's image score of each stitched map: mean of its 5 largest values after a ``window`` px filter."""
    return torch.stack([top_k_mean_filtered(anomaly_map[None, None], window, 5)[0] for anomaly_map in maps])


def hardest_images(data: harness.EvaluationSet, maps: list[torch.Tensor], masks: list[torch.Tensor | None],
                   window: int, short_side: int, path: Path, count: int = 3) -> None:
    """Save image | stitched map | mask of the top-scoring defect-free and lowest-scoring defective images.

    Rows are scaled to one height; each map to its own maximum.
    """
    normal = torch.tensor([kind == "good" for kind in data.defect_types])
    rows = []
    for index in harness.hardest(image_scores(maps, window), normal, count):
        image = aspect_resize(_read(Path(data.image_paths[index])), short_side)
        anomaly_map = maps[index] / maps[index].max().clamp(min=1e-6)
        mask = masks[index] if masks[index] is not None else torch.zeros_like(anomaly_map, dtype=torch.bool)
        row = torch.cat([image, anomaly_map.expand(3, -1, -1), mask.float().expand(3, -1, -1)], dim=2)
        rows.append(resize(row, [short_side, round(row.shape[-1] * short_side / row.shape[-2])], antialias=True))
    width = max(row.shape[-1] for row in rows)
    grid = torch.cat([torch.nn.functional.pad(row, (0, width - row.shape[-1])) for row in rows], dim=1)
    _save(grid, path)


def score_rows(data: harness.EvaluationSet, maps: list[torch.Tensor], masks: list[torch.Tensor | None],
               window: int) -> list[dict[str, Any]]:
    """Image AUROC (RecSem's rule with a ``window`` px filter on the stitched maps) and pixel AUROC.

    Rows per defect type and for all types together, over the whole test set and, where the
    stored sizes differ, within each half by stored size (as :func:`harness.evaluate_by_stored_size`).
    """
    score = image_scores(maps, window)
    normal = torch.tensor([kind == "good" for kind in data.defect_types])
    rows = []
    for half, inside in [("all", torch.ones_like(normal)), *harness.stored_size_halves(data)]:
        for name, chosen in [("all", ~normal), *harness.images_by_defect_type(data)]:
            pair = inside & (chosen | normal)
            found = (inside & chosen).nonzero().flatten()
            pixel_auroc = math.nan if len(found) == 0 else harness.auroc(
                torch.cat([maps[index].flatten() for index in found]),
                torch.cat([masks[index].flatten() for index in found]))
            rows.append({"half": half, "defect_type": name, "images": len(found),
                         "good_images": int((inside & normal).sum()),
                         "image_AUROC": harness.auroc(score[pair], chosen[pair]), "pixel_AUROC": pixel_auroc,
                         "window": window})
    return rows


def mask_geometry(data: harness.EvaluationSet, tile: int, short_side: int) -> list[dict[str, Any]]:
    """How wide each defect type's marked regions are as stored, squashed to one square, and tiled.

    A region's width is its marked pixels over the longer side of its bounding box (a line's
    thickness, a blob's mean chord). Across a region runs the bounding box's shorter axis,
    which the square resize to ``tile`` scales by ``tile`` over the image's side along that
    axis, and the aspect-kept resize by ``short_side`` over the image's shorter side.

    Returns:
        list[dict[str, Any]]: Per half by stored size (and ``all``) and defect type: ``images``
        with a marked region, the share whose region is taller than wide (``vertical``), and
        the mean width ``width_stored``, ``width_square`` and ``width_tiled`` in pixels.
    """
    # Per image: regions taller than wide, and the width as stored, squashed and tiled (NaN: no region).
    measures = torch.full((len(data.image_paths), 4), math.nan, dtype=torch.float64)
    for index, (path, kind) in enumerate(zip(data.image_paths, data.defect_types, strict=True)):
        if kind == "good":
            continue
        mask = _read(_mask_path(path, kind))[0] > 0.5
        rows, columns = mask.nonzero(as_tuple=True)
        if len(rows) == 0:
            continue
        height, width = int(rows.max() - rows.min()) + 1, int(columns.max() - columns.min()) + 1
        across = len(rows) / max(height, width)
        vertical = height > width  # then it runs down the image and its width lies along the image's width
        side_across = mask.shape[1] if vertical else mask.shape[0]
        measures[index] = torch.tensor([vertical, across, across * tile / side_across,
                                        across * short_side / min(mask.shape)])
    measured = ~measures[:, 0].isnan()
    out = []
    for half, inside in [("all", torch.ones_like(measured)), *harness.stored_size_halves(data)]:
        for kind, of_kind in harness.images_by_defect_type(data):
            chosen = inside & of_kind & measured
            if not chosen.any():
                continue
            mean = measures[chosen].mean(0).tolist()
            out.append({"half": half, "defect_type": kind, "images": int(chosen.sum()), "vertical": mean[0],
                        "width_stored": mean[1], "width_square": mean[2], "width_tiled": mean[3]})
    return out


def score(args: argparse.Namespace) -> None:
    """Score every checkpoint in ``args.output/checkpoints`` on the original test images, tile by tile."""
    data = harness.EvaluationSet(args.root, args.category, args.tile)  # labels, paths and sizes; images unused
    checkpoints = sorted((args.output / "checkpoints").glob(f"{args.category}_*_seed*.ckpt"))
    if not checkpoints:
        msg = (f"no {args.category} checkpoints in {args.output / 'checkpoints'}: train on the tiles first "
               f"(curves.py --root <the tiled dataset> --output {args.output})")
        raise FileNotFoundError(msg)
    rows = []
    for checkpoint in checkpoints:
        model_name, seed = checkpoint.stem.removeprefix(f"{args.category}_").rsplit("_seed", 1)
        module = RecSem.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
        if tuple(module.model.image_size) != (args.tile, args.tile):
            msg = f"{checkpoint} was trained at {tuple(module.model.image_size)} px, not on --tile {args.tile} px tiles"
            raise ValueError(msg)
        step = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
        maps, masks = stitched_maps(module, data, args.short_side)
        fixed = {"model": model_name, "seed": int(seed), "step": step, "short_side": args.short_side,
                 "tile": args.tile, "category": args.category, "device": harness.device_name("cpu"),
                 "finished_at": harness.now()}
        hardest_images(data, maps, masks, module.model.score_kernel_size, args.short_side,
                       args.output / f"hardest_{args.category}_{model_name}_seed{seed}.png")
        # The model's own window (a share of a tile), and the paper's share of the whole image.
        for window in sorted({module.model.score_kernel_size,
                              default_score_kernel_size((args.short_side, args.short_side))}):
            rows += [fixed | row for row in score_rows(data, maps, masks, window)]
    harness.write_rows(args.output / f"tiles_{args.category}.csv", rows, COLUMNS)
    harness.write_rows(args.output / f"mask_geometry_{args.category}.csv",
                       mask_geometry(data, args.tile, args.short_side), GEOMETRY_COLUMNS)
    summarise(args.output, args.category)


def summarise(folder: Path, category: str) -> Path:
    """Write ``TILES.md`` in ``folder`` from its ``tiles_<category>.csv`` and ``mask_geometry_<category>.csv``."""
    rows = harness.read_rows(folder / f"tiles_{category}.csv")
    geometry = harness.read_rows(folder / f"mask_geometry_{category}.csv")
    short_side, tile = rows[0]["short_side"], rows[0]["tile"]
    types = list(dict.fromkeys(row["defect_type"] for row in rows))  # "all" first, then the types in order
    lines = [
        "# Tiles: models trained on square tiles, scored on whole test images", "",
        (f"Written by `benchmarks/tiles.py score` from `tiles_{category}.csv`: each test image resized to a short "
         f"side of {short_side} px (aspect ratio kept), cut into {tile} px tiles, the tiles' maps stitched and scored "
         "with RecSem's rule; `window`: the mean filter's side on the stitched map. Halves: split at the median "
         "stored side, each half's defective images against its own defect-free ones. `CURVES.md` beside it scores "
         "single tiles, each labelled with its image's folder even where it shows none of the defect, so its image "
         "AUROC does not compare with a squashed model's; these do. `hardest_*.png`: the defect-free images each "
         "model scores highest and the defective ones it scores lowest (image, stitched map, mask)."), "",
        "## Image AUROC", "",
    ]
    table = []
    for key in dict.fromkeys((row["model"], row["seed"], row["step"], row["window"], row["half"]) for row in rows):
        cells = {row["defect_type"]: row for row in rows
                 if (row["model"], row["seed"], row["step"], row["window"], row["half"]) == key}
        table.append([*key, *(f"{float(cells[name]['image_AUROC']):.3f}" for name in types)])
    lines += harness.markdown_table(["model", "seed", "step", "window", "half", *types], table)
    lines += [
        "", f"## How wide the defects are (`mask_geometry_{category}.csv`)", "",
        (f"Mean width of each type's marked regions in pixels (marked pixels over the bounding box's longer side), "
         f"as stored, after the square resize to {tile} px, and after the resize to a short side of {short_side} px "
         "that the tiles are cut from; `vertical`: the share of regions taller than wide."), "",
        *harness.markdown_table(
            ["half", "defect type", "images", "vertical", "as stored", "square", "tiled"],
            ([row["half"], row["defect_type"], row["images"], f"{float(row['vertical']):.2f}",
              f"{float(row['width_stored']):.1f}", f"{float(row['width_square']):.1f}",
              f"{float(row['width_tiled']):.1f}"] for row in geometry)),
    ]
    path = folder / "TILES.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line: ``write`` or ``score``, the dataset, the tile geometry and the folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("write", "score"))
    parser.add_argument("--root", type=Path, default=harness.SHARED_DATASETS, help="MVTec AD-layout root")
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--short-side", type=int, default=256, help="each image's shorter side before tiling")
    parser.add_argument("--tile", type=int, default=128, help="tile side: the model's image size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, required=True,
                        help="write: the tiled dataset's root; score: the curves' output folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the tiled dataset, or score the checkpoints trained on it."""
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    if args.command == "write":
        print(f"{write(args.root, args.category, args.output, args.short_side, args.tile)} tiles "
              f"in {args.output / args.category}")
    else:
        score(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
