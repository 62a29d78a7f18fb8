"""VGG-16 (config D) training throughput and MFU on synthetic batches already on the device (bf16 autocast,
channels_last, cuDNN autotuning, fused SGD, after warm-up), eager and then compiled (torch.compile; the compile
time is timed apart). With --data, the same net is also fed real JPEGs through the project's loader (decode,
scale-jittered crop, flip on CPU workers, or nvjpeg with --decode device; colour shift and mean on the GPU), and
the ratio fed / synthetic says whether the input pipeline keeps up. `feed_rate` times the loader alone, through
Lightning as training consumes it (benchmarks/gpu_check.py's loader step).

    python benchmarks/train_vgg16.py                                  # a GPU: batch 256, eager and compiled
    python benchmarks/train_vgg16.py --data /path/to/imagenet --workers 15 --decode cpu,device
    python benchmarks/train_vgg16.py --width 0.0625 --batch 4 --steps 3   # a CPU smoke run (eager)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vgg_lightning.models import build_vgg  # noqa: E402
from vgg_lightning.speed import peak_flops, train_flops_per_image  # noqa: E402


def make_step(net, optimizer, autocast):
    def step(images, labels):
        with autocast:
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def timed(step, batches, steps: int, warmup: int, sync) -> float:
    """Seconds for `steps` steps after `warmup` steps; `batches` yields (images, labels) on the device."""
    for images, labels in itertools.islice(batches, warmup):
        step(images, labels)
    sync()
    start = time.perf_counter()
    for images, labels in itertools.islice(batches, steps):
        step(images, labels)
    sync()
    return time.perf_counter() - start


def datamodule(root: str, batch: int, workers: int, decode: str = "cpu", **kwargs):
    """The project's training data, as `data.decode=<decode>` (and `data.loader=...` in kwargs) loads it."""
    from vgg_lightning.data import ImageNetDataModule

    return ImageNetDataModule(
        root=root, scale="jitter", batch_size=batch, num_workers=workers, num_classes=None, decode=decode, **kwargs
    )


def real_batches(args, device, decode: str):
    """The project's training batches on `device`: decoded by the loader's workers (`--decode cpu`) or by
    nvjpeg on the GPU (`--decode device`), then colour-shifted and normalised there, as in training."""
    from vgg_lightning.data.device_decode import decode_batch

    data = datamodule(args.data, args.batch, args.workers, decode)
    data.setup("fit")
    loader = data.train_dataloader()
    while True:  # epoch after epoch (itertools.cycle would keep every batch it has seen)
        for batch in loader:
            if "jpeg" in batch:
                batch = decode_batch(batch, device, data.bad_file)
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            batch = data.on_after_batch_transfer(batch, 0)
            yield batch["image"].contiguous(memory_format=torch.channels_last), batch["label"]


def feed_rate(data, warmup: int) -> float:
    """Images/s the datamodule's training loader delivers, normalised on the device, through Lightning's loop
    (its batch hooks and transfer, as in training) with no training: one epoch, timed after `warmup` batches
    (the workers' start). Give it an epoch of several batches per worker, so every worker is busy."""
    import lightning as L

    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    class Sink(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.seen = torch.nn.Linear(1, 1)  # an optimiser wants a parameter
            self.images = 0

        def training_step(self, batch, batch_idx):
            if batch_idx == warmup:
                sync()
                self.start, self.images = time.perf_counter(), 0
            self.images += len(batch["label"]) if batch_idx >= warmup else 0  # nothing else: no backward, no step

        def on_train_end(self) -> None:
            sync()
            self.seconds = time.perf_counter() - self.start

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    sink = Sink()
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(sink, datamodule=data)
    return sink.images / sink.seconds


def main(argv=None, report=None, data=None) -> dict:
    """The figures, also given one by one to `report(key, value)` as they are measured (gpu_check keeps them
    if the run is cut short). `data`: instead of --data, a function that gives the image folder when the fed
    runs start (gpu_check makes its JPEGs only once the synthetic figures are in)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="D")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--compile", default="auto", help="eager | compiled | both | auto (both on a GPU)")
    parser.add_argument("--backend", default="inductor", help="torch.compile's backend (aot_eager: a CPU smoke run)")
    parser.add_argument("--data", help="an image folder (train/<class>/*.JPEG) to also time real data")
    parser.add_argument("--workers", type=int, default=15)
    parser.add_argument("--decode", default="cpu", help="where the JPEGs are decoded: cpu, device or cpu,device")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    result = {"device": name, "batch": args.batch}

    def figure(key: str, value) -> None:
        result[key] = value
        if report:
            report(key, value)

    net = build_vgg(args.config, width=args.width, init="xavier").to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, fused=cuda or None)
    step = make_step(net, optimizer, torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda))
    images = torch.randn(args.batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    peak, flops = peak_flops(device), train_flops_per_image(net)
    print(f"{name}: VGG-{args.config} width {args.width}, batch {args.batch}, bf16={cuda}, channels_last")
    modes = {"auto": ("eager", "compiled") if cuda else ("eager",), "both": ("eager", "compiled")}
    for mode in modes.get(args.compile, (args.compile,)):
        if mode == "compiled":
            net.forward = torch.compile(net.forward, backend=args.backend)
            started = time.perf_counter()
            step(images, labels)  # the first call compiles (forward and backward)
            sync()
            figure("compile_s", time.perf_counter() - started)
        rate = args.steps * args.batch / timed(step, itertools.repeat((images, labels)), args.steps, args.warmup, sync)
        figure(f"{mode}_images_per_s", rate)
        figure(f"{mode}_mfu", rate * flops / peak if peak else None)
        mfu = f"MFU {100 * rate * flops / peak:.0f}%" if peak else "MFU unknown (no peak for this device)"
        print(f"synthetic, {mode}: {rate:.1f} images/s, {mfu}", flush=True)
    if cuda:
        figure("peak_memory_gib", torch.cuda.max_memory_allocated() / 2**30)
    for decode in args.decode.split(",") if args.data or data else ():
        args.data = args.data or data()
        batches = real_batches(args, device, decode)
        try:
            fed = args.steps * args.batch / timed(step, batches, args.steps, args.warmup, sync)
        finally:
            batches.close()  # stops the loader's workers
        figure(f"fed_{decode}_images_per_s", fed)
        print(f"fed by our loader ({args.workers} workers, decoded on the {decode}): {fed:.1f} images/s = "
              f"{fed / rate:.2f}x synthetic ({mode})", flush=True)  # fmt: skip
    return result


if __name__ == "__main__":
    main()
