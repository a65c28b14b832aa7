"""Checkpoints that do not fit: one message naming the file and the differing arguments.

A checkpoint written with other widths, image size or memory settings would otherwise
fail with Lightning's page of ``size mismatch for model....`` lines.
:class:`CheckedCheckpointMixin` puts the check on both ways in: resuming a run
(``--ckpt_path``) and ``load_from_checkpoint``, each with its ``strict`` setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from anomalib.utils.serialization import anomalib_safe_globals

from ..torch_model import check_image_size, default_memory_scales

if TYPE_CHECKING:
    from typing_extensions import Self

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


class CheckpointMismatchError(ValueError):
    """A checkpoint's network does not fit the model it is loaded into."""


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


def _tensor_mismatches(
    model_state: Mapping[str, torch.Tensor], stored_state: Mapping[str, Any], strict: bool = True,
) -> list[str]:
    own = {key: value for key, value in model_state.items() if key.startswith(_NETWORK_PREFIX)}
    stored = {key: value for key, value in stored_state.items() if key.startswith(_NETWORK_PREFIX)}
    problems = [
        f"{key}: {tuple(stored[key].shape)} in the checkpoint, {tuple(value.shape)} in the model"
        for key, value in own.items()
        if key in stored and hasattr(stored[key], "shape") and tuple(stored[key].shape) != tuple(value.shape)
    ]
    if strict:
        problems += [f"{key}: missing from the checkpoint" for key in sorted(own.keys() - stored.keys())]
        problems += [f"{key}: not in the model" for key in sorted(stored.keys() - own.keys())]
    return problems


def check_checkpoint_matches(
    model: Any,  # noqa: ANN401
    checkpoint: Mapping[str, Any],
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    strict: bool = True,
) -> None:
    """Fail clearly if ``checkpoint``'s network weights do not fit ``model``'s network.

    Only the network (``model.*`` tensors) is compared; a checkpoint that fits loads as
    before.

    Args:
        model: The RecSem module being loaded into.
        checkpoint: The loaded checkpoint dictionary.
        path: The checkpoint file, for the message.
        overrides: Constructor arguments given to ``load_from_checkpoint``, which replace the
            stored ones.
        strict: As for ``load_state_dict``: ``False`` lets tensors be missing on either side
            (they keep the model's values); shapes must match either way.

    Raises:
        CheckpointMismatchError: Naming the checkpoint, the constructor arguments whose
            values differ and a few of the mismatching tensors.
    """
    stored_state = checkpoint.get("state_dict")
    if not isinstance(stored_state, Mapping):
        return
    problems = _tensor_mismatches(model.state_dict(), stored_state, strict)
    if not problems:
        return
    where = f"Checkpoint {path}" if path else "The checkpoint"
    overridden = {name: value for name, value in (overrides or {}).items() if name in ARCHITECTURE_ARGUMENTS}
    differences = checkpoint_differences(model.hparams, checkpoint.get("hyper_parameters") or {})
    if overridden:
        passed = ", ".join(f"{name}={value!r}" for name, value in overridden.items())
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


class CheckedCheckpointMixin:
    """Lightning module hooks that name the checkpoint file when its network does not fit.

    Placed before :class:`~anomalib.models.components.AnomalibModule` in the bases, whose own
    hooks (component switches and settings, safe unpickling) still run. The check sits in
    ``load_state_dict``, which both ways in call with the loader's ``strict``.
    """

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the checkpoint's hyper-parameters for the message of the check that follows."""
        self._loading_hyper_parameters = checkpoint.get("hyper_parameters") or {}
        super().on_load_checkpoint(checkpoint)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False,
    ) -> Any:  # noqa: ANN401  torch's return type
        """``torch.nn.Module.load_state_dict``, after checking that the network's tensors fit.

        Raises:
            CheckpointMismatchError: If they do not, naming the checkpoint file (when resuming)
                and the arguments that differ.
        """
        hyper_parameters = self.__dict__.pop("_loading_hyper_parameters", {})
        path = self.trainer.ckpt_path if self._trainer is not None else None
        check_checkpoint_matches(self, {"state_dict": state_dict, "hyper_parameters": hyper_parameters}, path=path,
                                 strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,  # noqa: ANN401  torch.load's
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool = True,
        **kwargs: Any,  # noqa: ANN401
    ) -> Self:
        """anomalib's loader; a checkpoint that does not fit is named in the error.

        Args:
            checkpoint_path: The checkpoint file.
            map_location: As for ``torch.load``.
            hparams_file: As for Lightning's loader.
            strict: As for Lightning's loader.
            weights_only: As for ``torch.load``.
            kwargs: Constructor arguments that replace the stored ones.

        Raises:
            CheckpointMismatchError: If the checkpoint's network does not fit, naming the file
                and the arguments that differ.
        """
        try:
            return super().load_from_checkpoint(checkpoint_path, map_location=map_location, hparams_file=hparams_file,
                                                strict=strict, weights_only=weights_only, **kwargs)
        except CheckpointMismatchError:
            # Raised by on_load_checkpoint inside the loader, where neither the file nor the overrides
            # are known: raised again with both.
            with anomalib_safe_globals(extra=cls.checkpoint_safe_globals()):
                checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=weights_only)
            model = cls(**{**checkpoint.get("hyper_parameters", {}), **kwargs})
            strict = model.strict_loading if strict is None else strict
            check_checkpoint_matches(model, checkpoint, path=str(checkpoint_path), overrides=kwargs, strict=strict)
            raise
