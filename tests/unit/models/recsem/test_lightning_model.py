"""RecSem's Lightning-side contract: arguments, schedule, metrics and the training step."""

from __future__ import annotations

import contextlib
import math
import types
import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.metrics import AUPRO
from anomalib.pre_processing import PreProcessor
from lightning.pytorch.callbacks import EMAWeightAveraging
from torchvision.transforms import v2
from torchvision.transforms.v2 import Normalize, Resize

from anomalib_recsem import RecSem
from anomalib_recsem.data.texture_bank import PhotoCrops
from anomalib_recsem.models.recsem.components.resize import AntialiasedPreProcessor
from anomalib_recsem.models.recsem.lightning_model import warmup_cosine
from anomalib_recsem.presets import model_arguments
from tests.host_waits import BlockingCopies, draw_meta_rows

TINY = model_arguments("recsem_tiny")


def test_defaults_are_the_paper_settings() -> None:
    model = RecSem()
    assert model.model.image_size == (256, 256)
    assert model.model.memory_scales == (8, 16)
    assert len(model.model.memory.units[0].prototype_head.weight) == 50
    assert (model.positive_aug_ratio, model.negative_aug_ratio) == (2, 2)
    assert model.warmup_epochs == 20
    assert model.discriminator_input == "augmented"
    assert model.trainer_arguments == {"num_sanity_val_steps": 0}
    assert model.learning_type.value == "one_class"
    # The authors' network, 1x1 output convolution included.
    assert sum(parameter.numel() for parameter in model.model.parameters()) == 78_983_749


def test_defects_are_cut_from_scikit_image_photographs_unless_told_otherwise() -> None:
    # DTD, the paper's source, cannot be downloaded offline (model README, deviation 4).
    assert isinstance(RecSem(**TINY).synthetic_defect.texture_folder, PhotoCrops)
    assert RecSem(**{**TINY, "anomaly_source": None}).synthetic_defect.texture_folder is None


def test_paper_preset_scales_its_memory_and_score_window_with_the_image_size() -> None:
    # The YAML leaves both to the code, so --model.image_size 128 gives half of everything.
    paper = model_arguments("recsem")
    assert (paper["memory_scales"], paper["score_kernel_size"]) == (None, None)
    at_256 = RecSem(**paper).model
    assert (at_256.memory_scales, at_256.score_kernel_size) == ((8, 16), 21)
    at_128 = RecSem(**{**paper, "image_size": 128}).model
    assert (at_128.memory_scales, at_128.score_kernel_size) == ((4, 8), 11)


def test_pre_processor_resizes_with_antialiasing_and_without_normalising() -> None:
    model = RecSem(image_size=(64, 128), reconstruction_width=4, discriminator_width=4)
    assert isinstance(model.pre_processor, AntialiasedPreProcessor)
    transform = model.pre_processor.transform
    assert isinstance(transform, Resize) and list(transform.size) == [64, 128]
    assert transform.antialias is True
    assert not isinstance(transform, Normalize)


def test_max_epochs_reaches_trainer_only_when_set() -> None:
    assert RecSem(max_epochs=3, **TINY).trainer_arguments["max_epochs"] == 3
    assert "max_epochs" not in RecSem(**TINY).trainer_arguments


def test_evaluator_has_aupro_for_test_and_validation() -> None:
    evaluator = RecSem(**TINY).evaluator
    test_names = {metric.name for metric in evaluator.test_metrics}
    assert test_names == {"image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO"}
    assert {metric.name for metric in evaluator.val_metrics} == {"image_AUROC", "pixel_AUPRO"}
    aupro = next(metric for metric in evaluator.test_metrics if isinstance(metric, AUPRO))
    assert aupro.fpr_limit == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("argument", "value", "accepted"),
    [
        ("image_size", 100, "multiples of 32"),
        ("discriminator", "mlp", "('unet', 'fusion')"),
        ("discriminator_input", "noisy", "('augmented', 'clean')"),
        ("positive_aug_ratio", -1, "integer >= 0"),
        ("negative_aug_ratio", 1.5, "integer >= 0"),
        ("warmup_epochs", 0, "integer >= 1"),
        ("memory_scales", (64,), "1..4"),
        ("max_epochs", 0, "integer >= 1"),
        ("memory_scales", (1.5,), "integer >= 1"),
        ("memory_scales", 4, "sequence of integers"),
        ("reconstruction_width", 1, "integer >= 2"),
        ("discriminator_width", "x", "integer >= 1"),
        ("num_prototypes", 1, "integer >= 2"),
        ("score_kernel_size", 4, "positive odd integer"),
        ("score_top_k", 1.5, "integer >= 1"),
        ("location_embedding", "yes", "True or False"),
        ("memory_skip", "no", "True or False"),
        ("normalize_query", 3, "True or False"),
        ("detach_reconstruction", "maybe", "True or False"),
        ("channels_last", "x", "True or False"),
        ("compile", 1, "True or False"),
        ("learning_rate", 0.0, "finite number > 0"),
        ("learning_rate", "a", "finite number > 0"),
        ("weight_decay", -1.0, "finite number >= 0"),
    ],
)
def test_bad_arguments_name_themselves_and_the_accepted_values(argument: str, value: object, accepted: str) -> None:
    with pytest.raises(ValueError, match=argument) as error:
        RecSem(**{**TINY, argument: value})
    assert accepted in str(error.value)


def test_a_pre_processor_for_another_size_than_the_network_is_refused() -> None:
    with pytest.raises(ValueError, match=r"makes images of 128x128 px.*image_size 64x64.*image_size=\[128, 128\]"):
        RecSem(**{**TINY, "image_size": 64}, pre_processor=RecSem.configure_pre_processor(image_size=128))
    crop = PreProcessor(transform=v2.Compose([v2.Resize(96), v2.CenterCrop(64)]))
    assert RecSem(**{**TINY, "image_size": 64}, pre_processor=crop).pre_processor is crop
    RecSem(**{**TINY, "image_size": 64}, pre_processor=PreProcessor(transform=v2.Resize(64)))  # keeps the aspect ratio


def test_both_ratios_zero() -> None:
    with pytest.raises(ValueError, match="positive_aug_ratio"):
        RecSem(**{**TINY, "positive_aug_ratio": 0, "negative_aug_ratio": 0})


def test_missing_anomaly_source_fails_when_training_starts(tmp_path) -> None:  # noqa: ANN001
    missing = tmp_path / "no_textures_here"
    model = RecSem(anomaly_source=missing, **TINY)  # building never needs the folder
    with pytest.raises(FileNotFoundError, match="anomaly_source") as error:
        model.on_fit_start()
    assert str(missing) in str(error.value)


def test_weight_averaging_callbacks_are_warned_about_the_post_processor_buffers() -> None:
    model = RecSem(**TINY)
    model.trainer = pl.Trainer(callbacks=[EMAWeightAveraging()], logger=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="NaN"):
        model.on_fit_start()
    quiet = RecSem(**TINY)
    quiet.trainer = pl.Trainer(logger=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.on_fit_start()


def test_schedule_is_the_authors() -> None:
    """Epochs 1, 20, 21 and 700 of a 700-epoch run (the authors' LambdaLR, 1-based epochs)."""
    multiplier = [warmup_cosine(epoch, 700) for epoch in range(700)]
    assert multiplier[0] == pytest.approx(0.145)  # 0.1 + 0.9 * 1 / 20
    assert multiplier[19] == pytest.approx(1.0)  # the last warm-up epoch
    assert multiplier[20] == pytest.approx(0.5 * (1 + math.cos(math.pi / 680)))
    assert multiplier[699] == pytest.approx(0.1)  # the cosine's 0.1 floor
    assert all(a < b for a, b in zip(multiplier[:19], multiplier[1:20], strict=True))
    assert all(a >= b for a, b in zip(multiplier[20:], multiplier[21:], strict=False))


def test_optimiser_is_adam_and_the_rate_is_set_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = RecSem(**{**TINY, "warmup_epochs": 4, "max_epochs": 10, "learning_rate": 0.01, "weight_decay": 0.5})
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["weight_decay"] == 0.5
    monkeypatch.setattr(model, "optimizers", lambda: type("Wrapped", (), {"optimizer": optimizer})())
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    for epoch, expected in ((0, 0.1 + 0.9 / 4), (3, 1.0), (9, 0.1)):
        monkeypatch.setattr(type(model), "current_epoch", property(lambda self, e=epoch: e))
        model.on_train_epoch_start()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * expected)


def _batch(size: int = 4, defects: int = 2) -> ImageBatch:
    return ImageBatch(image=torch.rand(size, 3, 64, 64),
                      gt_label=torch.arange(size) < defects)


def test_training_step_follows_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    model = RecSem(**TINY)
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    monkeypatch.setattr(model, "log_dict", lambda *args, **kwargs: None)
    seen = []
    synthesize = model.synthetic_defect.synthesize
    monkeypatch.setattr(model.synthetic_defect, "synthesize",
                        lambda images, apply_defect: seen.append(apply_defect.clone()) or synthesize(images, apply_defect))
    loss = model.training_step(_batch(4, defects=3), 0)
    assert loss.ndim == 0 and loss.requires_grad
    assert seen[0].tolist() == [True, True, True, False]


def test_discriminator_input_decides_what_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    # A grey image stays 0.5 everywhere through the light augmentation; only a defect changes it.
    for choice, sees_the_defect in (("augmented", True), ("clean", False)):
        model = RecSem(**{**TINY, "discriminator_input": choice})
        seen = []
        discriminate = model.model.discriminate
        monkeypatch.setattr(model.model, "discriminate",
                            lambda reconstruction, image, d=discriminate: seen.append(image) or d(reconstruction, image))
        model.training_loss(torch.full((2, 3, 64, 64), 0.5), torch.tensor([True, True]))
        assert (not torch.allclose(seen[0], torch.tensor(0.5), atol=1e-3)) == sees_the_defect, choice


def test_non_finite_loss_stops_before_the_weights_change(monkeypatch: pytest.MonkeyPatch) -> None:
    model = RecSem(**TINY)
    compute = model.loss.forward

    def diverged(*args: object) -> dict[str, torch.Tensor]:
        terms = compute(*args)
        terms["loss"] = terms["loss"] * float("inf")
        return terms

    monkeypatch.setattr(model.loss, "forward", diverged)
    with pytest.raises(FloatingPointError, match="learning_rate"):
        model.training_step(_batch(), 0)


def test_the_loss_and_its_gradients_never_wait_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU, reading there or a blocking copy there waits for all the work queued before it.

    With meta tensors (no data) any read fails. The one read a step makes is its finite-loss
    check, after the forward pass (:meth:`RecSem.check_finite_loss`); the masks and textures
    drawn once every several steps (meta rows here) read too.
    """
    model = RecSem(**TINY)
    draw_meta_rows(monkeypatch, model.synthetic_defect)
    # torch has no autocast state for the meta device; the training step asks for it.
    autocast, autocast_enabled = torch.autocast, torch.is_autocast_enabled
    monkeypatch.setattr(torch, "autocast", lambda device_type, **kwargs: contextlib.nullcontext()
                        if device_type == "meta" else autocast(device_type, **kwargs))
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *device: device != ("meta",)
                        and autocast_enabled(*device))
    model.model.to("meta")
    images, flags = _batch().image.to("meta"), _batch().gt_label  # flags on the host, as in training
    with BlockingCopies() as copies:
        terms = model.training_loss(images, flags)
        terms["loss"].backward()
    assert copies.found == []
    assert all(parameter.grad.device == torch.device("meta") for parameter in model.model.parameters())


def test_training_batches_keep_their_defect_flags_on_the_host() -> None:
    model = RecSem(**TINY)
    meta = torch.device("meta")
    for training in (True, False):
        model._trainer = types.SimpleNamespace(training=training)  # noqa: SLF001
        moved = model.transfer_batch_to_device(_batch(), meta, 0)
        assert moved.image.device == meta
        assert moved.gt_label.device == (torch.device("cpu") if training else meta)


def test_channels_last_formats_the_networks() -> None:
    model = RecSem(**{**TINY, "channels_last": True})
    model.on_fit_start()
    weight = model.model.encoder.block1[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    plain = RecSem(**TINY)
    plain.on_fit_start()
    assert plain.model.encoder.block1[0].weight.is_contiguous()


def test_compile_trains_through_a_compiled_network_that_shares_the_weights() -> None:
    model = RecSem(**{**TINY, "compile": True})
    network = model._training_network()  # noqa: SLF001
    assert network is not model.model and "_orig_mod" in dict(network.named_children())
    assert network._orig_mod is model.model  # noqa: SLF001
    assert not any(name.startswith("_compiled") for name in model.state_dict())
    eager = RecSem(**TINY)
    assert eager._training_network() is eager.model  # noqa: SLF001


def test_bf16_autocast_loss_is_close_to_float32() -> None:
    """Same weights, same batch, same defects: bf16 autocast within 5 % of the float32 loss."""
    model = RecSem(**TINY)
    images, flags = torch.rand(4, 3, 64, 64), torch.tensor([True, False, True, False])
    torch.manual_seed(0)
    reference = model.training_loss(images, flags)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.training_loss(images, flags)
    for name, value in reference.items():
        assert torch.isfinite(mixed[name]), name
        assert mixed[name].dtype == torch.float32, name
        assert mixed[name].item() == pytest.approx(value.item(), rel=0.05), name


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_the_compiled_training_network_traces_as_one_graph(autocast: bool) -> None:
    """A graph break would split the compiled step and send part of it back to eager Python."""
    model = RecSem(**TINY)
    network = model.model.train()
    images = torch.rand(2, 3, 64, 64)
    torch._dynamo.reset()  # noqa: SLF001
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        explanation = torch._dynamo.explain(network)(images, images)  # noqa: SLF001
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_the_prototype_memory_runs_in_float32_under_bf16_autocast() -> None:
    """Attention over prototypes and their normalisation are the numerically delicate part."""
    model = RecSem(**TINY)
    dtypes = []

    def record(_module: torch.nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        dtypes.append((inputs[0].dtype, output.dtype))

    for unit in model.model.memory.units:
        unit.prototype_head.register_forward_hook(record)
    images = torch.rand(2, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.model.train()(images, images)
        encoded = model.model.encoder(model.model.normalize(images))
    assert encoded.dtype == torch.bfloat16  # autocast is on around the memory
    assert dtypes and set(dtypes) == {(torch.float32, torch.float32)}


@pytest.mark.parametrize(
    ("option", "value", "reads"),
    [
        ("memory_skip", False, lambda model: {unit.skip for unit in model.memory.units}),
        ("normalize_query", False, lambda model: {unit.normalize_query for unit in model.memory.units}),
        ("location_embedding", False, lambda model: {unit.location is not None for unit in model.memory.units}),
        ("num_prototypes", 3, lambda model: {unit.num_prototypes for unit in model.memory.units}),
        ("memory_scales", [2], lambda model: set(model.memory.scales)),
        ("detach_reconstruction", True, lambda model: {model.detach_reconstruction}),
        ("score_kernel_size", 3, lambda model: {model.score_kernel_size}),
        ("score_top_k", 2, lambda model: {model.score_top_k}),
    ],
)
def test_network_options_reach_the_network(option: str, value: object, reads: object) -> None:
    default = reads(RecSem(**TINY).model)
    given = reads(RecSem(**{**TINY, option: value}).model)
    assert given == (set(value) if isinstance(value, list) else {value})
    assert given != default


def test_numpy_and_torch_values_pass_as_python_ones() -> None:
    """As a sweep or a notebook may give them."""
    model = RecSem(**{**TINY, "memory_skip": np.bool_(False), "memory_scales": torch.tensor([2]),
                      "score_top_k": np.int64(2), "channels_last": np.bool_(True)})
    assert model.model.memory.scales == (2,)
    assert model.model.memory.units[0].skip is False
    assert model.model.score_top_k == 2
    assert RecSem(**{**TINY, "memory_scales": np.array([2, 4])}).model.memory.scales == (2, 4)
