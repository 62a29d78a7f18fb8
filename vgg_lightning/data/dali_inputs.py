"""What DALI is given (`data.loader=dali`), made in the loader's workers.

Nothing random happens in DALI. The workers read each file, parse its header and draw its view
(`transforms.sample_crop`, `pca_alpha`: keyed by (seed, epoch, sample index) exactly as on the CPU path), and
`DaliCollate` turns a batch of them into DALI's inputs: per sample, the window of the original image that the
224 crop covers (`crop_windows`), the crop inside it, the flip, and the mean RGB less the colour shift. The
batch's JPEG bytes travel as one tensor (one shared-memory transfer per batch rather than one per file: the
training process only slices it). A JPEG without its end marker (truncated: DALI would fill the missing part
with grey where the CPU path refuses the file) is decoded by the worker on the CPU path instead.
"""

from __future__ import annotations

import numpy as np
import torch

from .datasets import CorruptFiles, collate
from .decode import CorruptImageError
from .options import CROP
from .transforms import BatchNormalizer, CropParams, bounded_box, decode_view


def jpeg_complete(data: np.ndarray) -> bool:
    """Whether a JPEG's bytes end with its end-of-image marker (a little trailing padding allowed)."""
    return len(data) >= 2 and b"\xff\xd9" in bytes(data[-64:])


def rescaled_sizes(height: np.ndarray, width: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`transforms.rescaled_size` for arrays of images: the size after an isotropic rescale to shorter side
    `side`, the longer side truncated as torchvision's `Resize(side)` does."""
    tall = height > width
    long = (side * np.where(tall, height, width) / np.where(tall, width, height)).astype(np.int64)
    return np.where(tall, long, side), np.where(tall, side, long)


def crop_windows(plans: np.ndarray, crop: int = CROP) -> dict[str, np.ndarray]:
    """Per view of `plans` ((n, 6) rows of height, width, S, top, left, flip, as `device_decode.encoded_item`
    gives them): the window of the original image to decode (`anchor`, `shape`: (y, x) pixels) and the crop
    inside that window (`roi_start`, `roi_end`: float (y, x)).

    The crop's rows [top, top + 224) of the image rescaled to S are rows [top * f, (top + 224) * f) of the
    original, f = H / H_S; the window adds the antialiasing filter's reach, max(f, 1) pixels, and one more
    for rounding, on each side (as `transforms.resized_region` does), so that every source pixel that
    contributes to the crop is decoded."""
    height, width, side, top, left, _ = (plans[:, k].astype(np.int64) for k in range(6))
    rescaled_h, rescaled_w = rescaled_sizes(height, width, side)
    rows, cols = height / rescaled_h, width / rescaled_w  # original pixels per rescaled pixel
    start = np.stack([top * rows, left * cols], axis=1)
    end = np.stack([(top + crop) * rows, (left + crop) * cols], axis=1)
    reach = np.maximum(np.stack([rows, cols], axis=1), 1.0) + 1
    anchor = np.maximum(np.floor(start - reach), 0).astype(np.int64)
    far = np.minimum(np.ceil(end + reach), np.stack([height, width], axis=1)).astype(np.int64)
    return {
        "anchor": anchor.astype(np.int32),
        "shape": (far - anchor).astype(np.int32),
        "roi_start": (start - anchor).astype(np.float32),
        "roi_end": (end - anchor).astype(np.float32),
    }


def scale_boxes(sizes: np.ndarray, side: int, max_aspect: float | None) -> dict[str, np.ndarray]:
    """Per image of `sizes` ((n, 2) heights and widths): what an evaluation view at Q = `side` keeps
    (`transforms.bounded_box` of the image rescaled to Q) as a region of the original (`roi_start`, `roi_end`:
    float (y, x)) and the view's size (`size`: (h, w))."""
    height, width = sizes[:, 0].astype(np.int64), sizes[:, 1].astype(np.int64)
    rescaled = np.stack(rescaled_sizes(height, width, np.full_like(height, side)), axis=1)
    boxes = np.array([bounded_box(tuple(size), max_aspect) for size in rescaled.tolist()], np.float64).reshape(-1, 4)
    step = sizes / rescaled  # original pixels per rescaled pixel
    return {
        "roi_start": (boxes[:, :2] * step).astype(np.float32),
        "roi_end": ((boxes[:, :2] + boxes[:, 2:]) * step).astype(np.float32),
        "size": boxes[:, 2:].astype(np.float32),
    }


def pack(files: list[torch.Tensor]) -> dict:
    """A batch's files as one uint8 tensor and their offsets in it."""
    offsets = torch.tensor([0, *(len(data) for data in files)]).cumsum(0)
    return {"jpeg": torch.cat(files) if files else torch.empty(0, dtype=torch.uint8), "offsets": offsets}


def unpack(batch: dict) -> list[np.ndarray]:
    """The files of a packed batch, as numpy views of its one tensor."""
    flat, offsets = batch["jpeg"].numpy(), batch["offsets"].tolist()
    return [flat[start:end] for start, end in zip(offsets, offsets[1:])]


class DaliCollate:
    """The DataLoader's collate for `data.loader=dali`, run by its workers: `datasets.collate`'s batch, with the
    encoded samples (first) packed (`pack`) and their DALI arguments (`dali`: one (n, ...) array per name of
    `dali_pipeline.VIEW_ARGS`) added. Truncated JPEGs are decoded here on the CPU path, or skipped and counted
    (`on_corrupt`) as the CPU path does."""

    def __init__(self, normalize: str = "paper", on_corrupt: str = "skip") -> None:
        self.normalizer, self.bad_file = BatchNormalizer(normalize), CorruptFiles(on_corrupt)

    def __call__(self, items: list[dict | None]) -> dict:
        batch = collate([self._complete(item) for item in items])
        if "jpeg" not in batch:
            return batch
        plans = batch["plan"].numpy()
        alpha = batch["pca_alpha"][: len(plans)] if "pca_alpha" in batch else None
        mean = self.normalizer.offsets(alpha).reshape(-1, 3).expand(len(plans), 3)
        std = self.normalizer.std.reshape(1, 3).expand(len(plans), 3)
        dali = {**crop_windows(plans), "mirror": plans[:, 5].astype(np.int32)}
        dali.update(mean=np.ascontiguousarray(mean.numpy()), std=np.ascontiguousarray(std.numpy()))
        return {**batch, **pack(batch["jpeg"]), "dali": dali}

    def _complete(self, item: dict | None) -> dict | None:
        if item is None or "jpeg" not in item or jpeg_complete(item["jpeg"].numpy()):
            return item
        height, width, side, top, left, flip = item.pop("plan").tolist()
        path = item.pop("jpeg_path")
        try:
            data = item.pop("jpeg").numpy().tobytes()
            item["image"] = decode_view(data, (height, width), CropParams(side, top, left, bool(flip)), path)
        except CorruptImageError as error:
            self.bad_file(path, error)
            return None
        return item
