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
from torchvision.datasets.folder import is_image_file

from .decode import CorruptImageError, check_file, image_size, read_bytes
from .device_decode import DECODE_ON, device_decodable_size, empty_views, encoded_item
from .transforms import CROP, center_crop_params, decode_view, pca_alpha, rescale_many, sample_crop

log = logging.getLogger(__name__)
ON_CORRUPT = ("skip", "error")


class DataLayoutError(ValueError):
    """The data folder is not what the run needs; the message says what was found and what was expected."""


def image_files(folder: str, _seen: set | None = None):
    """The image files under `folder` (by extension, as torchvision's ImageFolder picks them), in sorted order,
    following links to folders but never a folder twice (a link to a parent would loop). A name whose link
    loops or dangles is yielded like any file: reading it fails, and it is skipped as unreadable."""
    seen = set() if _seen is None else _seen
    try:
        identity = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    if (identity.st_dev, identity.st_ino) in seen:
        return
    seen.add((identity.st_dev, identity.st_ino))
    for entry in entries:
        try:
            is_folder = entry.is_dir()
        except OSError:  # a file link loop (ELOOP)
            is_folder = False
        if is_folder:
            yield from image_files(entry.path, seen)
        elif is_image_file(entry.name):
            yield entry.path


def class_folders(split_root: str) -> list[str]:
    """The class folders of a split, sorted (as torchvision's find_classes)."""
    return sorted(entry.name for entry in os.scandir(split_root) if _is_folder(entry))


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def split_samples(split_root: str) -> tuple[list[str], list[tuple[str, int]]]:
    """(classes, [(path, class index)]) of a split: what training and evaluation read, and data.check checks."""
    classes = class_folders(split_root)
    samples = [(path, i) for i, name in enumerate(classes) for path in image_files(os.path.join(split_root, name))]
    return classes, samples


def validate_layout(root: str, splits=("train", "val"), num_classes: int | None = None) -> list[str]:
    """Check `root/<split>/<class>/<images>` before any work; returns the sorted class names."""
    if not os.path.isdir(root):
        raise DataLayoutError(
            f"data root {root!r} does not exist. Set data.root=/path/to/imagenet (with train/ and val/ "
            f"inside), or try the generated demo set: python -m vgg_lightning experiment=demo"
        )
    problems, classes_of = [], {}
    for split in splits:
        path = os.path.join(root, split)
        if not os.path.isdir(path):
            problems.append(f"missing split folder {path!r}")
            continue
        classes = class_folders(path)
        classes_of[split] = classes
        if num_classes is not None and len(classes) != num_classes:
            ilsvrc = ", ILSVRC-2012: for another data set pass data=imagefolder" if num_classes == 1000 else ""
            problems.append(
                f"{path!r} has {len(classes)} class folders, expected {num_classes} (data.num_classes={num_classes}"
                f"{ilsvrc})"
            )
        firsts = {c: next(image_files(os.path.join(path, c)), None) for c in classes}
        empty = [c for c, first in firsts.items() if first is None]
        if empty:
            shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            problems.append(f"{path!r}: {len(empty)} class folder(s) hold no images: {shown}")
        if not classes:
            problems.append(f"{path!r} has no class folders (expected {split}/<class>/<image files>)")
        elif len(empty) < len(classes) and (undecodable := _none_decodes([f for f in firsts.values() if f])):
            problems.append(f"{path!r}: no image decodes ({undecodable}); python -m vgg_lightning.data.check {root}")
    if len(classes_of) == len(splits) and len({tuple(c) for c in classes_of.values()}) > 1:
        problems.append("the splits have different class folders: " + _class_differences(classes_of))
    if problems:
        raise DataLayoutError(f"data root {root!r} is not an ImageNet-style layout:\n  - " + "\n  - ".join(problems))
    return next(iter(classes_of.values()))


def _none_decodes(paths: list[str]) -> str | None:
    """When not one of `paths` (the first image of each class) decodes: the first one's reason."""
    reasons = []
    for path in paths:
        reason = check_file(path)
        if reason is None:
            return None
        reasons.append(f"{path}: {reason}")
    return f"the first image of each of the {len(paths)} classes fails, e.g. {reasons[0]}"


def _class_differences(classes_of: dict[str, list[str]]) -> str:
    """Each split's class count with the folders only it has, then which classes each split lacks, by name (the
    first few): 'train: 2 (only here: dog), val: 2 (only here: eel); train lacks eel; val lacks dog'."""
    every = set().union(*map(set, classes_of.values()))

    def first_few(names) -> str:
        names = sorted(names)
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    counts = []
    for split, classes in classes_of.items():
        others = set().union(*(set(c) for s, c in classes_of.items() if s != split))
        only = set(classes) - others
        counts.append(f"{split}: {len(classes)}" + (f" (only here: {first_few(only)})" if only else ""))
    parts = [", ".join(counts)]
    for split, classes in classes_of.items():
        missing = every - set(classes)
        if missing:
            parts.append(f"{split} lacks {first_few(missing)}")
    return "; ".join(parts)


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
