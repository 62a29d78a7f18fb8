"""Lightning's overhead: the same VGG, optimiser and batches through Lightning (our VGGClassifier, with its
torchmetrics and logging) and through a plain PyTorch loop, timed side by side in one run, alternating. The
batches are what training gets from the loader: uint8 images with their colour-shift draws, from pinned memory
(with a GPU), copied without blocking and normalised on the device (the datamodule's BatchNormalizer).

    python benchmarks/lightning_overhead.py                      # CPU: narrow VGG-A, batch 16
    python benchmarks/lightning_overhead.py --width 1 --batch 128 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vgg_lightning.data.transforms import BatchNormalizer  # noqa: E402
from vgg_lightning.training.module import VGGClassifier  # noqa: E402

# The update's arithmetic without moving the weights: on random images and labels they would diverge into NaNs
# within a few steps, which a CPU computes many times slower than numbers (the plain loop, first, would pay).
LR = 0.0
OPTIM = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "factor": 0.1, "patience": 3, "max_decreases": 3}


class Timed(L.Callback):
    """Wall time of the steps after the warm-up, as the plain loop measures it."""

    def __init__(self, warmup: int, sync) -> None:
        self.warmup, self.sync = warmup, sync

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.sync()
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.sync()
        self.seconds = time.perf_counter() - self.start


class Bench(VGGClassifier):
    def configure_optimizers(self):  # the plain loop's optimiser; no plateau schedule without a val set
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)


def make_module(args) -> VGGClassifier:
    torch.manual_seed(0)
    return Bench(model={"config": args.config, "width": args.width, "init": "xavier"}, optim=OPTIM, num_classes=1000)


class Batches(L.LightningDataModule):
    """The pre-made batches as the training datamodule hands them over: pinned, normalised after the copy."""

    def __init__(self, batches: list, device: str) -> None:
        super().__init__()
        self.batches, self.device, self.normalizer = batches, device, BatchNormalizer("paper")

    def train_dataloader(self):
        return loader(self.batches, self.device)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        self.normalizer.to(batch["image"].device)  # once: later calls find it there
        return {**batch, "image": self.normalizer(batch["image"], batch["pca_alpha"])}


def loader(batches: list, device: str):
    return torch.utils.data.DataLoader(batches, batch_size=None, pin_memory=device == "cuda")


def lightning_run(args, batches, sync) -> float:
    timer = Timed(args.warmup, sync)
    trainer = L.Trainer(
        accelerator=args.device, devices=1, max_steps=len(batches), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[timer], precision=args.precision,
    )  # fmt: skip
    trainer.fit(make_module(args), datamodule=Batches(batches, args.device))
    return timer.seconds


def plain_run(args, batches, sync) -> float:
    net = make_module(args).net.to(args.device)
    normalizer = BatchNormalizer("paper").to(args.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    for step, batch in enumerate(loader(batches, args.device)):
        if step == args.warmup:
            sync()
            start = time.perf_counter()
        batch = {k: v.to(args.device, non_blocking=True) for k, v in batch.items()}
        images = normalizer(batch["image"], batch["pca_alpha"])
        with autocast:
            loss = F.cross_entropy(net(images), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync()
    return time.perf_counter() - start


def main(argv=None, report=None) -> dict:
    """The figures; each repeat's rates also go to `report(key, value)` as they are measured (gpu_check)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="A")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None)
    args = parser.parse_args(argv)
    args.precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"image": torch.randint(0, 256, (args.batch, 3, 224, 224), dtype=torch.uint8, generator=generator),
         "label": torch.randint(0, 1000, (args.batch,), generator=generator),
         "pca_alpha": torch.randn(args.batch, 3, generator=generator) * 0.1}
        for _ in range(args.warmup + args.steps)
    ]  # fmt: skip
    times = {"lightning": [], "plain": []}
    for repeat in range(args.repeats):
        for name, run in (("plain", plain_run), ("lightning", lightning_run)):
            times[name].append(run(args, batches, sync))
            rate = args.steps * args.batch / times[name][-1]
            print(f"repeat {repeat}: {name:9s} {rate:8.1f} images/s", flush=True)
            if report:
                report(f"{name}_images_per_s_runs", [args.steps * args.batch / t for t in times[name]])
    plain, lightning = statistics.median(times["plain"]), statistics.median(times["lightning"])
    print(
        f"\nVGG-{args.config} width {args.width}, batch {args.batch}, {args.steps} timed steps, {args.device}, {args.precision}"
    )
    print(f"plain loop: {args.steps * args.batch / plain:.1f} images/s (median of {args.repeats})")
    print(f"lightning:  {args.steps * args.batch / lightning:.1f} images/s")
    print(f"lightning overhead: {lightning / plain:.3f}x the plain loop's time per step")
    images = args.steps * args.batch
    return {
        "plain_images_per_s": images / plain,
        "lightning_images_per_s": images / lightning,
        "ratio": lightning / plain,
    }


if __name__ == "__main__":
    main()
