"""Exports are atomic: an interrupted export leaves the previous one intact and no partial files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino
import pytest
import torch

from anomalib_recsem import RecSem
from anomalib_recsem.presets import model_arguments

TINY_RECSEM = model_arguments("recsem_tiny")

#: What anomalib writes per export type, under <export_root>/weights/<type>/.
FILES = {
    "torch": ["model.pt"],
    "onnx": ["model.onnx", "model.onnx.data"],
    "openvino": ["model.xml", "model.bin"],
}


@pytest.fixture(scope="module")
def model() -> RecSem:
    """A tiny RecSem with thresholds and normalisation bounds set, as after validation."""
    torch.manual_seed(0)
    model = RecSem(**TINY_RECSEM).eval()
    post_processor = model.post_processor
    for name, value in (("_image_threshold", 0.5), ("_pixel_threshold", 0.5), ("image_min", 0.0), ("image_max", 1.0),
                        ("pixel_min", 0.0), ("pixel_max", 1.0)):
        getattr(post_processor, name).fill_(value)
    return model


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (folders as ``None``) with its bytes."""
    return {str(path.relative_to(root)): path.read_bytes() if path.is_file() else None for path in root.rglob("*")}


def previous_export(root: Path) -> dict[str, bytes | None]:
    for export_type, names in FILES.items():
        folder = root / "weights" / export_type
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_bytes(f"previous {export_type} {name}".encode())
    return snapshot(root)


def interrupt_writers(monkeypatch: pytest.MonkeyPatch, export_type: str, error: BaseException) -> None:
    """Replace the writer anomalib calls with one that writes half a file under the final name, then fails."""

    def partial(path: str | Path) -> None:
        Path(path).write_bytes(b"half written")

    if export_type == "torch":
        def save(obj: object, f: str | Path, *args: object, **kwargs: object) -> None:
            partial(f)
            raise error
        monkeypatch.setattr(torch, "save", save)
    elif export_type == "onnx":
        def onnx_export(*args: object, f: str, **kwargs: object) -> None:
            partial(f)
            partial(f"{f}.data")
            raise error
        monkeypatch.setattr(torch.onnx, "export", onnx_export)
    else:
        # The ONNX step and the conversion succeed (stubbed: fast); saving the IR fails halfway.
        monkeypatch.setattr(torch.onnx, "export", lambda *args, f, **kwargs: partial(f))
        monkeypatch.setattr(openvino, "convert_model", lambda *args, **kwargs: object())

        def save_model(model: object, path: str | Path, *args: object, **kwargs: object) -> None:
            partial(Path(path).with_suffix(".bin"))
            partial(path)
            raise error
        monkeypatch.setattr(openvino, "save_model", save_model)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
@pytest.mark.parametrize("export_type", list(FILES))
def test_interrupted_export_keeps_previous_export(model: RecSem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  export_type: str, error: BaseException) -> None:
    before = previous_export(tmp_path)
    interrupt_writers(monkeypatch, export_type, error)
    with pytest.raises(type(error)):
        getattr(model, f"to_{export_type}")(tmp_path)
    # Same paths (so no staging folder or partial file left) with the same bytes.
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("export_type", list(FILES))
def test_interrupted_first_export_leaves_no_model_file(model: RecSem, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       export_type: str) -> None:
    interrupt_writers(monkeypatch, export_type, OSError(28, "No space left on device"))
    with pytest.raises(OSError, match="No space left"):
        getattr(model, f"to_{export_type}")(tmp_path)
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


@pytest.mark.slow
def test_exports_replace_previous_files_under_anomalib_names(model: RecSem, tmp_path: Path) -> None:
    previous_export(tmp_path)
    paths = {export_type: getattr(model, f"to_{export_type}")(tmp_path) for export_type in FILES}

    weights = tmp_path / "weights"
    assert sorted(path.name for path in weights.iterdir()) == sorted(FILES)  # no staging folder left
    for export_type, names in FILES.items():
        folder = weights / export_type
        assert paths[export_type] == folder / names[0]
        assert sorted(path.name for path in folder.iterdir()) == sorted(names)
        assert not any((folder / name).read_bytes().startswith(b"previous") for name in names)

    # The files are real models that give PyTorch's output.
    image = torch.rand(1, 3, *(TINY_RECSEM["image_size"],) * 2)
    with torch.no_grad():
        expected = model(image).anomaly_map.numpy()
    loaded = torch.load(paths["torch"], weights_only=False)["model"]
    with torch.no_grad():
        np.testing.assert_allclose(loaded(image).anomaly_map.numpy(), expected, atol=1e-6)
    compiled = openvino.Core().compile_model(paths["openvino"], "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_allclose(compiled(image.numpy())["anomaly_map"], expected, atol=1e-4)
