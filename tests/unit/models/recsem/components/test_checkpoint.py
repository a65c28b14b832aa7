"""Checkpoints that do not fit the model fail with one clear message; untrained models are not exported."""

from __future__ import annotations

import re
from pathlib import Path

import lightning
import pytest
import torch
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Resize

from anomalib_recsem import RecSem
from anomalib_recsem.models.recsem.components.checkpoint import (
    CheckpointMismatchError,
    check_checkpoint_matches,
    checkpoint_differences,
)
from anomalib_recsem.models.recsem.components.export import UntrainedModelError, require_trained
from anomalib_recsem.presets import model_arguments

TINY_RECSEM = model_arguments("recsem_tiny")


def _checkpoint(model: RecSem) -> dict:
    return {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}


def test_equal_networks_compare_equal() -> None:
    assert checkpoint_differences({"image_size": 64, "memory_scales": None},
                                  {"image_size": [64, 64], "memory_scales": [2, 4]}) == []
    assert checkpoint_differences({"image_size": 64, "memory_scales": None, "discriminator": "unet"},
                                  {"image_size": 64, "memory_scales": (2,), "discriminator": "fusion"}) == [
        "memory_scales=(2,) in the checkpoint (model: (2, 4))",
        "discriminator='fusion' in the checkpoint (model: 'unet')",
    ]


def test_fitting_checkpoint_passes_even_with_other_scoring_arguments() -> None:
    model = RecSem(**TINY_RECSEM)
    other = RecSem(**{**TINY_RECSEM, "score_top_k": 3})
    check_checkpoint_matches(other, _checkpoint(model))


@pytest.mark.parametrize(("argument", "value"), [("reconstruction_width", 16), ("discriminator_width", 4),
                                                 ("num_prototypes", 7), ("location_embedding", False),
                                                 ("image_size", 96), ("discriminator", "fusion")])
def test_mismatch_names_the_argument(argument: str, value: object) -> None:
    stored = _checkpoint(RecSem(**TINY_RECSEM))
    model = RecSem(**{**TINY_RECSEM, argument: value})
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_matches(model, stored)
    message = str(error.value)
    assert message.startswith("The checkpoint does not fit")
    assert f"{argument}=" in message
    assert "\n" not in message
    with pytest.raises(CheckpointMismatchError, match="^Checkpoint /runs/model.ckpt does not fit"):
        check_checkpoint_matches(model, stored, path="/runs/model.ckpt")
    with pytest.raises(CheckpointMismatchError, match="load_from_checkpoint was given"):
        check_checkpoint_matches(model, stored, overrides={argument: value})


def test_mismatch_without_hyper_parameters_lists_tensors() -> None:
    stored = {"state_dict": RecSem(**{**TINY_RECSEM, "reconstruction_width": 16}).state_dict()}
    with pytest.raises(CheckpointMismatchError, match=re.escape("model.encoder.block1.0.weight: (16, 3, 3, 3)")):
        check_checkpoint_matches(RecSem(**TINY_RECSEM), stored)


def test_export_refused_until_thresholds_are_learned() -> None:
    model = RecSem(**TINY_RECSEM)
    with pytest.raises(UntrainedModelError, match=re.escape("--ckpt_path")):
        require_trained(model, "onnx")
    model.post_processor._image_threshold.fill_(0.5)  # noqa: SLF001  as validation would
    require_trained(model, "onnx")
    require_trained(RecSem(**TINY_RECSEM, post_processor=False), "onnx")  # nothing to tell from


def test_thresholds_survive_a_state_dict_round_trip() -> None:
    """The check reads buffers that checkpoints restore."""
    trained = RecSem(**TINY_RECSEM)
    trained.post_processor.image_min.fill_(0.1)
    fresh = RecSem(**TINY_RECSEM)
    fresh.load_state_dict(trained.state_dict())
    assert torch.isfinite(fresh.post_processor.image_min)
    require_trained(fresh, "torch")


def _saved(model: RecSem, path: Path) -> Path:
    """``model`` written as Lightning writes a checkpoint (the module's own save hook included)."""
    checkpoint = {"pytorch-lightning_version": lightning.__version__, **_checkpoint(model)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_loading_restores_anomalibs_component_switches(tmp_path: Path) -> None:
    # anomalib keeps which components were off outside the hyper-parameters; its load hook puts
    # them back, so a model saved without a visualizer comes back without one.
    path = _saved(RecSem(**TINY_RECSEM, visualizer=False), tmp_path / "model.ckpt")
    assert RecSem.load_from_checkpoint(path).visualizer is None
    assert RecSem.load_from_checkpoint(_saved(RecSem(**TINY_RECSEM), tmp_path / "on.ckpt")).visualizer is not None


def test_a_mismatch_is_named_whatever_loader_arguments_are_given(tmp_path: Path) -> None:
    path = _saved(RecSem(**TINY_RECSEM), tmp_path / "model.ckpt")
    with pytest.raises(CheckpointMismatchError, match=f"^Checkpoint {re.escape(str(path))} does not fit.*"
                                                      "load_from_checkpoint was given reconstruction_width=16"):
        RecSem.load_from_checkpoint(path, map_location="cpu", weights_only=False, strict=True,
                                    reconstruction_width=16)


def test_strict_false_loads_a_network_with_tensors_missing_but_not_one_of_other_shapes(tmp_path: Path) -> None:
    path = _saved(RecSem(**TINY_RECSEM, location_embedding=False), tmp_path / "model.ckpt")
    with pytest.raises(CheckpointMismatchError, match="location_embedding=True.*missing from the checkpoint"):
        RecSem.load_from_checkpoint(path, location_embedding=True)
    model = RecSem.load_from_checkpoint(path, location_embedding=True, strict=False)
    stored = torch.load(path, weights_only=False)["state_dict"]
    assert torch.equal(model.state_dict()["model.encoder.block1.0.weight"], stored["model.encoder.block1.0.weight"])
    with pytest.raises(CheckpointMismatchError, match=re.escape("(8, 3, 3, 3) in the checkpoint, (16, 3, 3, 3)")):
        RecSem.load_from_checkpoint(path, strict=False, reconstruction_width=16)


def test_a_restored_pipeline_of_the_users_own_still_pre_processes(tmp_path: Path) -> None:
    # anomalib's load hook puts the stored transform into the freshly built pre-processor.
    pipeline = PreProcessor(transform=Compose([Resize([64, 64], antialias=True)]))
    path = _saved(RecSem(**TINY_RECSEM, pre_processor=pipeline), tmp_path / "model.ckpt")
    model = RecSem.load_from_checkpoint(path)
    assert isinstance(model.pre_processor.transform, Compose)
    assert model.pre_processor(torch.rand(2, 3, 100, 80)).shape == (2, 3, 64, 64)
