"""Decoding what real image folders hold: RGB, grayscale and CMYK JPEGs, PNGs named .JPEG, broken files.

JPEGs go through libjpeg-turbo (simplejpeg), which can decode straight to a reduced size in the DCT domain
(scale factors n/8): when the training scale S is well under the image size, most of the decoding work is
never done. Anything simplejpeg refuses (CMYK, PNG content, odd JPEG flavours) falls back to PIL, which
reads by content, not by file name.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image


class CorruptImageError(RuntimeError):
    """A file that neither decoder can read; the message names the file and the reason."""


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the header alone."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        return height, width
    except ValueError:
        with Image.open(io.BytesIO(data)) as image:
            return image.height, image.width


def decode_rgb(data: bytes, min_side: int | None = None, path: str = "<bytes>") -> np.ndarray:
    """An (H, W, 3) uint8 RGB array. With `min_side`, a JPEG may come back downscaled by a factor n/8, never
    below `min_side` on its shorter side (nor below its full size if that is already smaller)."""
    try:
        if min_side is not None:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            ratio = min(1.0, min_side / min(height, width))
            return simplejpeg.decode_jpeg(
                data, colorspace="RGB", min_height=int(np.ceil(height * ratio)), min_width=int(np.ceil(width * ratio))
            )
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        pass  # not a JPEG libjpeg-turbo can give as RGB: let PIL read it by its content
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode now: a truncated file must fail here, not later
            return np.asarray(image.convert("RGB"))
    except Exception as error:  # PIL raises many types for broken files
        raise CorruptImageError(f"{path}: {type(error).__name__}: {error}") from error


def check_file(path: str) -> str | None:
    """None if `path` decodes fully, else the reason it does not."""
    try:
        data = read_bytes(path)
        if not data:
            return "empty file"
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # PIL is strict about truncation where libjpeg-turbo only warns
        decode_rgb(data, path=path)
        return None
    except Exception as error:
        return f"{type(error).__name__}: {error}"
