"""Decoding what real image folders hold: RGB, grayscale and CMYK JPEGs, PNGs named .JPEG, broken files.

JPEGs go through libjpeg-turbo (simplejpeg: about 1.2x torchvision's `decode_jpeg` and 1.4x PIL on real
ImageNet JPEGs, `benchmarks/data_pipeline.py`), which can also decode straight to 1/2, 1/4 or 1/8 of the
size in the DCT domain. We only ask for that when the image is at least twice the size the caller needs:
libjpeg-turbo's other factors (5/8, 6/8, 7/8: no SIMD IDCT) cost as much as a full decode, and ImageNet's typical
500x375 against S >= 256 never allows a reduction of 2, so most training images are decoded at full size.
Anything simplejpeg refuses (CMYK, PNG content, odd JPEG flavours, and libjpeg's warnings about damaged
data, which it treats as errors) falls back to PIL, which reads by content, not by file name.

A view that reads only a window of a full-size image decodes only that window where nvImageCodec is installed
(`decode_window`, `region_decode.py`) when the window is at most half the image: the same pixels, a decode
about 30 % cheaper at S=384 on real ImageNet files (BENCHMARKS.md).
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from . import region_decode

REDUCTIONS = (8, 4, 2)  # the DCT-domain reductions that pay off, largest first
# A window decode pays when it leaves out at least half the image: at S=256 a crop of a 500x375 file reads
# about 60 % of it, and the window's fixed costs (nvImageCodec's thread, the copy into place) ate the saving in
# the benchmark; at S=384 it reads a quarter (1.44x simplejpeg's decode).
WINDOW_SHARE = 0.5


class CorruptImageError(RuntimeError):
    """A file that neither decoder can read; the message names the file and the reason."""

    @classmethod
    def of(cls, path: str, error: Exception) -> CorruptImageError:
        return cls(f"{path}: {type(error).__name__}: {error}")


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def image_size(data: bytes, path: str = "<bytes>") -> tuple[int, int]:
    """(height, width) from the header alone."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        return height, width
    except ValueError:
        pass
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.height, image.width
    except Exception as error:  # PIL raises many types for broken files
        raise CorruptImageError.of(path, error) from error


def reduction_for(height: int, width: int, min_side: int | None) -> int:
    """The largest DCT reduction k that keeps the shorter side at least `min_side` (1: decode at full size)."""
    if min_side is None:
        return 1
    return next((k for k in REDUCTIONS if min(height, width) >= k * min_side), 1)


def decode_reduced(data: bytes, min_side: int | None = None, path: str = "<bytes>") -> tuple[np.ndarray, int]:
    """An (H, W, 3) uint8 RGB array and the reduction k it was decoded at: the array is the image at 1/k of its
    size (rounded up), with k chosen by `reduction_for`; k is 1 for anything PIL has to decode."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        k = reduction_for(height, width, min_side)
        image = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-height // k), min_width=-(-width // k))
        return image, k
    except ValueError:
        pass  # not a JPEG libjpeg-turbo can give as RGB: let PIL read it by its content
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now: a truncated file must fail here, not later
            return np.array(image.convert("RGB")), 1  # writable, as torch.from_numpy wants
    except Exception as error:  # PIL raises many types for broken files
        raise CorruptImageError.of(path, error) from error


def decode_window(
    data: bytes, window: tuple[int, int, int, int], min_side: int | None = None, path: str = "<bytes>"
) -> tuple[np.ndarray, int]:
    """As `decode_reduced`, for a caller that reads only `window` = (top, left, bottom, right) of the image as
    decoded at its reduction k (`reduction_for`): when k is 1 the array may hold only that window's pixels,
    at their place, the rest undefined (`region_decode`), when the window is at most WINDOW_SHARE of it."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        colorspace = None  # not a JPEG simplejpeg reads: the full decode's fallbacks decide
    top, left, bottom, right = window
    if (
        colorspace in region_decode.COLORSPACES
        and reduction_for(height, width, min_side) == 1
        and (bottom - top) * (right - left) <= WINDOW_SHARE * height * width
        and region_decode.whole_jpeg(data)
    ):
        region = region_decode.decode_window(data, window)
        if region is not None:
            return region, 1
    return decode_reduced(data, min_side, path)


def decode_rgb(data: bytes, min_side: int | None = None, path: str = "<bytes>") -> np.ndarray:
    """An (H, W, 3) uint8 RGB array; with `min_side`, possibly reduced as `decode_reduced` does."""
    return decode_reduced(data, min_side, path)[0]


def check_file(path: str) -> str | None:
    """None if `path` decodes fully, else the reason it does not."""
    try:
        data = read_bytes(path)
        if not data:
            return "empty file"
        decode_rgb(data, path=path)
        return None
    except CorruptImageError as error:
        return str(error).removeprefix(f"{path}: ")
    except OSError as error:
        return f"{type(error).__name__}: {error}"
