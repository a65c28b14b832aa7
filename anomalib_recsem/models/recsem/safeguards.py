"""RecSem's checks of what users hand it: data, checkpoints and exports.

* Data: before a stage reads any image, the datamodule's subsets are checked (empty
  training set, unreadable or truncated files, masks of the wrong size); see
  :mod:`anomalib_recsem.data.validation`.
* Checkpoints: a checkpoint whose network does not fit the model (written with other
  widths, image size, memory settings ...) fails with one message naming the checkpoint
  and the differing constructor arguments, instead of Lightning's page of
  ``size mismatch for model....`` lines.
* Export: exporting a model that was never trained (``anomalib export`` without
  ``--ckpt_path``) fails with a message naming ``--ckpt_path``, instead of silently writing
  random weights with undefined thresholds.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from anomalib.post_processing import PostProcessor

from anomalib_recsem.data.validation import validate_stage_data

from .torch_model import check_image_size, default_memory_scales

#: Constructor arguments that shape RecSem's network (and so its checkpoint's tensors).
ARCHITECTURE_ARGUMENTS: tuple[str, ...] = (
    "image_size",
    "reconstruction_width",
    "discriminator_width",
    "memory_scales",
    "num_prototypes",
    "location_embedding",
    "memory_skip",
    "discriminator",
)

_NETWORK_PREFIX = "model."
_MAX_LISTED_TENSORS = 3
# (path, constructor arguments passed to load_from_checkpoint) while RecSem.load_from_checkpoint runs.
_loading: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "recsem_loading_checkpoint", default=None,
)


class CheckpointMismatchError(ValueError):
    """A checkpoint's network does not fit the model it is loaded into."""


class UntrainedModelError(RuntimeError):
    """An export of a model that has never been trained or validated."""


def _architecture(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture arguments with defaults resolved, so equal networks compare equal."""
    values = {name: hparams[name] for name in ARCHITECTURE_ARGUMENTS if name in hparams}
    if "image_size" in values:
        try:
            values["image_size"] = check_image_size(values["image_size"])
        except (TypeError, ValueError):
            pass
    if "memory_scales" in values:
        scales = values["memory_scales"]
        if scales is None and isinstance(values.get("image_size"), tuple):
            scales = default_memory_scales(values["image_size"])
        values["memory_scales"] = tuple(scales) if isinstance(scales, Sequence) else scales
    return values


def checkpoint_differences(model_hparams: Mapping[str, Any], checkpoint_hparams: Mapping[str, Any]) -> list[str]:
    """The architecture arguments whose values differ, as ``"name=<checkpoint> (model: <model>)"``."""
    model_values = _architecture(model_hparams)
    stored_values = _architecture(checkpoint_hparams)
    return [
        f"{name}={stored_values[name]!r} in the checkpoint (model: {model_values[name]!r})"
        for name in ARCHITECTURE_ARGUMENTS
        if name in model_values and name in stored_values and model_values[name] != stored_values[name]
    ]


def _tensor_mismatches(model_state: Mapping[str, torch.Tensor], stored_state: Mapping[str, Any]) -> list[str]:
    own = {key: value for key, value in model_state.items() if key.startswith(_NETWORK_PREFIX)}
    stored = {key: value for key, value in stored_state.items() if key.startswith(_NETWORK_PREFIX)}
    problems = [
        f"{key}: {tuple(stored[key].shape)} in the checkpoint, {tuple(value.shape)} in the model"
        for key, value in own.items()
        if key in stored and hasattr(stored[key], "shape") and tuple(stored[key].shape) != tuple(value.shape)
    ]
    problems += [f"{key}: missing from the checkpoint" for key in sorted(own.keys() - stored.keys())]
    problems += [f"{key}: not in the model" for key in sorted(stored.keys() - own.keys())]
    return problems


def check_checkpoint_matches(model: Any, checkpoint: Mapping[str, Any]) -> None:  # noqa: ANN401
    """Fail clearly if ``checkpoint``'s network weights do not fit ``model``'s network.

    Only the network (``model.*`` tensors) is compared; a checkpoint that fits loads as
    before. The checkpoint is named from the trainer (``ckpt_path=``) or from
    :meth:`RecSem.load_from_checkpoint`.

    Args:
        model: The RecSem module being loaded into.
        checkpoint: The loaded checkpoint dictionary.

    Raises:
        CheckpointMismatchError: Naming the checkpoint, the constructor arguments whose
            values differ and a few of the mismatching tensors.
    """
    stored_state = checkpoint.get("state_dict")
    if not isinstance(stored_state, Mapping):
        return
    problems = _tensor_mismatches(model.state_dict(), stored_state)
    if not problems:
        return
    trainer = getattr(model, "_trainer", None)
    loading = _loading.get()
    path = loading[0] if loading else (getattr(trainer, "ckpt_path", None) if trainer is not None else None)
    where = f"Checkpoint {path}" if path else "The checkpoint"
    # load_from_checkpoint writes its keyword arguments over the stored hyper-parameters.
    overrides = {name: value for name, value in (loading[1] if loading else {}).items() if name in ARCHITECTURE_ARGUMENTS}
    differences = checkpoint_differences(model.hparams, checkpoint.get("hyper_parameters") or {})
    if overrides:
        passed = ", ".join(f"{name}={value!r}" for name, value in overrides.items())
        cause = f"load_from_checkpoint was given {passed}, which replaces the value the network was trained with"
        advice = "Leave these arguments out: load_from_checkpoint restores the stored ones."
    elif differences:
        cause = "it was written with " + "; ".join(differences)
        advice = (
            "Build the model with the checkpoint's arguments, or load it with RecSem.load_from_checkpoint(path), "
            "which restores them."
        )
    else:
        cause = "its network differs from the model's (no stored hyper-parameter explains it)"
        advice = "Check that the checkpoint is a RecSem checkpoint of this version."
    listed = "; ".join(problems[:_MAX_LISTED_TENSORS])
    more = f" (and {len(problems) - _MAX_LISTED_TENSORS} more)" if len(problems) > _MAX_LISTED_TENSORS else ""
    msg = f"{where} does not fit this RecSem model: {cause}. {advice} Mismatching tensors: {listed}{more}."
    raise CheckpointMismatchError(msg)


@contextmanager
def loading_checkpoint(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Tell :func:`check_checkpoint_matches` which file is being loaded, and with which arguments.

    Args:
        path: The checkpoint file.
        overrides: Constructor arguments passed to ``load_from_checkpoint``.
    """
    token = _loading.set((str(path), dict(overrides or {})))
    try:
        yield
    finally:
        _loading.reset(token)


def _is_unset(value: torch.Tensor) -> bool:
    return bool(torch.isnan(value).all())


def require_trained(model: Any, export_type: str) -> None:  # noqa: ANN401
    """Refuse to export a model whose post-processor never saw validation data.

    An untrained RecSem has random weights and NaN thresholds and normalisation bounds,
    so its export would label nothing. Models without anomalib's post-processor, or with
    both thresholding and normalisation switched off, are not checked.

    Args:
        model: The RecSem module about to be exported.
        export_type: ``"torch"``, ``"onnx"`` or ``"openvino"``, for the message.

    Raises:
        UntrainedModelError: Naming ``--ckpt_path`` / ``ckpt_path``.
    """
    post_processor = getattr(model, "post_processor", None)
    if not isinstance(post_processor, PostProcessor):
        return
    learned = []
    if post_processor.enable_thresholding:
        learned += [post_processor._image_threshold, post_processor._pixel_threshold]  # noqa: SLF001
    if post_processor.enable_normalization:
        learned += [post_processor.image_min, post_processor.image_max]
    if not learned or not all(_is_unset(value) for value in learned):
        return
    msg = (
        f"Refusing to export an untrained RecSem model to {export_type}: its thresholds and normalisation "
        f"bounds were never learned (they come from the validation data during training), so the export would "
        f"hold random weights. Pass the checkpoint of a trained model: on the command line "
        f"`anomalib export --model RecSem --export_type {export_type} "
        f"--ckpt_path results/RecSem/<dataset>/<category>/latest/weights/lightning/model.ckpt`, in Python "
        f"`Engine.export(model, export_type, ckpt_path=...)`. (A model trained without validation data gets its "
        f"thresholds from `Engine.validate`.)"
    )
    raise UntrainedModelError(msg)


class SafeguardsMixin:
    """RecSem's input checks (see the module docstring). Put it first in the bases.

    * ``setup``: checks the datamodule's subsets for the stage, before any DataLoader.
    * ``load_from_checkpoint``: lets a checkpoint mismatch name the file.
    * ``to_torch`` / ``to_onnx`` / ``to_openvino``: refuse an untrained model.

    The checkpoint check itself runs in ``RecSem.on_load_checkpoint``.
    """

    def setup(self, stage: str) -> None:
        """Check the data this stage will read (runs after the datamodule's ``setup``)."""
        validate_stage_data(getattr(self, "_trainer", None), stage)
        super().setup(stage)  # type: ignore[misc]

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        """anomalib's loader; a checkpoint that does not fit the arguments is named in the error."""
        with loading_checkpoint(checkpoint_path, kwargs):
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)  # type: ignore[misc]

    def to_torch(self, *args: Any, **kwargs: Any) -> Path:  # noqa: ANN401
        """anomalib's ``to_torch``, refused for an untrained model."""
        require_trained(self, "torch")
        return super().to_torch(*args, **kwargs)  # type: ignore[misc]

    def to_onnx(self, *args: Any, **kwargs: Any) -> Path:  # noqa: ANN401
        """anomalib's ``to_onnx``, refused for an untrained model."""
        require_trained(self, "onnx")
        return super().to_onnx(*args, **kwargs)  # type: ignore[misc]

    def to_openvino(self, *args: Any, **kwargs: Any) -> Path:  # noqa: ANN401
        """anomalib's ``to_openvino``, refused for an untrained model."""
        require_trained(self, "openvino")
        return super().to_openvino(*args, **kwargs)  # type: ignore[misc]


__all__ = [
    "ARCHITECTURE_ARGUMENTS",
    "CheckpointMismatchError",
    "SafeguardsMixin",
    "UntrainedModelError",
    "check_checkpoint_matches",
    "checkpoint_differences",
    "loading_checkpoint",
    "require_trained",
]
