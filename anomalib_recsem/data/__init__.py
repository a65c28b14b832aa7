"""Datasets, datamodules and transforms of anomalib-recsem."""

from .dagm import DAGM, DAGMDataset
from .mvtec import __all__ as _mvtec_names
from .synthetic_defect import DefectBatch, SyntheticDefect

__all__ = ["DAGM", "DAGMDataset", "DefectBatch", "SyntheticDefect", *_mvtec_names]

if _mvtec_names:
    from .mvtec import MVTec  # noqa: F401
