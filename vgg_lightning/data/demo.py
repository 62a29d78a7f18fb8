"""A generated demo set in the ImageNet layout, written once as real JPEG files of varied sizes and aspect
ratios, so the demo goes through the same reading path as ImageNet.

Each class is a shape (disc, square, triangle, stripes) in a colour family (warm or cool) on a noisy
background, at a random place and size: a narrow VGG learns the colour in an epoch and the shape soon after.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("disc", "square", "triangle", "stripes")
COLOURS = ("warm", "cool")
CLASSES = tuple(f"{shape}_{colour}" for colour in COLOURS for shape in SHAPES)


def _colour(family: str, rng: np.random.Generator) -> tuple[int, int, int]:
    strong, weak = rng.integers(170, 256), rng.integers(0, 90)
    middle = rng.integers(0, 140)
    return (strong, middle, weak) if family == "warm" else (weak, middle, strong)


def draw_example(label: int, rng: np.random.Generator) -> Image.Image:
    shape, family = CLASSES[label].split("_")
    height = int(rng.integers(180, 330))
    width = int(height * rng.uniform(0.75, 1.45))
    background = rng.integers(60, 160, size=3)
    noise = rng.normal(0, 18, size=(height // 8 + 1, width // 8 + 1, 3))
    pixels = np.clip(background + np.kron(noise, np.ones((8, 8, 1)))[:height, :width], 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    size = int(min(height, width) * rng.uniform(0.35, 0.7))
    x0, y0 = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
    box, colour = (x0, y0, x0 + size, y0 + size), _colour(family, rng)
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
    """Write the demo set to `root` unless it is already there (with the same settings). Safe to call from
    several processes at once: the set is written to a temporary folder and renamed into place."""
    settings = {"version": 1, "train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}
    marker = os.path.join(root, "demo.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == settings:
                return root
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
    if os.path.exists(root):
        shutil.rmtree(root, ignore_errors=True)  # stale settings; a concurrent writer may have replaced it too
    try:
        os.rename(staging, root)
    except OSError:  # another process renamed its copy in first: same seed, same files
        shutil.rmtree(staging, ignore_errors=True)
    return root
