"""Sampling keyed by sample index and epoch, sharded over DDP ranks by the sampler itself, and resumable
mid-epoch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

Progress = Callable[[], tuple[int, int]]  # -> (epoch, batches this rank has finished in that epoch)


class EpochSampler(Sampler):
    """Yields `(epoch, index)` keys: a permutation seeded by (seed, epoch) when shuffling, split over the
    DDP ranks by striding. Rank r's k-th batch of b holds global positions r, r + W, ... so the W ranks'
    k-th batches together are exactly the single-process k-th batch of W*b. Without `drop_last` no sample
    is repeated to even out the ranks (so an evaluation counts every image exactly once).

    `progress`, when given, is read each time iteration starts: it names the epoch and how many batches of
    it are already done, so a run resumed mid-epoch continues with the next unseen batch. (Lightning builds
    the resumed iterator before it calls `set_epoch`, so `set_epoch` alone would replay epoch 0's order.)
    """

    def __init__(
        self,
        size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        batch_size: int = 1,
        progress: Progress | None = None,
    ) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.batch_size, self.progress = batch_size, progress
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, done = self.progress() if self.progress else (self.epoch, 0)
        order = self.order(epoch)
        if self.drop_last:
            order = order[: self.size // self.world_size * self.world_size]
        mine = order[self.rank :: self.world_size][done * self.batch_size :]
        return iter([(epoch, index) for index in mine])

    def __len__(self) -> int:
        if self.drop_last:
            return self.size // self.world_size
        return math.ceil((self.size - self.rank) / self.world_size)
