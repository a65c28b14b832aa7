"""anomalib-recsem: the RecSem surface-defect detector as an anomalib plugin.

Importing the package registers its short names with anomalib (``RecSem`` in
``anomalib.models``; ``DAGM`` and, while anomalib lacks it, ``MVTec`` in
``anomalib.data``) so that ``anomalib.models.get_model("RecSem")`` and
``anomalib benchmark`` find them. The stock ``anomalib`` CLI imports the package through
the autoload hook installed with it (see ``anomalib_recsem/_autoload``).
"""

import anomalib.data
import anomalib.models

from .data import DAGM, DAGMDataset, DefectBatch, SyntheticDefect
from .data import __all__ as _data_names
from .models import RecSem, RecSemModel

__all__ = ["DAGM", "DAGMDataset", "DefectBatch", "RecSem", "RecSemModel", "SyntheticDefect"]
__version__ = "0.1.0"

if "MVTec" in _data_names:
    from .data import MVTec

    __all__ += ["MVTec"]


def _register(namespace: object, name: str, value: type) -> None:
    # Never shadow a name anomalib defines itself.
    if getattr(namespace, name, value) is value:
        setattr(namespace, name, value)


_register(anomalib.models, "RecSem", RecSem)
_register(anomalib.data, "DAGM", DAGM)
if "MVTec" in __all__:
    _register(anomalib.data, "MVTec", MVTec)
