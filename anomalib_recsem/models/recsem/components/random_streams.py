"""Random streams of a RecSem run: resumable, and distinct on every distributed rank.

Synthetic defects, the epoch shuffle and the light augmentation all draw from the global
generators of Python, NumPy and torch. :class:`RandomStreams` keeps them reproducible:

* their states go into every checkpoint and come back when a run resumes, so a resumed run
  draws what an uninterrupted one would have drawn;
* under distributed training, Lightning seeds every process alike, so without help all
  ranks would paste identical defects. Each epoch, every rank is reseeded from
  ``(shared seed, epoch, rank)``; the shared seed is drawn on rank 0 and stored in
  checkpoints, so a resume at an epoch boundary recovers every rank's stream;
* the masks and textures that the defect synthesis draws ahead of time are discarded at
  every epoch start, so an epoch's defects follow from the generators' state alone.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch


def capture_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's generators, as tensors and plain values.

    Plain types only, so checkpoints still load with ``weights_only=True``.
    """
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((
        "MT19937",
        numpy_state["keys"].numpy().astype(np.uint32),
        numpy_state["position"],
        numpy_state["has_gauss"],
        numpy_state["cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # One state per device the saving machine saw; this one may have fewer.
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def seed_rank_generators(base: int, epoch: int, rank: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) generators from ``(base, epoch, rank)``.

    A ``SeedSequence`` over the three numbers gives well-separated streams, as Lightning
    does for data-loader workers.
    """
    sequence = np.random.SeedSequence([base, epoch, rank])
    python_seed, torch_seed = (int(value) for value in sequence.generate_state(2, dtype=np.uint64))
    random.seed(python_seed)
    np.random.seed(sequence.generate_state(4))
    torch.manual_seed(torch_seed)


class RandomStreams(pl.Callback):
    """Store the random generators in checkpoints and give every distributed rank its own stream."""

    def __init__(self) -> None:
        # Shared by all ranks of a distributed run; None in a single-process run.
        self.rank_seed: int | None = None
        self._resumed_state: dict[str, Any] | None = None
        self._fitting = False

    @staticmethod
    def _distributed(trainer: pl.Trainer) -> bool:
        return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()

    def state_dict(self) -> dict[str, Any]:
        """The generators' states (this process's) and the shared rank seed."""
        return {"rng": capture_rng_state(), "rank_seed": self.rank_seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the checkpoint's streams if this is a resumed fit.

        Lightning also calls this when testing, validating or predicting from a checkpoint;
        those leave the user's generators alone. Most strategies restore before
        ``on_fit_start``, which then continues the streams; some (FSDP, DeepSpeed) restore
        after it, and the streams continue here.
        """
        self.rank_seed = state_dict["rank_seed"]
        if self._fitting:
            restore_rng_state(state_dict["rng"])
        else:
            self._resumed_state = state_dict["rng"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Continue a resumed run's streams; draw the shared rank seed on rank 0 and broadcast it.

        Both before the training loader is built, which draws from the global generator. The
        broadcast is a collective: every rank calls it.
        """
        self._fitting = True
        if self._resumed_state is not None:
            restore_rng_state(self._resumed_state)
            self._resumed_state = None
        if self._distributed(trainer) and self.rank_seed is None:
            drawn = int(torch.randint(0, 2**62, (1,)).item())
            self.rank_seed = int(trainer.strategy.broadcast(drawn, src=0))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Forget a checkpoint's streams that no fit continued (a test run's, say)."""
        self._fitting = False
        self._resumed_state = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reseed this rank for the epoch, and discard the defects drawn ahead in the last one.

        Nothing that must agree across ranks draws from these generators: the distributed
        sampler has its own seeded generator, and DDP broadcasts rank 0's weights at
        start-up and averages gradients at every step.
        """
        if self._distributed(trainer) and self.rank_seed is not None:
            seed_rank_generators(self.rank_seed, trainer.current_epoch, trainer.global_rank)
        pl_module.synthetic_defect.discard_drawn()
