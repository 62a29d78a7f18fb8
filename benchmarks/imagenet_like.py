"""Generated JPEGs whose sizes and content follow ImageNet's, for the benchmarks (no download).

Sizes: 60 % of the files are 500x375, 500x333 or their portraits (as in ImageNet's train set), a quarter
other sizes up to 500 px, a tail of larger files up to about 2400 px and some with a side under 256 px.
Content: 1/f ("pink") noise with correlated colour channels plus a few smooth gradients, the power spectrum
of natural images; JPEG's cost depends on content, so flat shapes would be far too cheap to decode and white
noise far too dear. Quality 90, 4:2:0 chroma subsampling, as most ImageNet files are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

QUALITY = 90
COMMON = ((375, 500), (333, 500), (500, 375), (500, 333))  # (height, width)
COMMON_WEIGHTS = (0.55, 0.25, 0.14, 0.06)


def imagenet_shape(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width): 60 % common sizes, 25 % other sizes up to 500, 10 % larger (to ~2400), 5 % small."""
    kind = rng.random()
    if kind < 0.60:
        return COMMON[rng.choice(len(COMMON), p=COMMON_WEIGHTS)]
    if kind < 0.85:
        long_side = int(rng.integers(300, 501))
    elif kind < 0.95:
        long_side = int(np.exp(rng.uniform(np.log(600), np.log(2400))))
    else:
        long_side = int(rng.integers(120, 256))
    short_side = max(32, int(long_side * rng.choice([0.75, 0.667, 0.8, 0.6, 1.0])))
    return (short_side, long_side) if rng.random() < 0.75 else (long_side, short_side)


def photo(height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """1/f noise (amplitude falling as 1/frequency, the spectrum of natural images), colour channels mixed from
    one luminance field and two weaker ones, plus a smooth gradient: about 0.5-1 byte per pixel at quality 90."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    falloff = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width))
    fields = []
    for _ in range(3):
        spectrum = falloff * (rng.normal(size=falloff.shape) + 1j * rng.normal(size=falloff.shape))
        field = np.fft.irfft2(spectrum, s=(height, width))
        fields.append(field / field.std())
    luma, chroma_a, chroma_b = fields
    mix = np.stack([luma + 0.3 * chroma_a, luma - 0.15 * chroma_a + 0.2 * chroma_b, luma - 0.3 * chroma_b], -1)
    ramp = np.linspace(-1, 1, height)[:, None, None] * rng.uniform(-30, 30, 3)
    pixels = rng.uniform(80, 170, 3) + 38 * mix + ramp
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_set(
    root: Path, count: int, seed: int = 0, split: str = "train", classes: int = 4, prefix: str = ""
) -> list[tuple[int, int, int]]:
    """`root/<split>/<class>/<prefix>img_*.JPEG`; returns (height, width, bytes) per file."""
    rng, shapes = np.random.default_rng(seed), []
    for i in range(count):
        folder = root / split / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        height, width = imagenet_shape(rng)
        path = folder / f"{prefix}img_{i:05d}.JPEG"
        photo(height, width, rng).save(path, quality=QUALITY)
        shapes.append((height, width, path.stat().st_size))
    return shapes


def describe(shapes) -> str:
    shapes = np.asarray(shapes)
    common = np.mean([tuple(s[:2]) in COMMON for s in shapes])
    return (
        f"{len(shapes)} generated JPEGs (quality {QUALITY}, 1/f content): {common:.0%} 500x375/500x333 or portrait, "
        f"{np.mean(shapes[:, :2].max(1) > 500):.0%} larger (up to {shapes[:, :2].max()} px), "
        f"{np.mean(shapes[:, :2].min(1) < 256):.0%} with a side under 256; "
        f"mean {shapes[:, 2].mean() / 1024:.0f} KiB, {shapes[:, 2].sum() / (shapes[:, 0] * shapes[:, 1]).sum():.2f} B/px"
    )
