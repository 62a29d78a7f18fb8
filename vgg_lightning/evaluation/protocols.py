"""The paper's test protocols (Sec. 3.2, Tables 3-6): dense, multi-crop and both, over several test scales Q
and the nets of an ensemble.

Each protocol turns an image into a posterior (softmax class probabilities); posteriors are averaged over
the views of a scale, over the scales Q, over the two protocols of `dense_multicrop` and over the nets of an
ensemble, and the top-1 / top-5 errors are counted on the result.

- `center`: the view of training-time validation (rescale to Q, centre 224 crop), one per scale.
- `dense`: the whole image rescaled to Q goes through `VGG.score_map`; the class scores are averaged
  spatially, soft-maxed, and averaged with those of the flipped image.
- `multicrop`: a 5x5 regular grid of 224 crops and their flips, 50 views per scale (150 over 3 scales).
- `dense_multicrop`: the mean of the two.

Images are never padded: padding changes the score map. A batch holds only images whose rescaled shapes are
equal at every Q (`ShapeBatchSampler` groups them by the sizes in their file headers), each with its flip, so
a batch computes what one image at a time computes; ImageNet's val set, mostly 500x375 and 375x500, still
runs in full batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..data.transforms import CROP, center_offset
from ..models import VGG
from .protocol_settings import PROTOCOL_METHODS, check_protocol

GRID = 5  # multi-crop: a 5x5 grid of crops per scale, each also flipped
DEFAULT_CROP_BATCH = 128


def center_posterior(net: VGG, x: torch.Tensor, crop_batch: int = DEFAULT_CROP_BATCH) -> torch.Tensor:
    top, left = center_offset(x.shape[-2:])  # as the val loader crops
    return net(x[..., top : top + CROP, left : left + CROP]).softmax(1)


def dense_posterior(net: VGG, x: torch.Tensor, crop_batch: int = DEFAULT_CROP_BATCH) -> torch.Tensor:
    # one pass over each image and its flip; averaged in float32, as bf16 autocast leaves the map in bf16
    scores = net.score_map(torch.cat([x, x.flip(-1)])).float().mean(dim=(2, 3)).softmax(1)
    original, flipped = scores.chunk(2)
    return (original + flipped) / 2


def multicrop_views(x: torch.Tensor, grid: int = GRID) -> torch.Tensor:
    """(N, 3, H, W) -> (N * 2 * grid**2, 3, 224, 224): each image's grid of crops, then their flips."""
    height, width = x.shape[-2:]
    tops = torch.linspace(0, height - CROP, grid).round().long().tolist()
    lefts = torch.linspace(0, width - CROP, grid).round().long().tolist()
    crops = torch.stack([x[..., t : t + CROP, l : l + CROP] for t in tops for l in lefts], dim=1)
    return torch.cat([crops, crops.flip(-1)], dim=1).flatten(0, 1)


def multicrop_posterior(net: VGG, x: torch.Tensor, crop_batch: int = DEFAULT_CROP_BATCH) -> torch.Tensor:
    views = multicrop_views(x)
    # in slices: 50 crops per image would otherwise hold 50x the activations of a batch at once
    probs = torch.cat([net(chunk).softmax(1) for chunk in views.split(crop_batch)])
    return probs.view(x.shape[0], -1, probs.shape[1]).mean(dim=1)


Method = Callable[..., torch.Tensor]
METHODS: dict[str, Method] = {"center": center_posterior, "dense": dense_posterior, "multicrop": multicrop_posterior}
PROTOCOLS: dict[str, tuple[Method, ...]] = {
    name: tuple(METHODS[method] for method in methods) for name, methods in PROTOCOL_METHODS.items()
}


def posterior(
    nets: Sequence[VGG], images: Sequence[torch.Tensor], protocol: str, crop_batch: int = DEFAULT_CROP_BATCH
) -> torch.Tensor:
    """(N, classes): the mean posterior over nets x the protocol's methods x scales. `images` holds the same N
    images rescaled to each Q, normalised. Every term weighs the same: 3 scales of multi-crop are 150 views."""
    terms = [
        method(net, x, crop_batch) for net in nets for method in PROTOCOLS[check_protocol(protocol)] for x in images
    ]
    return torch.stack(terms).mean(dim=0)
