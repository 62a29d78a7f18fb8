"""Loader feed rate, side by side: data.loader=dali against data.loader=torch, in training images/s.

    python benchmarks/dali_feed.py [--images 256] [--batch 32] [--workers 0] [--threads 1] [--backend cpu]
                                   [--repeats 3] [--scale 256 512] [--data DIR]

Both paths deliver what the training step takes: normalised float 224x224 views (crop, flip, colour shift, mean
subtracted) of the same samples with the same draws, on the device (`--backend mixed`: the GPU; cpu: the
CPU). `torch` is the datamodule's DataLoader (`--workers` processes decode, `BatchNormalizer` on the device, as
`on_after_batch_transfer` does); `dali` the same DataLoader with decode=device (the workers read files and draw
views) feeding DALI (`--threads` threads; nvJPEG on the GPU with mixed). Epochs alternate between the paths
and each path counts its fastest, so that load from other processes on the machine is filtered out alike.

From another script (benchmarks/gpu_check.py): `feed_rates(root, backend="mixed", workers=..., threads=...)`
returns {"torch": img/s, "dali": img/s, "dali / torch": ratio, "per CPU-second": {...}, "settings": {...}}; with
--workers 0 the CPU-seconds are the whole loader's (the main thread's reading and DALI's threads).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imagenet_like import describe, make_set  # noqa: E402

from vgg_lightning.data.dali_inputs import DaliCollate  # noqa: E402
from vgg_lightning.data.dali_loader import DaliViews  # noqa: E402
from vgg_lightning.data.datasets import CorruptFiles, ImageFolder, collate  # noqa: E402
from vgg_lightning.data.sampling import EpochSampler  # noqa: E402
from vgg_lightning.data.transforms import BatchNormalizer  # noqa: E402


def _loader(root: str, decode: str, scale, batch: int, workers: int) -> torch.utils.data.DataLoader:
    """The datamodule's training loader: decode=cpu for data.loader=torch, device (and DALI's collate) for dali."""
    dataset = ImageFolder(root, "train", train=True, scale=tuple(scale), decode=decode)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        sampler=EpochSampler(len(dataset), True, 0, batch_size=batch),
        collate_fn=DaliCollate() if decode == "device" else collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def _epoch_rate(batches, device: torch.device, normalise=None) -> tuple[float, float]:
    """Images per second and per CPU-second of this process (all its threads, DALI's too; not the loader's
    worker processes) of one epoch, each batch's views finished on `device` (a GPU is waited for at the end)."""
    started, cpu, images = time.perf_counter(), time.process_time(), 0
    for batch in batches:
        view = batch["image"].to(device, non_blocking=True)
        if normalise is not None:
            view = normalise(view, batch.get("pca_alpha"))
        images += len(view)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / (time.perf_counter() - started), images / max(time.process_time() - cpu, 1e-9)


def feed_rates(
    root: str,
    backend: str = "cpu",
    batch: int = 32,
    workers: int = 0,
    threads: int = 1,
    repeats: int = 3,
    scale=(256, 512),
) -> dict:
    """Both paths' best images/s over `repeats` alternating epochs of the train/ split of `root`."""
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "mixed" else torch.device("cpu")
    normalizer = BatchNormalizer().to(device)
    current = _loader(root, "cpu", scale, batch, workers)
    dali = DaliViews(
        _loader(root, "device", scale, batch, workers),
        BatchNormalizer(),
        CorruptFiles("skip"),
        backend=backend,
        device=device,
        threads=threads,
        channels_last=True,
    )
    best = {"torch": (0.0, 0.0), "dali": (0.0, 0.0)}
    for _ in range(repeats):
        for name, rate in (("torch", _epoch_rate(current, device, normalizer)), ("dali", _epoch_rate(dali, device))):
            best[name] = tuple(max(a, b) for a, b in zip(best[name], rate))
    settings = {"backend": backend, "batch": batch, "workers": workers, "dali_threads": threads, "scale": list(scale)}
    return {
        "torch": best["torch"][0],
        "dali": best["dali"][0],
        "dali / torch": best["dali"][0] / best["torch"][0],
        "per CPU-second": {name: rate[1] for name, rate in best.items()},  # workers=0: the whole loader's CPU
        "settings": settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader processes (both paths)")
    parser.add_argument("--threads", type=int, default=1, help="DALI's threads")
    parser.add_argument("--backend", choices=("cpu", "mixed"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, nargs=2, default=(256, 512), metavar=("S_MIN", "S_MAX"))
    parser.add_argument("--data", help="the train/ split of this image folder instead of generated files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vgg-dali-bench-") as tmp:
        root = args.data or tmp
        print(f"train/ of {root}" if args.data else describe(make_set(Path(tmp), args.images)))
        rates = feed_rates(root, args.backend, args.batch, args.workers, args.threads, args.repeats, args.scale)
    print(f"settings: {rates['settings']}, each path's best of {args.repeats} epochs\n")
    per_cpu = rates["per CPU-second"]
    print("| loader | img/s | / torch | img per CPU-second of this process |\n|---|---|---|---|")
    print(f"| data.loader=torch | {rates['torch']:.0f} | 1.00 | {per_cpu['torch']:.0f} |")
    print(
        f"| data.loader=dali ({args.backend}) | {rates['dali']:.0f} | {rates['dali / torch']:.2f} "
        f"| {per_cpu['dali']:.0f} |"
    )


if __name__ == "__main__":
    main()
