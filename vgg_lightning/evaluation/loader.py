"""The evaluation's data: every image of a split rescaled (uncropped) to each test scale Q, in batches of
images whose rescaled shapes are equal at every Q, never padded (padding changes the score map). Shapes come
from the file headers; ImageNet's val set, mostly 500x375 and 375x500, still runs in full batches."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.datamodule import loader_worker_init
from ..data.datasets import ImageFolder, readable
from ..data.transforms import rescaled_size


class ScaledImages(Dataset):
    """The split's images, each rescaled (uncropped) to every Q in `scales`: items are
    `{"images": [one (3, H_q, W_q) uint8 tensor per Q], "label", "index"}`, or None when unreadable. `samples`
    ((path, label) pairs) replaces the split's files (see `ImageFolder`)."""

    def __init__(
        self,
        root: str,
        scales: Sequence[int],
        split: str = "val",
        on_corrupt: str = "skip",
        samples: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        self.scales = [int(q) for q in scales]
        # a list of Q: each file is read and decoded once for all its views; `samples`: (path, target) pairs
        # of another layout instead of root/split/<class>/
        self.folder = ImageFolder(
            root, split, train=False, test_scale=self.scales, center_crop=None, on_corrupt=on_corrupt, samples=samples
        )

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> dict | None:
        item = self.folder[index]
        return None if item is None else {"images": item["images"], "label": item["label"], "index": index}

    def shape_keys(self) -> list[tuple | None]:
        """Each image's rescaled (H, W) at every Q, from its file header (None when unreadable)."""
        keys: list[tuple | None] = []
        for path, _ in self.folder.samples:
            try:
                with Image.open(path) as image:
                    height, width = image.height, image.width
                keys.append(tuple(rescaled_size(height, width, q) for q in self.scales))
            except Exception:  # broken files are skipped (or stop the run) when they are read
                keys.append(None)
        return keys


class ShapeBatchSampler(Sampler):
    """Batches of at most `batch_size` indices with equal keys (rescaled shapes). Rank r of W takes batches
    r, r + W, ...: every image is in exactly one rank's batches, none repeated to even the ranks out. `indices`
    limits the batches to those images (a resumed job's remaining ones)."""

    def __init__(
        self, keys: Sequence, batch_size: int, rank: int = 0, world_size: int = 1, indices: Sequence[int] | None = None
    ) -> None:
        order = sorted(range(len(keys)) if indices is None else indices, key=lambda i: (keys[i] or (), i))
        batches = []
        for _, group in itertools.groupby(order, key=lambda i: keys[i]):
            group = list(group)
            batches += [group[k : k + batch_size] for k in range(0, len(group), batch_size)]
        self.batches = batches[rank::world_size]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def shape_loader(
    dataset: ScaledImages,
    batch_size: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    indices: Sequence[int] | None = None,
) -> DataLoader:
    """This rank's share of `dataset` in batches of equal shapes."""
    sampler = ShapeBatchSampler(dataset.shape_keys(), batch_size, rank, world_size, indices)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_by_shape,
        worker_init_fn=loader_worker_init,
        pin_memory=torch.cuda.is_available(),
    )


def collate_by_shape(items: list[dict | None]) -> dict:
    """A batch as groups of equal shapes: one group when the header sizes held, never a padded stack."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    kept, skipped = readable(items)
    for item in kept:
        groups[tuple(image.shape for image in item["images"])].append(item)
    collated = [torch.utils.data.default_collate(group) for group in groups.values()]
    return {"groups": collated, "skipped": skipped}
