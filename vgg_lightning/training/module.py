"""VGGClassifier: the paper's training recipe (Sec. 3.1) as a LightningModule."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MeanMetric, SumMetric

from ..checkpoints.write import gather_ranks, own_rank
from ..evaluation.metrics import error_metrics
from ..models import from_settings
from ..speed import on_here
from .divergence import LossWatch

log = logging.getLogger(__name__)
FREEZE = (None, "features")  # model.freeze: nothing, or every conv layer (the head trains alone)


class PlateauSchedule(ReduceLROnPlateau):
    """ReduceLROnPlateau that counts its decreases (kept in its state dict, so a resumed run knows them)."""

    def __init__(self, *args, **kwargs) -> None:
        self.decreases = 0
        super().__init__(*args, **kwargs)

    def step(self, metrics, epoch=None) -> None:
        before = [group["lr"] for group in self.optimizer.param_groups]
        super().step(metrics, epoch)
        if any(group["lr"] < lr for group, lr in zip(self.optimizer.param_groups, before)):
            self.decreases += 1


class VGGClassifier(L.LightningModule):
    """A Table 1 VGG trained with softmax cross-entropy and SGD; the lr is divided by `factor` when the
    validation top-1 error stops improving, and training stops at the plateau after `max_decreases`.

    `model` holds the net's settings (config, width, dropout, init, init_std; the rest of `conf/model` is
    used by the training script); `optim` the optimiser's and the schedule's. Both are saved in the
    checkpoint, which therefore rebuilds its own net; so are `train_scale` (S), for the results of a later eval,
    and what a prediction needs without the data: the class names (`classes`, and ImageNet's `wnids`), the
    input scaling (`normalize`) and the test scale Q (`test_scale`); the data set trained on (`dataset`, its
    name, and `data_root`), which a later eval reads when told of no other (`tasks.from_weights`); and where
    released weights it started from came from (`weights_source`: `VGG.source`, the file's name, size and
    sha256, what was folded).

    `model.freeze=features` trains the head only (fc6-fc8, for fine-tuning); `optim.head_lr` gives the head its
    own learning rate (null: `optim.lr`).
    """

    def __init__(
        self,
        model: Mapping,
        optim: Mapping,
        num_classes: int = 1000,
        train_scale=None,
        classes: list[str] | None = None,
        wnids: list[str] | None = None,
        normalize: str | None = None,
        test_scale: int | None = None,
        weights_source: Mapping | None = None,
        dataset: str | None = None,
        data_root: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = from_settings(model, num_classes)
        freeze = model.get("freeze")
        if freeze not in FREEZE:
            raise ValueError(f"model.freeze={freeze!r}: choose one of {', '.join(map(str, FREEZE))}")
        if freeze == "features":
            self.net.features.requires_grad_(False)
        # No per-step reads of device values between logging intervals (each would be a host-device sync that
        # drains the GPU's launch queue): the training labels are our loader's, so torchmetrics need not check
        # them (a torch.unique); the loss and the count of skipped files skip torchmetrics' NaN check (an
        # `if tensor.any()`), which would also drop a NaN loss from the mean: a diverged run's loss reads NaN.
        self.train_metrics = error_metrics(num_classes, validate_args=False)
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_metrics = error_metrics(num_classes)
        self.skipped_images = SumMetric(nan_strategy="disable")  # see _log_skipped
        self.loss_watch = LossWatch()  # a loss that stops being finite stops the run (training.divergence)
        self._epoch_lrs: list[float] | None = None  # see on_train_epoch_end

    def _epoch_sums(self) -> dict:
        """The training epoch's running sums (each rank's own until torchmetrics syncs them at epoch end)."""
        return {**{f"train_{k}": m for k, m in self.train_metrics.items()}, "loss": self.train_loss,
                "skipped": self.skipped_images}  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # no diverged weights saved
        self.loss_watch.check_weights(checkpoint["state_dict"], self.trainer.global_step, self._on_any_rank)
        # every rank's sums, so that a run resumed mid-epoch logs the epoch's train/loss_epoch and errors over
        # all its batches on all ranks, as a run that never stopped does
        sums = {name: {k: v.cpu() for k, v in m.metric_state.items()} for name, m in self._epoch_sums().items()}
        checkpoint["epoch_sums"] = gather_ranks(sums)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        sums = own_rank(checkpoint.get("epoch_sums") or [])
        for name, metric in self._epoch_sums().items():
            for key, value in ((sums or {}).get(name) or {}).items():
                setattr(metric, key, value.to(metric.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: dict, stage: str, metrics: torch.nn.ModuleDict) -> torch.Tensor:
        """Between the steps the loggers write, nothing here waits for the device (benchmarks/sync_count.py
        audits it): the metrics only `update` their sums (torchmetrics computes them when they are logged), and
        no tensor is made from a Python number (each would be a host-to-device copy on a GPU, a sync)."""
        images, labels = batch["image"], batch["label"]
        logits = self.net(images)
        size = labels.shape[0]
        if stage == "train":
            losses = F.cross_entropy(logits, labels, reduction="none")
            loss = losses.mean()
            # train/loss_step is rank 0's own (an all-reduce per step only to print it would slow every step);
            # train/loss_epoch the mean over every rank's images (torchmetrics syncs once, at epoch end). The
            # per-image losses weigh each batch by its size without a batch size made into a device tensor.
            self.train_loss.update(losses.detach())
            self.loss_watch.update(loss)
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, batch_size=size)
            self.log("train/loss_epoch", self.train_loss, on_step=False, on_epoch=True)
            self._note_lr()
        else:
            loss = F.cross_entropy(logits, labels)
            self.loss_watch.update_validation(loss)
            self.log(f"{stage}/loss", loss, prog_bar=True, on_epoch=True, batch_size=size, sync_dist=True)
        for name, metric in metrics.items():
            metric.update(logits.detach(), labels)
            # torchmetrics syncs its counts over the ranks at epoch end: every rank sees the same error, so
            # every rank's plateau schedule cuts the lr at the same epoch.
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def _note_lr(self) -> None:
        """The lrs this epoch trains with, as Python numbers, logged at the epoch's end (see on_train_epoch_end)."""
        if self._epoch_lrs is None:
            self._epoch_lrs = [group["lr"] for group in self.optimizers().param_groups]

    def on_train_epoch_end(self) -> None:
        """`lr` (and `head_lr` when optim.head_lr differs) in the epoch's row: the lrs the epoch trained with, read
        at its first step (by now the plateau schedule may have cut them for the next epoch), logged once an epoch
        rather than at every step, where each number logged would be a tensor made on the device."""
        lrs, self._epoch_lrs = self._epoch_lrs, None
        if lrs:
            self.log("lr", lrs[0], prog_bar=True)
            if len(lrs) > 1 and lrs[1] != lrs[0]:  # optim.head_lr
                self.log("head_lr", lrs[1])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        self._log_skipped(batch)
        if not len(batch.get("label", ())):  # every file of a (tiny) batch unreadable: Lightning skips the step
            return None
        return self._step(batch, "train", self.train_metrics)

    def _log_skipped(self, batch: dict) -> None:
        """`train/skipped_images`: the undecodable images the loader left out this epoch, over all ranks (a
        torchmetrics sum: synced once at epoch end, not at every step)."""
        if "skipped" in batch:  # batches of our collate; a loader of one's own need not count
            self.skipped_images.update(batch["skipped"])
            self.log("train/skipped_images", self.skipped_images, on_step=False, on_epoch=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if len(batch.get("label", ())):
            self._step(batch, "val", self.val_metrics)

    def configure_optimizers(self):
        optim = self.hparams.optim
        head_lr = optim.get("head_lr") or optim["lr"]
        groups = [
            {"params": [p for p in part.parameters() if p.requires_grad], "lr": lr}
            for part, lr in ((self.net.features, optim["lr"]), (self.net.head, head_lr))
        ]
        optimizer = torch.optim.SGD(
            [group for group in groups if group["params"]],  # frozen features: the head's group alone
            lr=optim["lr"],
            momentum=optim["momentum"],
            weight_decay=optim["weight_decay"],
            # one kernel for the whole update: the multi-tensor default makes several passes over 138M parameters
            fused=on_here(optim.get("fused", "auto")) or None,
        )
        scheduler = PlateauSchedule(optimizer, mode="min", factor=optim["factor"], patience=optim["patience"])
        # Given to Lightning so that its state travels in the checkpoint; stepped here, not by Lightning (see
        # on_validation_epoch_end and lr_scheduler_step). `strict` off: Lightning never needs the metric.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/top1_error", "interval": "epoch", "strict": False},
        }

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Lightning's loop would step the plateau schedule after the epoch, and skips it in an epoch resumed
        from a checkpoint (its metric is not in the checkpoint): a resumed run would cut the lr an epoch late.
        The schedule is stepped in on_validation_epoch_end instead, so nothing is done here."""

    def _on_any_rank(self, decision: bool) -> bool:
        """Whether `decision` holds on any rank (under DDP every rank then acts alike)."""
        return self.trainer.strategy.reduce_boolean_decision(decision, all=False)

    def on_train_start(self) -> None:
        self.loss_watch.start(self.trainer.global_step, self.trainer.accumulate_grad_batches)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """At the steps the loggers read the loss anyway (log_every_n_steps), whether it stayed finite."""
        if self.trainer.global_step % max(self.trainer.log_every_n_steps, 1) == 0:
            self.loss_watch.check(self._on_any_rank)

    def on_validation_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self.loss_watch.check(self._on_any_rank)  # no validation (and no best checkpoint) of diverged weights

    def on_validation_epoch_end(self) -> None:
        """Step the plateau schedule with this epoch's val top-1 error (synced over the ranks, so every rank
        cuts the lr at the same epoch). It runs before ModelCheckpoint's save at validation end, so the
        epoch-end checkpoint holds the stepped schedule, and it runs in a resumed epoch as in any other."""
        if self.trainer.sanity_checking:
            self.loss_watch.validation_bad.zero_()  # the sanity check's batches are no epoch's
        if self.trainer.state.fn != TrainerFn.FITTING or self.trainer.sanity_checking:
            return
        self.loss_watch.check_validation(self.current_epoch, self._on_any_rank)
        self.loss_watch.validation_bad.zero_()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step(self.val_metrics["top1_error"].compute().item())

    def on_train_epoch_start(self) -> None:
        # from the schedule's own (checkpointed) state: a resumed run stops where an uninterrupted one stops
        scheduler = self.lr_schedulers()
        if scheduler is not None and scheduler.decreases > self.hparams.optim["max_decreases"]:
            log.info("validation error plateaued after %d lr decreases: stopping", scheduler.decreases - 1)
            self.trainer.should_stop = True
