"""Decoding only the window of a JPEG that a view reads (an optional backend of `decode.decode_window`).

A 224 crop of a 500x375 image rescaled to S reads part of the file: at S=256 about 60 % of its pixels, at
S=512 about a fifth. libjpeg-turbo can skip the inverse DCT, upsampling and colour conversion of the columns
outside a window and stop after its last row (the rows above it are still entropy-decoded: Huffman data has no
random access). None of simplejpeg, PIL or torchvision expose that; NVIDIA's nvImageCodec does, with
libjpeg-turbo inside its wheel and a CPU-only mode that needs no GPU (`pip install vgg-lightning[fastjpeg]`).
Its windows are pixel for pixel the same as a full decode's (the tests check it against simplejpeg), so the
views do not depend on whether it is installed; only the speed does (BENCHMARKS.md, "data pipeline").

Only files that a full decode would accept the same way take this path: YCbCr and grayscale JPEGs whose data
ends with the end-of-image marker (a truncated file may be whole above the window; the full decode's verdict
on it, an error, must not depend on the crop). Anything else, and any window it fails on, goes back to the full
decode and its fallbacks (`decode.py`).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

COLORSPACES = ("YCbCr", "Gray")  # simplejpeg's names for what libjpeg-turbo decodes to RGB as it is
END_OF_IMAGE = b"\xff\xd9"
_TAIL = 32  # bytes after the end-of-image marker that some writers leave (padding), still a whole file
_decoder: tuple[int, object, object, object] | None = None  # (pid, module, decoder, params), one per process
enabled = True  # False: always the full decode (the benchmark times both ways)


@contextlib.contextmanager
def _quiet_stdio():
    """Silence the C-level stdout and stderr: on import nvImageCodec prints a notice for each GPU codec library
    it finds missing (nvJPEG, nvJPEG2000, nvTIFF), once in every loader worker, though the CPU decoder needs none."""
    saved = [os.dup(fd) for fd in (1, 2)]
    with open(os.devnull, "wb") as null:
        try:
            for fd in (1, 2):
                os.dup2(null.fileno(), fd)
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _load():
    """nvImageCodec's CPU decoder for this process, or None when the package is not installed. Made anew after
    a fork (loader workers): its thread pool does not survive one."""
    global _decoder
    if _decoder is not None and _decoder[0] == os.getpid():
        return _decoder[1:]
    os.environ.setdefault("PYNVIMGCODEC_VERBOSITY", "0")  # a window it cannot decode is reported by our fallback
    try:
        with _quiet_stdio():
            from nvidia import nvimgcodec
    except ImportError:
        _decoder = (os.getpid(), None, None, None)
        return _decoder[1:]
    decoder = nvimgcodec.Decoder(
        device_id=nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY,
        max_num_cpu_threads=1,  # one loader worker, one core
        backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.CPU_ONLY)],
    )
    # EXIF orientation ignored, as simplejpeg, PIL's convert and torchvision's decode_jpeg do
    params = nvimgcodec.DecodeParams(apply_exif_orientation=False, color_spec=nvimgcodec.ColorSpec.SRGB)
    _decoder = (os.getpid(), nvimgcodec, decoder, params)
    return _decoder[1:]


def available() -> bool:
    return _load()[0] is not None


def whole_jpeg(data: bytes) -> bool:
    """The file ends with JPEG's end-of-image marker (allowing a little padding after it)."""
    return END_OF_IMAGE in data[-_TAIL:]


def decode_window(data: bytes, window: tuple[int, int, int, int]) -> np.ndarray | None:
    """The pixels of `window` = (top, left, bottom, right) of a JPEG, placed where they lie in an (bottom, right,
    3) uint8 RGB canvas whose other pixels are left undefined (the caller reads only the window); None when
    the backend is missing or cannot decode this window (the caller then decodes the whole file)."""
    nvimgcodec, decoder, params = _load() if enabled else (None, None, None)
    if nvimgcodec is None:
        return None
    top, left, bottom, right = window
    stream = nvimgcodec.CodeStream(data).get_sub_code_stream(
        region=nvimgcodec.Region(start=(top, left), end=(bottom, right))
    )
    image = decoder.decode(stream, params=params)
    if image is None:
        return None
    canvas = np.empty((bottom, right, 3), np.uint8)
    canvas[top:, left:] = np.asarray(image.cpu())
    return canvas
