"""Sampling keyed by sample index and epoch, sharded over DDP ranks by the sampler itself."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields `(epoch, index)` keys: a permutation seeded by (seed, epoch) when shuffling, split over the
    DDP ranks by striding. Rank r's k-th batch of b holds global positions r, r + W, ... so the W ranks'
    k-th batches together are exactly the single-process k-th batch of W*b. Without `drop_last` no sample
    is repeated to even out the ranks (so an evaluation counts every image exactly once)."""

    def __init__(
        self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        if self.drop_last:
            order = order[: len(self) * self.world_size]
        return iter([(self.epoch, index) for index in order[self.rank :: self.world_size]])

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.world_size
        return math.ceil((self.size - self.rank) / self.world_size)
