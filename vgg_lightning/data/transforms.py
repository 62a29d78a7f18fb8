"""The paper's augmentation (Sec. 3.1) and test-time rescaling (Sec. 3.2).

Per image, on the CPU, in uint8: isotropic rescale to shorter side S (fixed, or S ~ U[256, 512] per image for
scale jittering), one random 224x224 crop, a random horizontal flip. The crop is chosen in the coordinates of
the rescaled image, as the paper describes it, but only the crop is ever resampled: the box is mapped back to
the decoded image and resized in one step (PIL's `resize(box=...)`, antialiased like `Resize`). The
distribution of scales, crops and flips is that of `Resize(S) -> RandomCrop(224) -> RandomHorizontalFlip()`.

Per batch, on the device: conversion to float, the AlexNet PCA colour shift, mean-RGB subtraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .. import paper
from .decode import decode_rgb

CROP = 224
NORMALIZATIONS = ("paper", "torchvision")
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)


def parse_scale(scale) -> tuple[int, int]:
    """256 -> (256, 256); 'jitter' -> the paper's (256, 512); [a, b] -> (a, b). The range is inclusive."""
    if isinstance(scale, str) and scale.strip().lower() == "jitter":
        return paper.JITTER
    if isinstance(scale, (list, tuple)) and len(scale) == 2:
        low, high = int(scale[0]), int(scale[1])
    else:
        try:
            low = high = int(scale)
        except (TypeError, ValueError):
            raise ValueError(f"data.scale={scale!r}: use an int S (256, 384), 'jitter', or [S_min, S_max]") from None
    if not CROP <= low <= high:
        raise ValueError(f"data.scale={scale!r}: S must be at least the crop size {CROP} (and S_min <= S_max)")
    return low, high


def rescaled_size(height: int, width: int, side: int) -> tuple[int, int]:
    """The size after an isotropic rescale to shorter side `side`, rounded as torchvision's `Resize(side)`."""
    if height <= width:
        return side, int(side * width / height)
    return int(side * height / width), side


@dataclass(frozen=True)
class CropParams:
    scale: int  # S
    top: int  # the crop's offset in the image rescaled to S
    left: int
    flip: bool


def sample_crop(height: int, width: int, scale: tuple[int, int], rng: np.random.Generator) -> CropParams:
    side = int(rng.integers(scale[0], scale[1] + 1))
    rescaled_h, rescaled_w = rescaled_size(height, width, side)
    top = int(rng.integers(0, rescaled_h - CROP + 1))
    left = int(rng.integers(0, rescaled_w - CROP + 1))
    return CropParams(side, top, left, bool(rng.integers(0, 2)))


def random_crop(data: bytes, scale: tuple[int, int], rng: np.random.Generator, path: str = "<bytes>") -> np.ndarray:
    """The training view of one encoded image: a (224, 224, 3) uint8 array."""
    from .decode import image_size

    height, width = image_size(data)
    params = sample_crop(height, width, scale, rng)
    # Decode no larger than needed: the rescaled image is S on its shorter side.
    image = decode_rgb(data, min_side=params.scale, path=path)
    decoded_h, decoded_w = image.shape[:2]
    rescaled_h, rescaled_w = rescaled_size(height, width, params.scale)
    sy, sx = decoded_h / rescaled_h, decoded_w / rescaled_w
    box = (params.left * sx, params.top * sy, (params.left + CROP) * sx, (params.top + CROP) * sy)
    crop = np.array(Image.fromarray(image).resize((CROP, CROP), Image.BILINEAR, box=box))
    return crop[:, ::-1] if params.flip else crop


def rescale(data: bytes, side: int, center_crop: int | None = None, path: str = "<bytes>") -> np.ndarray:
    """The test view: the whole image isotropically rescaled to shorter side Q, optionally centre-cropped."""
    image = decode_rgb(data, min_side=side, path=path)
    height, width = rescaled_size(*image.shape[:2], side)
    resized = np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    if center_crop is None:
        return resized
    top = int(round((height - center_crop) / 2.0))
    left = int(round((width - center_crop) / 2.0))
    return resized[top : top + center_crop, left : left + center_crop]


def pca_alpha(rng: np.random.Generator) -> np.ndarray:
    """The per-image random weights of the colour shift, alpha ~ N(0, 0.1) per eigenvector."""
    return rng.normal(0.0, paper.PCA_ALPHA_STD, size=3).astype(np.float32)


class BatchNormalizer(torch.nn.Module):
    """uint8 (N, 3, H, W) -> float, with the PCA colour shift (when alphas are given) and the input
    normalisation: `paper` subtracts the mean RGB on the 0-255 scale; `torchvision` uses its mean/std on [0, 1]
    (for evaluating torchvision's weights on the input they were trained on)."""

    def __init__(self, normalize: str = "paper") -> None:
        super().__init__()
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"data.normalize={normalize!r}: choose one of {', '.join(NORMALIZATIONS)}")
        self.normalize = normalize
        if normalize == "paper":
            mean, std = torch.tensor(paper.MEAN_RGB), torch.ones(3)
        else:
            mean, std = torch.tensor(TORCHVISION_MEAN) * 255, torch.tensor(TORCHVISION_STD) * 255
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        eig = torch.tensor(paper.PCA_EIGVEC) * (torch.tensor(paper.PCA_EIGVAL) * 255)  # columns scaled by eigval
        self.register_buffer("pca", eig, persistent=False)

    def forward(self, images: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        x = images.float()
        mean = self.mean.to(x.device)
        if alpha is not None:
            # eigvec @ (alpha * eigval): one RGB offset per image
            shift = alpha.to(x.device, torch.float32) @ self.pca.to(x.device).T
            mean = mean - shift.view(-1, 3, 1, 1)
        return (x - mean) / self.std.to(x.device)


def reference_view(data: bytes, scale: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The plain way, for tests: decode at full size, rescale the whole image to S, crop, flip."""
    image = decode_rgb(data)
    params = sample_crop(*image.shape[:2], scale, rng)
    height, width = rescaled_size(*image.shape[:2], params.scale)
    resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    crop = resized[params.top : params.top + CROP, params.left : params.left + CROP]
    return crop[:, ::-1] if params.flip else crop
