"""``anomalib_recsem.presets``: the YAML configs read as anomalib's CLI reads them."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from anomalib_recsem import RecSem
from anomalib_recsem.presets import PRESETS, load_config, preset_config

TEXT = "learning_rate: 1e-3\nweight_decay: 1.0e-05\nwarmup_epochs: 20\nscales: [8, 16]\nname: 1.2.3\nflag: true\n"


def test_numbers_read_as_the_cli_reads_them() -> None:
    """PyYAML's own rules make ``1e-3`` a string, which RecSem rejects; jsonargparse reads a float."""
    assert load_config(TEXT) == {"learning_rate": 0.001, "weight_decay": 1e-5, "warmup_epochs": 20, "scales": [8, 16],
                                 "name": "1.2.3", "flag": True}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_and_is_a_fresh_copy(preset: str) -> None:
    config = preset_config(preset)
    RecSem(**config["model"]["init_args"])
    config["model"]["init_args"]["image_size"] = -1
    assert preset_config(preset)["model"]["init_args"]["image_size"] > 0


@pytest.mark.parametrize("preset", PRESETS)
def test_a_missing_category_folder_is_named_instead_of_downloading_mvtec_ad(preset: str, tmp_path: Path) -> None:
    data = preset_config(preset)["data"]
    module, name = data["class_path"].rsplit(".", 1)
    datamodule = getattr(importlib.import_module(module), name)(
        **{**data["init_args"], "root": tmp_path, "category": "magnetic_tile"},
    )
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "magnetic_tile"))):
        datamodule.prepare_data()
