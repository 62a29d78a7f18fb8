"""The Evaluator: a protocol of `protocols` over a split with `trainer.test`, on any number of devices, every
image counted once; `run_evaluation` gives the fields of results.json."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric, SumMetric

from ..compat import load_no_checkpoint, set_test_bar_title
from ..data.dali_eval import dali_scaled
from ..data.transforms import BatchNormalizer
from ..models import VGG
from ..speed import on_here
from .loader import ScaledImages, collate_by_shape, collate_encoded, shape_loader
from .metrics import error_metrics
from .protocols import DEFAULT_CROP_BATCH, check_protocol, posterior

log = logging.getLogger(__name__)


class Evaluator(L.LightningModule):
    """Runs a protocol over a split with `trainer.test(evaluator)`; `errors` holds the top-1 / top-5 errors
    (percent, over all ranks), the number of images counted and the mean negative log posterior of the true
    class (`nll`), once the test epoch has ended. With `samples` (any image files), `trainer.predict(evaluator)`
    gives their posteriors instead (task=predict)."""

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
        samples: Sequence[tuple[str, int]] | None = None,
        max_pixels: int | None = None,
        max_aspect: float | None = None,
        dali: dict | None = None,
    ) -> None:
        super().__init__()
        self.dali = dali  # data.dali's settings when data.loader=dali: DALI decodes and rescales (data/dali_eval.py)
        self.protocol = check_protocol(protocol)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.nets = nn.ModuleList(net.to(memory_format=self.memory_format) for net in nets)
        self.normalizer = BatchNormalizer(normalize)
        self.dataset = ScaledImages(
            root, scales, split, on_corrupt, samples=samples, max_aspect=max_aspect, encoded=dali is not None
        )
        self.max_pixels, self.max_aspect = max_pixels, max_aspect
        self.batch_size, self.crop_batch, self.num_workers = int(batch_size), int(crop_batch), int(num_workers)
        self.metrics = error_metrics(nets[0].num_classes)
        self.images = SumMetric()
        # the mean -log posterior of the true class: continuous where the errors move in steps of one image,
        # so a test sees any change to the posteriors (for `center` it is the validation loss)
        self.nll = MeanMetric()
        self.errors: dict = {}

    def loader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        collate = collate_encoded if self.dali is not None else collate_by_shape
        loader = shape_loader(
            self.dataset, self.batch_size, self.num_workers, rank, world_size, max_pixels=self.max_pixels,
            collate_fn=collate,
        )  # fmt: skip
        if self.dali is None:
            return loader
        return dali_scaled(loader, self.dataset, self.dali, self.trainer, group=collate_by_shape)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.trainer.global_rank, self.trainer.world_size)

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.trainer.global_rank, self.trainer.world_size)

    def predict_step(self, batch: dict, batch_idx: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """task=predict (`trainer.predict(evaluator)`): (posterior, dataset indices) per group of equal shapes."""
        return [(probs.float().cpu(), indices) for probs, _, indices in self.group_posteriors(batch)]

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
            self.nll.update(-probs.gather(1, labels[:, None]).clamp_min(1e-30).log())
            self._seen += labels.numel()

    def images_per_second(self) -> float:
        """Over all ranks, assuming they keep pace with this one."""
        return self._seen * self.trainer.world_size / max(time.perf_counter() - self._started, 1e-9)

    def on_test_batch_end(self, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Lightning's rich bar counts batches and shows no metrics while testing: say images/s in its title
        scales = ",".join(map(str, self.dataset.scales))
        set_test_bar_title(
            self.trainer.progress_bar_callback, f"{self.protocol} Q={scales} {self.images_per_second():.1f} img/s"
        )

    def on_test_epoch_end(self) -> None:
        # compute() sums the counts over the ranks: every rank gets the errors of the whole split
        self.errors = {name: round(float(metric.compute()), 3) for name, metric in self.metrics.items()}
        self.errors["images"] = int(self.images.compute())
        bounds = {"max_pixels": self.max_pixels, "max_aspect": self.max_aspect}
        self.memory_bounds = {**bounds, "aspect_cropped": self.dataset.aspect_cropped}
        self.errors["nll"] = round(float(self.nll.compute()), 6)
        for name, value in self.errors.items():
            self.log(f"test/{name}", float(value))
        if self.trainer.is_global_zero:
            self._report()

    def _report(self) -> None:
        log.debug(  # the task's results line says the errors
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
        channels_last=on_here(channels_last),
        max_pixels=eval_cfg.get("max_pixels"),
        max_aspect=eval_cfg.get("max_aspect"),
        dali=datamodule.dali if datamodule.loader == "dali" else None,
    )
    load_no_checkpoint(trainer)  # the nets given, not a SLURM hpc_ckpt_N.ckpt of the run dir
    trainer.test(evaluator, verbose=False)
    return {
        "test_scales": scales,
        "protocol": eval_cfg.protocol,
        **evaluator.errors,
        "memory_bounds": evaluator.memory_bounds,
    }
