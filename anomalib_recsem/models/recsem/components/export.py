"""Safe exports: never from an untrained model, never half-written.

An untrained RecSem has random weights and NaN thresholds and normalisation bounds, so its
export would label nothing; :func:`require_trained` refuses it, naming ``--ckpt_path``.

anomalib's ``ExportMixin`` writes ``model.pt``, ``model.onnx`` (+ ``model.onnx.data``) and
``model.xml`` + ``model.bin`` straight into ``<export_root>/weights/<type>/``. An export that
fails or is killed halfway (tracing error, full disk, Ctrl-C) leaves a truncated file under the
final name, or a new ``model.xml`` beside the previous ``model.bin``, and the previous export is
lost. :class:`SafeExportMixin` runs anomalib's export into a hidden staging folder next to the
target folder (``<export_root>/weights/.<type>-*.partial``) and moves the files into place with
``os.replace`` only once the export has returned: weight files first, the file that names the
model (``.pt``, ``.onnx``, ``.xml``) last. Until then the previous export is untouched; a failure
removes the staging folder, a hard kill may leave it behind (its name marks it as partial).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anomalib.deploy.export import ExportType
from anomalib.post_processing import PostProcessor

logger = logging.getLogger(__name__)

#: ONNX opset of exported models: the one torch's exporter builds.
ONNX_OPSET = 18


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (best effort where the OS refuses)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders on Windows
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_export(export_root: Path | str, export_type: ExportType, write: Callable[[Path], Path]) -> Path:
    """Run ``write(staging_root)`` and move what it wrote into ``<export_root>/weights/<type>/``.

    Args:
        export_root: The export root the caller asked for.
        export_type: Decides the target folder, ``weights/<export_type.value>``.
        write: An anomalib exporter bound to everything but its ``export_root``; it writes
            under ``<staging_root>/weights/<type>/`` and returns the model file's path.

    Returns:
        Path: The model file's final path (what anomalib's exporter would have returned).
    """
    weights = Path(export_root) / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    target = weights / export_type.value
    # Staging beside the target folder, so os.replace never crosses a filesystem.
    staging = Path(tempfile.mkdtemp(prefix=f".{export_type.value}-", suffix=".partial", dir=weights))
    try:
        written = Path(write(staging)).resolve()
        produced = staging.resolve() / "weights" / export_type.value
        files = sorted((path for path in produced.rglob("*") if path.is_file()), key=lambda path: path == written)
        for path in files:
            _fsync(path)
        final: Path | None = None
        for path in files:  # the model file itself comes last
            destination = target / path.relative_to(produced)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
            if path == written:
                final = destination
        _fsync(target)
        if final is None:  # an exporter that wrote its model file elsewhere
            msg = f"The {export_type.value} export returned {written}, outside its export root {produced}."
            raise RuntimeError(msg)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class UntrainedModelError(RuntimeError):
    """An export of a model that has never been trained or validated."""


def require_trained(model: Any, export_type: str) -> None:  # noqa: ANN401
    """Refuse to export a model whose post-processor never saw validation data.

    Models without anomalib's post-processor, or with both thresholding and normalisation
    switched off, are not checked.

    Args:
        model: The module about to be exported.
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
    if not learned or not all(bool(value.isnan().all()) for value in learned):
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


def unresized_input_size(model: Any) -> tuple[int, int] | None:  # noqa: ANN401
    """The input size an exported graph must fix because nothing in it resizes, else None.

    anomalib exports with a dynamic height and width; without a pre-processor's resize the
    network then has to accept every size, and RecSem's takes multiples of 32 only.

    Args:
        model: The RecSem module.

    Returns:
        tuple[int, int] | None: The network's ``image_size`` when the model has no
        pre-processing transform.
    """
    if getattr(model.pre_processor, "transform", None) is None:
        return tuple(model.model.image_size)
    return None


class SafeExportMixin:
    """anomalib's ``to_torch``, ``to_onnx`` and ``to_openvino``, refused for an untrained model and written atomically.

    Put it before ``AnomalibModule`` in the bases. Arguments, file names and return values are
    anomalib's own.
    """

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """anomalib's ``to_torch``, checked and written atomically."""
        require_trained(self, "torch")
        export = super().to_torch  # type: ignore[misc]
        return atomic_export(export_root, ExportType.TORCH, lambda root: export(root, model_file_name))

    def to_onnx(self, export_root: Path | str, model_file_name: str = "model",
                input_size: tuple[int, int] | None = None, **kwargs: Any) -> Path:  # noqa: ANN401
        """anomalib's ``to_onnx``, checked and written atomically; opset :data:`ONNX_OPSET` unless given."""
        require_trained(self, "onnx")
        input_size = input_size or unresized_input_size(self)
        # anomalib asks for opset 14, but torch's exporter builds 18 and cannot convert this
        # graph down: it keeps 18 and logs a traceback that reads like a failed export.
        kwargs.setdefault("opset_version", ONNX_OPSET)
        export = super().to_onnx  # type: ignore[misc]
        return atomic_export(export_root, ExportType.ONNX,
                             lambda root: export(root, model_file_name, input_size, **kwargs))

    def to_openvino(self, export_root: Path | str, model_file_name: str = "model",
                    input_size: tuple[int, int] | None = None, **kwargs: Any) -> Path:  # noqa: ANN401
        """anomalib's ``to_openvino`` (compression, ``ov_kwargs``, ... passed on), checked and written atomically."""
        require_trained(self, "openvino")
        input_size = input_size or unresized_input_size(self)
        export = super().to_openvino  # type: ignore[misc]
        return atomic_export(export_root, ExportType.OPENVINO,
                             lambda root: export(root, model_file_name, input_size, **kwargs))
