"""Evaluation views through DALI (`data.loader=dali`: the evaluation after training, task=eval).

The evaluation's loader is unchanged (`evaluation.loader`: batches of images whose rescaled shapes are equal at
every Q, never padded), but its workers only read the JPEGs and their headers (`encoded_file`); DALI decodes each
image whole, once, and rescales it to every Q (`dali_pipeline.scaled_pipeline`), so a batch's views at one Q
stack without padding as they do on the CPU path. The views come out uint8, as the workers' do: the evaluator
normalises them. Files DALI is not given (CMYK, PNG, truncated) are decoded by the workers as before and join
the batch as groups of their own; a batch DALI fails on is decoded on the CPU path, as in training.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from .dali_inputs import jpeg_complete, scale_boxes, unpack
from .dali_loader import DaliViews, Pending, dali_settings
from .dali_pipeline import scaled_pipeline
from .decode import read_bytes
from .device_decode import device_decodable_size


def encoded_file(path: str, label: int) -> dict | None:
    """A worker's item for DALI: the bytes of a JPEG it can decode, its size and label; None for any other file
    (or one that cannot be read), which the CPU path then decodes or refuses."""
    try:
        data = read_bytes(path)
    except OSError:
        return None
    size = device_decodable_size(data)
    if size is None or not jpeg_complete(np.frombuffer(data, np.uint8)):
        return None
    return {"jpeg": torch.frombuffer(bytearray(data), dtype=torch.uint8), "size": torch.tensor(size), "label": label}


class DaliScaled(DaliViews):
    """The iterable the evaluator gets: `loader`'s batches (`evaluation.loader.collate_encoded`: `encoded` items
    for DALI beside the workers' `groups`) as `{"groups": [{"images": one uint8 (n, 3, h, w) per Q, "label",
    "index"}, ...], "skipped"}`. `dataset` (ScaledImages) decodes a sample on the CPU path; `group` collates
    such samples by shape."""

    def __init__(self, loader: DataLoader, dataset, group: Callable, **settings) -> None:
        super().__init__(loader, normalizer=None, bad_file=None, **settings)
        self.dataset, self.group = dataset, group

    def _build(self):
        return scaled_pipeline(
            self._next_inputs,
            self.backend,
            batch_size=max((len(batch) for batch in self.loader.batch_sampler.batches), default=1),
            threads=self.threads,
            prefetch=self.prefetch,
            device_id=self.device.index if self.device.type == "cuda" else None,
            scales=len(self.dataset.scales),
        )

    def _prepare(self, batch: dict) -> Pending:
        item, encoded = Pending(batch), batch["encoded"]
        if encoded is not None:
            item.to_dali = list(range(len(encoded["index"])))
            sizes = encoded["size"].numpy()
            boxes = [scale_boxes(sizes, q, self.dataset.max_aspect) for q in self.dataset.scales]
            per_scale = [list(box[k]) for box in boxes for k in ("roi_start", "roi_end", "size")]
            item.inputs = (unpack(encoded), *per_scale)
        return item

    def _decode_here(self, item: Pending, position: int) -> None:
        view = self.dataset.decoded(int(item.batch["encoded"]["index"][position]))  # None: skipped (on_corrupt=skip)
        item.views[position] = view
        if view is None:
            item.dropped.append(position)

    def _finish(self, item: Pending, outputs: tuple | None) -> dict:
        batch, encoded = item.batch, item.batch["encoded"]
        groups = list(batch["groups"])
        if outputs is not None:
            groups.append(
                {
                    "images": [self._to_torch(views, torch.uint8, hwc=True) for views in outputs],
                    "label": encoded["label"],
                    "index": encoded["index"],
                }
            )
        here = self.group([item.views[p] for p in sorted(item.views)])
        return {"groups": groups + here["groups"], "skipped": batch["skipped"] + here["skipped"]}


def dali_scaled(loader: DataLoader, dataset, settings: dict, trainer, group: Callable) -> DaliScaled:
    """The evaluator's `loader` through DALI, as `data.dali` (`settings`) says, onto the trainer's device."""
    return DaliScaled(loader, dataset, group, **dali_settings(settings, trainer))
