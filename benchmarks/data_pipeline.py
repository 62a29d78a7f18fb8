"""Training images/s per CPU core: our data pipeline against the torchvision way of doing the same work.

    python benchmarks/data_pipeline.py [--images 300] [--repeats 7]

Both run in this one process on one core (torch.set_num_threads(1)), side by side, on a generated set of
JPEGs shaped like ImageNet's (about 430x360 on average, a fifth of them portrait, quality 90, with
natural-image-like detail), for S = 256 and for scale jittering (S ~ U[256, 512]). Each produces batches
of 32 float images, normalised:

- reference: PIL open + convert("RGB"), Resize(S) (a RandomChoice over every S for jittering),
  RandomCrop(224), RandomHorizontalFlip, ToTensor, Normalize, default_collate;
- ours: `ImageFolder` items (read bytes, crop params keyed by index, decode, resample only the crop, flip,
  uint8), our collate, and `BatchNormalizer` (colour shift + mean subtraction) on the CPU. In training that
  last step runs on the GPU; its share is printed separately.
- the loader's share with `data.decode=device`: read the file, parse its header, draw the view, collate the
  bytes; decoding and resampling then run on the GPU (nvjpeg), so this is what a core feeds a GPU with.

The pipelines take turns batch by batch, and each batch counts with its fastest of several repeats (the
same random draws every time), so that load from other processes on the machine is filtered out of both.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vgg_lightning.data.datasets import ImageFolder, collate  # noqa: E402
from vgg_lightning.data.transforms import CROP, TORCHVISION_MEAN, TORCHVISION_STD, BatchNormalizer  # noqa: E402

BATCH = 32
DEVICE_SHARE = "decode=device, the loader's share"
SCALES = {"S=256": (256, 256), "jitter [256, 512]": (256, 512)}


def photo(height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """Detail at every scale with falling amplitude, as in natural images: JPEG works as hard on it as on a
    photo (about 0.5 bytes per pixel at quality 90), where flat or pure-noise images would be too easy or
    too hard."""
    pixels = np.zeros((height, width, 3), np.float32) + rng.uniform(60, 190, 3)
    for cells, amplitude in ((4, 50), (16, 30), (64, 20), (256, 16), (1024, 14)):
        field = rng.normal(0, 1, (max(2, height * cells // 1024), max(2, width * cells // 1024), 3))
        field = Image.fromarray(np.clip(field * 40 + 128, 0, 255).astype(np.uint8)).resize(
            (width, height), Image.BICUBIC
        )
        pixels += (np.asarray(field, np.float32) - 128) / 40 * amplitude
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def imagenet_shape(rng: np.random.Generator) -> tuple[int, int]:
    """Mostly 500 on the long side, the rest smaller; 4:3 and other aspects; a fifth portrait."""
    long_side = 500 if rng.random() < 0.6 else int(rng.integers(250, 500))
    short_side = int(long_side * rng.choice([0.75, 0.75, 0.667, 0.8, 0.6]))
    return (short_side, long_side) if rng.random() < 0.8 else (long_side, short_side)


def make_set(root: Path, count: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """`root/train/<class>/*.JPEG`; returns (height, width, bytes) per image."""
    rng, shapes = np.random.default_rng(seed), []
    for i in range(count):
        folder = root / "train" / f"n{i % 4:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        height, width = imagenet_shape(rng)
        path = folder / f"img_{i:05d}.JPEG"
        photo(height, width, rng).save(path, quality=90)
        shapes.append((height, width, path.stat().st_size))
    return shapes


def reference_pipeline(scale: tuple[int, int]):
    low, high = scale
    resize = T.Resize(low) if low == high else T.RandomChoice([T.Resize(s) for s in range(low, high + 1)])
    transform = T.Compose(
        [
            resize,
            T.RandomCrop(CROP),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(TORCHVISION_MEAN, TORCHVISION_STD),
        ]
    )

    def load(path: str) -> torch.Tensor:
        with open(path, "rb") as f:
            return transform(Image.open(f).convert("RGB"))

    def run(dataset: ImageFolder, indices: range) -> None:
        default_collate([(load(dataset.samples[i][0]), dataset.samples[i][1]) for i in indices])

    return run


def our_pipeline(normalize: bool):
    normalizer = BatchNormalizer("paper")

    def run(dataset: ImageFolder, indices: range) -> None:
        batch = collate([dataset[(0, i)] for i in indices])
        if normalize:
            normalizer(batch["image"], batch["pca_alpha"])

    return run


def device_decode_share(root: Path, scale: tuple[int, int]):
    encoded = ImageFolder(str(root), "train", train=True, scale=scale, decode="device")

    def run(dataset: ImageFolder, indices: range) -> None:
        collate([encoded[(0, i)] for i in indices])

    return run


def measure(root: Path, scale: tuple[int, int], repeats: int) -> dict[str, float]:
    """Images/s of each pipeline: the sum over batches of each batch's fastest repeat. Every repeat of a
    batch makes the same random draws, so the minimum filters out only the other processes' load."""
    dataset = ImageFolder(str(root), "train", train=True, scale=scale)
    pipelines = {
        "torchvision reference": reference_pipeline(scale),
        "ours": our_pipeline(normalize=True),
        "ours, without the batch step": our_pipeline(normalize=False),
        DEVICE_SHARE: device_decode_share(root, scale),
    }
    batches = [range(start, min(start + BATCH, len(dataset))) for start in range(0, len(dataset), BATCH)]
    fastest = {name: [float("inf")] * len(batches) for name in pipelines}
    for _ in range(repeats):
        for b, indices in enumerate(batches):
            for name, run in pipelines.items():
                torch.manual_seed(b)  # the reference's draws; ours are keyed by (epoch 0, index)
                started = time.perf_counter()
                run(dataset, indices)
                fastest[name][b] = min(fastest[name][b], time.perf_counter() - started)
    return {name: len(dataset) / sum(times) for name, times in fastest.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vgg-data-bench-") as tmp:
        shapes = np.array(make_set(Path(tmp), args.images))
        portrait = float(np.mean(shapes[:, 0] > shapes[:, 1]))
        print(
            f"{args.images} generated JPEGs (quality 90): mean {shapes[:, 1].mean():.0f}x{shapes[:, 0].mean():.0f} "
            f"(w x h), {portrait:.0%} portrait, mean {shapes[:, 2].mean() / 1024:.0f} KiB; "
            f"1 core (torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}), batches of {BATCH}, "
            f"each batch's fastest of {args.repeats} repeats\n"
        )
        print(
            "| scale | torchvision reference (img/s) | ours (img/s) | ours without the batch step (img/s) | ratio "
            "| decode=device: the loader's share (img/s) |"
        )
        print("|---|---|---|---|---|---|")
        for label, scale in SCALES.items():
            best = measure(Path(tmp), scale, args.repeats)
            reference, ours = best["torchvision reference"], best["ours"]
            print(
                f"| {label} | {reference:.0f} | {ours:.0f} | {best['ours, without the batch step']:.0f} "
                f"| {ours / reference:.2f}x | {best[DEVICE_SHARE]:.0f} |"
            )


if __name__ == "__main__":
    main()
