"""Image folders in the ImageNet layout (`root/<split>/<class>/*.JPEG`). Every random draw of a training
view is keyed by (seed, epoch, sample index) (see `sampling.EpochSampler`): the same sample gets the same
crop, flip and colour shift whatever the number of processes or workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .decode import CorruptImageError, image_size, read_bytes
from .device_decode import DECODE_ON, device_decodable_size, empty_views, encoded_item
from .layout import DataLayoutError, split_samples, validate_layout  # noqa: F401 (DataLayoutError, validate_layout: the old import names)
from .transforms import CROP, center_crop_params, decode_view, pca_alpha, rescale_many, sample_crop

log = logging.getLogger(__name__)
ON_CORRUPT = ("skip", "error")


class CorruptFiles:
    """What `data.on_corrupt` says to do with a file that does not decode: stop, naming it (`error`), or warn
    once per file and leave the sample out (`skip`)."""

    def __init__(self, on_corrupt: str = "skip") -> None:
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"data.on_corrupt={on_corrupt!r}: choose one of {', '.join(ON_CORRUPT)}")
        self.on_corrupt = on_corrupt
        self._warned: set[str] = set()

    def __call__(self, path: str, error: Exception) -> None:
        if self.on_corrupt == "error":
            raise CorruptImageError(f"cannot decode {path} (data.on_corrupt=error): {error}") from error
        if path not in self._warned:
            self._warned.add(path)
            log.warning("skipping unreadable image %s (%s); data.on_corrupt=error stops instead", path, error)


class ImageFolder(Dataset):
    """One split of an image folder. Items are looked up by `(epoch, index)` (see `EpochSampler`) and come back
    as uint8 CHW tensors: `train` views are random 224 crops at scale S, the others rescaled to Q (and
    centre-cropped unless `center_crop` is None, which keeps the full image for dense evaluation). With a
    list of Q (`test_scale=[256, 384, 512]`), an item holds `images`, one view per Q, from one decode.
    `samples` ((path, label) pairs) replaces the folder's files: any images, e.g. those to classify.

    With `decode="device"`, a 224 view of a JPEG comes back undecoded, as the file's bytes and the view's
    plan, to be decoded with its batch on the training device (`device_decode`)."""

    def __init__(
        self,
        root: str,
        split: str,
        train: bool,
        scale: tuple[int, int] = (256, 256),
        test_scale: int | Sequence[int] = 256,
        center_crop: int | None = CROP,
        seed: int = 0,
        on_corrupt: str = "skip",
        decode: str = "cpu",
        samples: Sequence[tuple[str, int]] | None = None,
        max_aspect: float | None = None,
    ) -> None:
        if decode not in DECODE_ON:
            raise ValueError(f"data.decode={decode!r}: choose one of {', '.join(DECODE_ON)}")
        self.bad_file = CorruptFiles(on_corrupt)
        self.root = os.path.join(root, split)
        if samples is None:
            self.classes, self.samples = split_samples(self.root)
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        else:  # (path, label) pairs of another layout (VOC, Caltech: data/readers.py; files to predict: label -1)
            self.classes, self.class_to_idx, self.samples = [], {}, [(str(p), int(t)) for p, t in samples]
        self.targets = [target for _, target in self.samples]
        self.train, self.scale, self.center_crop = train, scale, center_crop
        self.single_scale = isinstance(test_scale, int)
        self.test_scales = [test_scale] if self.single_scale else [int(q) for q in test_scale]
        self.seed, self.decode, self.max_aspect = seed, decode, max_aspect
        # a single 224 view per item: cut from one plan (CropParams), decoded here or on the device
        self.one_view = train or (self.single_scale and center_crop == CROP)

    def __len__(self) -> int:
        return len(self.samples)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def __getitem__(self, key) -> dict | None:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path, target = self.samples[index]
        rng = self.rng(epoch, index) if self.train else None
        try:
            data = read_bytes(path)
            if self.one_view:
                view = self._view(data, rng, path)
            else:
                views = rescale_many(data, self.test_scales, self.center_crop, path, self.max_aspect)
                view = {"image": views[0]} if self.single_scale else {"images": views}
        except (CorruptImageError, OSError) as error:
            self.bad_file(path, error)
            return None
        if self.train:  # drawn after the crop: the same draws whichever way the image is decoded
            view["pca_alpha"] = torch.from_numpy(pca_alpha(rng))
        return {"label": target, "index": index, **view}

    def _view(self, data: bytes, rng: np.random.Generator | None, path: str) -> dict:
        on_device = self.decode == "device" and device_decodable_size(data)  # one header parse either way
        size = on_device or image_size(data, path)
        params = sample_crop(*size, self.scale, rng) if self.train else center_crop_params(*size, self.test_scales[0])
        if on_device:
            return encoded_item(data, size, params, path)
        return {"image": decode_view(data, size, params, path)}


def readable(items: list[dict | None]) -> tuple[list[dict], torch.Tensor]:
    """The samples of a batch that could be read (an unreadable one is None), and how many were not: what
    every collate of ours counts as the batch's `skipped`."""
    kept = [item for item in items if item is not None]
    return kept, torch.tensor(len(items) - len(kept))


def collate(items: list[dict | None]) -> dict:
    """Stack a batch, leaving out the samples that could not be decoded (counted in `skipped`). Samples still
    to be decoded on the device come first, as lists of their bytes (`jpeg`), plans and paths."""
    kept, skipped = readable(items)
    kept.sort(key=lambda item: "jpeg" not in item)
    encoded = {key: [item.pop(key) for item in kept if key in item] for key in ("jpeg", "plan", "jpeg_path")}
    decoded = [item.pop("image") for item in kept if "image" in item] if encoded["jpeg"] else None
    batch = torch.utils.data.default_collate(kept) if kept else {}
    if encoded["jpeg"]:
        batch.update(encoded, plan=torch.stack(encoded["plan"]))
        batch["image"] = torch.stack(decoded) if decoded else empty_views()
    batch["skipped"] = skipped
    return batch
