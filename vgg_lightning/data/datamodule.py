"""The LightningDataModule: ImageNet-layout loaders at one training scale S or with scale jittering."""

from __future__ import annotations

import logging
import os
import signal

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from .. import signals
from .dali_inputs import DaliCollate
from .dali_loader import DaliViews, dali_views
from .datasets import CorruptFiles, ImageFolder, collate
from .device_decode import decode_batch
from .layout import SPLITS, checked_layout
from .options import check_data_settings, default_test_scale, parse_scale
from .sampling import EpochSampler
from .transforms import CROP, BatchNormalizer

log = logging.getLogger(__name__)


def loader_worker_init(worker_id: int) -> None:
    """A loader worker ignores the stop and preemption signals (`signals.WORKER_IGNORED`): it inherits the
    training process's handlers at fork (ours, submitit's checkpoint), and would otherwise act on them from its
    stale copy of the trainer, or die and take the batch with it. Only the training process acts on them; SIGKILL
    still ends the workers with it. Lightning's worker seeding (seed_everything(workers=True)) still runs."""
    for signum in signals.WORKER_IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":
        pl_worker_init_function(worker_id)


def batch_plan(global_batch: int, world_size: int, max_device_batch: int | None = None) -> tuple[int, int]:
    """(device batch, gradient accumulation steps) with device batch x steps x world_size = global_batch: the
    fewest steps whose device batch fits `max_device_batch`, so that every optimiser step sees the paper's
    256 images whatever the number of devices and their memory."""
    check_data_settings({"batch_size": global_batch, "max_device_batch": max_device_batch})
    if global_batch % world_size:
        raise ValueError(
            f"data.batch_size={global_batch} (the global batch) does not divide over {world_size} "
            f"processes; choose a multiple of {world_size}"
        )
    share = global_batch // world_size
    limit = share if max_device_batch is None else int(max_device_batch)
    steps = next(s for s in range(1, share + 1) if share % s == 0 and share // s <= limit)
    return share // steps, steps


class ImageNetDataModule(L.LightningDataModule):
    """`root/train/<class>/*` and `root/val/<class>/*`; classes are the sorted folder names (so ImageNet's
    sorted wnids line up with torchvision's weights). `name` is the data set's (data=imagenet|demo|imagefolder):
    checkpoints keep it, with the root and the class names.

    `batch_size` is the global batch (the paper's 256): each of the W processes loads batch_size / W, in
    micro-batches of at most `max_device_batch` when that is set (the trainer accumulates their gradients).
    `scale` is S: an int, 'jitter' (S ~ U[scale_range] per image) or [S_min, S_max]. `test_scale` is Q for
    validation, by default S for a fixed S and the middle of the range for jitter (the paper's 384).
    `decode` is where the JPEGs of training and validation views are decoded: `cpu` in the loader's workers, or
    `device` on the device the batch goes to (nvjpeg on a GPU; see `device_decode`). `loader=dali` hands them
    to NVIDIA DALI instead (`dali_loader`; `dali` holds its `backend`, `threads` and `prefetch`).
    """

    def __init__(
        self,
        root: str,
        scale: int | str = 256,
        scale_range: tuple[int, int] = (256, 512),
        test_scale: int | None = None,
        batch_size: int = 256,
        max_device_batch: int | None = None,
        num_workers: int = 8,
        normalize: str = "paper",
        on_corrupt: str = "skip",
        decode: str = "cpu",
        loader: str = "torch",
        dali: dict | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        pin_memory: bool = True,
        demo: dict | None = None,
        splits: tuple[str, ...] = SPLITS,
        name: str = "imagenet",
    ) -> None:
        super().__init__()
        self.name, self.root = name, str(root)
        self.splits = tuple(splits)  # those checked before any work: an evaluation needs only val/
        self.train_scale = parse_scale(scale_range if str(scale).lower() == "jitter" else scale)
        self.test_scale = int(test_scale) if test_scale else default_test_scale(self.train_scale)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.max_device_batch = max_device_batch
        self.on_corrupt, self.expected_classes, self.pin_memory = on_corrupt, num_classes, pin_memory
        self.demo = dict(demo) if demo else None
        self.loader, self.dali = loader, dict(dali or {})
        check_data_settings({"loader": loader, "dali": self.dali})
        self.decode = "device" if loader == "dali" else decode  # DALI decodes what the workers would hand the device
        self.bad_file = CorruptFiles(on_corrupt)  # for the files that fail on the device
        self.normalizer = BatchNormalizer(normalize)
        self._classes: list[str] | None = None

    # -- what the run needs to know before the model is built ---------------------------------------------
    @property
    def scale_label(self) -> int | list[int]:
        """S as results.json writes it: 256, or [256, 512] for jittering."""
        low, high = self.train_scale
        return low if low == high else [low, high]

    def classes(self) -> list[str]:
        """Validate the folder layout (generating the demo set first if this is the demo) and list the classes."""
        if self._classes is None:
            self._classes = checked_layout(self.root, self.splits, self.expected_classes, self.demo)
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes())

    # -- Lightning hooks ------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.classes()

    def setup(self, stage: str) -> None:
        self.classes()
        common = dict(root=self.root, seed=self.seed, on_corrupt=self.on_corrupt, decode=self.decode)
        self.val_set = ImageFolder(split="val", train=False, test_scale=self.test_scale, center_crop=CROP, **common)
        if stage == "fit":
            self.train_set = ImageFolder(split="train", train=True, scale=self.train_scale, **common)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def per_device_batch(self) -> int:
        _, world_size = self._world()
        return batch_plan(self.batch_size, world_size, self.max_device_batch)[0]

    def _train_progress(self) -> tuple[int, int]:
        """(epoch, batches done in it) as the fit loop knows it, restored from a checkpoint on resume."""
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.processed

    def _loader(self, dataset, shuffle: bool) -> DataLoader | DaliViews:
        rank, world_size = self._world()
        batch_size = self.per_device_batch()
        sampler = EpochSampler(
            len(dataset),
            shuffle,
            self.seed,
            rank,
            world_size,
            drop_last=shuffle,
            batch_size=batch_size,
            progress=self._train_progress if shuffle and self.trainer is not None else None,
        )
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            # The workers' base seed would otherwise come from the global RNG, shifting the dropout stream
            # of a resumed run; our samples draw nothing from it (their randomness is keyed by index).
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            collate_fn=DaliCollate(self.normalizer.normalize, self.on_corrupt) if self.loader == "dali" else collate,
            worker_init_fn=loader_worker_init,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle,
        )
        return dali_views(loader, self, self.trainer) if self.loader == "dali" else loader

    def train_dataloader(self) -> DataLoader:
        loader = self._loader(self.train_set, shuffle=True)
        if self.trainer is not None:
            self._log_every_epoch(len(self.train_set) // (self._world()[1] * self.per_device_batch()))
        return loader

    def _log_every_epoch(self, batches: int) -> None:
        """A folder smaller than the logging interval (a fine-tune's few hundred images) is logged, and checked
        for divergence, at least once an epoch: the interval becomes the epoch's batches (after
        trainer.limit_train_batches), and Lightning has nothing to warn about."""
        trainer, limit = self.trainer, self.trainer.limit_train_batches
        batches = min(batches, limit) if isinstance(limit, int) else int(batches * (1.0 if limit is None else limit))
        if 0 < batches < trainer.log_every_n_steps:
            trainer.log_every_n_steps = batches

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """With `decode=device`: decode the batch's JPEGs where the batch is going."""
        if "jpeg" in batch and self.loader != "dali":
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            batch = decode_batch(batch, device, self.bad_file)
        return batch

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Float conversion, colour shift and mean subtraction on the batch, on the device it landed on."""
        if "image" in batch and self.loader != "dali":  # DALI's batches come normalised
            self.normalizer.to(batch["image"].device)  # once: later calls find it there
            batch["image"] = self.normalizer(batch["image"], batch.get("pca_alpha"))
        return batch
