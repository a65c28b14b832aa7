"""``--data MVTec``: the name anomalib used for MVTec AD until 2.3.

anomalib 2.3.1 removed its deprecated ``MVTec`` alias of ``MVTecAD``; the RecSem
documentation and many user scripts still say ``--data MVTec``. The alias is defined only
while anomalib has no class of that name, so the two can never clash.
"""

from __future__ import annotations

import anomalib.data
from anomalib.data import MVTecAD

__all__: list[str] = []

if not hasattr(anomalib.data, "MVTec"):

    class MVTec(MVTecAD):
        """Alias of anomalib's ``MVTecAD`` datamodule; results go under ``MVTecAD/``.

        Prefer ``MVTecAD``; this alias exists for commands written for anomalib < 2.3.
        """

        @property
        def name(self) -> str:
            """Same results folder as ``MVTecAD``."""
            return "MVTecAD"

    __all__ += ["MVTec"]
