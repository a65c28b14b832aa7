"""Shapes, parameter counts and scoring of the RecSem network."""

from __future__ import annotations

import pytest
import torch
from anomalib.data import InferenceBatch

from anomalib_recsem.models.recsem.loss import RecSemLoss
from anomalib_recsem.models.recsem.torch_model import (
    RecSemModel,
    RecSemOutput,
    default_memory_scales,
    default_score_kernel_size,
)

TINY = {"reconstruction_width": 4, "discriminator_width": 4, "num_prototypes": 4}


@pytest.mark.parametrize(
    ("image_size", "scales", "discriminator"),
    [
        ((64, 64), None, "unet"),
        ((64, 64), (1, 2, 4), "unet"),
        ((32, 96), None, "unet"),
        ((128, 64), (8,), "fusion"),
        ((96, 96), (3, 6), "fusion"),
    ],
)
def test_shapes(image_size: tuple[int, int], scales: tuple[int, ...] | None, discriminator: str) -> None:
    model = RecSemModel(image_size, memory_scales=scales, discriminator=discriminator, **TINY)
    images = torch.rand(2, 3, *image_size)
    output = model(images)
    assert isinstance(output, RecSemOutput)
    assert output.reconstruction.shape == images.shape
    assert output.logits.shape == (2, 2, *image_size)
    assert output.compactness.ndim == 0 and output.separation.ndim == 0
    model.eval()
    with torch.no_grad():
        result = model(images)
    assert isinstance(result, InferenceBatch)
    assert result.anomaly_map.shape == (2, *image_size)
    assert result.pred_score.shape == (2,)
    assert ((result.anomaly_map >= 0) & (result.anomaly_map <= 1)).all()


def test_grayscale_model() -> None:
    model = RecSemModel((64, 64), in_channels=1, **TINY)
    assert model(torch.rand(2, 1, 64, 64)).reconstruction.shape == (2, 1, 64, 64)


def test_default_scales_follow_image_size() -> None:
    assert default_memory_scales((256, 256)) == (8, 16)
    assert default_memory_scales((128, 128)) == (4, 8)
    assert default_memory_scales((512, 256)) == (16, 32)
    assert RecSemModel((128, 128), **TINY).memory_scales == (4, 8)


def test_paper_configuration() -> None:
    """The authors' network: their parameter counts, a 1024x16x16 bottleneck, 2x256x256 logits."""
    model = RecSemModel()
    parts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in
             ("encoder", "memory", "decoder", "discriminator")}
    assert parts == {"encoder": 37_622_400, "memory": 430_080, "decoder": 12_558_147, "discriminator": 28_373_122}
    assert sum(parameter.numel() for parameter in model.parameters()) == 78_983_749
    assert model.memory_scales == (8, 16)
    # Location embeddings have exactly the paper's sizes, so no resizing happens at 256 px.
    assert [tuple(unit.location.shape) for unit in model.memory.units] == [(1, 1024, 8, 8), (1, 1024, 16, 16)]
    model.eval()
    with torch.no_grad():
        bottleneck = model.encoder(torch.rand(1, 3, 256, 256))
        assert bottleneck.shape == (1, 1024, 16, 16)
        assert model.memory(bottleneck).features.shape == (1, 2048, 16, 16)
        result = model(torch.rand(1, 3, 256, 256))
    assert result.anomaly_map.shape == (1, 256, 256)


def test_fusion_discriminator_is_siamese() -> None:
    # The authors' Segnet_ours at full width.
    assert sum(p.numel() for p in RecSemModel(discriminator="fusion").discriminator.parameters()) == 34_675_138
    model = RecSemModel((64, 64), discriminator="fusion", **TINY)
    # One encoder for both images: its first conv sees 3 channels, not 6.
    assert model.discriminator.encoder.block1[0].in_channels == 3


@pytest.mark.parametrize("image_size", [100, (64, 100), 0, (64,)])
def test_image_size_must_be_multiple_of_32(image_size: object) -> None:
    with pytest.raises(ValueError, match="image_size"):
        RecSemModel(image_size, **TINY)


def test_unknown_discriminator() -> None:
    with pytest.raises(ValueError, match="discriminator"):
        RecSemModel((64, 64), discriminator="transformer", **TINY)


def test_image_score_is_top_k_mean_of_mean_filtered_map() -> None:
    model = RecSemModel((64, 64), score_kernel_size=3, score_top_k=2, **TINY)
    anomaly_map = torch.zeros(1, 1, 64, 64)
    anomaly_map[0, 0, 10, 10] = 0.9
    # A lone pixel spreads over its 3x3 neighbourhood: every neighbour reads 0.9 / 9.
    assert model.image_score(anomaly_map).item() == pytest.approx(0.1)
    # Inside a 5x5 patch the 3x3 filter sees only the patch: 9 positions read 0.9.
    anomaly_map[0, 0, 30:35, 30:35] = 0.9
    assert model.image_score(anomaly_map).item() == pytest.approx(0.9)
    # Border pixels are pulled towards zero by the zero padding.
    corner = torch.zeros(1, 1, 64, 64)
    corner[0, 0, :2, :2] = 1.0
    # The 3x3 windows centred on the 2x2 corner block's own pixels each hold its 4 ones (the rest is
    # padding or zeros), so the best two read 4/9 each.
    assert model.image_score(corner).item() == pytest.approx(4 / 9)


def test_the_map_marks_what_the_loss_trains_as_defect() -> None:
    # Logits the focal loss finds confidently right for a mask give that mask as the anomaly map, and
    # the image with the marked patch the higher score: with the channels swapped on either side, the
    # model would score every image upside down and still train.
    model = RecSemModel((64, 64), score_kernel_size=3, score_top_k=4, **TINY)
    mask = torch.zeros(2, 1, 64, 64)
    mask[1, :, 20:30, 20:30] = 1
    logits = torch.cat([4 - 8 * mask, 8 * mask - 4], dim=1)  # +-4: softmax 0.9997 on the masked side
    assert RecSemLoss().focal(torch.softmax(logits, dim=1), mask).item() < 1e-6
    prediction = model.predict(logits)
    assert torch.allclose(prediction.anomaly_map, mask.squeeze(1), atol=1e-3)
    assert prediction.pred_score[1] > 0.99
    assert prediction.pred_score[0] < 0.01


@pytest.mark.parametrize(("size", "kernel"), [((256, 256), 21), ((128, 128), 11), ((64, 64), 5),
                                              ((32, 32), 3), ((128, 256), 21), ((512, 512), 43)])
def test_default_score_window_covers_the_papers_share_of_the_image(size: tuple[int, int], kernel: int) -> None:
    # 21 px at 256 px is 8.2 % of the side: 10.5 px at 128 (odd: 11), 5.25 at 64, 2.6 at 32, 42 at 512.
    assert default_score_kernel_size(size) == kernel
    assert RecSemModel(size, **TINY).score_kernel_size == kernel
    assert RecSemModel(size, score_kernel_size=7, **TINY).score_kernel_size == 7


def test_detach_reconstruction_stops_segmentation_gradient() -> None:
    images = torch.rand(2, 3, 64, 64)
    for detach, expect_gradient in ((True, False), (False, True)):
        torch.manual_seed(0)
        model = RecSemModel((64, 64), detach_reconstruction=detach, **TINY)
        model(images).logits.sum().backward()
        gradient = model.decoder.output.weight.grad
        assert (gradient is not None and bool(gradient.abs().sum() > 0)) is expect_gradient


def test_discriminator_compares_with_original() -> None:
    torch.manual_seed(0)
    model = RecSemModel((64, 64), **TINY)
    images = torch.rand(2, 3, 64, 64)
    torch.manual_seed(1)
    same = model(images).logits
    torch.manual_seed(1)
    other = model(images, original=torch.zeros_like(images)).logits
    assert not torch.allclose(same, other)


def test_images_are_normalised_with_imagenet_statistics() -> None:
    model = RecSemModel((64, 64), **TINY).eval()
    seen = []
    model.encoder.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        torch.nn.init.zeros_(model.decoder.output.weight)
        torch.nn.init.zeros_(model.decoder.output.bias)
        reconstruction = model.reconstruct(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 64, 64))[0]
    # The encoder sees ImageNet-normalised pixels (the mean becomes 0) ...
    assert torch.allclose(seen[0], torch.zeros(1, 3, 64, 64), atol=1e-6)
    # ... and a decoder output of 0 is the mean image in pixel space.
    assert torch.allclose(reconstruction[0, :, 0, 0], torch.tensor([0.485, 0.456, 0.406]))


@pytest.mark.parametrize("option", ["memory_skip", "normalize_query", "location_embedding"])
def test_each_memory_option_changes_what_the_decoder_reads(option: str) -> None:
    """The same weights (all that the model without the option has): turning it off changes the memory's read-out."""
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with_option = RecSemModel((64, 64), **TINY, **{option: True}).eval()
    without = RecSemModel((64, 64), **TINY, **{option: False}).eval()
    missing, unexpected = without.load_state_dict(with_option.state_dict(), strict=False)
    assert not missing and (not unexpected or option == "location_embedding")

    def read_out(model: RecSemModel) -> torch.Tensor:  # what the decoder gets (at initialisation it draws ~0)
        return model.memory(model.encoder(model.normalize(images))).features

    assert not torch.allclose(read_out(with_option), read_out(without), atol=1e-4)
