"""RecSem: surface anomaly detection by image reconstruction and semantic difference discrimination.

Paper: Wang Shangshang & Jin Cheng, "Surface Anomaly Detection Based on Image
Reconstruction and Semantic Difference Discrimination", Computer Science 50(11):151-159,
2023, doi:10.11896/jsjkx.221100023.

This file is the training recipe: the networks, what one training step does, validation,
the optimiser and its schedule, and the metrics. How a run is fed and kept reproducible
lives in ``components/`` (``training_data``, ``random_streams``), installed as callbacks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn

from anomalib_recsem.data.synthetic_defect import SyntheticDefect
from anomalib_recsem.data.validation import DataValidation
from anomalib_recsem.options import check_choice, check_flag, check_integer, check_number

from .components.checkpoint import CheckedCheckpointMixin
from .components.export import SafeExportMixin
from .components.health import ReconstructionError, ReconstructionSpread, ResidualAUROC
from .components.random_streams import RandomStreams
from .components.resize import AntialiasedPreProcessor, check_pre_processed_size
from .components.training_data import InMemoryTrainingData
from .loss import RecSemLoss
from .torch_model import RecSemModel, check_image_size

DISCRIMINATOR_INPUTS = ("augmented", "clean")


def warmup_cosine(epoch: int, total_epochs: int, warmup_epochs: int = 20, floor: float = 0.1) -> float:
    """The authors' learning-rate multiplier for a 0-based epoch index.

    Epoch ``e = epoch + 1`` runs at ``0.1 + 0.9 e / W`` during the ``W`` warm-up epochs (so
    the first epoch at 0.145 when ``W = 20``), then at
    ``max(floor, (1 + cos(pi (e - W) / (T - W))) / 2)``.

    Args:
        epoch: 0-based index of the epoch.
        total_epochs: ``T``, the run's length in epochs.
        warmup_epochs: ``W``.
        floor: Lowest multiplier after warm-up.

    Returns:
        float: The multiplier.
    """
    current = epoch + 1
    if current <= warmup_epochs:
        return 0.1 + 0.9 * current / warmup_epochs
    if total_epochs <= warmup_epochs:
        return 1.0
    return max(floor, 0.5 * (1.0 + math.cos(math.pi * (current - warmup_epochs) / (total_epochs - warmup_epochs))))


class RecSem(CheckedCheckpointMixin, SafeExportMixin, AnomalibModule):
    """RecSem: reconstruction through prototype memory, then semantic difference discrimination.

    Training needs only defect-free images. Each epoch holds every training image
    ``negative_aug_ratio`` times as it is and ``positive_aug_ratio`` times with a synthetic
    defect (:class:`~anomalib_recsem.SyntheticDefect`), shuffled together in batches of the
    datamodule's ``train_batch_size``, one optimiser step per batch. The images are decoded
    and resized once per run and kept in memory (on the GPU when they fit). The
    reconstruction network learns to remove the defects, the discriminator to segment them.
    Nothing is downloaded.

    Args:
        image_size: Side (int) or ``(height, width)`` images are resized to (antialiased,
            also in exported models); multiples of 32.
        reconstruction_width: Width of the first reconstruction encoder block (128 in the
            paper; the bottleneck has 8x as many channels).
        discriminator_width: Width of the first discriminator block (64 in the paper).
        memory_scales: Sizes of the bottleneck copies the prototype memory works on, each
            in ``1..image_size/16``. ``None`` gives the paper's ``(8, 16)`` at 256 px, scaled
            with the image size.
        num_prototypes: Prototypes per memory unit (50).
        location_embedding: Learned location embedding in each memory unit.
        memory_skip: Skip connection around each memory unit.
        normalize_query: L2-normalise memory queries to the prototypes' unit scale. On by
            default, unlike the authors' code: with unnormalised queries the compactness loss
            collapses the reconstruction (see the model README). ``False`` is the authors' unit.
        discriminator: ``"unet"`` (concatenated pair, the authors' code) or ``"fusion"``
            (multi-scale feature fusion, the paper's figure).
        detach_reconstruction: Keep the segmentation loss out of the reconstruction
            network (the authors did this for cable, screw and transistor).
        discriminator_input: What the discriminator compares the reconstruction with in
            training: ``"augmented"`` (the image with the synthetic defect, as in the paper's
            figure and DRAEM) or ``"clean"`` (the defect-free image, as in the authors' code).
        positive_aug_ratio: Copies of each training image with a synthetic defect per epoch.
        negative_aug_ratio: Copies of each training image without one per epoch.
        anomaly_source: Where defect textures come from: ``"photos"`` (default: crops of the
            photographs that ship with scikit-image, natural textures like the paper's DTD,
            which cannot be downloaded offline), ``None`` (built-in procedural textures),
            ``"self"`` (the image itself) or a folder of images such as DTD's ``images/``.
            Checked when training starts.
        learning_rate: Adam learning rate at the top of the schedule.
        weight_decay: Adam weight decay.
        warmup_epochs: Epochs of linear warm-up from 0.1x before the cosine decay (20).
        max_epochs: Training epochs, forwarded to the Trainer (``anomalib benchmark`` sets
            none). ``None`` leaves it to the Trainer.
        score_kernel_size: Mean filter size for the image score (odd). ``None`` gives the
            paper's 21 at 256 px, scaled with the image size (11 at 128 px).
        score_top_k: Number of top filtered anomaly-map values averaged into the score.
        channels_last: Train the convolutional networks in channels-last memory format.
        compile: Train through ``torch.compile`` (exports stay eager).
        pre_processor: Pre-processor, or ``True`` for the antialiased resize to ``image_size``.
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
        normalize_query: bool = True,
        discriminator: str = "unet",
        detach_reconstruction: bool = False,
        discriminator_input: str = "augmented",
        positive_aug_ratio: int = 2,
        negative_aug_ratio: int = 2,
        anomaly_source: str | Path | None = "photos",
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        warmup_epochs: int = 20,
        max_epochs: int | None = None,
        score_kernel_size: int | None = None,
        score_top_k: int = 5,
        channels_last: bool = False,
        compile: bool = False,  # noqa: A002  the name torch uses
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        size = check_image_size(image_size)
        check_choice("discriminator_input", discriminator_input, DISCRIMINATOR_INPUTS)
        for name, value in (("positive_aug_ratio", positive_aug_ratio), ("negative_aug_ratio", negative_aug_ratio)):
            check_integer(name, value, minimum=0)
        if positive_aug_ratio + negative_aug_ratio < 1:
            msg = "positive_aug_ratio + negative_aug_ratio must be at least 1 (both are 0)."
            raise ValueError(msg)
        check_number("learning_rate", learning_rate, minimum=0, strict=True)
        check_number("weight_decay", weight_decay, minimum=0)
        check_integer("warmup_epochs", warmup_epochs, minimum=1)
        if max_epochs is not None:
            check_integer("max_epochs", max_epochs, minimum=1)
        channels_last = check_flag("channels_last", channels_last)
        compile = check_flag("compile", compile)  # noqa: A001
        if pre_processor is True:
            pre_processor = AntialiasedPreProcessor(size)
        check_pre_processed_size(pre_processor, size)
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
        self.warmup_epochs = warmup_epochs
        self.max_epochs = max_epochs
        self.channels_last = channels_last
        self.compile = compile
        self.reconstruction_error = ReconstructionError()
        self.reconstruction_spread = ReconstructionSpread()
        self.residual_auroc = ResidualAUROC()
        self._synthetic_defect: SyntheticDefect | None = None
        self._compiled: nn.Module | None = None

    @property
    def synthetic_defect(self) -> SyntheticDefect:
        """The defect synthesiser, built on first use so that a missing texture folder only matters when training."""
        if self._synthetic_defect is None:
            self._synthetic_defect = SyntheticDefect(anomaly_source=self.anomaly_source)
        return self._synthetic_defect

    def configure_callbacks(self) -> list[pl.Callback]:
        """anomalib's components, plus data checks, in-memory training epochs and reproducible random streams."""
        return [
            DataValidation(),
            InMemoryTrainingData(self.positive_aug_ratio, self.negative_aug_ratio),
            RandomStreams(),
            *super().configure_callbacks(),
        ]

    def on_fit_start(self) -> None:
        """Fail before the first step when the defect source is unusable; set the memory format.

        Warns when a Lightning weight-averaging callback is installed: it averages every buffer
        of the module, the post-processor's too, which ends training with NaN thresholds.
        """
        _ = self.synthetic_defect
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self._trainer is not None and any(isinstance(callback, WeightAveraging)
                                             for callback in self._trainer.callbacks):
            rank_zero_warn(
                "RecSem: a WeightAveraging callback (e.g. EMAWeightAveraging) averages every buffer of the model, "
                "anomalib's post-processor thresholds and normalisation bounds included, so they end training as "
                "NaN. Run Engine.validate on the trained model before testing, predicting or exporting it.",
            )

    def training_loss(self, images: torch.Tensor, with_defect: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything one optimiser step computes before its backward pass.

        Args:
            images: Defect-free images ``(B, C, H, W)`` in ``[0, 1]``.
            with_defect: ``(B,)`` bool, the images that get a synthetic defect.

        Returns:
            dict[str, torch.Tensor]: The loss terms under their names and their weighted sum
            under ``"loss"``.
        """
        # Outside autocast: the defects are made in float32 whatever the training precision.
        with torch.autocast(images.device.type, enabled=False):
            defects = self.synthetic_defect.synthesize(images.float(), apply_defect=with_defect)
        defective = defects.defective
        compare_with = defective if self.discriminator_input == "augmented" else defects.clean
        if self.channels_last:
            defective = defective.contiguous(memory_format=torch.channels_last)
            compare_with = compare_with.contiguous(memory_format=torch.channels_last)
        output = self._training_network()(defective, compare_with)
        # The reconstruction is compared in the networks' normalised space, as the authors did.
        return self.loss(self.model.normalize(defects.clean), output, defects.mask)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:  # noqa: ANN401
        """Lightning's transfer, except that a training batch's defect flags stay where they are.

        The in-memory training data gives them on the CPU. The defect synthesis reads them on
        the host, which for flags on a GPU would wait for all the work queued there, once a step.
        """
        moved = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if self._trainer is not None and self.trainer.training and isinstance(batch, Batch):
            moved.gt_label = batch.gt_label
        return moved

    def check_finite_loss(self, terms: dict[str, torch.Tensor]) -> None:
        """Stop before the backward pass when a loss term is NaN or infinite.

        The training step's one read on the host. On a GPU it waits for the forward pass,
        after which the host still has the whole backward pass to queue while the device
        catches up.

        Args:
            terms: :meth:`training_loss`'s output.

        Raises:
            FloatingPointError: If a term is not finite; the weights have not changed.
        """
        if bool(torch.isfinite(torch.stack([value.detach() for value in terms.values()])).all()):
            return
        report = ", ".join(f"{name}={value.item():.4g}" for name, value in terms.items())
        msg = (
            f"RecSem training loss is not finite at epoch {self.current_epoch}, step {self.global_step} "
            f"({report}). The weights were not updated with it. Lower learning_rate (now {self.learning_rate:g}; "
            f"any positive float, 1e-3 in the paper) or check the training images."
        )
        raise FloatingPointError(msg)

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """One optimiser step: ``batch.gt_label`` marks the samples that get a synthetic defect.

        Args:
            batch: Training images and defect flags (from
                :class:`~anomalib_recsem.models.recsem.components.training_data.DefectEpochs`).
            args: Unused.
            kwargs: Unused.

        Returns:
            STEP_OUTPUT: The total loss.

        Raises:
            FloatingPointError: If a loss term is NaN or infinite (before the weights change).
        """
        del args, kwargs
        terms = self.training_loss(batch.image, batch.gt_label)
        self.check_finite_loss(terms)
        batch_size = batch.image.shape[0]
        self.log("train_loss", terms["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size,
                 sync_dist=True)
        self.log_dict({f"train_{name}": value for name, value in terms.items() if name != "loss"}, on_epoch=True,
                      batch_size=batch_size, sync_dist=True)
        return terms["loss"]

    def _training_network(self) -> nn.Module:
        if not self.compile:
            return self.model
        if self._compiled is None:
            # Kept out of the module tree: the compiled wrapper shares the weights, and
            # checkpoints and exports see only the eager network. Static shapes: an epoch's
            # smaller last batch gets a graph of its own instead of making every later step's
            # graph dynamic-shaped.
            object.__setattr__(self, "_compiled", torch.compile(self.model, dynamic=False))
        return self._compiled

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Predict anomaly maps and scores, and measure the reconstruction's health.

        Args:
            batch: Validation batch.
            args: Unused.
            kwargs: Unused.

        Returns:
            STEP_OUTPUT: The batch with ``anomaly_map`` and ``pred_score`` filled in.
        """
        del args, kwargs
        prediction, reconstruction = self.model.detect(batch.image)
        batch_size = batch.image.shape[0]
        if batch.gt_label is not None:
            self.reconstruction_error.update(batch.image, reconstruction, batch.gt_label)
            self.log("reconstruction_error", self.reconstruction_error, batch_size=batch_size)
        self.reconstruction_spread.update(batch.image, reconstruction)
        self.log("reconstruction_spread", self.reconstruction_spread, batch_size=batch_size)
        if batch.gt_mask is not None:
            self.residual_auroc.update(batch.image, reconstruction, batch.gt_mask)
            self.log("residual_pixel_AUROC", self.residual_auroc, batch_size=batch_size)
        return batch.update(**prediction._asdict())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam; the learning rate follows :func:`warmup_cosine`, set at every epoch start."""
        return torch.optim.Adam(self.model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def on_train_epoch_start(self) -> None:
        """Set this epoch's learning rate.

        A pure function of the epoch and the run's length rather than an ``LRScheduler``'s
        state: a run resumed with another ``max_epochs`` than the checkpoint's (a 1-epoch run
        continued to 3) then follows the new run's curve from its first resumed epoch.
        """
        rate = self.learning_rate * warmup_cosine(self.current_epoch, self._total_epochs(), self.warmup_epochs)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = rate
        self.log("learning_rate", rate, on_step=False, on_epoch=True, sync_dist=True)

    def _total_epochs(self) -> int:
        """The run's length in epochs, also when it is set in steps (``max_steps``)."""
        if self._trainer is None:
            return self.max_epochs or 0
        steps = self.trainer.estimated_stepping_batches
        per_epoch = self.trainer.num_training_batches
        if not math.isfinite(steps) or not per_epoch or not math.isfinite(per_epoch):
            return self.trainer.max_epochs or 0
        # Lightning's own count: an epoch's last, partial accumulation is a step of its own.
        return math.ceil(steps / math.ceil(per_epoch / self.trainer.accumulate_grad_batches))

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
        """An antialiased resize to ``image_size`` (256 by default), the same in exported models; no normalisation.

        Args:
            image_size: Side or ``(height, width)``.

        Returns:
            PreProcessor: The pre-processor.
        """
        return AntialiasedPreProcessor(check_image_size(image_size if image_size is not None else 256))

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """anomalib's default test metrics plus pixel AUPRO; image AUROC and pixel AUPRO on validation.

        Validation metrics share the test metrics' names (``image_AUROC``, ``pixel_AUPRO``),
        which is what a ``ModelCheckpoint`` monitors.
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

