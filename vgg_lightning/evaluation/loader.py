"""The evaluation's data: every image of a split rescaled (uncropped) to each test scale Q, in batches of
images whose rescaled shapes are equal at every Q, never padded (padding changes the score map). Shapes come
from the file headers; ImageNet's val set, mostly 500x375 and 375x500, still runs in full batches.

Memory is bounded whatever the images' shapes: a view keeps at most a `max_aspect`:1 centred part of its
image (`transforms.bounded_box`), and a batch holds at most `max_pixels` pixels per view at the largest Q
(at least one image); see docs/cli.md, "Runs you can trust"."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.dali_eval import encoded_file
from ..data.dali_inputs import pack
from ..data.datamodule import loader_worker_init
from ..data.datasets import ImageFolder, readable
from ..data.transforms import bounded_box, rescaled_size


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
        max_aspect: float | None = None,
        encoded: bool = False,
    ) -> None:
        self.scales, self.max_aspect = [int(q) for q in scales], max_aspect
        self.encoded = encoded  # data.loader=dali: the JPEGs DALI decodes come back undecoded (data/dali_eval.py)
        self.aspect_cropped = 0  # images longer than max_aspect:1, of which the centred part is tested
        # a list of Q: each file is read and decoded once for all its views; `samples`: (path, target) pairs
        # of another layout instead of root/split/<class>/
        self.folder = ImageFolder(
            root,
            split,
            train=False,
            test_scale=self.scales,
            center_crop=None,
            on_corrupt=on_corrupt,
            samples=samples,
            max_aspect=max_aspect,
        )

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> dict | None:
        if self.encoded and (encoded := encoded_file(*self.folder.samples[index])) is not None:
            return {**encoded, "index": index}
        return self.decoded(index)

    def decoded(self, index: int) -> dict | None:
        """The item decoded here (by the loader's worker), whatever `encoded` says."""
        item = self.folder[index]
        return None if item is None else {"images": item["images"], "label": item["label"], "index": index}

    def shape_keys(self) -> list[tuple | None]:
        """Each image's view shape (H, W) at every Q, from its file header (None when unreadable); counts the
        images cropped to max_aspect:1 (`aspect_cropped`)."""
        keys: list[tuple | None] = []
        self.aspect_cropped = 0
        for path, _ in self.folder.samples:
            try:
                with Image.open(path) as image:
                    height, width = image.height, image.width
            except Exception:  # broken files are skipped (or stop the run) when they are read
                keys.append(None)
                continue
            rescaled = [rescaled_size(height, width, q) for q in self.scales]
            kept = [bounded_box(size, self.max_aspect)[2:] for size in rescaled]
            self.aspect_cropped += kept != rescaled
            keys.append(tuple(kept))
        return keys


def images_per_batch(key: tuple | None, batch_size: int, max_pixels: int | None) -> int:
    """How many images of view shapes `key` (one (H, W) per Q) a batch holds: batch_size, fewer when their
    pixels at the largest Q would exceed max_pixels; at least one."""
    if key is None or max_pixels is None:
        return batch_size
    pixels = max(height * width for height, width in key)
    return max(1, min(batch_size, int(max_pixels) // pixels))


class ShapeBatchSampler(Sampler):
    """Batches of at most `batch_size` indices with equal keys (view shapes) and at most `max_pixels` pixels
    a view (`images_per_batch`). Rank r of W takes batches r, r + W, ...: every image is in exactly one rank's
    batches, none repeated to even the ranks out. `indices` limits the batches to those images (a resumed
    job's remaining ones)."""

    def __init__(
        self,
        keys: Sequence,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        indices: Sequence[int] | None = None,
        max_pixels: int | None = None,
    ) -> None:
        order = sorted(range(len(keys)) if indices is None else indices, key=lambda i: (keys[i] or (), i))
        batches = []
        for key, members in itertools.groupby(order, key=lambda i: keys[i]):
            group, size = list(members), images_per_batch(key, batch_size, max_pixels)
            batches += [group[k : k + size] for k in range(0, len(group), size)]
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
    max_pixels: int | None = None,
    collate_fn=None,
) -> DataLoader:
    """This rank's share of `dataset` in batches of equal shapes (and at most `max_pixels` pixels a view);
    `collate_fn` by default `collate_by_shape`."""
    sampler = ShapeBatchSampler(dataset.shape_keys(), batch_size, rank, world_size, indices, max_pixels)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn or collate_by_shape,
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


def collate_encoded(items: list[dict | None]) -> dict:
    """`collate_by_shape` for data.loader=dali: the items left for DALI apart, as `encoded` (None if none): their
    files packed into one tensor (`dali_inputs.pack`), their sizes, labels and indices."""
    encoded = [item for item in items if item is not None and "jpeg" in item]
    batch = collate_by_shape([item for item in items if item is None or "jpeg" not in item])
    if not encoded:
        return {**batch, "encoded": None}
    files = pack([item["jpeg"] for item in encoded])
    fields = {key: torch.stack([torch.as_tensor(item[key]) for item in encoded]) for key in ("size", "label", "index")}
    return {**batch, "encoded": {**files, **fields}}
