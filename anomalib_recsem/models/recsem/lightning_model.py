"""RecSem as an anomalib model.

Paper: Wang Shangshang & Jin Cheng, "Surface Anomaly Detection Based on Image
Reconstruction and Semantic Difference Discrimination", Computer Science 50(11):151-159,
2023, doi:10.11896/jsjkx.221100023.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score
from anomalib.models.components import AnomalibModule
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn
from torchvision.transforms.v2 import Resize

from anomalib_recsem.data.synthetic_defect import SyntheticDefect

from .export import AtomicExportMixin
from .loss import RecSemLoss
from .safeguards import SafeguardsMixin, check_checkpoint_matches
from .torch_model import RecSemModel, check_image_size

logger = logging.getLogger(__name__)

DISCRIMINATOR_INPUTS = ("augmented", "clean")
RNG_STATE_KEY = "recsem_rng_state"
RANK_SEED_KEY = "recsem_rank_seed"


def capture_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's generators, as tensors and plain values.

    Plain types only, so checkpoints still load with ``weights_only=True``.
    """
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((
        "MT19937",
        numpy_state["keys"].numpy().astype(np.uint32),
        numpy_state["position"],
        numpy_state["has_gauss"],
        numpy_state["cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_rank_generators(base: int, epoch: int, rank: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and all CUDA) generators from ``(base, epoch, rank)``.

    Used under distributed training only (see :meth:`RecSem.on_train_epoch_start`). A
    ``SeedSequence`` over the three numbers gives well-separated streams for every rank
    and epoch, as Lightning does for data-loader workers (``pl_worker_init_function``).
    """
    sequence = np.random.SeedSequence([base, epoch, rank])
    python_seed, torch_seed = (int(value) for value in sequence.generate_state(2, dtype=np.uint64))
    random.seed(python_seed)
    np.random.seed(sequence.generate_state(4))
    torch.manual_seed(torch_seed)


@torch.no_grad()
def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy process ``src``'s buffers of ``module`` to every process (one broadcast per dtype).

    Needs an initialised default process group; every process must call it.
    """
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for buffer in module.buffers():
        by_dtype.setdefault(buffer.dtype, []).append(buffer)
    for buffers in by_dtype.values():
        flat = torch.cat([buffer.reshape(-1) for buffer in buffers])
        torch.distributed.broadcast(flat, src=src)
        for buffer, value in zip(buffers, flat.split([buffer.numel() for buffer in buffers]), strict=True):
            buffer.copy_(value.view_as(buffer))


def warmup_cosine(epoch: int, total_epochs: int, warmup_fraction: float = 0.2, floor: float = 0.1) -> float:
    """Learning-rate multiplier of the authors' schedule, relative to the run's length.

    Epoch ``e`` (1-based) runs at ``0.1 + 0.9 e / W`` during the ``W`` warm-up epochs,
    then at ``max(floor, (1 + cos(pi (e - W) / (T - W))) / 2)``. The authors used 20
    warm-up epochs in their 100-epoch example, hence ``W = 0.2 T`` here, so short runs
    follow the same shape.

    Args:
        epoch: 0-based index of the epoch about to run.
        total_epochs: ``T``; 0 or less means unknown, and the rate stays at 1 after warm-up.
        warmup_fraction: ``W / T``.
        floor: Lowest multiplier after warm-up.

    Returns:
        float: The multiplier.
    """
    epoch += 1
    if total_epochs <= 0:
        warmup = 20
        return 0.1 + 0.9 * epoch / warmup if epoch <= warmup else 1.0
    warmup = max(1, round(warmup_fraction * total_epochs))
    if epoch <= warmup:
        return 0.1 + 0.9 * epoch / warmup
    if total_epochs <= warmup:
        return 1.0
    return max(floor, 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (total_epochs - warmup))))


class RecSem(SafeguardsMixin, AtomicExportMixin, AnomalibModule):
    """RecSem: image reconstruction through prototype memory + semantic difference discrimination.

    Training needs only defect-free images: every batch is expanded with synthetic defects
    (:class:`anomalib_recsem.SyntheticDefect`), the reconstruction network learns to
    remove them and the discriminator learns to segment them. Nothing is downloaded: with
    ``anomaly_source=None`` defect textures come from a built-in procedural bank.

    Args:
        image_size: Side (int) or ``(height, width)`` images are resized to; multiples of
            32. Defaults to 256.
        reconstruction_width: Width of the first reconstruction encoder block (128 in the
            paper; the bottleneck has 8x as many channels).
        discriminator_width: Width of the first discriminator block (64 in the paper).
        memory_scales: Sizes of the bottleneck copies the prototype memory works on, each
            in ``1..image_size/16``. ``None`` gives the paper's ``(8, 16)`` at 256 px, scaled
            with the image size (``(4, 8)`` at 128 px).
        num_prototypes: Prototypes per memory unit (50).
        location_embedding: Learned location embedding in each memory unit.
        memory_skip: Skip connection around each memory unit.
        normalize_query: L2-normalise memory queries so they share the prototypes' scale
            (method.md D18; off in the paper, for ablations).
        discriminator: ``"unet"`` (concatenated pair, the authors' code) or ``"fusion"``
            (multi-scale feature fusion, the paper's figure).
        detach_reconstruction: Keep the segmentation loss out of the reconstruction
            network (the authors did this for cable, screw and transistor).
        discriminator_input: What the discriminator compares the reconstruction with in
            training: ``"augmented"`` (the image with synthetic defects, as in the paper's
            figure and DRAEM) or ``"clean"`` (the defect-free image, as in the authors' code).
        positive_aug_ratio: Copies of each training image *with* a synthetic defect per
            epoch. With ``negative_aug_ratio`` this reproduces the authors' epoch: each
            training image is seen ``negative_aug_ratio + positive_aug_ratio`` times, and
            every batch of ``B`` images becomes that many optimiser steps of ``B`` samples,
            shuffled, of which ``positive / (positive + negative)`` carry defects.
        negative_aug_ratio: Copies of each training image *without* a defect per epoch
            (only the light affine augmentation).
        anomaly_source: Where defect textures come from: ``None`` (built-in procedural
            textures), ``"self"`` (the image itself) or a folder of images such as DTD's
            ``images/``. Checked when training starts, so exporting or loading a checkpoint
            never needs it.
        learning_rate: Adam learning rate at the top of the schedule.
        weight_decay: Adam weight decay.
        max_epochs: Training epochs, forwarded to the Trainer (needed by ``anomalib
            benchmark``, which sets none). ``None`` leaves it to the Trainer.
        score_kernel_size: Mean filter size for the image score.
        score_top_k: Number of top filtered anomaly-map values averaged into the score.
        pre_processor: Pre-processor, or ``True`` for a resize to ``image_size``.
        post_processor: Post-processor, or ``True`` for the default.
        evaluator: Evaluator, or ``True`` for image AUROC/F1, pixel AUROC/F1 and pixel
            AUPRO (FPR limit 0.3) on test, image AUROC and pixel AUPRO on validation.
        visualizer: Visualizer, or ``True`` for the default.

    Example:
        >>> from anomalib_recsem import RecSem
        >>> model = RecSem(image_size=64, reconstruction_width=8, discriminator_width=8)
    """

    def __init__(
        self,
        image_size: int | Sequence[int] = 256,
        reconstruction_width: int = 128,
        discriminator_width: int = 64,
        memory_scales: Sequence[int] | None = None,
        num_prototypes: int = 50,
        location_embedding: bool = True,
        memory_skip: bool = True,
        normalize_query: bool = False,
        discriminator: str = "unet",
        detach_reconstruction: bool = False,
        discriminator_input: str = "augmented",
        positive_aug_ratio: int = 2,
        negative_aug_ratio: int = 2,
        anomaly_source: str | Path | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        max_epochs: int | None = None,
        score_kernel_size: int = 21,
        score_top_k: int = 5,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        size = check_image_size(image_size)
        if discriminator_input not in DISCRIMINATOR_INPUTS:
            msg = f"discriminator_input must be one of {DISCRIMINATOR_INPUTS}, got {discriminator_input!r}."
            raise ValueError(msg)
        for name, ratio in (("positive_aug_ratio", positive_aug_ratio), ("negative_aug_ratio", negative_aug_ratio)):
            if int(ratio) != ratio or ratio < 0:
                msg = f"{name} must be a non-negative integer, got {ratio!r}."
                raise ValueError(msg)
        if positive_aug_ratio + negative_aug_ratio < 1:
            msg = "positive_aug_ratio + negative_aug_ratio must be at least 1 (both are 0)."
            raise ValueError(msg)
        if max_epochs is not None and max_epochs < 1:
            msg = f"max_epochs must be a positive integer or None, got {max_epochs!r}."
            raise ValueError(msg)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = RecSemModel(
            image_size=size,
            reconstruction_width=reconstruction_width,
            discriminator_width=discriminator_width,
            memory_scales=memory_scales,
            num_prototypes=num_prototypes,
            location_embedding=location_embedding,
            memory_skip=memory_skip,
            normalize_query=normalize_query,
            discriminator=discriminator,
            detach_reconstruction=detach_reconstruction,
            score_kernel_size=score_kernel_size,
            score_top_k=score_top_k,
        )
        self.loss = RecSemLoss()
        self.discriminator_input = discriminator_input
        self.positive_aug_ratio = int(positive_aug_ratio)
        self.negative_aug_ratio = int(negative_aug_ratio)
        self.anomaly_source = anomaly_source
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        # Several optimiser steps per batch (see positive_aug_ratio), so steps are manual.
        self.automatic_optimization = False
        self._synthetic_defect: SyntheticDefect | None = None
        # Shared by all ranks of a distributed run, drawn in on_fit_start; None otherwise.
        self._rank_seed: int | None = None

    @property
    def synthetic_defect(self) -> SyntheticDefect:
        """The defect synthesiser, built on first use so that a missing texture folder
        only matters when training."""
        if self._synthetic_defect is None:
            ratio = self.positive_aug_ratio / (self.positive_aug_ratio + self.negative_aug_ratio)
            self._synthetic_defect = SyntheticDefect(anomaly_source=self.anomaly_source, probability=ratio)
        return self._synthetic_defect

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the random generators' states so a resumed run draws the same data order
        and synthetic defects as an uninterrupted one."""
        checkpoint[RNG_STATE_KEY] = capture_rng_state()
        # Under DDP only rank 0 writes the file, so the state above is rank 0's. The other
        # ranks' streams are not lost: they are re-derived from this shared seed at every
        # epoch start (see on_train_epoch_start), so resuming at an epoch boundary stays exact.
        if self._rank_seed is not None:
            checkpoint[RANK_SEED_KEY] = self._rank_seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """When resuming training, continue the random streams where the checkpoint left them.

        Restored here, before Lightning builds the training data loader, because the loader
        draws from the global generator as soon as it is built. Loading a checkpoint for
        testing, prediction or export leaves the generators alone. A checkpoint whose network
        does not fit this model fails first, naming the file and the differing arguments.
        """
        check_checkpoint_matches(self, checkpoint)
        state = checkpoint.get(RNG_STATE_KEY)
        if state is not None and self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:
            restore_rng_state(state)
            self._rank_seed = checkpoint.get(RANK_SEED_KEY)

    def on_fit_start(self) -> None:
        """Fail before the first epoch, not in it, when the defect source is unusable.

        Under distributed training, also fix the seed from which every rank's random
        streams are derived (see :meth:`on_train_epoch_start`).
        """
        # Built (and checked) on every rank: each process has its own copy. A rank that
        # fails here (say, a texture folder missing on one node) exits with the error, and
        # the launcher (Lightning's process observer, torchrun, mp.spawn) ends the others.
        _ = self.synthetic_defect
        if self._distributed() and self._rank_seed is None:
            # Drawn from rank 0's generator (deterministic when the run is seeded) and
            # broadcast, so that every rank, and the checkpoint, hold the same value even when
            # the ranks were not seeded alike. Every rank calls broadcast (a collective).
            drawn = int(torch.randint(0, 2**62, (1,)).item())
            self._rank_seed = int(self.trainer.strategy.broadcast(drawn, src=0))

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Expand the batch with synthetic defects and take one optimiser step per ``B`` samples.

        Args:
            batch: Batch of defect-free training images.
            args: Unused.
            kwargs: Unused.

        Returns:
            STEP_OUTPUT: The mean total loss over the steps taken (detached).

        Raises:
            ValueError: If an input image has NaN or infinite pixels (names the files).
            FloatingPointError: If a loss term is NaN or infinite; the weights are left as
                they were before that step.
        """
        del args, kwargs
        images = batch.image
        if not bool(torch.isfinite(images).all()):
            bad = torch.isfinite(images.flatten(1)).all(dim=1).logical_not().nonzero().flatten().tolist()
            paths = [str(batch.image_path[i]) for i in bad] if batch.image_path is not None else bad
            msg = f"Training images contain NaN or infinite pixel values: {paths}. Fix or remove these files."
            raise ValueError(msg)
        batch_size = images.shape[0]
        copies = self.negative_aug_ratio + self.positive_aug_ratio
        samples = images.repeat(copies, 1, 1, 1)
        with_defect = torch.arange(samples.shape[0], device=images.device) >= self.negative_aug_ratio * batch_size
        order = torch.randperm(samples.shape[0], device=images.device)
        samples, with_defect = samples[order], with_defect[order]

        optimizer = self.optimizers()
        totals: dict[str, torch.Tensor] = {}
        for chunk, chunk_with_defect in zip(samples.split(batch_size), with_defect.split(batch_size), strict=True):
            defects = self.synthetic_defect.synthesize(chunk, apply_defect=chunk_with_defect)
            original = defects.defective if self.discriminator_input == "augmented" else defects.clean
            output = self.model(defects.defective, original)
            terms = self.loss(defects.clean, output, defects.mask)
            self._check_finite(terms)
            optimizer.zero_grad()
            self.manual_backward(terms["loss"])
            optimizer.step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.detach() / copies
        if self._distributed():
            # DDP keeps parameters equal (gradients are averaged), but buffers -- BatchNorm's
            # running statistics -- follow each rank's own batches. DDP normally copies rank 0's
            # buffers to all ranks at every forward; under manual optimisation Lightning keeps
            # that from happening after the first step, so the ranks' running statistics drift
            # apart and validation, thresholds and test would mix N different models (and
            # differ from the rank-0 checkpoint). Do what DDP would do, once per batch.
            broadcast_buffers(self.model)
        # sync_dist: under DDP the epoch values are means over all ranks' batches, not rank 0's
        # alone (a scalar all-reduce per value and step; nothing when there is one process).
        self.log("train_loss", totals.pop("loss"), on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        self.log_dict({f"train_{name}": value for name, value in totals.items()}, on_epoch=True, batch_size=batch_size,
                      sync_dist=True)
        return None

    def _distributed(self) -> bool:
        """Whether this module trains in a process group of several ranks (DDP).

        False without a trainer too, so steps can be called directly (tests, notebooks).
        """
        return (
            self._trainer is not None
            and self.trainer.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        )

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        values = torch.stack([value.detach() for value in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        report = ", ".join(f"{name}={value.item():.4g}" for name, value in terms.items())
        msg = (
            f"RecSem training loss is not finite at epoch {self.current_epoch}, step {self.global_step} ({report}). "
            f"The weights were not updated with it. Lower learning_rate (now {self.learning_rate:g}; "
            f"any positive float, 1e-3 in the paper) or check the training images for NaN/Inf values."
        )
        raise FloatingPointError(msg)

    def on_train_epoch_start(self) -> None:
        """Set this epoch's learning rate; under distributed training, reseed this rank.

        The rate is a pure function of the epoch index rather than the state of an
        ``LRScheduler``, so a run resumed from any checkpoint continues on the same curve.
        """
        total_epochs = self.max_epochs or self.trainer.max_epochs or 0
        rate = self.learning_rate * warmup_cosine(self.current_epoch, total_epochs)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = rate
        # Same value on every rank; sync_dist only silences Lightning's distributed warning.
        self.log("learning_rate", rate, on_step=False, on_epoch=True, sync_dist=True)
        if self._distributed() and self._rank_seed is not None:
            # Lightning reseeds every DDP process with the run's seed when it sets up DDP
            # (reset_seed), so without this the ranks of a seeded run would draw the same
            # synthetic defects and shuffles: N copies of every defect per step, no more defect
            # variety than one process.
            # Reseeding from (shared seed, epoch, rank) gives each rank its own stream that
            # is still a pure function of the run's seed and world size, and that a run
            # resumed at an epoch boundary recovers without storing every rank's state.
            # Nothing that must agree across ranks draws from these generators: the
            # DistributedSampler has its own seeded generator, and DDP broadcasts rank 0's
            # weights at start-up and averages gradients at every step.
            seed_rank_generators(self._rank_seed, self.current_epoch, self.global_rank)

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Predict anomaly maps and scores for the validation batch.

        Args:
            batch: Validation batch.
            args: Unused.
            kwargs: Unused.

        Returns:
            STEP_OUTPUT: The batch with ``anomaly_map`` and ``pred_score`` filled in.
        """
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam; the per-epoch warm-up + cosine schedule is applied in ``on_train_epoch_start``.

        Returns:
            torch.optim.Optimizer: Adam over all network parameters.
        """
        return torch.optim.Adam(self.model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Trainer arguments RecSem needs; ``max_epochs`` only when given to the model."""
        arguments: dict[str, Any] = {"num_sanity_val_steps": 0}
        if self.max_epochs is not None:
            arguments["max_epochs"] = self.max_epochs
        return arguments

    @property
    def learning_type(self) -> LearningType:
        """RecSem trains on normal images only."""
        return LearningType.ONE_CLASS

    @classmethod
    def configure_pre_processor(cls, image_size: int | Sequence[int] | None = None) -> PreProcessor:
        """Resize only, without antialiasing, and no normalisation.

        Antialiasing is off because anomalib's exported graph always resizes without it;
        training on the same pixels keeps PyTorch and OpenVINO outputs identical.

        Args:
            image_size: Side or ``(height, width)``; 256 by default.

        Returns:
            PreProcessor: The pre-processor.
        """
        size = check_image_size(image_size if image_size is not None else 256)
        return PreProcessor(transform=Resize(size, antialias=False))

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """anomalib's default test metrics plus pixel AUPRO; image AUROC and pixel AUPRO on validation.

        Validation metrics share the test metrics' names (``image_AUROC``,
        ``pixel_AUPRO``), which is what a ``ModelCheckpoint`` monitors.
        """
        val_metrics = [
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False, fpr_limit=0.3),
        ]
        test_metrics = [
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False, fpr_limit=0.3),
        ]
        return Evaluator(val_metrics=val_metrics, test_metrics=test_metrics)
