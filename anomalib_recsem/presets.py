"""RecSem's presets, read from the YAML configs they are defined in.

Each preset is one anomalib CLI config in ``configs/``: ``recsem`` (the paper's settings),
``recsem_small`` (the CPU preset) and ``recsem_tiny`` (seconds on a CPU: tests and smoke
runs). The demo, the benchmarks and the tests take a preset's model arguments from there,
so a preset is written down once.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PRESETS: tuple[str, ...] = ("recsem", "recsem_small", "recsem_tiny")

# A source checkout (and an editable install) keeps the configs at the repository root; a
# built wheel carries them inside the package.
_CONFIG_DIRS = (Path(__file__).resolve().parents[1] / "configs", Path(__file__).resolve().parent / "configs")


def config_path(name: str) -> Path:
    """The YAML file of preset ``name``.

    Raises:
        ValueError: If ``name`` is not one of :data:`PRESETS`.
        FileNotFoundError: If the configs folder is missing from this installation.
    """
    if name not in PRESETS:
        msg = f"preset must be one of {PRESETS}, got {name!r}."
        raise ValueError(msg)
    for folder in _CONFIG_DIRS:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    msg = f"Preset {name!r}: {name}.yaml is in none of {[str(folder) for folder in _CONFIG_DIRS]}."
    raise FileNotFoundError(msg)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a number, as anomalib's CLI
    (jsonargparse) reads it, not the string PyYAML's YAML 1.1 rules make of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def load_config(text: str) -> Any:  # noqa: ANN401
    """YAML as anomalib's CLI reads it (``1e-3`` a float)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506  a SafeLoader


@cache
def _load(name: str) -> dict[str, Any]:
    return load_config(config_path(name).read_text())


def preset_config(name: str) -> dict[str, Any]:
    """The whole config of preset ``name`` (trainer, model and data sections), as a new dict."""
    return copy.deepcopy(_load(name))


def model_arguments(name: str) -> dict[str, Any]:
    """``RecSem`` constructor arguments of preset ``name`` (the config's ``model.init_args``)."""
    return dict(preset_config(name)["model"].get("init_args") or {})


def batch_sizes(name: str) -> tuple[int, int]:
    """Training and evaluation batch sizes of preset ``name`` (its ``data.init_args``)."""
    data = preset_config(name)["data"]["init_args"]
    return int(data["train_batch_size"]), int(data["eval_batch_size"])
