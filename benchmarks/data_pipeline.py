"""Training images/s per CPU core: our data pipeline against both of torchvision's, and against decoding alone.

    python benchmarks/data_pipeline.py [--images 300] [--repeats 5] [--data DIR]

All run in this one process on one core (torch.set_num_threads(1); PIL decodes on the calling thread), on
JPEGs whose sizes and content follow ImageNet's (`imagenet_like.py`; or the `train/` of --data), for S = 256
and for scale jittering (S ~ U[256, 512]). Each produces batches of 32 normalised float 224x224 views:

- legacy: torchvision's PIL path, as its ImageFolder loads: PIL open + convert("RGB"), Resize(S) (a
  RandomChoice over every S for jittering), RandomCrop(224), RandomHorizontalFlip, ToTensor, Normalize;
- v2: torchvision's current path: `torchvision.io.decode_jpeg` (RGB) to a uint8 tensor, `transforms.v2`
  Resize(S, antialias=True) (RandomResize for jittering), RandomCrop(224), RandomHorizontalFlip,
  ToDtype(float32, scale=True), Normalize, default_collate;
- decode only: `torchvision.io.decode_jpeg` of every file at full size, nothing else: the ceiling of any
  pipeline that decodes the whole file;
- ours: `ImageFolder` items (read bytes, crop params keyed by index, decode, resample only the crop, flip,
  uint8), our collate, and `BatchNormalizer` (colour shift + mean subtraction) on the CPU. In training that
  last step runs on the GPU, so "without the batch step" is what a loader core delivers there;
- decode=device, the loader's share: read, parse the header, draw the view, collate the bytes (nvjpeg then
  decodes on the GPU).

The pipelines take turns batch by batch, and each batch counts with its fastest of several repeats (the same
random draws every time), so that load from other processes on the machine is filtered out of all alike.
A second table times the decoders alone on the same files (`--no-decoders` skips it).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg
import torch
import torchvision.transforms as T
import torchvision.transforms.v2 as v2
from PIL import Image
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imagenet_like import describe, make_set  # noqa: E402

from vgg_lightning.data.datasets import ImageFolder, collate  # noqa: E402
from vgg_lightning.data.transforms import CROP, TORCHVISION_MEAN, TORCHVISION_STD, BatchNormalizer  # noqa: E402

BATCH = 32
SCALES = {"S=256": (256, 256), "jitter [256, 512]": (256, 512)}
LEGACY, V2, DECODE_ONLY, OURS, OURS_LOADER, DEVICE_SHARE = (
    "legacy",
    "v2",
    "decode only",
    "ours",
    "ours, loader only",
    "decode=device share",
)


def legacy_pipeline(scale: tuple[int, int]):
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


def read_tensor(path: str) -> torch.Tensor:
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)


def v2_pipeline(scale: tuple[int, int]):
    low, high = scale
    resize = v2.Resize(low, antialias=True) if low == high else v2.RandomResize(low, high + 1, antialias=True)
    transform = v2.Compose(
        [
            resize,
            v2.RandomCrop(CROP),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(TORCHVISION_MEAN, TORCHVISION_STD),
        ]
    )

    def run(dataset: ImageFolder, indices: range) -> None:
        items = [
            (decode_jpeg(read_tensor(dataset.samples[i][0]), mode=ImageReadMode.RGB), dataset.samples[i][1])
            for i in indices
        ]
        default_collate([(transform(image), label) for image, label in items])

    return run


def decode_only(dataset: ImageFolder, indices: range) -> None:
    for i in indices:
        decode_jpeg(read_tensor(dataset.samples[i][0]), mode=ImageReadMode.RGB)


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


def fastest_per_batch(pipelines: dict, dataset, repeats: int) -> dict[str, float]:
    """Images/s of each pipeline: the sum over batches of each batch's fastest repeat. Every repeat of a
    batch makes the same random draws, so the minimum filters out only the other processes' load."""
    batches = [range(start, min(start + BATCH, len(dataset))) for start in range(0, len(dataset), BATCH)]
    fastest = {name: [float("inf")] * len(batches) for name in pipelines}
    for _ in range(repeats):
        for b, indices in enumerate(batches):
            for name, run in pipelines.items():
                torch.manual_seed(b)  # torchvision's draws; ours are keyed by (epoch 0, index)
                started = time.perf_counter()
                run(dataset, indices)
                fastest[name][b] = min(fastest[name][b], time.perf_counter() - started)
    return {name: len(dataset) / sum(times) for name, times in fastest.items()}


def measure(root: Path, scale: tuple[int, int], repeats: int) -> dict[str, float]:
    dataset = ImageFolder(str(root), "train", train=True, scale=scale)
    pipelines = {
        LEGACY: legacy_pipeline(scale),
        V2: v2_pipeline(scale),
        DECODE_ONLY: decode_only,
        OURS: our_pipeline(normalize=True),
        OURS_LOADER: our_pipeline(normalize=False),
        DEVICE_SHARE: device_decode_share(root, scale),
    }
    return fastest_per_batch(pipelines, dataset, repeats)


def decoders(paths: list[str], repeats: int) -> dict[str, float]:
    """Full-size decodes per second of each library on the same files (each file's fastest repeat)."""
    files = [Path(p).read_bytes() for p in paths]

    def pil(data: bytes, reduce: bool = False) -> np.ndarray:
        image = Image.open(io.BytesIO(data))
        if reduce:  # PIL's DCT-domain scaling to at least 256 on the shorter side, as Image.draft does it
            image.draft("RGB", (256, 256))
        return np.asarray(image.convert("RGB"))

    libraries = {
        "torchvision.io.decode_jpeg": lambda data: decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)),
        "simplejpeg (ours)": lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        "simplejpeg fastdct+fastupsample": lambda data: simplejpeg.decode_jpeg(
            data, colorspace="RGB", fastdct=True, fastupsample=True
        ),
        "PIL": pil,
        "PIL draft (DCT scaling to >= 256)": lambda data: pil(data, reduce=True),
    }
    fastest = {name: [float("inf")] * len(files) for name in libraries}
    for _ in range(repeats):
        for i, data in enumerate(files):
            for name, decode in libraries.items():
                started = time.perf_counter()
                decode(data)
                fastest[name][i] = min(fastest[name][i], time.perf_counter() - started)
    return {name: len(files) / sum(times) for name, times in fastest.items()}


def pipeline_table(root: Path, repeats: int) -> list[str]:
    lines = [
        "| scale | legacy PIL (img/s) | v2 (img/s) | decode only (img/s) | ours (img/s) | ours, loader only (img/s) "
        "| ours / v2 | ours / legacy | ours / decode only | decode=device share (img/s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, scale in SCALES.items():
        best = measure(root, scale, repeats)
        ours = best[OURS]
        lines.append(
            f"| {label} | {best[LEGACY]:.0f} | {best[V2]:.0f} | {best[DECODE_ONLY]:.0f} | {ours:.0f} | "
            f"{best[OURS_LOADER]:.0f} | {ours / best[V2]:.2f}x | {ours / best[LEGACY]:.2f}x | "
            f"{ours / best[DECODE_ONLY]:.2f}x | {best[DEVICE_SHARE]:.0f} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", help="time on the train/ split of this image folder instead of generated files")
    parser.add_argument("--no-decoders", action="store_true", help="skip the decoders-alone table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vgg-data-bench-") as tmp:
        root = Path(args.data) if args.data else Path(tmp)
        if args.data:
            print(f"train/ of {root}")
        else:
            print(describe(make_set(root, args.images)))
        print(
            f"1 core (torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}), batches of {BATCH}, "
            f"each batch's fastest of {args.repeats} repeats\n",
            flush=True,
        )
        lines = pipeline_table(root, args.repeats)
        print("\n" + "\n".join(lines))
        if not args.no_decoders:
            paths = [path for path, _ in ImageFolder(str(root), "train", train=True).samples]
            rates = decoders(paths, args.repeats)
            print("\n| decoder, full size unless said | img/s | / torchvision's |\n|---|---|---|")
            for name, rate in rates.items():
                print(f"| {name} | {rate:.0f} | {rate / rates['torchvision.io.decode_jpeg']:.2f}x |")


if __name__ == "__main__":
    main()
