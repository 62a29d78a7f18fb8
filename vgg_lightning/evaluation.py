"""The paper's test protocols (Sec. 3.2, Tables 3-6): dense, multi-crop and both, over several test scales Q
and the nets of an ensemble.

Each protocol turns an image into a posterior (softmax class probabilities); posteriors are averaged over
the views of a scale, over the scales Q, over the two protocols of `dense_multicrop` and over the nets of an
ensemble, and the top-1 / top-5 errors are counted on the result.

- `center`: the view of training-time validation (rescale to Q, centre 224 crop), one per scale.
- `dense`: the whole image rescaled to Q goes through `VGG.score_map`; the class scores are averaged
  spatially, soft-maxed, and averaged with those of the flipped image.
- `multicrop`: a 5x5 regular grid of 224 crops and their flips, 50 views per scale (150 over 3 scales).
- `dense_multicrop`: the mean of the two.

Images are never padded: padding changes the score map. A batch holds only images whose rescaled shapes are
equal at every Q (`ShapeBatchSampler` groups them by the sizes in their file headers), each with its flip, so
a batch computes what one image at a time computes; ImageNet's val set, mostly 500x375 and 375x500, still
runs in full batches.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import lightning as L
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torchmetrics import SumMetric

from .data.datasets import ImageFolder
from .data.transforms import CROP, BatchNormalizer, center_offset, rescaled_size
from .models.vgg import VGG
from .module import error_metrics
from .speed import switched_on

log = logging.getLogger(__name__)
GRID = 5  # multi-crop: a 5x5 grid of crops per scale, each also flipped
DEFAULT_CROP_BATCH = 128


def center_posterior(net: VGG, x: torch.Tensor, crop_batch: int = DEFAULT_CROP_BATCH) -> torch.Tensor:
    top, left = center_offset(x.shape[-2:])  # as the val loader crops
    return net(x[..., top : top + CROP, left : left + CROP]).softmax(1)


def dense_posterior(net: VGG, x: torch.Tensor, crop_batch: int = DEFAULT_CROP_BATCH) -> torch.Tensor:
    # one pass over each image and its flip; averaged in float32, as bf16 autocast leaves the map in bf16
    scores = net.score_map(torch.cat([x, x.flip(-1)])).float().mean(dim=(2, 3)).softmax(1)
    original, flipped = scores.chunk(2)
    return (original + flipped) / 2


def multicrop_views(x: torch.Tensor, grid: int = GRID) -> torch.Tensor:
    """(N, 3, H, W) -> (N * 2 * grid**2, 3, 224, 224): each image's grid of crops, then their flips."""
    height, width = x.shape[-2:]
    tops = torch.linspace(0, height - CROP, grid).round().long().tolist()
    lefts = torch.linspace(0, width - CROP, grid).round().long().tolist()
    crops = torch.stack([x[..., t : t + CROP, l : l + CROP] for t in tops for l in lefts], dim=1)
    return torch.cat([crops, crops.flip(-1)], dim=1).flatten(0, 1)


def multicrop_posterior(net: VGG, x: torch.Tensor, crop_batch: int = DEFAULT_CROP_BATCH) -> torch.Tensor:
    views = multicrop_views(x)
    # in slices: 50 crops per image would otherwise hold 50x the activations of a batch at once
    probs = torch.cat([net(chunk).softmax(1) for chunk in views.split(crop_batch)])
    return probs.view(x.shape[0], -1, probs.shape[1]).mean(dim=1)


Method = Callable[..., torch.Tensor]
PROTOCOLS: dict[str, tuple[Method, ...]] = {
    "center": (center_posterior,),
    "dense": (dense_posterior,),
    "multicrop": (multicrop_posterior,),
    "dense_multicrop": (dense_posterior, multicrop_posterior),
}


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"eval.protocol={protocol!r}: choose one of {', '.join(PROTOCOLS)} (eval=dense, ...)")
    return protocol


def posterior(
    nets: Sequence[VGG], images: Sequence[torch.Tensor], protocol: str, crop_batch: int = DEFAULT_CROP_BATCH
) -> torch.Tensor:
    """(N, classes): the mean posterior over nets x the protocol's methods x scales. `images` holds the same N
    images rescaled to each Q, normalised. Every term weighs the same: 3 scales of multi-crop are 150 views."""
    terms = [
        method(net, x, crop_batch) for net in nets for method in PROTOCOLS[check_protocol(protocol)] for x in images
    ]
    return torch.stack(terms).mean(dim=0)


# -- data: every val image rescaled to each Q, batched by shape -------------------------------------------------
class ScaledImages(Dataset):
    """The split's images, each rescaled (uncropped) to every Q in `scales`: items are
    `{"images": [one (3, H_q, W_q) uint8 tensor per Q], "label", "index"}`, or None when unreadable."""

    def __init__(self, root: str, scales: Sequence[int], split: str = "val", on_corrupt: str = "skip") -> None:
        self.scales = [int(q) for q in scales]
        # a list of Q: each file is read and decoded once for all its views
        self.folder = ImageFolder(root, split, train=False, test_scale=self.scales, center_crop=None, on_corrupt=on_corrupt)

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
    r, r + W, ...: every image is in exactly one rank's batches, none repeated to even the ranks out."""

    def __init__(self, keys: Sequence, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        order = sorted(range(len(keys)), key=lambda i: (keys[i] or (), i))
        batches = []
        for _, group in itertools.groupby(order, key=lambda i: keys[i]):
            group = list(group)
            batches += [group[k : k + batch_size] for k in range(0, len(group), batch_size)]
        self.batches = batches[rank::world_size]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate_by_shape(items: list[dict | None]) -> dict:
    """A batch as groups of equal shapes: one group when the header sizes held, never a padded stack."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    kept = [item for item in items if item is not None]
    for item in kept:
        groups[tuple(image.shape for image in item["images"])].append(item)
    collated = [torch.utils.data.default_collate(group) for group in groups.values()]
    return {"groups": collated, "skipped": torch.tensor(len(items) - len(kept))}


# -- the Lightning side: one test epoch over the val set, on any number of devices ------------------------------
class Evaluator(L.LightningModule):
    """Runs a protocol over a split with `trainer.test(evaluator)`; `errors` holds the top-1 / top-5 errors
    (percent, over all ranks) and the number of images counted, once the test epoch has ended."""

    def __init__(
        self,
        nets: Sequence[VGG],
        root: str,
        protocol: str = "dense",
        scales: Sequence[int] = (256,),
        normalize: str = "paper",
        batch_size: int = 16,
        crop_batch: int = DEFAULT_CROP_BATCH,
        num_workers: int = 0,
        on_corrupt: str = "skip",
        split: str = "val",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.protocol = check_protocol(protocol)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.nets = nn.ModuleList(net.to(memory_format=self.memory_format) for net in nets)
        self.normalizer = BatchNormalizer(normalize)
        self.dataset = ScaledImages(root, scales, split, on_corrupt)
        self.batch_size, self.crop_batch, self.num_workers = int(batch_size), int(crop_batch), int(num_workers)
        self.metrics = error_metrics(nets[0].num_classes)
        self.images = SumMetric()
        self.errors: dict = {}

    def loader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        sampler = ShapeBatchSampler(self.dataset.shape_keys(), self.batch_size, rank, world_size)
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_by_shape,
            pin_memory=torch.cuda.is_available(),
        )

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.trainer.global_rank, self.trainer.world_size)

    def group_posteriors(self, batch: dict):
        """(posterior, labels, indices) per group of equal shapes."""
        for group in batch["groups"]:
            images = [self.normalizer(x).contiguous(memory_format=self.memory_format) for x in group["images"]]
            yield posterior(self.nets, images, self.protocol, self.crop_batch), group["label"], group["index"]

    def on_test_epoch_start(self) -> None:
        self._started, self._seen = time.perf_counter(), 0

    def test_step(self, batch: dict, batch_idx: int) -> None:
        for probs, labels, _ in self.group_posteriors(batch):
            for metric in self.metrics.values():
                metric.update(probs, labels)
            self.images.update(labels.numel())
            self._seen += labels.numel()

    def images_per_second(self) -> float:
        """Over all ranks, assuming they keep pace with this one."""
        return self._seen * self.trainer.world_size / max(time.perf_counter() - self._started, 1e-9)

    def on_test_batch_end(self, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Lightning's rich bar counts batches and shows no metrics while testing: say images/s in its title
        bar = self.trainer.progress_bar_callback
        task = getattr(bar, "test_progress_bar_id", None)
        if getattr(bar, "progress", None) is not None and task is not None:
            scales = ",".join(map(str, self.dataset.scales))
            title = f"{self.protocol} Q={scales} {self.images_per_second():.1f} img/s"
            bar.progress.update(task, description=title)

    def on_test_epoch_end(self) -> None:
        # compute() sums the counts over the ranks: every rank gets the errors of the whole split
        self.errors = {name: round(float(metric.compute()), 3) for name, metric in self.metrics.items()}
        self.errors["images"] = int(self.images.compute())
        for name, value in self.errors.items():
            self.log(f"test/{name}", float(value))
        if self.trainer.is_global_zero:
            self._report()

    def _report(self) -> None:
        log.info(
            "%s Q=%s: %d images, %.1f images/s; top-1 error %.2f%%, top-5 error %.2f%%",
            self.protocol,
            self.dataset.scales,
            self.errors["images"],
            self.images_per_second(),
            self.errors["top1_error"],
            self.errors["top5_error"],
        )


def test_scales(eval_cfg, datamodule) -> list[int]:
    """Q: `eval.scales`, or the data's test scale (S for a fixed S, 384 for jitter)."""
    return [int(q) for q in (eval_cfg.scales or [datamodule.test_scale])]


def run_evaluation(trainer: L.Trainer, nets: Sequence[VGG], datamodule, eval_cfg, channels_last=False) -> dict:
    """Test `nets` on the datamodule's val split as `eval_cfg` (conf/eval) says; the fields of results.json.
    `channels_last` is model.channels_last (auto: with a GPU). No torch.compile here: every shape of image
    would compile anew."""
    scales = test_scales(eval_cfg, datamodule)
    evaluator = Evaluator(
        nets,
        datamodule.root,
        eval_cfg.protocol,
        scales,
        normalize=datamodule.normalizer.normalize,
        batch_size=eval_cfg.batch_size,
        crop_batch=eval_cfg.crop_batch,
        num_workers=datamodule.num_workers,
        on_corrupt=datamodule.on_corrupt,
        channels_last=switched_on(channels_last),
    )
    trainer.test(evaluator, verbose=False)
    return {"test_scales": scales, "protocol": eval_cfg.protocol, **evaluator.errors}
