"""Models of anomalib-recsem."""

from .recsem import RecSem, RecSemModel

__all__ = ["RecSem", "RecSemModel"]
