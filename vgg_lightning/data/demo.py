"""A generated demo set in the ImageNet layout, written once as real JPEG files of varied sizes and aspect
ratios, so the demo goes through the same reading path as ImageNet.

Each class is a shape (disc, square, triangle, stripes) in a hue of its own, on a noisy grey background, at
a random place and size: a narrow VGG picks up the hues within an epoch or two.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("disc", "square", "triangle", "stripes")
HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
CLASSES = tuple(f"{SHAPES[i % len(SHAPES)]}_{hue}" for i, hue in enumerate(HUES))


def _colour(label: int, rng: np.random.Generator) -> tuple[int, ...]:
    hue = (label + rng.uniform(-0.2, 0.2)) / len(HUES)
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    return tuple(int(255 * c) for c in (red, green, blue))


def draw_example(label: int, rng: np.random.Generator) -> Image.Image:
    shape = CLASSES[label].split("_")[0]
    height = int(rng.integers(180, 330))
    width = int(height * rng.uniform(0.75, 1.45))
    background = rng.integers(70, 150) + rng.integers(-10, 10, size=3)
    noise = rng.normal(0, 18, size=(height // 8 + 1, width // 8 + 1, 3))
    pixels = np.clip(background + np.kron(noise, np.ones((8, 8, 1)))[:height, :width], 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    size = int(min(height, width) * rng.uniform(0.35, 0.7))
    x0, y0 = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
    box, colour = (x0, y0, x0 + size, y0 + size), _colour(label, rng)
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(x0 + size // 2, y0), (x0, y0 + size), (x0 + size, y0 + size)], fill=colour)
    else:
        for k in range(0, size, max(4, size // 6)):
            draw.rectangle((x0, y0 + k, x0 + size, y0 + k + max(2, size // 12)), fill=colour)
    return image


def make_demo_dataset(root: str, train_per_class: int = 48, val_per_class: int = 16, seed: int = 0) -> str:
    """Write the demo set to `root` unless a demo set is already there. Safe to call from several processes
    at once: the set is written to a temporary folder and renamed into place."""
    settings = {"version": 2, "train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}
    if os.path.exists(os.path.join(root, "demo.json")):
        return root  # written before (perhaps with other sizes): a data folder is never rewritten under a run
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".demo-", dir=parent)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = os.path.join(staging, split, name)
            os.makedirs(folder)
            for i in range(count):
                draw_example(label, rng).save(os.path.join(folder, f"{name}_{i:04d}.JPEG"), quality=90)
    with open(os.path.join(staging, "demo.json"), "w") as f:
        json.dump(settings, f)
    try:
        os.rename(staging, root)
    except OSError:  # another process renamed its copy in first: same seed, same files
        shutil.rmtree(staging, ignore_errors=True)
    return root
