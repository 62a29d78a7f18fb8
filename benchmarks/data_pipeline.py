"""Training images/s per CPU core: our data pipeline against both of torchvision's, and against decoding alone.

    python benchmarks/data_pipeline.py --images DIR [--count 1000] [--repeats 3]
    python benchmarks/data_pipeline.py [--generated 300]      # ImageNet-like generated files instead

All run in this one process on one core (torch.set_num_threads(1); PIL decodes on the calling thread), on the
image files under --images (real ImageNet JPEGs: e.g. the 1000 of github.com/EliSchwartz/imagenet-sample-images,
one per class, or an ImageNet train/ folder), or on generated JPEGs whose sizes and content follow ImageNet's
(`imagenet_like.py`), for S = 256 and for scale jittering (S ~ U[256, 512]). Each produces batches of 32
normalised float 224x224 views:

- legacy: torchvision's PIL path, as its ImageFolder loads: PIL open + convert("RGB"), Resize(S) (a
  RandomChoice over every S for jittering), RandomCrop(224), RandomHorizontalFlip, ToTensor, Normalize;
- v2: torchvision's current path: `torchvision.io.decode_jpeg` (RGB) to a uint8 tensor, `transforms.v2`
  Resize(S, antialias=True) (RandomResize for jittering), RandomCrop(224), RandomHorizontalFlip,
  ToDtype(float32, scale=True), Normalize, default_collate;
- decode only: `torchvision.io.decode_jpeg` of every file at full size, nothing else: the ceiling of any
  pipeline that decodes the whole file;
- ours: `ImageFolder` items (read bytes, crop params keyed by index, decode, resample only the crop, flip,
  uint8), our collate, and `BatchNormalizer` (colour shift + mean subtraction) on the CPU, twice: decoding
  only the window the crop reads (nvImageCodec, `pip install vgg-lightning[fastjpeg]`), and decoding whole
  files (simplejpeg alone, what a plain install does). In training the batch step runs on the GPU, so "loader
  only" (without it) is what a loader core delivers there;
- decode=device, the loader's share: read, parse the header, draw the view, collate the bytes (nvjpeg then
  decodes on the GPU).

Time is this process's CPU time (`time.process_time`: every thread it runs, so a decoder's own threads count),
so the figures are images per CPU-second, what one loader core delivers, and other processes' load on a shared
machine stays out of them. The pipelines take turns batch by batch, and each batch counts with its fastest of
several repeats (the same random draws every time).
A second table gives the loader cores one GPU needs at 4,800 img/s (VGG-16 at 45 % MFU on an H100) for each
path, from these per-core rates; a third times the decoders alone on the same files (`--no-decoders` skips it).
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

from vgg_lightning.data import region_decode  # noqa: E402
from vgg_lightning.data.datasets import ImageFolder, collate  # noqa: E402
from vgg_lightning.data.decode import image_size  # noqa: E402
from vgg_lightning.data.transforms import (  # noqa: E402
    CROP,
    TORCHVISION_MEAN,
    TORCHVISION_STD,
    BatchNormalizer,
    rescaled_size,
    sample_crop,
    source_window,
)

BATCH = 32
H100_FEED = 4800  # img/s: VGG-16 training at 45 % MFU on one H100 (issue 25)
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SCALES = {"S=256": (256, 256), "jitter [256, 512]": (256, 512)}
LEGACY, V2, DECODE_ONLY, OURS, OURS_LOADER, WHOLE, WHOLE_LOADER, DEVICE_SHARE = (
    "legacy",
    "v2",
    "decode only",
    "ours",
    "ours, loader only",
    "ours, whole files",
    "ours, whole files, loader only",
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


def our_pipeline(normalize: bool, windows: bool):
    """Ours; `windows`: decode only the crop's window where nvImageCodec is installed, else whole files."""
    normalizer = BatchNormalizer("paper")

    def run(dataset: ImageFolder, indices: range) -> None:
        region_decode.enabled = windows
        try:
            batch = collate([dataset[(0, i)] for i in indices])
        finally:
            region_decode.enabled = True
        if normalize:
            normalizer(batch["image"], batch["pca_alpha"])

    return run


def device_decode_share(samples: list[tuple[str, int]], scale: tuple[int, int]):
    encoded = ImageFolder("", "", train=True, scale=scale, decode="device", samples=samples)

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
                started = time.process_time()
                run(dataset, indices)
                fastest[name][b] = min(fastest[name][b], time.process_time() - started)
    return {name: len(dataset) / sum(times) for name, times in fastest.items()}


def measure(samples: list[tuple[str, int]], scale: tuple[int, int], repeats: int) -> dict[str, float]:
    dataset = ImageFolder("", "", train=True, scale=scale, samples=samples)
    pipelines = {
        LEGACY: legacy_pipeline(scale),
        V2: v2_pipeline(scale),
        DECODE_ONLY: decode_only,
        OURS: our_pipeline(normalize=True, windows=True),
        OURS_LOADER: our_pipeline(normalize=False, windows=True),
        WHOLE: our_pipeline(normalize=True, windows=False),
        WHOLE_LOADER: our_pipeline(normalize=False, windows=False),
        DEVICE_SHARE: device_decode_share(samples, scale),
    }
    return fastest_per_batch(pipelines, dataset, repeats)


def crop_window(data: bytes, index: int, scale: int) -> tuple[int, int, int, int]:
    """The full-size window a training view at S = `scale` reads (keyed as ImageFolder keys its draws)."""
    size = image_size(data)
    params = sample_crop(*size, (scale, scale), np.random.default_rng([0, 0, index]))
    return source_window(1, size, rescaled_size(*size, scale), (params.top, params.left, CROP, CROP))


def decoders(paths: list[str], repeats: int) -> dict[str, float]:
    """Decodes per second of each library on the same files (each file's fastest repeat): whole files at full
    size unless said, and the window a training view at S=256 / 384 reads."""
    files = [Path(p).read_bytes() for p in paths]
    windows = {s: [crop_window(data, i, s) for i, data in enumerate(files)] for s in (256, 384)}

    def pil(data: bytes, reduce: bool = False) -> np.ndarray:
        image = Image.open(io.BytesIO(data))
        if reduce:  # PIL's DCT-domain scaling to at least 256 on the shorter side, as Image.draft does it
            image.draft("RGB", (256, 256))
        return np.asarray(image.convert("RGB"))

    def scaled(data: bytes) -> np.ndarray:  # libjpeg-turbo's M/8 scaling: the least M with shorter side >= 256
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        m = next((m for m in range(1, 9) if -(-min(height, width) * m // 8) >= 256), 8)
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-height * m // 8), min_width=1)

    libraries = {
        "torchvision.io.decode_jpeg": lambda i, data: decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)),
        "simplejpeg (ours, whole files)": lambda i, data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        "simplejpeg fastdct+fastupsample": lambda i, data: simplejpeg.decode_jpeg(
            data, colorspace="RGB", fastdct=True, fastupsample=True
        ),
        "simplejpeg DCT-scaled by M/8 to >= 256": lambda i, data: scaled(data),
        "PIL": lambda i, data: pil(data),
        "PIL draft (DCT scaling to >= 256)": lambda i, data: pil(data, reduce=True),
    }
    if region_decode.available():
        for s in (256, 384):
            libraries[f"nvImageCodec, the S={s} crop's window (ours)"] = lambda i, data, s=s: (
                region_decode.decode_window(data, windows[s][i])
            )
    fastest = {name: [float("inf")] * len(files) for name in libraries}
    for _ in range(repeats):
        for i, data in enumerate(files):
            for name, decode in libraries.items():
                started = time.process_time()
                decode(i, data)
                fastest[name][i] = min(fastest[name][i], time.process_time() - started)
    return {name: len(files) / sum(times) for name, times in fastest.items()}


def pipeline_table(samples: list[tuple[str, int]], repeats: int) -> tuple[list[str], dict[str, dict[str, float]]]:
    lines = [
        "| scale | legacy PIL | v2 | decode only | ours | ours, loader only | ours, whole files | "
        "ours / v2 | ours / legacy | ours / decode only | whole files / v2 | decode=device share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rates = {}
    for label, scale in SCALES.items():
        best = rates[label] = measure(samples, scale, repeats)
        ours = best[OURS]
        lines.append(
            f"| {label} | {best[LEGACY]:.0f} | {best[V2]:.0f} | {best[DECODE_ONLY]:.0f} | {ours:.0f} | "
            f"{best[OURS_LOADER]:.0f} | {best[WHOLE]:.0f} | {ours / best[V2]:.2f}x | {ours / best[LEGACY]:.2f}x | "
            f"{ours / best[DECODE_ONLY]:.2f}x | {best[WHOLE] / best[V2]:.2f}x | {best[DEVICE_SHARE]:.0f} |"
        )
        print(lines[-1], flush=True)
    return lines, rates


def cores_table(rates: dict[str, dict[str, float]]) -> list[str]:
    """Loader cores one GPU needs to be fed H100_FEED img/s by each path, from the per-core rates measured."""
    paths = {
        "torchvision v2 (normalising on the CPU)": V2,
        "ours, data.decode=cpu, window decoding (loader only)": OURS_LOADER,
        "ours, data.decode=cpu, whole files (loader only)": WHOLE_LOADER,
        "ours, data.decode=device (the workers' share; nvJPEG decodes)": DEVICE_SHARE,
    }
    lines = [f"| path | cores for {H100_FEED:,} img/s, S=256 | jitter |", "|---|---|---|"]
    for name, key in paths.items():
        needed = [H100_FEED / rates[label][key] for label in SCALES]
        lines.append(f"| {name} | {needed[0]:.1f} | {needed[1]:.1f} |")
    return lines


def image_files(folder: Path, count: int) -> list[tuple[str, int]]:
    """(path, 0) for the first `count` image files under `folder`, in sorted order."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise SystemExit(f"--images {folder}: no .JPEG, .jpg or .png files under it")
    return [(str(p), 0) for p in paths[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="a folder of image files (searched recursively): real JPEGs")
    parser.add_argument("--count", type=int, default=1000, help="at most this many files of --images")
    parser.add_argument("--generated", type=int, default=300, help="without --images: this many ImageNet-like JPEGs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-decoders", action="store_true", help="skip the decoders-alone table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vgg-data-bench-") as tmp:
        if args.images:
            samples = image_files(args.images, args.count)
            print(f"{len(samples)} image files under {args.images}")
        else:
            print(describe(make_set(Path(tmp), args.generated)))
            samples = ImageFolder(tmp, "train", train=True).samples
        window = "nvImageCodec" if region_decode.available() else "not installed: 'ours' decodes whole files too"
        print(
            f"1 core (torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}), batches of {BATCH}, "
            f"each batch's fastest of {args.repeats} repeats; window decoding: {window}; images per CPU-second\n",
            flush=True,
        )
        lines, rates = pipeline_table(samples, args.repeats)
        print("\n" + "\n".join(lines) + "\n\n" + "\n".join(cores_table(rates)))
        if not args.no_decoders:
            rates = decoders([path for path, _ in samples], args.repeats)
            print("\n| decoder, whole files at full size unless said | img/s | / torchvision's |\n|---|---|---|")
            for name, rate in rates.items():
                print(f"| {name} | {rate:.0f} | {rate / rates['torchvision.io.decode_jpeg']:.2f}x |")


if __name__ == "__main__":
    main()
