"""RandomStreams starts every epoch from the generators alone, and continues a checkpoint's when resuming."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from anomalib_recsem import SyntheticDefect
from anomalib_recsem.models.recsem.components.random_streams import RandomStreams


def test_epoch_start_discards_the_defects_drawn_ahead() -> None:
    transform = SyntheticDefect(seed=None)
    images, two = torch.rand(4, 3, 32, 32), torch.tensor([True, True, False, False])
    transform.synthesize(images, two)
    transform.synthesize(images, two)  # draws 4 masks and textures and serves 2: 2 are left
    torch.manual_seed(5)
    left_over = transform.synthesize(images, two)
    # The epoch start of a single-process run: nothing is reseeded, the drawn rows go.
    RandomStreams().on_train_epoch_start(SimpleNamespace(world_size=1), SimpleNamespace(synthetic_defect=transform))
    torch.manual_seed(5)
    fresh = transform.synthesize(images, two)
    transform.discard_drawn()
    torch.manual_seed(5)
    again = transform.synthesize(images, two)
    assert torch.equal(fresh.mask, again.mask) and torch.equal(fresh.defective, again.defective)
    assert not torch.equal(left_over.mask, fresh.mask)


def test_a_checkpoints_streams_are_continued_by_a_fit_only() -> None:
    # Lightning hands a checkpoint's callback state over when testing or predicting from it too.
    streams = RandomStreams()
    torch.manual_seed(0)
    saved = streams.state_dict()
    continued = torch.rand(3)
    torch.manual_seed(1)
    users = torch.get_rng_state()
    streams.load_state_dict(saved)
    assert torch.equal(torch.get_rng_state(), users)  # a test run leaves the user's seed alone
    streams.on_fit_start(SimpleNamespace(world_size=1), None)  # a resumed fit continues the streams
    assert torch.equal(torch.rand(3), continued)
    # Strategies that restore after on_fit_start (FSDP, DeepSpeed): continued at once.
    torch.manual_seed(1)
    streams.load_state_dict(saved)
    assert torch.equal(torch.rand(3), continued)
    streams.teardown(None, None, "fit")
    torch.manual_seed(1)
    streams.load_state_dict(saved)  # a later test run from the checkpoint
    assert torch.equal(torch.get_rng_state(), users)
