"""``--data MVTec``: the name anomalib used for MVTec AD until 2.3.

anomalib 2.3.1 removed its deprecated ``MVTec`` alias of ``MVTecAD``; the RecSem
documentation and many user scripts still say ``--data MVTec``. The alias is defined only
while anomalib has no class of that name, so the two can never clash.

Unlike ``MVTecAD``, a missing ``<root>/<category>`` is reported by name: a category that
is not one of MVTec AD's fifteen is never downloaded (anomalib would download the whole
4.9 GB dataset and still lack it), and a failed download names the folder it was for.
"""

from __future__ import annotations

from pathlib import Path

import anomalib.data
from anomalib.data import MVTecAD
from anomalib.data.datasets.image.mvtecad import CATEGORIES as MVTEC_AD_CATEGORIES

__all__: list[str] = []


def missing_mvtec_message(root: Path, category: str) -> str:
    """Say which of ``root`` and ``<root>/<category>`` is missing, and what is there instead.

    Args:
        root: Dataset root.
        category: Requested category.

    Returns:
        str: The message.
    """
    folder = root / category
    if not root.is_dir():
        return f"MVTec AD dataset root {root} does not exist (needed for category {category!r} at {folder})."
    found = sorted(child.name for child in root.iterdir() if child.is_dir())
    return (
        f"MVTec AD category folder {folder} does not exist. "
        f"Folders found under {root}: {', '.join(found) if found else 'none'}."
    )


if not hasattr(anomalib.data, "MVTec"):

    class MVTec(MVTecAD):
        """Alias of anomalib's ``MVTecAD`` datamodule; results go under ``MVTecAD/``.

        Prefer ``MVTecAD``; this alias exists for commands written for anomalib < 2.3.
        A missing dataset folder is reported by name (see the module docstring).
        """

        @property
        def name(self) -> str:
            """Same results folder as ``MVTecAD``."""
            return "MVTecAD"

        def prepare_data(self) -> None:
            """Check ``<root>/<category>``; download only official MVTec AD categories.

            Raises:
                FileNotFoundError: If ``<root>/<category>`` is missing and the category is
                    not an MVTec AD one, or downloading it failed. The message names the
                    missing folder.
            """
            root = Path(self.root)
            if (root / self.category).is_dir():
                super().prepare_data()
                return
            message = missing_mvtec_message(root, self.category)
            if self.category not in MVTEC_AD_CATEGORIES:
                msg = (
                    f"{message} {self.category!r} is not an MVTec AD category, so it cannot be downloaded: "
                    f"point root at the folder that holds {self.category}/train/good (data.root on the command line)."
                )
                raise FileNotFoundError(msg)
            try:
                super().prepare_data()
            except Exception as error:
                msg = f"{message} Downloading MVTec AD into {root} failed: {error}"
                raise FileNotFoundError(msg) from error

    __all__ += ["MVTec"]
