"""Best checkpoints by validation image AUROC and pixel AUPRO, as the configs declare them,
and checkpoint writes that an interruption cannot corrupt."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import anomalib.callbacks
import pytest
import torch
import yaml
from anomalib.data import Folder, MVTecAD
from anomalib.engine import Engine
from fsspec.implementations.local import LocalFileOpener
from jsonargparse import ArgumentParser
from lightning.pytorch import Callback, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from anomalib_recsem import RecSem
from anomalib_recsem.callbacks import BestCheckpoint
from tests.conftest import TINY_BATCHES, TINY_RECSEM

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MONITORED = ("image_AUROC", "pixel_AUPRO")
EPOCHS = 3


def config_callbacks(config: Path) -> list[Callback]:
    """A config's ``trainer.callbacks``, instantiated by jsonargparse as the ``anomalib`` CLI does."""
    specs = yaml.safe_load(config.read_text())["trainer"]["callbacks"]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callbacks", type=list[Callback])
    return parser.instantiate_classes(parser.parse_object({"callbacks": specs})).callbacks


class ValidationScores(Callback):
    """Records the monitored validation metrics of every validated epoch."""

    def __init__(self) -> None:
        self.scores: list[dict[str, float]] = []

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:  # noqa: ANN401
        del pl_module
        metrics = trainer.callback_metrics
        self.scores.append({"epoch": trainer.current_epoch, **{name: float(metrics[name]) for name in MONITORED}})


@pytest.mark.parametrize("config", ["recsem.yaml", "recsem_small.yaml"])
def test_configs_declare_best_checkpoints(config: str) -> None:
    callbacks = config_callbacks(CONFIGS / config)
    declared = [(type(callback), callback.monitor, callback.mode, callback.save_top_k, callback.dirpath,
                 callback.filename) for callback in callbacks]
    assert declared == [
        (BestCheckpoint, "image_AUROC", "max", 1, None, "best_image_AUROC"),
        (BestCheckpoint, "pixel_AUPRO", "max", 1, None, "best_pixel_AUPRO"),
    ]
    # Lightning's class, not anomalib's subclass, which would replace the Engine's weights/lightning/model.ckpt.
    assert not any(isinstance(callback, anomalib.callbacks.ModelCheckpoint) for callback in callbacks)
    assert yaml.safe_load((CONFIGS / config).read_text())["trainer"]["check_val_every_n_epoch"] == 5


@pytest.fixture(scope="module")
def trained(mvtec_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny RecSem fitted with recsem_small.yaml's callbacks, validated every epoch."""
    seed_everything(3)
    recorder = ValidationScores()
    root = tmp_path_factory.mktemp("checkpoints")
    engine = Engine(default_root_dir=root, max_epochs=EPOCHS, check_val_every_n_epoch=1, logger=False,
                    callbacks=[*config_callbacks(CONFIGS / "recsem_small.yaml"), recorder],
                    accelerator="cpu", devices=1, enable_progress_bar=False)
    datamodule = MVTecAD(root=mvtec_root, category="dummy", **TINY_BATCHES, num_workers=0)
    engine.fit(model=RecSem(**TINY_RECSEM), datamodule=datamodule)
    return {"engine": engine, "datamodule": datamodule, "scores": recorder.scores,
            "run": root / "RecSem" / "MVTecAD" / "dummy" / "v0"}


def best_callbacks(engine: Engine) -> dict[str, ModelCheckpoint]:
    return {callback.monitor: callback for callback in engine.trainer.checkpoint_callbacks if callback.monitor}


@pytest.mark.slow
def test_best_checkpoints_hold_the_best_validated_epoch(trained: dict[str, Any]) -> None:
    scores, run = trained["scores"], trained["run"]
    assert [score["epoch"] for score in scores] == list(range(EPOCHS))
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == [f"best_{name}.ckpt" for name in MONITORED]
    # The Engine's own checkpoint (last epoch, used to resume) is still written.
    last = torch.load(run / "weights" / "lightning" / "model.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == EPOCHS - 1

    for name, callback in best_callbacks(trained["engine"]).items():
        path = run / "checkpoints" / f"best_{name}.ckpt"
        assert Path(callback.best_model_path) == path
        values = [score[name] for score in scores]
        best_epoch = values.index(max(values))  # a later tie does not replace the file
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert checkpoint["callbacks"][callback.state_key]["best_model_score"].item() == pytest.approx(max(values))
        assert checkpoint["epoch"] == best_epoch


@pytest.mark.slow
@pytest.mark.parametrize("name", MONITORED)
def test_best_checkpoint_loads_and_reproduces_its_score(trained: dict[str, Any], name: str) -> None:
    path = trained["run"] / "checkpoints" / f"best_{name}.ckpt"
    model = RecSem.load_from_checkpoint(path)
    (metrics,) = trained["engine"].test(model=model, datamodule=trained["datamodule"])
    # Validation and test are the same images here (val_split_mode same_as_test).
    assert metrics[name] == pytest.approx(max(score[name] for score in trained["scores"]), abs=1e-4)


@pytest.mark.slow
def test_data_without_masks_trains_on_and_keeps_the_image_checkpoint(mvtec_root: Path, tmp_path: Path) -> None:
    """No ground-truth masks, no pixel_AUPRO: its callback warns and training still runs every epoch."""
    category = mvtec_root / "dummy"
    datamodule = Folder(name="no_masks", root=category, normal_dir="train/good", abnormal_dir="test/defect",
                        normal_test_dir="test/good", **TINY_BATCHES, num_workers=0)
    engine = Engine(default_root_dir=tmp_path, max_epochs=2, check_val_every_n_epoch=1, logger=False,
                    callbacks=config_callbacks(CONFIGS / "recsem_small.yaml"), accelerator="cpu", devices=1,
                    enable_progress_bar=False)
    with pytest.warns(UserWarning, match=r"BestCheckpoint\(monitor='pixel_AUPRO'\).*no 'pixel_AUPRO'"):
        engine.fit(model=RecSem(**TINY_RECSEM), datamodule=datamodule)
    assert engine.trainer.current_epoch == 2  # both epochs ran
    run = tmp_path / "RecSem" / "no_masks" / "v0"
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["best_image_AUROC.ckpt"]
    assert torch.load(run / "weights" / "lightning" / "model.ckpt", map_location="cpu", weights_only=True)["epoch"] == 1


def _half_write(self: LocalFileOpener, data: bytes) -> int:
    self.f.write(data[: len(data) // 2])
    raise OSError(28, "No space left on device")


def _half_torch_save(obj: object, f: Any, *args: object, **kwargs: object) -> None:  # noqa: ANN401
    f.write(b"PK\x03\x04 half a checkpoint")
    raise OSError(28, "No space left on device")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["file-write", "torch-save"])
def test_interrupted_checkpoint_write_keeps_previous_file(trained: dict[str, Any], where: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning writes checkpoints through a temporary file renamed into place (fsspec transaction)."""
    trainer = trained["engine"].trainer
    target = tmp_path / "run" / "model.ckpt"
    trainer.save_checkpoint(target)
    previous = target.read_bytes()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where fsspec stages the write
    with monkeypatch.context() as patch:
        if where == "file-write":
            patch.setattr(LocalFileOpener, "write", _half_write)
        else:
            patch.setattr(torch, "save", _half_torch_save)
        with pytest.raises(OSError, match="No space left"):
            trainer.save_checkpoint(target)
    assert target.read_bytes() == previous
    assert sorted(path.name for path in target.parent.iterdir()) == ["model.ckpt"]
    assert list(scratch.iterdir()) == []  # the partial temporary file was discarded
    # The failure leaves nothing stuck: the next write succeeds and loads.
    trainer.save_checkpoint(target)
    reloaded = torch.load(target, map_location="cpu", weights_only=True)
    expected = torch.load(io.BytesIO(previous), map_location="cpu", weights_only=True)
    assert reloaded["epoch"] == expected["epoch"]
    assert all(torch.equal(value, expected["state_dict"][key]) for key, value in reloaded["state_dict"].items())
