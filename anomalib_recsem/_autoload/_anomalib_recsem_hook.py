"""Import ``anomalib_recsem`` as soon as ``anomalib.models`` has been imported.

anomalib has no plugin mechanism: its CLI resolves ``--model RecSem`` among the
``AnomalibModule`` subclasses already imported, and ``get_model``/``get_datamodule`` look
names up in ``anomalib.models``/``anomalib.data``. Installed as a top-level module and
started from ``anomalib_recsem.pth`` (and ``anomalib_recsem.start`` for Python >= 3.15),
this hook waits for ``anomalib.models`` and then imports the plugin, which registers its
names. It imports nothing heavy itself, so other programs pay nothing for it.

Set ``ANOMALIB_RECSEM_NO_AUTOLOAD=1`` to switch it off; ``anomalib_recsem.RecSem`` then
still works as a full class path.
"""

import os
import sys

TRIGGER = "anomalib.models"
DISABLE_VARIABLE = "ANOMALIB_RECSEM_NO_AUTOLOAD"


class _PluginLoader:
    """Runs the real loader of ``anomalib.models``, then imports the plugin."""

    def __init__(self, loader):  # noqa: ANN001, ANN204
        self._loader = loader

    def __getattr__(self, name):  # noqa: ANN001, ANN204
        return getattr(self._loader, name)

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return self._loader.create_module(spec)

    def exec_module(self, module):  # noqa: ANN001, ANN201
        self._loader.exec_module(module)
        # The import system binds the submodule to its parent only after this returns;
        # the plugin's own ``import anomalib.models`` needs the binding now.
        parent, _, child = module.__name__.rpartition(".")
        setattr(sys.modules[parent], child, module)
        try:
            import anomalib_recsem  # noqa: F401, PLC0415
        except Exception as error:  # noqa: BLE001 - a broken plugin must never break anomalib
            import warnings  # noqa: PLC0415

            warnings.warn(f"anomalib_recsem could not be loaded: {error!r}", stacklevel=2)


class _PluginFinder:
    """One-shot meta-path finder that wraps the loader of ``anomalib.models``."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201, ARG002
        if name != TRIGGER:
            return None
        sys.meta_path.remove(self)
        from importlib.util import find_spec  # noqa: PLC0415

        spec = find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _PluginLoader(spec.loader)
        return spec


def install() -> None:
    """Register the finder unless disabled or ``anomalib.models`` is already imported."""
    if os.environ.get(DISABLE_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}:
        return
    if TRIGGER in sys.modules:
        import anomalib_recsem  # noqa: F401, PLC0415

        return
    if not any(isinstance(finder, _PluginFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PluginFinder())
