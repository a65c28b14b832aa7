"""RecSem: image reconstruction through prototype memory + semantic difference discrimination."""

from .lightning_model import RecSem
from .torch_model import RecSemModel

__all__ = ["RecSem", "RecSemModel"]
