"""Resumable, rank-aware sample order for the reference recipe.

Each sample's augmentation draws from RNGs seeded by ``(seed, epoch, index)``, and the order of
an epoch is a permutation seeded by ``(seed, epoch)``, so the data a step sees depends only on
the step: not on the number of workers, and not on whether the run was resumed in between.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["CachedClips", "EpochBatchSampler", "SeededSamples"]


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence: well mixed, stable across platforms)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


class SeededSamples(Dataset):
    """Wraps a dataset whose items draw from the global RNGs; item ``(epoch, i)`` is reproducible.

    The global ``random``, numpy and torch RNGs are seeded per item and restored afterwards, so
    the caller's RNG streams are untouched.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        s = _mix(self.seed, epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            random.seed(s)
            np.random.seed(s % 2**32)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                if hasattr(self.dataset, "set_epoch"):  # datasets with per-epoch crops
                    self.dataset.set_epoch(epoch)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class CachedClips(Dataset):
    """Keeps each item of a deterministic dataset in memory after its first use.

    For datasets whose item ``i`` never changes (the built-in synthetic clips): generating a
    clip costs far more than a training step of a small model. Each DataLoader worker keeps
    its own copy.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._items: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self._items.get(index)
        if item is None:
            item = self._items[index] = self.dataset[index]
        return item


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` keys for one rank, starting at any step.

    Every epoch is a seeded permutation of the dataset, split across ranks; the last partial
    batch is dropped so every rank takes the same number of steps per epoch.

    Args:
        size: Number of samples in the dataset.
        batch_size: Samples per batch on this rank.
        seed: Seed of the permutations.
        rank: This process's rank.
        world_size: Number of processes.
        start_step: Global step to start at (the batches before it are skipped, not loaded).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = size // (batch_size * world_size)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the dataset has {size} samples, fewer than one batch of {batch_size} "
                f"on each of {world_size} process(es)"
            )
        self.start_step = start_step

    def position(self, step: int) -> tuple[int, int]:
        """``(epoch, step within the epoch)`` of global ``step`` (both 0-based)."""
        return divmod(step, self.steps_per_epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, offset = self.position(self.start_step)
        while True:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch))
            order = torch.randperm(self.size, generator=g).tolist()
            per_rank = self.steps_per_epoch * self.batch_size
            mine = order[self.rank * per_rank : (self.rank + 1) * per_rank]
            for b in range(offset, self.steps_per_epoch):
                chunk = mine[b * self.batch_size : (b + 1) * self.batch_size]
                yield [(epoch, i) for i in chunk]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # an endless stream; len is one epoch, for information
        return self.steps_per_epoch
