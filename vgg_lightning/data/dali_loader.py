"""`data.loader=dali`: the batches of our DataLoader, decoded and augmented by DALI.

The DataLoader is the one `data.loader=torch` uses (the same `EpochSampler`: seeded order, sharded by rank,
resumed mid-epoch; the same `ImageFolder` items), with `decode=device`: its workers only read each file, parse
its header and draw its view, and `dali_inputs.DaliCollate` makes DALI's inputs of them. `DaliViews` hands
those to DALI (`dali_pipeline.view_pipeline`) through an external source; DALI decodes and augments them on its
own threads (`backend=cpu`) or on the GPU (`mixed`), `prefetch` batches ahead of the training step.

Files DALI is not given are decoded as on the CPU path by the workers (CMYK, PNG named .JPEG, truncated JPEGs)
and join the batch already decoded; this process normalises them as DALI normalises its own. A batch DALI fails
on is decoded here sample by sample, so that the broken file is skipped and counted (or stops the run,
`data.on_corrupt=error`) as on the CPU path; DALI's pipeline is then built anew.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from .dali_inputs import unpack
from .dali_pipeline import VIEW_ARGS, view_pipeline
from .datasets import CorruptFiles
from .decode import CorruptImageError
from .options import DALI_DEFAULTS
from .transforms import BatchNormalizer, CropParams, decode_view

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """A batch of the DataLoader on its way through DALI: `to_dali`, the positions of the samples DALI decodes
    (their `inputs`, None when there are none); `views`, the views decoded here; `dropped`, the positions of
    the files that could not be read."""

    batch: dict
    to_dali: list[int] = field(default_factory=list)
    inputs: tuple | None = None
    views: dict[int, torch.Tensor] = field(default_factory=dict)
    dropped: list[int] = field(default_factory=list)


class DaliViews:
    """The iterable Lightning gets with `data.loader=dali`: `loader`'s batches as `{"image", "label", "index",
    "skipped"}` with the images normalised (colour shift and mean subtracted), on `device`, in float32 (float16
    with `float16`), channels_last with `channels_last`. Its length and epoch are the DataLoader's."""

    def __init__(
        self,
        loader: DataLoader,
        normalizer: BatchNormalizer,
        bad_file: CorruptFiles,
        backend: str = "cpu",
        device: torch.device | str = "cpu",
        threads: int = 2,
        prefetch: int = 2,
        float16: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.loader, self.normalizer, self.bad_file = loader, normalizer, bad_file
        self.backend, self.device = backend, torch.device(device)
        self.threads, self.prefetch = threads, prefetch
        self.dtype = torch.float16 if float16 else torch.float32
        self.channels_last = channels_last
        self.pipe = None
        self._batches = iter(())
        self._pending: deque[Pending] = deque()
        self._refeed: deque[Pending] = deque()
        self._running = False

    # Lightning reads these as it reads a DataLoader's: it sets the sampler's epoch, asks whether it shuffles
    @property
    def sampler(self):
        return self.loader.sampler

    @property
    def batch_sampler(self):
        return self.loader.batch_sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self._close_epoch()  # one left unfinished (limit_train_batches) gives back DALI's batches in flight
        self._batches = iter(self.loader)
        if self.pipe is None:
            self.pipe = self._build()
        return self._epoch()

    # -- DALI's side ------------------------------------------------------------------------------------------
    def _build(self):
        return view_pipeline(
            self._next_inputs,
            self.backend,
            batch_size=self.loader.batch_size,
            threads=self.threads,
            prefetch=self.prefetch,
            device_id=self.device.index if self.device.type == "cuda" else None,
            float16=self.dtype == torch.float16,
            channels_last=self.channels_last,
        )

    def _next_inputs(self) -> tuple:
        """DALI's external source: the next batch that has samples for DALI (those that have none wait in
        `_pending`, in order). StopIteration from the DataLoader ends DALI's epoch."""
        while True:
            item = self._refeed.popleft() if self._refeed else self._prepare(next(self._batches))
            self._pending.append(item)
            if item.inputs is not None:
                return item.inputs

    def _prepare(self, batch: dict) -> Pending:
        """A batch of `DaliCollate`'s: its files sliced out of their one tensor, its arguments split by sample."""
        item = Pending(batch)
        if "dali" in batch:
            item.to_dali = list(range(len(batch["offsets"]) - 1))
            item.inputs = (unpack(batch), *(list(batch["dali"][name]) for name in VIEW_ARGS))
        return item

    def _decode_here(self, item: Pending, position: int) -> None:
        """A view decoded as on the CPU path; a file it cannot read is skipped (or stops the run)."""
        batch = item.batch
        height, width, side, top, left, flip = batch["plan"][position].tolist()
        path = batch["jpeg_path"][position]
        try:
            data = unpack(batch)[position].tobytes()
            item.views[position] = decode_view(data, (height, width), CropParams(side, top, left, bool(flip)), path)
        except CorruptImageError as error:
            self.bad_file(path, error)
            item.dropped.append(position)

    # -- the training side ------------------------------------------------------------------------------------
    def _epoch(self):
        self._running = True
        self.pipe.schedule_run()  # the first call fills DALI's queue: `prefetch` batches
        while True:
            while self._pending and self._pending[0].inputs is None:
                yield self._finish(self._pending.popleft(), None)
            try:
                outputs = self.pipe.outputs(**self._stream())
            except StopIteration:
                break
            except RuntimeError as error:  # DALI could not decode a file of the batch
                yield self._recover(error)
                continue
            yield self._finish(self._pending.popleft(), outputs)
            self.pipe.schedule_run()
        self.pipe.reset()
        self._running = False
        while self._pending:
            yield self._finish(self._pending.popleft(), None)

    def _stream(self) -> dict:
        return {"cuda_stream": torch.cuda.current_stream(self.device)} if self.device.type == "cuda" else {}

    def _recover(self, error: Exception) -> dict:
        """Decode the batch DALI failed on here, sample by sample, and build DALI's pipeline anew: the
        batches it held are fed again."""
        item = self._pending.popleft()
        log.warning("DALI failed on a batch (%s); decoding it on the CPU path", " ".join(str(error).split())[:300])
        for position in item.to_dali:
            self._decode_here(item, position)
        item.to_dali, item.inputs = [], None
        self._refeed.extend(self._pending)
        self._pending.clear()
        self.pipe = self._build()
        self.pipe.schedule_run()
        return self._finish(item, None)

    def _close_epoch(self) -> None:
        if not self._running:
            return
        self._batches, self._refeed = iter(()), deque()
        try:
            while True:  # DALI's epoch ends at the next batch it asks for; its batches in flight are dropped
                try:
                    self.pipe.outputs()
                except StopIteration:
                    break
                self.pipe.schedule_run()
            self.pipe.reset()
        except RuntimeError:  # a pipeline left broken (the epoch stopped on an error): built anew
            self.pipe = None
        self._pending.clear()
        self._running = False

    def _finish(self, item: Pending, outputs: tuple | None) -> dict:
        """The batch as the training step takes it: every readable sample's view, in the batch's order."""
        views = outputs[0] if outputs is not None else None
        batch = item.batch
        size = len(batch.get("label", ()))
        if not size:
            return batch  # every file unreadable: {"skipped"}
        if views is not None and len(item.to_dali) == size:  # the usual batch: every view DALI's
            return self._batch(batch, self._to_torch(views), keep=slice(None), dropped=0)
        alpha = batch.get("pca_alpha")
        decoded = batch.get("image")  # the views the workers decoded: the batch's last samples
        first_decoded = size - (len(decoded) if decoded is not None else 0)
        images = [None] * size
        if views is not None:
            for position, view in zip(item.to_dali, self._to_torch(views).unbind(0)):
                images[position] = view
        for position, view in [
            *item.views.items(),
            *((first_decoded + i, v) for i, v in enumerate(decoded if decoded is not None else ())),
        ]:
            shift = alpha[position : position + 1] if alpha is not None else None
            images[position] = self._normalise(view[None], shift)[0]
        keep = [p for p in range(size) if p not in item.dropped]
        if not keep:
            return {"skipped": batch["skipped"] + len(item.dropped)}
        image = torch.stack([images[p] for p in keep])
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self._batch(batch, image, keep, len(item.dropped))

    @staticmethod
    def _batch(batch: dict, image: torch.Tensor, keep, dropped: int) -> dict:
        return {
            "image": image,
            "label": batch["label"][keep],
            "index": batch["index"][keep],
            "skipped": batch["skipped"] + dropped,
        }

    def _normalise(self, images: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
        """uint8 views decoded outside DALI, normalised as DALI normalises its own."""
        return self.normalizer(images.to(self.device), alpha).to(self.dtype)

    def _to_torch(self, views, dtype: torch.dtype | None = None, hwc: bool | None = None) -> torch.Tensor:
        """DALI's batch as an (n, 3, H, W) tensor on `device` (a view of an (n, H, W, 3) one when channels_last),
        copied out of DALI's buffers (which it reuses) on the current stream."""
        from nvidia.dali.plugin.pytorch import feed_ndarray

        tensor = views.as_tensor()
        out = torch.empty(tensor.shape(), dtype=dtype or self.dtype, device=self.device)
        feed_ndarray(tensor, out, **self._stream())
        return out.permute(0, 3, 1, 2) if (self.channels_last if hwc is None else hwc) else out


def uses_channels_last(module: torch.nn.Module | None) -> bool:
    """Whether `module`'s convolutions hold channels_last weights (model.channels_last): its inputs had better be."""
    weight = next((p for p in module.parameters() if p.ndim == 4), None) if module is not None else None
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def dali_settings(settings: dict, trainer=None) -> dict:
    """`data.dali`'s settings as DaliViews takes them: backend `auto` resolved (mixed where the trainer's batches
    go to a GPU, else cpu), and the device DALI's output lands on."""
    settings = {**DALI_DEFAULTS, **settings}
    device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
    backend = settings["backend"]
    if backend == "auto":
        backend = "mixed" if device.type == "cuda" else "cpu"
    if backend == "mixed" and device.type != "cuda":
        raise ValueError(f"data.dali.backend=mixed decodes on a GPU, and this run's batches go to {device}: use cpu")
    return {
        "backend": backend,
        "device": device if backend == "mixed" else torch.device("cpu"),
        "threads": int(settings["threads"]),
        "prefetch": int(settings["prefetch"]),
    }


def dali_views(loader: DataLoader, datamodule, trainer=None) -> DaliViews:
    """`loader` through DALI as the datamodule's `dali` settings say, into what `trainer` trains with: DALI's
    output on the trainer's GPU with `backend=mixed` (auto with a GPU), float16 under 16-bit precision, and
    channels_last where the model is."""
    return DaliViews(
        loader,
        datamodule.normalizer,
        datamodule.bad_file,
        **dali_settings(datamodule.dali, trainer),
        float16=trainer is not None and str(trainer.precision).startswith("16"),
        channels_last=uses_channels_last(trainer.lightning_module if trainer is not None else None),
    )
