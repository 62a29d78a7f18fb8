"""The paper's augmentation (Sec. 3.1) and test-time rescaling (Sec. 3.2).

Per image, on the CPU, in uint8: isotropic rescale to shorter side S (fixed, or S ~ U[256, 512] per image for
scale jittering), one random 224x224 crop, a random horizontal flip. The crop is chosen in the coordinates of
the rescaled image, as the paper describes it, and drawn as `Resize(S) -> RandomCrop(224) ->
RandomHorizontalFlip()` draws it, but only what the crop needs is ever resampled (`resized_region`), and an
image at least twice S is decoded at a reduced size in the DCT domain (`decode.reduction_for`).

Per batch, on the device: conversion to float, the AlexNet PCA colour shift, mean-RGB subtraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import paper
from ..compat import upsample_bilinear_aa
from .decode import decode_reduced, decode_window, image_size, reduction_for
from .options import CROP
from .options import parse_scale as parse_scale  # still importable from here, its first home

NORMALIZATIONS = ("paper", "torchvision")
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)


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


def _steps(reduction: int, original: tuple[int, int], rescaled: tuple[int, int]) -> tuple[float, float]:
    """Decoded pixels per output pixel, down and across (the DCT reduction maps k original pixels onto one)."""
    step_y, step_x = (size / reduction / out for size, out in zip(original, rescaled))
    return step_y, step_x


def source_window(
    reduction: int, original: tuple[int, int], rescaled: tuple[int, int], box: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels of the image decoded at 1/`reduction` that `resized_region`
    reads to produce `box`: the antialiased filter reads up to max(step, 1) pixels either side of a sample (one
    more for rounding), clipped to the decoded image."""
    top, left, height, width = box
    step_y, step_x = _steps(reduction, original, rescaled)
    decoded = [-(-size // reduction) for size in original]
    first = [max(0, math.floor(step * start - max(step, 1.0)) - 1) for step, start in ((step_y, top), (step_x, left))]
    last = [
        min(extent, math.ceil(step * end + max(step, 1.0)) + 1)
        for step, end, extent in ((step_y, top + height, decoded[0]), (step_x, left + width, decoded[1]))
    ]
    return first[0], first[1], last[0], last[1]


def resized_region(
    image: torch.Tensor, reduction: int, original: tuple[int, int], rescaled: tuple[int, int], box: tuple[int, ...]
) -> torch.Tensor:
    """The region `box` = (top, left, height, width) of the image of size `original` after an antialiased
    bilinear rescale of the whole of it to `rescaled`, as a (3, height, width) uint8 tensor on the image's
    device. `image` is that image as a (3, H, W) uint8 tensor decoded at 1/`reduction` of its size; only its
    `source_window` is read (the rest may be undefined: `decode.decode_window`).

    Pixel for pixel this is the full rescale followed by the crop: the resampling op is given the full
    rescale's scale factors and an output just large enough to reach the region's far corner, and fed only
    the rows and columns up to the window's far corner. torch's uint8 CPU kernel (the one behind torchvision's
    tensor `Resize`) is vectorised, and rounds as PIL does to within one level; on a GPU, whose kernel takes
    floats only, the same op runs in float and is rounded back.
    """
    top, left, height, width = box
    step_y, step_x = _steps(reduction, original, rescaled)
    _, _, rows, cols = source_window(reduction, original, rescaled, box)
    source = image[:, : min(rows, image.shape[1]), : min(cols, image.shape[2])].unsqueeze(0)
    on_cpu = source.device.type == "cpu"
    # The public F.interpolate takes an output size or scale factors, and we need both.
    out = upsample_bilinear_aa(
        source if on_cpu else source.float(), [top + height, left + width], 1.0 / step_y, 1.0 / step_x
    )
    out = out[0, :, top:, left:]
    return out if on_cpu else out.round_().clamp_(0, 255).to(torch.uint8)


def hwc_tensor(image: np.ndarray) -> torch.Tensor:
    """A decoded (H, W, 3) array as a (3, H, W) tensor view: channels-last in memory, the CPU kernel's fast path."""
    return torch.from_numpy(image).permute(2, 0, 1)


def cut_view(image: torch.Tensor, reduction: int, original: tuple[int, int], params: CropParams) -> torch.Tensor:
    """The (3, 224, 224) uint8 view that `params` describe, cut from `image` (see `resized_region`)."""
    rescaled = rescaled_size(*original, params.scale)
    crop = resized_region(image, reduction, original, rescaled, (params.top, params.left, CROP, CROP))
    return crop.flip(-1) if params.flip else crop


def decode_view(data: bytes, size: tuple[int, int], params: CropParams, path: str = "<bytes>") -> torch.Tensor:
    """The view `params` describe of an encoded image of `size`, decoded on the CPU: DCT-reduced where it can,
    else only the window the view reads where a backend for that is installed (`decode.decode_window`)."""
    reduction = reduction_for(*size, params.scale)
    box = (params.top, params.left, CROP, CROP)
    window = source_window(reduction, size, rescaled_size(*size, params.scale), box)
    image, reduction = decode_window(data, window, min_side=params.scale, path=path)
    return cut_view(hwc_tensor(image), reduction, size, params)


def random_crop(data: bytes, scale: tuple[int, int], rng: np.random.Generator, path: str = "<bytes>") -> torch.Tensor:
    """The training view of one encoded image: a (3, 224, 224) uint8 tensor."""
    size = image_size(data, path)
    return decode_view(data, size, sample_crop(*size, scale, rng), path)


def center_crop_params(height: int, width: int, side: int) -> CropParams:
    """The validation view: the centre 224 crop of the image rescaled to shorter side Q = `side`."""
    return CropParams(side, *center_offset(rescaled_size(height, width, side)), flip=False)


def center_offset(size: tuple[int, int], crop: int = CROP) -> tuple[int, int]:
    """(top, left) of the centre crop of an image of (H, W)."""
    return int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))


def bounded_box(rescaled: tuple[int, int], max_aspect: float | None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of what a test view keeps of a rescaled image: all of it, or, when its long
    side exceeds `max_aspect` times its short side, the centred max_aspect:1 part (a 10x5000 panorama would
    otherwise make one view of 256x128000 pixels)."""
    height, width = rescaled
    if max_aspect is None:
        return 0, 0, height, width
    limit = max(min(rescaled), int(max_aspect * min(rescaled)))
    kept_height, kept_width = min(height, limit), min(width, limit)
    return (height - kept_height) // 2, (width - kept_width) // 2, kept_height, kept_width


def rescale_many(
    data: bytes, sides, center_crop: int | None = None, path: str = "<bytes>", max_aspect: float | None = None
) -> list[torch.Tensor]:
    """The test views at each Q of `sides`, (3, H, W) uint8 tensors: the whole image isotropically rescaled
    to shorter side Q (its centred `max_aspect`:1 part when longer: `bounded_box`), or centre-cropped. The file
    is decoded once, large enough for the largest Q."""
    height, width = image_size(data, path)
    image, reduction = decode_reduced(data, min_side=max(sides), path=path)
    image = hwc_tensor(image)
    views = []
    for side in sides:
        rescaled = rescaled_size(height, width, side)
        box = (
            bounded_box(rescaled, max_aspect)
            if center_crop is None
            else (*center_offset(rescaled, center_crop), center_crop, center_crop)
        )
        views.append(resized_region(image, reduction, (height, width), rescaled, box))
    return views


def rescale(data: bytes, side: int, center_crop: int | None = None, path: str = "<bytes>") -> torch.Tensor:
    """The test view at one Q (see `rescale_many`)."""
    return rescale_many(data, [side], center_crop, path)[0]


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
        # One new buffer and in-place arithmetic: on a CPU, fresh 20 MB temporaries (page faults) and mixed
        # uint8/float arithmetic cost more than the decoding of the batch.
        x = images.to(torch.float32, copy=True)
        x.sub_(self.offsets(alpha, x.device))
        return x if self.normalize == "paper" else x.div_(self.std.to(x.device))

    def offsets(self, alpha: torch.Tensor | None, device: torch.device | str = "cpu") -> torch.Tensor:
        """What `forward` subtracts, (1 or N, 3, 1, 1): the mean RGB, less each image's colour shift when
        `alpha` ((N, 3)) is given. `data.loader=dali` hands these to DALI, per image."""
        mean = self.mean.to(device)
        if alpha is None:
            return mean
        # eigvec @ (alpha * eigval): one RGB offset per image
        shift = alpha.to(device, torch.float32) @ self.pca.to(device).T
        return mean - shift.view(-1, 3, 1, 1)
