"""RecSem's Lightning-side contract: arguments, schedule, metrics and training step."""

from __future__ import annotations

import math

import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.metrics import AUPRO
from torchvision.transforms.v2 import Normalize, Resize

from anomalib_recsem import RecSem
from anomalib_recsem.models.recsem.lightning_model import warmup_cosine
from tests.conftest import TINY_RECSEM


def test_defaults_are_the_paper_settings() -> None:
    model = RecSem()
    assert model.model.image_size == (256, 256)
    assert model.model.memory_scales == (8, 16)
    assert len(model.model.memory.units[0].prototype_head.weight) == 50
    assert (model.positive_aug_ratio, model.negative_aug_ratio) == (2, 2)
    assert model.trainer_arguments == {"num_sanity_val_steps": 0}
    assert model.learning_type.value == "one_class"


def test_pre_processor_resizes_without_normalising() -> None:
    model = RecSem(image_size=(64, 128), reconstruction_width=4, discriminator_width=4)
    transform = model.pre_processor.transform
    assert isinstance(transform, Resize) and list(transform.size) == [64, 128]
    assert transform.antialias is False
    assert not isinstance(transform, Normalize)


def test_max_epochs_reaches_trainer_only_when_set() -> None:
    assert RecSem(max_epochs=3, **TINY_RECSEM).trainer_arguments["max_epochs"] == 3
    assert "max_epochs" not in RecSem(**TINY_RECSEM).trainer_arguments


def test_evaluator_has_aupro_for_test_and_validation() -> None:
    evaluator = RecSem(**TINY_RECSEM).evaluator
    test_names = {metric.name for metric in evaluator.test_metrics}
    assert test_names == {"image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score", "pixel_AUPRO"}
    assert {metric.name for metric in evaluator.val_metrics} == {"image_AUROC", "pixel_AUPRO"}
    aupro = next(metric for metric in evaluator.test_metrics if isinstance(metric, AUPRO))
    assert aupro.fpr_limit == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("image_size", 100),
        ("discriminator", "mlp"),
        ("discriminator_input", "noisy"),
        ("positive_aug_ratio", -1),
        ("negative_aug_ratio", 1.5),
        ("memory_scales", (64,)),
        ("max_epochs", 0),
    ],
)
def test_bad_arguments_name_themselves(argument: str, value: object) -> None:
    arguments = {**TINY_RECSEM, argument: value}
    with pytest.raises(ValueError, match=argument):
        RecSem(**arguments)


def test_both_ratios_zero() -> None:
    with pytest.raises(ValueError, match="positive_aug_ratio"):
        RecSem(**{**TINY_RECSEM, "positive_aug_ratio": 0, "negative_aug_ratio": 0})


def test_missing_anomaly_source_fails_when_training_starts(tmp_path) -> None:  # noqa: ANN001
    missing = tmp_path / "no_textures_here"
    model = RecSem(anomaly_source=missing, **TINY_RECSEM)  # building never needs the folder
    with pytest.raises(FileNotFoundError, match="anomaly_source") as error:
        model.on_fit_start()
    assert str(missing) in str(error.value)


def test_schedule_shape() -> None:
    total = 100
    values = [warmup_cosine(epoch, total) for epoch in range(total)]
    assert values[0] == pytest.approx(0.1 + 0.9 / 20)  # the authors' first epoch: 0.145
    assert values[19] == pytest.approx(1.0)  # end of the 20-epoch warm-up
    assert all(a < b for a, b in zip(values[:19], values[1:20], strict=True))
    assert all(a >= b for a, b in zip(values[20:], values[21:], strict=False))
    assert min(values) == pytest.approx(0.1)  # cosine floor
    assert values[20] == pytest.approx(0.5 * (1 + math.cos(math.pi / 80)))
    # A 10-epoch run has the same shape, compressed.
    short = [warmup_cosine(epoch, 10) for epoch in range(10)]
    assert short[1] == pytest.approx(1.0) and short[-1] == pytest.approx(0.1)


class _FakeOptimizer:
    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.steps = 0

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        self.steps += 1
        self.optimizer.step()


def _batch(size: int = 2) -> ImageBatch:
    return ImageBatch(image=torch.rand(size, 3, 64, 64), gt_label=torch.zeros(size, dtype=torch.bool))


def _prepare(model: RecSem, monkeypatch: pytest.MonkeyPatch) -> _FakeOptimizer:
    optimizer = _FakeOptimizer(torch.optim.Adam(model.model.parameters(), lr=1e-3))
    monkeypatch.setattr(model, "optimizers", lambda: optimizer)
    monkeypatch.setattr(model, "manual_backward", lambda loss: loss.backward())
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    monkeypatch.setattr(model, "log_dict", lambda *args, **kwargs: None)
    return optimizer


def test_training_step_takes_one_step_per_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    model = RecSem(**{**TINY_RECSEM, "positive_aug_ratio": 2, "negative_aug_ratio": 1})
    optimizer = _prepare(model, monkeypatch)
    seen: list[torch.Tensor] = []
    synthesize = model.synthetic_defect.synthesize

    def spy(images: torch.Tensor, apply_defect: torch.Tensor) -> object:
        seen.append(apply_defect.clone())
        return synthesize(images, apply_defect=apply_defect)

    monkeypatch.setattr(model.synthetic_defect, "synthesize", spy)
    before = [parameter.detach().clone() for parameter in model.model.parameters()]
    model.training_step(_batch(2), 0)
    assert optimizer.steps == 3
    assert [len(flags) for flags in seen] == [2, 2, 2]
    assert int(torch.cat(seen).sum()) == 4  # 2 defect copies of 2 images
    assert any(not torch.equal(a, b) for a, b in zip(before, model.model.parameters(), strict=True))


def test_non_finite_loss_stops_without_touching_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    model = RecSem(**TINY_RECSEM)
    optimizer = _prepare(model, monkeypatch)
    before = [parameter.detach().clone() for parameter in model.model.parameters()]
    compute = model.loss.forward

    def diverged(*args: object) -> dict[str, torch.Tensor]:
        terms = compute(*args)
        terms["loss"] = terms["loss"] * float("inf")
        return terms

    monkeypatch.setattr(model.loss, "forward", diverged)
    with pytest.raises(FloatingPointError, match="learning_rate"):
        model.training_step(_batch(2), 0)
    assert optimizer.steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.model.parameters(), strict=True))


def test_non_finite_image_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    model = RecSem(**TINY_RECSEM)
    optimizer = _prepare(model, monkeypatch)
    batch = ImageBatch(image=torch.rand(2, 3, 64, 64), gt_label=torch.zeros(2, dtype=torch.bool), image_path=["a.png", "b.png"])
    batch.image[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"b\.png"):
        model.training_step(batch, 0)
    assert optimizer.steps == 0
