"""Which defects the learning-curve models find: image and pixel AUROC per defect type.

Loads the checkpoints that ``curves.py`` keeps (its last point of each model and seed),
scores the whole test set and writes one row per (model, seed, defect type) to
``defect_types_<category>.csv`` and a table to ``DEFECT_TYPES.md``, with a picture per
checkpoint of what the model does with its hardest images: the defect-free images it scores
highest and the defective ones it scores lowest (input, reconstruction, anomaly map, mask).
The same maps are also scored by several rules (``score_window_<category>.csv``): RecSem's
mean of the five largest values after a mean filter, at several filter sides, and the maximum.
And the discriminator is asked what it reads (``stand_in_<category>.csv``): the test set scored
again with its reconstruction replaced by the input itself (no difference to find) and by the
mean training image (a reconstruction that ignores the input). A discriminator that compares
its two images goes quiet with the input; one that scores the same segments the input alone.
And what the reconstruction removes (``removal_<category>.csv``): synthetic defects drawn into the
defect-free test images, of the kind both models train on and of four kinds they never see,
beside the real defect types, each with how far it stands out from its surroundings.
And, where the stored images differ in size, what the resize costs (``by_stored_size_<category>.csv``):
image AUROC within the smaller and the larger half of the test images, each against the
defect-free images of its own half.

Image AUROC is each
type's images against the defect-free ones; pixel AUROC is within that type's images (a
pooled pixel AUROC is dominated by the types with the largest masks). Commands::

    uv run python benchmarks/defect_types.py                  # magnetic_tile, every checkpoint found
    uv run python benchmarks/defect_types.py --models recsem  # one model's checkpoints
    uv run python benchmarks/defect_types.py --smoke --output /tmp/curves   # after curves.py --smoke
    uv run python benchmarks/defect_types.py --summarise-only --output benchmarks/results/recipe  # the Markdown
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
from lightning.pytorch import LightningModule  # noqa: E402
from torchvision.transforms.v2.functional import gaussian_blur  # noqa: E402

from anomalib_recsem import RecSem, SyntheticDefect  # noqa: E402
from anomalib_recsem.models.recsem.torch_model import top_k_mean_filtered  # noqa: E402
from benchmarks import harness  # noqa: E402

COLUMNS = ("model", "seed", "step", "defect_type", "images", "image_AUROC", "pixel_AUROC", "mask_share",
           "median_score", "category", "image_size", "device", "finished_at")
#: Every n-th training image is scored too: if the defect-free training images score like the
#: test ones, a model that confuses normal surface with defects is underfitted, not overfitted.
TRAIN_STRIDE = 4
#: Image scores from each map with RecSem's rule (mean of the 5 largest values of the mean-filtered
#: map) at these filter sides; 1 and top 1 is Draem's own rule (the map's maximum).
SCORE_WINDOWS = (1, 5, 11, 21, 31)
WINDOW_COLUMNS = ("model", "seed", "step", "rule", "window", "top_k", "image_AUROC", "category", "image_size",
                  "device", "finished_at")
#: What the discriminator gets in place of the reconstruction, and how it then scores.
STAND_IN_COLUMNS = ("model", "seed", "step", "discriminator_gets", "image_AUROC", "pixel_AUROC",
                    "normal_map_mean", "category", "image_size", "device", "finished_at")

#: Image AUROC within each half of the test images by stored size.
SIZE_COLUMNS = ("model", "seed", "step", "half", "sides", "defect_type", "images", "good_images", "image_AUROC",
                "category", "image_size", "device", "finished_at")
#: What the reconstruction removes, per kind of defect (synthetic or real).
REMOVAL_COLUMNS = ("model", "seed", "step", "defects", "origin", "images", "contrast", "mask_share",
                   "residual_pixel_AUROC", "pixel_AUROC", "removed", "category", "image_size", "device", "finished_at")


def load(model_name: str, checkpoint: Path, args: argparse.Namespace) -> LightningModule:
    """The module a curve checkpoint holds (RecSem rebuilds itself; Draem is rebuilt at the curve's widths).

    Every curve but ``draem`` is RecSem, variants since removed from ``curves.py`` included.
    """
    if model_name != "draem":
        return RecSem.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    width = harness.draem_width(args.width, args.preset)
    module = harness.draem(args.image_size, width=width if width > 0 else None, dtd=args.textures)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    missing, _ = module.load_state_dict(state, strict=False)
    if [key for key in missing if key.startswith("model.")]:
        msg = f"{checkpoint} does not hold Draem's networks at width {width}: missing {missing[:3]} ..."
        raise ValueError(msg)
    return module


def hardest_images(module: LightningModule, data: harness.EvaluationSet, scores: torch.Tensor, path: Path,
                   count: int = 3) -> None:
    """Save input | reconstruction | map | mask of the top-scoring normal and lowest-scoring defective images."""
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    was_training = module.training
    module.eval()
    chosen = harness.hardest(scores, data.labels == 0, count)
    with torch.no_grad():
        output, reconstruction = harness.predict(module, data.images[chosen])
    module.train(was_training)
    maps = output.anomaly_map.float().reshape(len(chosen), 1, *data.images.shape[-2:])
    maps = maps / maps.flatten(1).amax(1).clamp(min=1e-6).view(-1, 1, 1, 1)  # each map to its own maximum
    panels = [data.images[chosen], reconstruction.float().clamp(0, 1), maps.expand(-1, 3, -1, -1)]
    if data.masks is not None:
        panels.append(data.masks[chosen].float().unsqueeze(1).expand(-1, 3, -1, -1))
    grid = torch.cat([torch.cat(list(panel), dim=1) for panel in panels], dim=2)  # rows: images; columns: panels
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


def synthetic_defects(normal: torch.Tensor, textures: Path | None,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Defect-free images with synthetic defects of five kinds, each kind in the same places.

    The first kind is what both models train on: texture photos blended in with
    :class:`SyntheticDefect`. The others are common on real surfaces and neither model trains
    on them, so a reconstruction that removes them has learnt what the surface looks like, not
    what the training defects look like: a darker or brighter region (stains, burns, holes), another
    image's surface (foreign matter of the same material), a blurred region (smudges, polish)
    and grain (contamination).

    Args:
        normal: Defect-free images in ``[0, 1]``, ``(N, C, H, W)``, ``N >= 2``.
        textures: Texture photos for the first kind; ``None``: RecSem's built-in bank.
        seed: Seed of the masks, textures and strengths.

    Returns:
        tuple: The clean images (light-augmented as in training) ``(N, C, H, W)``, the defect
        masks ``(N, H, W)`` (bool, one Perlin mask per image, shared by all kinds) and the
        defective images per kind, each ``(N, C, H, W)``.
    """
    count, _, height, width = normal.shape
    generator = torch.Generator().manual_seed(seed)
    batch = SyntheticDefect(anomaly_source=textures, seed=seed).synthesize(normal, torch.ones(count, dtype=torch.bool))
    clean, mask = batch.clean, batch.mask.bool()

    def inside(defective: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, defective.clamp(0, 1), clean)

    darker_or_brighter = torch.where(torch.rand(count, 1, 1, 1, generator=generator) < 0.5, 0.45, 1.6)  # noqa: PLR2004
    opacity = torch.empty(count, 1, 1, 1).uniform_(0.1, 0.5, generator=generator)
    return clean, mask.squeeze(1), {
        "texture photos (as trained)": batch.defective,
        "darker or brighter": inside(clean * darker_or_brighter),
        "another image's surface": inside(torch.lerp(clean.roll(1, 0), clean, opacity)),
        "blurred": inside(_smooth(clean, min(height, width) / 42)),  # 3 px at 128 px
        # the same noise in every channel: coloured grain on a grey surface would be a cue of its own
        "grain": inside(clean + 0.15 * torch.randn(count, 1, height, width, generator=generator)),
    }


def _smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels, the kernel cut at 3 sigma."""
    side = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(images, [side, side], [sigma, sigma])


def local_contrast(images: torch.Tensor) -> torch.Tensor:
    """How far each pixel's grey level is from its surroundings' (a Gaussian of a 16th of the side), ``(N, H, W)``."""
    grey = images.mean(1, keepdim=True)
    return (grey - _smooth(grey, min(images.shape[-2:]) / 16)).abs().squeeze(1)


def _real_types(data: harness.EvaluationSet) -> list[tuple[str, torch.Tensor]]:
    """:func:`harness.images_by_defect_type` where ``data`` has masks; none without (nothing to measure a defect's pixels by)."""
    return [] if data.masks is None else harness.images_by_defect_type(data)


def defect_contrasts(data: harness.EvaluationSet,
                     synthetic: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]) -> dict[str, float]:
    """How far each synthetic kind's and real defect type's pixels stand out, by name.

    A defect's mean :func:`local_contrast` over that of the defect-free test images (1: it
    stands out no more than the surface's own texture). It depends on the images alone, so a
    run computes it once for all its checkpoints.

    Args:
        data: The test set.
        synthetic: :func:`synthetic_defects` of ``data``'s defect-free images.
    """
    surface = float(local_contrast(data.images[data.labels == 0]).mean())
    _, masks, kinds = synthetic
    contrasts = {name: float(local_contrast(defective)[masks].mean()) / surface for name, defective in kinds.items()}
    for name, chosen in _real_types(data):
        contrasts[name] = float(local_contrast(data.images[chosen])[data.masks[chosen]].mean()) / surface
    return contrasts


def removal_rows(module: LightningModule, data: harness.EvaluationSet, test: harness.Predictions,
                 synthetic: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]],
                 contrasts: dict[str, float]) -> list[dict[str, Any]]:
    """What the reconstruction removes: one row per synthetic kind (:func:`synthetic_defects`) and real defect type.

    ``contrast`` comes from :func:`defect_contrasts`. ``residual_pixel_AUROC`` ranks the
    defect's pixels by ``|input - reconstruction|`` alone, ``pixel_AUROC`` by the anomaly map.
    ``removed`` (synthetic kinds only) is the share of the defect's change to the image that
    the reconstruction does not follow: ``1 - |rec(defective) - rec(clean)| / |defective -
    clean|`` over the defect's pixels.

    Args:
        module: RecSem or Draem.
        data: The test set.
        test: ``module``'s predictions for ``data.images``.
        synthetic: :func:`synthetic_defects` of ``data``'s defect-free images.
        contrasts: :func:`defect_contrasts` of ``data`` and ``synthetic``.
    """

    def row(defects: str, origin: str, images: torch.Tensor, masks: torch.Tensor, maps: torch.Tensor,
            reconstructions: torch.Tensor, removed: float = math.nan) -> dict[str, Any]:
        residual = (images - reconstructions).abs().mean(1)
        return {"defects": defects, "origin": origin, "images": len(images), "contrast": contrasts[defects],
                "mask_share": float(masks.float().mean()), "pixel_AUROC": harness.auroc(maps.flatten(), masks.flatten()),
                "residual_pixel_AUROC": harness.auroc(residual.flatten(), masks.flatten()), "removed": removed}

    clean, masks, kinds = synthetic
    of_clean = harness.predictions(module, clean).reconstructions
    rows = []
    for name, defective in kinds.items():
        made = harness.predictions(module, defective)
        change = (defective - clean).abs().mean(1)[masks].sum()
        followed = (made.reconstructions - of_clean).abs().mean(1)[masks].sum()
        origin = "synthetic, trained on" if name.endswith("(as trained)") else "synthetic, never trained on"
        rows.append(row(name, origin, defective, masks, made.maps, made.reconstructions,
                        1 - float(followed / change)))
    for name, chosen in _real_types(data):
        rows.append(row(name, "real", data.images[chosen], data.masks[chosen], test.maps[chosen],
                        test.reconstructions[chosen]))
    return rows


def merged(path: Path, scored: list[dict[str, Any]], columns: Sequence[str],
           checkpoints: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Write ``scored`` to the CSV at ``path`` and return what it then holds, in checkpoint order.

    The rows of the ``checkpoints`` scored now, ``(model, seed)``, replace theirs in the file;
    every other row is kept, since checkpoints are not committed and a later machine may hold
    only some of them. Nothing is written when there is no row at all. The rows come back as
    read from the file, so the tables round kept and new rows alike.
    """
    kept = [row for row in harness.read_rows(path) if (row["model"], int(row["seed"])) not in checkpoints]
    rows = sorted([*kept, *scored], key=checkpoint_order)
    if not rows:
        return []
    harness.write_rows(path, rows, columns)
    return read_parsed(path)


def checkpoint_order(row: dict[str, Any]) -> str:
    """The sort key of a row: its checkpoint's name (``<model>_seed<seed>``)."""
    return f"{row['model']}_seed{row['seed']}"


def read_parsed(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV, each cell as the number it was written from (none if it does not exist)."""
    return [{key: _parsed(value) for key, value in row.items()} for row in harness.read_rows(path)]


def _parsed(cell: str) -> int | float | str:
    """A CSV cell as the number it was written from, or the text itself."""
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def size_table(rows: Sequence[dict[str, Any]], csv_name: str) -> list[str]:
    """Markdown lines for :func:`harness.evaluate_by_stored_size`'s rows: one line per model, seed and half."""
    if not rows:
        return []
    types = list(dict.fromkeys(row["defect_type"] for row in rows))
    lines = ["", "## Image AUROC by stored image size", "",
             "The test images split at the median of their stored side (geometric mean of width and height), "
             "so the larger half is the one the resize shrinks most; each half's defective images are scored "
             f"against the defect-free images of the same half, in `{csv_name}`. Defective images per cell in "
             "brackets.", ""]
    table = []
    for key in dict.fromkeys((r["model"], r["seed"], r["step"], r["half"]) for r in rows):
        mine = {r["defect_type"]: r for r in rows if (r["model"], r["seed"], r["step"], r["half"]) == key}
        first = next(iter(mine.values()))
        table.append([*key, first["sides"], first["good_images"],
                      *(f"{mine[t]['image_AUROC']:.3f} ({mine[t]['images']})" for t in types)])
    return lines + harness.markdown_table(["model", "seed", "step", "half", "stored side (px)", "good", *types], table)


def csv_names(category: str) -> dict[str, str]:
    """The CSVs this benchmark writes for ``category``, by table."""
    return {"types": f"defect_types_{category}.csv", "windows": f"score_window_{category}.csv",
            "stand_ins": f"stand_in_{category}.csv", "removals": f"removal_{category}.csv",
            "sizes": f"by_stored_size_{category}.csv"}


def summarise(output: Path, category: str) -> Path:
    """Write ``DEFECT_TYPES.md`` (``DEFECT_TYPES_<category>.md`` for other datasets) from the CSVs in ``output``."""
    names = csv_names(category)
    rows, windows, stand_ins, removals, by_size = (
        sorted(read_parsed(output / names[table]), key=checkpoint_order)  # as merged() writes them
        for table in ("types", "windows", "stand_ins", "removals", "sizes"))
    lines = [f"# Per defect type: `{names['types']}`", "", "Written by `benchmarks/defect_types.py` from the last "
             "checkpoint of each learning curve, on the whole test set.", "",
             *harness.markdown_table(
                 ["model", "seed", "step", "defect type", "images", "image AUROC", "pixel AUROC", "mask share",
                  "median score"],
                 ([r["model"], r["seed"], r["step"], r["defect_type"], r["images"], f"{r['image_AUROC']:.3f}",
                   f"{r['pixel_AUROC']:.3f}", f"{r['mask_share']:.3f}", f"{r['median_score']:.3f}"] for r in rows))]
    # A section only where its CSV has rows: earlier runs wrote only some of the tables.
    if windows:
        lines += ["", "## Image AUROC by scoring rule", "",
                  "The same anomaly maps scored with RecSem's rule at several mean-filter sides (`score_kernel_size`), "
                  f"and by their maximum (Draem's rule), in `{names['windows']}`. RecSem's default window is the "
                  "paper's 21 px at 256 px scaled with the image size (11 at 128 px); checkpoints trained before that "
                  "default carry 21.", "",
                  *harness.markdown_table(
                      ["model", "seed", "step", "maximum", *(f"window {w}" for w in SCORE_WINDOWS)],
                      ([*key, *(f"{r['image_AUROC']:.3f}" for r in windows
                                if (r["model"], r["seed"], r["step"]) == key)]
                       for key in dict.fromkeys((r["model"], r["seed"], r["step"]) for r in windows)))]
    if stand_ins:
        lines += ["", "## What the discriminator reads", "",
                  "The test set scored again with the discriminator given something else in place of the "
                  "reconstruction: the input itself (nothing differs) or the mean training image (nothing follows "
                  f"the input), in `{names['stand_ins']}`. `normal map` is the mean defect probability over the "
                  "defect-free test images. A discriminator that compares its two images goes quiet when given the "
                  "input twice; one that scores about the same has learnt to segment defects from the input alone.", "",
                  *harness.markdown_table(
                      ["model", "seed", "step", "discriminator gets", "image AUROC", "pixel AUROC", "normal map"],
                      ([r["model"], r["seed"], r["step"], r["discriminator_gets"], f"{r['image_AUROC']:.3f}",
                        f"{r['pixel_AUROC']:.3f}", f"{r['normal_map_mean']:.3f}"] for r in stand_ins))]
    if removals:
        lines += ["", "## What the reconstruction removes", "",
                  "Synthetic defects drawn into the defect-free test images (one mask per image, the same for every "
                  "kind), of the kind both models train on and of four they never see, beside the real defect types, "
                  f"in `{names['removals']}`. `contrast`: how far the defect's pixels stand out from their "
                  "surroundings, over the defect-free surface's own (1: no more than its texture). `residual`: "
                  "pixel AUROC of |input - reconstruction| alone; `map`: of the anomaly map. `removed`: the share of "
                  "the defect's change to the image that the reconstruction does not follow (synthetic kinds only).",
                  "",
                  *harness.markdown_table(
                      ["model", "seed", "step", "defects", "origin", "contrast", "mask share", "residual", "map",
                       "removed"],
                      ([r["model"], r["seed"], r["step"], r["defects"], r["origin"], f"{r['contrast']:.2f}",
                        f"{r['mask_share']:.3f}", f"{r['residual_pixel_AUROC']:.3f}", f"{r['pixel_AUROC']:.3f}",
                        f"{r['removed']:.2f}"] for r in removals))]
    lines += size_table(by_size, names["sizes"])
    lines += ["", "What each model does with its hardest images: rows are the three defect-free images it scores "
              "highest, then the three defective images it scores lowest; columns are input, reconstruction, "
              "anomaly map (scaled to its own maximum) and, where the data has masks, ground-truth mask.", ""]
    lines += [f"![{path.stem}]({path.name})" for path in sorted(output.glob(f"hardest_{category}_*.png"))]
    summary = output / ("DEFECT_TYPES.md" if category == "magnetic_tile" else f"DEFECT_TYPES_{category}.md")
    summary.write_text("\n".join(lines) + "\n")
    return summary


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=harness.SHARED_DATASETS, help="MVTec AD-layout root")
    parser.add_argument("--category", default="magnetic_tile")
    parser.add_argument("--preset", default="recsem_small", help="the curves' RecSem preset (Draem's widths)")
    parser.add_argument("--image-size", type=int, default=None, help="the curves' (default: the preset's)")
    parser.add_argument("--width", type=int, default=None, help="the curves' --width for Draem")
    parser.add_argument("--textures", type=Path, default=harness.DTD_IMAGES,
                        help="any image folder: Draem is built with one, evaluation never reads it")
    parser.add_argument("--models", nargs="+", default=None,
                        help="score only these models' checkpoints")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=harness.RESULTS, help="the curves' output folder")
    parser.add_argument("--smoke", action="store_true", help="the curves' smoke settings")
    parser.add_argument("--summarise-only", action="store_true", help="rewrite the Markdown from the CSVs")
    return harness.parse_with_smoke(parser, argv, category="dummy", preset="recsem_tiny")


def main(argv: Sequence[str] | None = None) -> int:
    """Score every curve checkpoint per defect type, then write the tables (``--summarise-only``: only write)."""
    args = parse_arguments(argv)
    if args.summarise_only:
        print(summarise(args.output, args.category))  # noqa: T201
        return 0
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    data = harness.EvaluationSet(args.root, args.category, args.image_size)
    train = harness.EvaluationSet(args.root, args.category, args.image_size, stride=TRAIN_STRIDE, split="train")
    rows, windows, stand_ins, removals, by_size = [], [], [], [], []
    scored: set[tuple[str, int]] = set()
    normal = data.labels == 0
    stand_ins_given = (("its reconstruction", None), ("the input itself", data.images),
                       ("the mean training image", train.images.mean(0).expand_as(data.images)))
    synthetic = synthetic_defects(data.images[normal], args.textures)
    contrasts = defect_contrasts(data, synthetic)
    for checkpoint in sorted((args.output / "checkpoints").glob(f"{args.category}_*_seed*.ckpt")):
        model_name, seed = checkpoint.stem.removeprefix(f"{args.category}_").rsplit("_seed", 1)
        if args.models is not None and model_name not in args.models:
            continue
        module = load(model_name, checkpoint, args)
        scored.add((model_name, int(seed)))
        step = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
        test = harness.predictions(module, data.images)
        score, anomaly_map = test.scores, test.maps
        hardest_images(module, data, score, args.output / f"hardest_{args.category}_{model_name}_seed{seed}.png")
        train_row = {"defect_type": "good (training images)", "images": len(train.images), "image_AUROC": math.nan,
                     "pixel_AUROC": math.nan, "mask_share": 0.0,
                     "median_score": float(harness.predictions(module, train.images).scores.median())}
        fixed = {"category": args.category, "image_size": args.image_size, "device": harness.device_name("cpu"),
                 "finished_at": harness.now()}
        for row in [train_row, *harness.evaluate_by_defect_type(data, score, anomaly_map)]:
            rows.append({"model": model_name, "seed": int(seed), "step": step, **row, **fixed})
        for gets, stand_in in stand_ins_given:
            score_, map_, _ = test if stand_in is None else harness.predictions(module, data.images, stand_in=stand_in)
            stand_ins.append({"model": model_name, "seed": int(seed), "step": step, "discriminator_gets": gets,
                              "image_AUROC": harness.auroc(score_, data.labels),
                              "pixel_AUROC": math.nan if data.masks is None else harness.auroc(
                                  map_.flatten(), data.masks.flatten()),
                              "normal_map_mean": float(map_[normal].mean()), **fixed})
        removals += [{"model": model_name, "seed": int(seed), "step": step, **row, **fixed}
                     for row in removal_rows(module, data, test, synthetic, contrasts)]
        by_size += [{"model": model_name, "seed": int(seed), "step": step, **row, **fixed}
                    for row in harness.evaluate_by_stored_size(data, score)]
        maps = anomaly_map.unsqueeze(1)
        for window, top_k in [(1, 1), *((window, 5) for window in SCORE_WINDOWS)]:
            rule = "maximum" if top_k == 1 else "mean of top 5 after mean filter"
            windows.append({"model": model_name, "seed": int(seed), "step": step, "rule": rule, "window": window,
                            "top_k": top_k, "image_AUROC": harness.auroc(
                                top_k_mean_filtered(maps, window, top_k), data.labels), **fixed})
    names = csv_names(args.category)
    for path, scored_rows, columns in ((names["types"], rows, COLUMNS), (names["windows"], windows, WINDOW_COLUMNS),
                                       (names["stand_ins"], stand_ins, STAND_IN_COLUMNS),
                                       (names["removals"], removals, REMOVAL_COLUMNS),
                                       (names["sizes"], by_size, SIZE_COLUMNS)):
        if merged(args.output / path, scored_rows, columns, scored):
            print(args.output / path)  # noqa: T201
    print(summarise(args.output, args.category))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
