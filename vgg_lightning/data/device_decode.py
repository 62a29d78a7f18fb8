"""Decoding on the training device (`data.decode=device`).

A CPU core decodes and crops about 750 ImageNet JPEGs a second (BENCHMARKS.md); VGG-16 training at 45% MFU on
an H100 eats about 4,800. With few cores per GPU the loader's workers then only read each file, parse its header
and draw its view (`CropParams`, keyed by sample index exactly as on the CPU path), and the batch's JPEGs are
decoded together where the batch is going: nvjpeg through torchvision's `decode_jpeg` on a GPU. The views are
cut there with the same resampling as on the CPU (`transforms.cut_view`), so a sample gets the same crop, flip
and colour shift either way; pixels differ by the rounding of the GPU's float resampling and, for images at
least twice S, by the CPU path's DCT-domain reduction.

Files a GPU decoder may not read (CMYK and YCCK JPEGs, PNG content named .JPEG, anything libjpeg-turbo's header
parser refuses) are decoded by the workers as with `data.decode=cpu` and join the batch already decoded.
"""

from __future__ import annotations

import warnings

import simplejpeg
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from .decode import CorruptImageError
from .transforms import CROP, CropParams, cut_view

DECODE_ON = ("cpu", "device")
_DEVICE_COLORSPACES = ("YCbCr", "Gray")  # what nvjpeg decodes to RGB; the rest stays on the CPU path


def device_decodable_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of a JPEG that nvjpeg decodes to RGB, from its header; None for any other file."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return (height, width) if colorspace in _DEVICE_COLORSPACES else None


def encoded_item(data: bytes, size: tuple[int, int], params: CropParams, path: str) -> dict:
    """What a worker hands over for decoding on the device: the file's bytes and the view to cut from it."""
    plan = torch.tensor([*size, params.scale, params.top, params.left, params.flip])
    return {"jpeg": torch.frombuffer(bytearray(data), dtype=torch.uint8), "plan": plan, "jpeg_path": path}


def _decode_all(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | Exception]:
    """Decode a batch at once; if any file fails (the batched call gives no partial results), one by one, so
    that the broken files can be named and the others kept."""
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            pass
        results: list[torch.Tensor | Exception] = []
        for data in encoded:
            try:
                results.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as error:
                results.append(error)
        return results


def decode_batch(batch: dict, device: torch.device, on_bad_file) -> dict:
    """Replace the batch's encoded files by their views, decoded on `device`, ahead of the views the workers
    decoded (`collate` put the encoded samples first). A file that does not decode goes to `on_bad_file(path,
    error)`, which raises or lets it be skipped; a skipped file's sample leaves every per-sample entry."""
    encoded, plans, paths = batch.pop("jpeg"), batch.pop("plan").tolist(), batch.pop("jpeg_path")
    size = len(batch["label"])
    views, keep = [], torch.ones(size, dtype=torch.bool)
    for i, (image, (height, width, side, top, left, flip)) in enumerate(zip(_decode_all(encoded, device), plans)):
        if isinstance(image, Exception):
            on_bad_file(paths[i], CorruptImageError.of(paths[i], image))
            keep[i] = False
            continue
        views.append(cut_view(image, 1, (height, width), CropParams(side, top, left, bool(flip))))
    decoded = batch["image"].to(device, non_blocking=True)
    batch["image"] = torch.cat([torch.stack(views), decoded]) if views else decoded
    if not keep.all():
        # the images are already only the kept ones
        batch = {k: v[keep] if k != "image" and torch.is_tensor(v) and v.ndim else v for k, v in batch.items()}
        batch["skipped"] = batch["skipped"] + int((~keep).sum())
    return batch


def empty_views() -> torch.Tensor:
    return torch.empty(0, 3, CROP, CROP, dtype=torch.uint8)
