"""``benchmarks/tiles.py``: square tiles of aspect-kept images, stitched back and scored."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_recsem.data.toy_mvtec import write_mvtec_dataset
from benchmarks import harness, tiles


def test_tiles_cover_each_side_edge_to_edge_with_as_few_as_fit() -> None:
    assert tiles.tile_starts(128, 128) == [0]
    assert tiles.tile_starts(129, 128) == [0, 1]
    assert tiles.tile_starts(300, 128) == [0, 86, 172]  # 3 tiles, overlaps 42 and 42
    with pytest.raises(ValueError, match="a side of 100 px cannot hold a tile of 128 px"):
        tiles.tile_starts(100, 128)


def test_stitching_the_tiles_of_an_image_gives_the_image_back() -> None:
    image = torch.rand(1, 130, 300)
    image_tiles, corners = tiles.tiles(image, 128)
    assert image_tiles.shape == (6, 1, 128, 128) and corners[1] == (0, 86) and corners[-1] == (2, 172)
    assert torch.allclose(tiles.stitch(image_tiles[:, 0], corners, (130, 300)), image[0])


def test_the_shorter_side_is_resized_and_masks_stay_binary() -> None:
    mask = (torch.rand(1, 300, 500) > 0.9).float()
    assert tiles.aspect_resize(torch.rand(3, 300, 500), 128).shape == (3, 128, 213)
    assert tiles.aspect_resize(torch.rand(3, 500, 300), 128).shape == (3, 213, 128)
    resized = tiles.aspect_resize(mask, 128, mask=True)
    assert resized.shape == (1, 128, 213) and set(resized.unique().tolist()) <= {0.0, 1.0}


def test_written_tiles_keep_each_image_folder_and_their_masks(tmp_path: Path) -> None:
    root = write_mvtec_dataset(tmp_path / "mvtec", num_train=2, num_test_good=1, num_test_defective=2, size=64)
    wide = Image.open(root / "dummy" / "test" / "defect" / "000.png").resize((96, 64))  # a wide image: 2 tiles
    wide.save(root / "dummy" / "test" / "defect" / "000.png")
    mask = Image.open(root / "dummy" / "ground_truth" / "defect" / "000_mask.png").resize((96, 64), Image.NEAREST)
    mask.save(root / "dummy" / "ground_truth" / "defect" / "000_mask.png")
    assert tiles.write(root, "dummy", tmp_path / "tiled", short_side=32, tile=32) == 2 + 1 + 2 + 1
    tiled = tmp_path / "tiled" / "dummy"
    assert sorted(path.name for path in (tiled / "test" / "defect").iterdir()) == [
        "000_y0_x0.png", "000_y0_x16.png", "001_y0_x0.png"]
    stitched = torch.zeros(32, 48)
    for name, left in (("000_y0_x0", 0), ("000_y0_x16", 16)):
        tile_mask = torch.from_numpy(np.asarray(Image.open(tiled / "ground_truth" / "defect" / f"{name}_mask.png"))) > 0
        assert tile_mask.shape == (32, 32)
        stitched[:, left:left + 32] = tile_mask.float()
    expected = tiles.aspect_resize(tiles._read(root / "dummy" / "ground_truth" / "defect" / "000_mask.png")[:1], 32,
                                   mask=True)[0]
    assert torch.equal(stitched, expected)


def test_image_auroc_on_stitched_maps_compares_each_half_with_its_own_defect_free_images() -> None:
    # Small images' maps are brighter everywhere; within each half the cracks stand out, so every
    # half ranks them perfectly, while the whole set mixes the halves' levels.
    data = SimpleNamespace(stored_sides=torch.tensor([100.0, 100, 100, 400, 400, 400]),
                           defect_types=["good", "crack", "crack", "good", "crack", "crack"])
    masks = [None, torch.zeros(16, 16, dtype=torch.bool), torch.zeros(16, 16, dtype=torch.bool), None,
             torch.zeros(16, 24, dtype=torch.bool), torch.zeros(16, 24, dtype=torch.bool)]
    levels = [0.5, 0.5, 0.5, 0.1, 0.1, 0.1]
    maps = [torch.full(mask.shape if mask is not None else (16, 16), level) for mask, level in zip(masks, levels,
                                                                                                     strict=True)]
    for index in (1, 2, 4, 5):
        masks[index][4:8, 4:8] = True
        maps[index][4:8, 4:8] += 0.3  # the crack
    rows = {(row["half"], row["defect_type"]): row for row in tiles.score_rows(data, maps, masks, window=3)}
    assert rows["smaller", "crack"]["image_AUROC"] == 1.0 and rows["larger", "crack"]["image_AUROC"] == 1.0
    assert rows["all", "crack"]["image_AUROC"] == 0.75  # the larger cracks (0.1 + 0.3) lose to the small good image
    assert rows["smaller", "crack"]["pixel_AUROC"] == 1.0 and rows["larger", "all"]["good_images"] == 1
    # Pooled pixels: the larger cracks' (0.4) beat only the larger images' surface (2 x 368 of 1 216 pixels).
    assert rows["all", "crack"]["pixel_AUROC"] == pytest.approx((1 + 736 / 1216) / 2)
    assert all(row["window"] == 3 for row in rows.values())


def test_writing_from_a_folder_without_images_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no images in .*nowhere/dummy/train or test"):
        tiles.write(tmp_path / "nowhere", "dummy", tmp_path / "tiled", short_side=32, tile=32)


def test_mask_geometry_measures_a_line_across_as_stored_squashed_and_tiled(tmp_path: Path) -> None:
    paths = []
    for name, (height, width), side in (("tall", (200, 100), 141.0), ("wide", (100, 400), 200.0)):
        (tmp_path / "test" / "crack").mkdir(parents=True, exist_ok=True)
        (tmp_path / "ground_truth" / "crack").mkdir(parents=True, exist_ok=True)
        Image.new("L", (width, height)).save(tmp_path / "test" / "crack" / f"{name}.png")
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[10:90, 40:42] = 255  # a vertical line 2 px wide, 80 px long
        Image.fromarray(mask).save(tmp_path / "ground_truth" / "crack" / f"{name}_mask.png")
        paths.append((str(tmp_path / "test" / "crack" / f"{name}.png"), side))
    data = SimpleNamespace(image_paths=[path for path, _ in paths], defect_types=["crack", "crack"],
                           stored_sides=torch.tensor([side for _, side in paths]))
    rows = {row["half"]: row for row in tiles.mask_geometry(data, tile=50, short_side=50)}
    assert rows["all"]["images"] == 2 and rows["all"]["vertical"] == 1.0 and rows["all"]["width_stored"] == 2.0
    # Squashed to 50 x 50, the line keeps 50/100 (tall image) and 50/400 (wide) of its width.
    assert rows["smaller"]["width_square"] == 1.0 and rows["larger"]["width_square"] == 0.25
    # Aspect kept, both images' shorter sides become 50: 2 x 50/100 and 2 x 50/100.
    assert rows["smaller"]["width_tiled"] == 1.0 and rows["larger"]["width_tiled"] == 1.0


def test_hardest_images_show_the_top_normal_and_lowest_defective_image_with_map_and_mask(tmp_path: Path) -> None:
    root = write_mvtec_dataset(tmp_path / "mvtec", num_train=1, num_test_good=2, num_test_defective=2, size=32)
    paths = sorted(str(path) for path in (root / "dummy" / "test").glob("*/*.png"))
    data = SimpleNamespace(image_paths=paths, defect_types=[Path(path).parent.name for path in paths])
    maps = [torch.full((32, 32), level) for level in (0.3, 0.1, 0.2, 0.4)]  # defect, defect, good, good
    masks = [torch.ones(32, 32, dtype=torch.bool), torch.ones(32, 32, dtype=torch.bool), None, None]
    tiles.hardest_images(data, maps, masks, window=3, short_side=32, path=tmp_path / "hardest.png", count=1)
    grid = np.asarray(Image.open(tmp_path / "hardest.png"))
    assert grid.shape[:2] == (64, 96)  # two rows: image | map | mask
    assert (grid[:32, 64:] == 0).all() and (grid[32:, 64:] == 255).all()  # the good image has no mask, the defect one
    original = np.asarray(Image.open(paths[3]).convert("RGB"))  # the top-scoring good image (0.4) comes first
    assert np.abs(grid[:32, :32].astype(int) - original.astype(int)).max() <= 1


def test_summary_has_a_row_per_checkpoint_window_and_half_and_the_widths(tmp_path: Path) -> None:
    fixed = {"model": "recsem", "seed": 0, "step": 10, "short_side": 256, "tile": 128, "good_images": 1,
             "pixel_AUROC": 0.5, "category": "dummy", "device": "cpu", "finished_at": "now"}
    rows = [fixed | {"window": window, "half": half, "defect_type": kind, "images": 1, "image_AUROC": auroc}
            for window in (11, 21) for half in ("all", "smaller", "larger")
            for kind, auroc in (("all", 0.75), ("crack", window / 100))]
    harness.write_rows(tmp_path / "tiles_dummy.csv", rows, tiles.COLUMNS)
    harness.write_rows(tmp_path / "mask_geometry_dummy.csv", [
        {"half": "all", "defect_type": "crack", "images": 2, "vertical": 0.5, "width_stored": 4.31,
         "width_square": 1.29, "width_tiled": 3.71}], tiles.GEOMETRY_COLUMNS)
    text = tiles.summarise(tmp_path, "dummy").read_text()
    assert "| model | seed | step | window | half | all | crack |" in text
    assert "| recsem | 0 | 10 | 21 | larger | 0.750 | 0.210 |" in text
    assert sum(line.startswith("| recsem |") for line in text.splitlines()) == 6
    assert "| all | crack | 2 | 0.50 | 4.3 | 1.3 | 3.7 |" in text and "short side of 256 px" in text


def test_scoring_a_folder_without_checkpoints_says_to_train_first(tmp_path: Path) -> None:
    root = write_mvtec_dataset(tmp_path / "mvtec", num_train=1, num_test_good=1, num_test_defective=1, size=32)
    with pytest.raises(FileNotFoundError, match="no dummy checkpoints in .*checkpoints: train on the tiles first"):
        tiles.main(["score", "--root", str(root), "--category", "dummy", "--tile", "32", "--output", str(tmp_path)])
    assert not (tmp_path / "TILES.md").exists()


def _checkpoint(folder: Path, image_size: int) -> None:
    """A RecSem checkpoint as ``curves.py`` keeps it (untrained, tiny widths)."""
    import lightning  # noqa: PLC0415

    from anomalib_recsem import RecSem  # noqa: PLC0415

    module = RecSem(image_size=image_size, reconstruction_width=4, discriminator_width=4)
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 3,
                "pytorch-lightning_version": lightning.__version__}, folder / "checkpoints" / "dummy_recsem_seed0.ckpt")


def test_score_stitches_every_test_image_and_writes_tables_and_pictures(tmp_path: Path) -> None:
    root = write_mvtec_dataset(tmp_path / "mvtec", num_train=1, num_test_good=2, num_test_defective=2, size=64)
    _checkpoint(tmp_path / "out", image_size=32)
    arguments = ["score", "--root", str(root), "--category", "dummy", "--short-side", "48", "--output",
                 str(tmp_path / "out"), "--threads", "1"]
    with pytest.raises(ValueError, match=r"dummy_recsem_seed0.ckpt was trained at \(32, 32\) px, not on --tile 16"):
        tiles.main([*arguments, "--tile", "16"])
    assert tiles.main([*arguments, "--tile", "32"]) == 0
    rows = harness.read_rows(tmp_path / "out" / "tiles_dummy.csv")
    # The generated images all have one size: no halves.
    assert [(row["half"], row["defect_type"]) for row in rows] == [("all", "all"), ("all", "defect")]
    whole = next(row for row in rows if row["half"] == "all" and row["defect_type"] == "all")
    assert (whole["images"], whole["good_images"], whole["step"]) == ("2", "2", "3")
    assert 0.0 <= float(whole["image_AUROC"]) <= 1.0 and 0.0 <= float(whole["pixel_AUROC"]) <= 1.0
    assert "| recsem | 0 | 3 |" in (tmp_path / "out" / "TILES.md").read_text()
    assert (tmp_path / "out" / "hardest_dummy_recsem_seed0.png").stat().st_size > 0
