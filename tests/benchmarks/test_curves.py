"""``benchmarks/curves.py`` and the GPU campaign that drives it, end to end on generated data."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import curves, defect_types, harness

POINT_COLUMNS = ("image_AUROC", "pixel_AUPRO", "pixel_AUROC", "reconstruction_spread", "residual_pixel_AUROC")


@pytest.mark.slow
def test_smoke_curves_record_points_and_resume(tmp_path: Path) -> None:
    assert curves.main(["--smoke", "--output", str(tmp_path)]) == 0
    csv_path = tmp_path / "curve_dummy.csv"
    rows = harness.read_rows(csv_path)
    # Both models, a point at step 0, every 2 steps and at the last step (4).
    assert sorted((row["model"], int(row["step"])) for row in rows) == [
        ("draem", 0), ("draem", 2), ("draem", 4), ("recsem", 0), ("recsem", 2), ("recsem", 4)]
    for row in rows:
        assert int(row["samples"]) == int(row["step"]) * 4
        assert float(row["seconds"]) >= 0
        for column in POINT_COLUMNS:
            assert 0.0 <= float(row[column]) <= 1.0 or (column == "reconstruction_spread" and float(row[column]) >= 0)
    assert (tmp_path / "curve_dummy.png").stat().st_size > 0
    # Their checkpoints, scored per defect type: every defective test image counted once per model.
    assert defect_types.main(["--smoke", "--output", str(tmp_path), "--threads", "1"]) == 0
    by_type = harness.read_rows(tmp_path / "defect_types_dummy.csv")
    for model in ("recsem", "draem"):
        images = {row["defect_type"]: int(row["images"]) for row in by_type if row["model"] == model}
        assert images.pop("good") == 4 and images.pop("good (training images)") == 2  # 8 training images, every 4th
        assert sum(images.values()) == 4
    assert all(0.0 <= float(row["image_AUROC"]) <= 1.0 for row in by_type if not row["defect_type"].startswith("good"))
    assert all(int(row["step"]) == 4 and 0.0 <= float(row["median_score"]) <= 1.0 for row in by_type)
    assert (tmp_path / "hardest_dummy_draem_seed0.png").stat().st_size > 0
    windows = harness.read_rows(tmp_path / "score_window_dummy.csv")
    for model in ("recsem", "draem"):
        mine = [row for row in windows if row["model"] == model]
        assert [(int(row["window"]), int(row["top_k"])) for row in mine] == [
            (1, 1), *((window, 5) for window in defect_types.SCORE_WINDOWS)]
        assert all(0.0 <= float(row["image_AUROC"]) <= 1.0 for row in mine)
    stand_ins = harness.read_rows(tmp_path / "stand_in_dummy.csv")
    for model in ("recsem", "draem"):
        assert [row["discriminator_gets"] for row in stand_ins if row["model"] == model] == [
            "its reconstruction", "the input itself", "the mean training image"]
    assert all(0.0 <= float(row["normal_map_mean"]) <= 1.0 for row in stand_ins)
    removals = harness.read_rows(tmp_path / "removal_dummy.csv")
    real_types = sorted(set(images))
    for model in ("recsem", "draem"):
        mine = [row for row in removals if row["model"] == model]
        assert [row["defects"] for row in mine] == [*defect_types.synthetic_defects(
            torch.rand(2, 3, 8, 8), None)[2], *real_types]
        for row in mine:
            assert math.isnan(float(row["removed"])) == (row["origin"] == "real")
            assert float(row["contrast"]) > 0 and 0 < float(row["mask_share"]) < 1
    assert not (tmp_path / "by_stored_size_dummy.csv").exists()  # generated images all have one size
    # One model scored again: the other's rows stay as they were, in the same order.
    before = {name: harness.read_rows(tmp_path / name) for name in (
        "defect_types_dummy.csv", "score_window_dummy.csv", "stand_in_dummy.csv", "removal_dummy.csv")}
    assert defect_types.main(["--smoke", "--output", str(tmp_path), "--threads", "1", "--models", "draem"]) == 0
    for name, old_rows in before.items():
        new_rows = harness.read_rows(tmp_path / name)
        assert [row for row in new_rows if row["model"] == "recsem"] == [
            row for row in old_rows if row["model"] == "recsem"]
        for new_row, old_row in zip(new_rows, old_rows, strict=True):  # draem's scored again, to the same values
            assert new_row | {"finished_at": ""} == old_row | {"finished_at": ""}
    summary = tmp_path / "DEFECT_TYPES_dummy.md"
    written = summary.read_text()
    assert "| recsem | 0 | 4 | good |" in written
    summary.unlink()  # rebuilt from the CSVs alone, the same
    assert defect_types.main(["--smoke", "--output", str(tmp_path), "--summarise-only"]) == 0
    assert summary.read_text() == written
    # A finished run is not trained again.
    assert curves.main(["--smoke", "--output", str(tmp_path)]) == 0
    assert len(harness.read_rows(csv_path)) == len(rows)


@pytest.mark.slow
def test_interrupted_run_continues_from_its_checkpoint(tmp_path: Path) -> None:
    assert curves.main(["--smoke", "--output", str(tmp_path), "--models", "recsem"]) == 0
    csv_path = tmp_path / "curve_dummy.csv"
    # As if the run had stopped after step 2: its last point is gone, its checkpoint says step 4.
    rows = [row for row in harness.read_rows(csv_path) if int(row["step"]) <= 2]
    harness.write_rows(csv_path, rows, curves.COLUMNS)
    assert curves.main(["--smoke", "--output", str(tmp_path), "--models", "recsem", "--steps", "6"]) == 0
    steps = [int(row["step"]) for row in harness.read_rows(csv_path)]
    assert steps == [0, 2, 6]  # resumed at step 4 (its checkpoint), not from scratch


@pytest.mark.slow
def test_a_weight_averaging_variant_scores_its_averaged_weights_and_trains_on(tmp_path: Path) -> None:
    assert curves.main(["--smoke", "--output", str(tmp_path), "--models", "recsem_ema", "--steps", "6"]) == 0
    last = harness.read_rows(tmp_path / "curve_dummy.csv")[-1]
    checkpoint = torch.load(tmp_path / "checkpoints" / "dummy_recsem_ema_seed0.ckpt", map_location="cpu",
                            weights_only=False)
    assert int(last["step"]) == checkpoint["global_step"] == 6
    # Lightning saves the average as the weights and the trained ones beside them: both are there and differ.
    averaged, trained = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert checkpoint["averaging_state"]["n_averaged"] == 6
    assert not torch.equal(averaged["model.decoder.fusion.0.weight"], trained["model.decoder.fusion.0.weight"])
    # The point scored the averaged weights, not the trained ones.
    data = harness.EvaluationSet(tmp_path / "data" / "mvtec", "dummy", 64, stride=2)  # curves.py scores every 2nd
    for weights, same in ((averaged, True), (trained, False)):
        module = harness.recsem("recsem_tiny", image_size=64, visualizer=False, anomaly_source=None)
        module.load_state_dict(weights)
        error = harness.evaluate(module, data)["reconstruction_error"]
        assert (error == pytest.approx(float(last["reconstruction_error"]), rel=1e-4)) is same


def test_a_stand_in_is_what_the_discriminator_gets_instead_of_the_reconstruction(tmp_path: Path) -> None:
    _, textures = harness.smoke_data(tmp_path)
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    for module in (harness.recsem("recsem_tiny", image_size=64, visualizer=False), harness.draem(64, 8, textures)):
        module.eval()
        with torch.no_grad():
            _, reconstruction = harness.predict(module, images)
        scores, maps, _ = harness.predictions(module, images)
        # its own reconstruction as the stand-in: the same prediction
        same_scores, same_maps, _ = harness.predictions(module, images, stand_in=reconstruction)
        torch.testing.assert_close(same_maps, maps, atol=1e-5, rtol=0)
        torch.testing.assert_close(same_scores, scores, atol=1e-5, rtol=0)
        # the input itself: another one
        other_maps = harness.predictions(module, images, stand_in=images).maps
        assert (other_maps - maps).abs().amax() > 1e-3, type(module).__name__


def test_synthetic_defects_change_each_image_inside_its_mask_only() -> None:
    torch.manual_seed(0)
    normal = torch.rand(6, 3, 32, 32) * 0.5 + 0.25  # room to darken, brighten and add grain
    clean, masks, kinds = defect_types.synthetic_defects(normal, None, seed=3)
    assert masks.shape == (6, 32, 32) and masks.flatten(1).any(1).all()
    assert len(kinds) == 5
    for name, defective in kinds.items():
        change = (defective - clean).abs().amax(1)
        assert change[~masks].amax() == 0, name
        # every image changed where its mask is (a blend may leave a few pixels as they were)
        assert (change * masks).flatten(1).amax(1).min() > 0.01, name
    # The same seed gives the same defects; another seed other ones.
    again = defect_types.synthetic_defects(normal, None, seed=3)[2]
    other = defect_types.synthetic_defects(normal, None, seed=4)[2]
    for name, defective in kinds.items():
        torch.testing.assert_close(again[name], defective)
        assert not torch.equal(other[name], defective), name
    # Grey images stored as RGB get grey defects of every kind: colour would be a cue of its own.
    grey = normal.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    for name, defective in defect_types.synthetic_defects(grey, None, seed=3)[2].items():
        assert (defective - defective[:, :1]).abs().amax() < 1e-6, name


def test_local_contrast_is_zero_on_a_flat_image_and_peaks_at_a_lone_bright_pixel() -> None:
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert defect_types.local_contrast(flat).abs().amax() < 1e-6
    spot = flat.clone()
    spot[..., 16, 16] = 1.0
    contrast = defect_types.local_contrast(spot)[0]
    assert contrast.argmax() == 16 * 32 + 16
    # the Gaussian (sigma 2 px here) keeps about 1 / (2 pi sigma^2) of the spot at its centre
    assert contrast[16, 16] == pytest.approx(0.6 * (1 - 1 / (2 * math.pi * 4)), abs=0.01)


def _point(model: str, seed: int, step: int, seconds: float, auroc: float, aupro: float) -> dict[str, str]:
    return {"model": model, "seed": str(seed), "step": str(step), "seconds": str(seconds),
            "image_AUROC": str(auroc), "pixel_AUPRO": str(aupro)}


def test_size_halves_compare_defects_only_with_defect_free_images_of_their_own_half() -> None:
    # Small images score higher across the board, so only a comparison within each half says
    # which defects are found: the small cracks beat their half's defect-free images, the large
    # ones mostly lose to theirs (pooled with every defect-free image they would give 0.125).
    data = SimpleNamespace(stored_sides=torch.tensor([100.0, 100, 100, 100, 100, 400, 400, 400, 400]),
                           defect_types=["good", "good", "crack", "crack", "blowhole", "good", "good", "crack", "crack"])
    score = torch.tensor([0.5, 0.6, 0.8, 0.9, 0.7, 0.1, 0.2, 0.05, 0.15])
    rows = {(row["half"], row["defect_type"]): row for row in harness.evaluate_by_stored_size(data, score)}
    assert rows["smaller", "crack"]["image_AUROC"] == 1.0 and rows["smaller", "all"]["image_AUROC"] == 1.0
    assert rows["larger", "crack"]["image_AUROC"] == 0.25  # 0.15 beats 0.1 only
    assert math.isnan(rows["larger", "blowhole"]["image_AUROC"]) and rows["larger", "blowhole"]["images"] == 0
    assert rows["smaller", "all"]["images"] == 3 and rows["larger", "all"]["good_images"] == 2
    assert rows["smaller", "crack"]["sides"] == "100-100" and rows["larger", "all"]["sides"] == "400-400"
    data.stored_sides = torch.full((9,), 300.0)
    assert harness.evaluate_by_stored_size(data, score) == []


def test_paired_comparison_averages_only_the_seeds_both_models_reached() -> None:
    rows = [_point("recsem", 0, 500, 400, 0.70, 0.5), _point("draem", 0, 500, 600, 0.60, 0.6),
            _point("recsem", 1, 500, 410, 0.50, 0.5), _point("draem", 1, 500, 620, 0.55, 0.4),
            _point("recsem", 2, 500, 420, 0.99, 0.9),  # Draem seed 2 has not reached step 500
            _point("recsem", 0, 1000, 800, 0.80, 0.5)]  # nor has any Draem reached step 1000
    assert curves.paired_comparison(rows, "recsem", "draem", "image_AUROC") == [
        (500, 2, pytest.approx(0.60), pytest.approx(0.575), 1)]
    assert curves.paired_comparison(rows, "recsem", "draem", "pixel_AUPRO") == [
        (500, 2, pytest.approx(0.5), pytest.approx(0.5), 1)]


def test_within_budget_reports_the_last_point_in_time_and_the_best_before_it() -> None:
    rows = [_point("recsem", 0, 0, 0, 0.99, 0.99),  # the untrained model does not count
            _point("recsem", 0, 500, 3000, 0.80, 0.40), _point("recsem", 0, 1000, 7000, 0.70, 0.60),
            _point("recsem", 0, 1500, 7300, 0.95, 0.95)]  # past the 2 hours
    assert curves.within_budget(rows, "recsem") == [{
        "seed": "0", "last_step": 1000, "last_seconds": 7000.0, "image_AUROC": 0.70, "pixel_AUPRO": 0.60,
        "best_image_AUROC": 0.80, "best_pixel_AUPRO": 0.60}]


def test_plot_only_without_curves_names_the_missing_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert curves.main(["--plot-only", "--output", str(tmp_path)]) == 2
    assert str(tmp_path / "curve_magnetic_tile.csv") in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_runs_that_fail_before_their_first_point_are_reported_and_nothing_is_drawn(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, _ = harness.smoke_data(tmp_path / "data")
    arguments = ["--models", "recsem", "--seeds", "0", "--steps", "2", "--every", "2", "--jobs", "1", "--preset",
                 "recsem_tiny", "--image-size", "64", "--root", str(root), "--category", "dummy", "--textures",
                 str(tmp_path / "no_textures"), "--output", str(tmp_path / "out")]
    assert curves.main(arguments) == 1
    assert "failed runs (model, seed): [('recsem', 0)]" in capsys.readouterr().err
    assert not (tmp_path / "out" / "curve_dummy.png").exists()


def test_curve_tables_name_every_machine_that_ran_a_model(tmp_path: Path) -> None:
    # Seconds from two machines are not comparable: the table must say which seeds ran where.
    rows = [{"device": "Intel", "seed": "0"}, {"device": "Intel", "seed": "1"}, {"device": "AMD", "seed": "2"},
            {"device": "Intel", "seed": "0"}]
    assert curves.machines(rows) == "Intel for seeds 0, 1, AMD for seed 2"
    assert curves.machines(rows[:2]) == "Intel"
    point = {"model": "recsem", "step": 0, "samples": 0, "seconds": 1.0, "epoch": 0, "image_AUROC": 0.5,
             "pixel_AUPRO": 0.5, "pixel_AUROC": math.nan, "reconstruction_error": math.nan,
             "reconstruction_spread": math.nan, "residual_pixel_AUROC": math.nan, "load_average": 1.0,
             "finished_at": "", "category": "dummy", "image_size": 64, "batch_size": 4, "width": 8,
             "textures": "photos", "preset": "recsem_tiny", "precision": "32-true", "threads": 1}
    csv_path = tmp_path / "curve_dummy.csv"
    harness.write_rows(csv_path, [{**point, "seed": 0, "device": "Intel"}, {**point, "seed": 1, "device": "AMD"}],
                       curves.COLUMNS)
    summary = curves.summarise(csv_path, tmp_path / "CURVES.md").read_text()
    assert "per run on Intel for seed 0, AMD for seed 1." in summary


def test_a_run_stops_in_time_to_record_its_last_point_before_the_deadline() -> None:
    recorder = curves.CurveRecorder(data=None, every=100, csv_path=Path("unused.csv"), checkpoint=Path("unused.ckpt"),
                                    clock=harness.StepClock(), fixed={}, deadline=time.time() + 60)
    recorded: list[int] = []
    recorder._record = lambda trainer, module: recorded.append(trainer.global_step)
    trainer = SimpleNamespace(global_step=5, max_steps=1000, should_stop=False)
    recorder.point_seconds = 10  # the last point took 10 s: 60 s leave room for more steps
    recorder.on_train_batch_end(trainer, None)
    assert not trainer.should_stop and recorded == []
    recorder.point_seconds = 50  # one more point would end past the deadline: record it now and stop
    recorder.on_train_batch_end(trainer, None)
    assert trainer.should_stop and recorded == [5]
