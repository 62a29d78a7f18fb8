"""The DALI graphs of `data.loader=dali` (NVIDIA DALI, an optional extra: `pip install "vgg-lightning[dali]"`).

Nothing random happens in DALI. Our loader's workers read each file, parse its header and draw its view
(`transforms.sample_crop`, `pca_alpha`: keyed by (seed, epoch, sample index) exactly as on the CPU path); DALI is
given the bytes and, per sample, the window of the original image that the 224 crop covers (`crop_windows`). It
decodes only that window (`decoders.image_slice`: libjpeg-turbo's region decode on the CPU, nvJPEG on the GPU's
JPEG engines with `backend=mixed`), resamples it to 224x224 with the full rescale's scale factors (an
antialiased bilinear `resize` whose region of interest is the crop in the window's coordinates), flips it, and
subtracts the mean RGB less the image's colour shift, into the training dtype and layout.

Importing this module needs neither DALI nor a GPU: DALI is imported when a graph is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .settings import CROP, DALI_INSTALL

if TYPE_CHECKING:
    from .transforms import BatchNormalizer

# the external source's per-sample inputs, in the order crop_inputs gives them
VIEW_INPUTS = ("jpeg", "anchor", "shape", "roi_start", "roi_end", "mirror", "mean", "std")


def require_dali():
    """The `nvidia.dali` module, or an ImportError whose one line says how to install it."""
    try:
        import nvidia.dali as dali
    except ImportError as error:
        raise ImportError(f"data.loader=dali needs NVIDIA DALI: {DALI_INSTALL}") from error
    return dali


def rescaled_sizes(height: np.ndarray, width: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`transforms.rescaled_size` for arrays of images: the size after an isotropic rescale to shorter side
    `side`, the longer side truncated as torchvision's `Resize(side)` does."""
    tall = height > width
    long = (side * np.where(tall, height, width) / np.where(tall, width, height)).astype(np.int64)
    return np.where(tall, long, side), np.where(tall, side, long)


def crop_windows(plans: np.ndarray, crop: int = CROP) -> dict[str, np.ndarray]:
    """Per view of `plans` ((n, 6) rows of height, width, S, top, left, flip, as `device_decode.encoded_item`
    gives them): the window of the original image to decode (`anchor`, `shape`: (y, x) pixels) and the crop
    inside that window (`roi_start`, `roi_end`: float (y, x)).

    The crop's rows [top, top + 224) of the image rescaled to S are rows [top * f, (top + 224) * f) of the
    original, f = H / H_S; the window adds the antialiasing filter's reach, max(f, 1) pixels, and one more
    for rounding, on each side (as `transforms.resized_region` does), so that every source pixel that
    contributes to the crop is decoded."""
    height, width, side, top, left, _ = (plans[:, k].astype(np.int64) for k in range(6))
    rescaled_h, rescaled_w = rescaled_sizes(height, width, side)
    rows, cols = height / rescaled_h, width / rescaled_w  # original pixels per rescaled pixel
    start = np.stack([top * rows, left * cols], axis=1)
    end = np.stack([(top + crop) * rows, (left + crop) * cols], axis=1)
    reach = np.maximum(np.stack([rows, cols], axis=1), 1.0) + 1
    anchor = np.maximum(np.floor(start - reach), 0).astype(np.int64)
    far = np.minimum(np.ceil(end + reach), np.stack([height, width], axis=1)).astype(np.int64)
    return {
        "anchor": anchor.astype(np.int32),
        "shape": (far - anchor).astype(np.int32),
        "roi_start": (start - anchor).astype(np.float32),
        "roi_end": (end - anchor).astype(np.float32),
    }


def crop_inputs(batch: dict, positions: list[int], normalizer: BatchNormalizer) -> tuple:
    """DALI's per-sample inputs (VIEW_INPUTS) for the encoded samples at `positions`."""
    plans = batch["plan"][positions].numpy()
    windows = crop_windows(plans)
    alpha = batch["pca_alpha"][positions] if "pca_alpha" in batch else None
    mean = normalizer.offsets(alpha).reshape(-1, 3).expand(len(positions), 3).numpy()
    std = normalizer.std.reshape(3).numpy()
    return (
        [batch["jpeg"][p].numpy() for p in positions],
        list(windows["anchor"]),
        list(windows["shape"]),
        list(windows["roi_start"]),
        list(windows["roi_end"]),
        [np.array(flip, np.int32) for flip in plans[:, 5]],
        list(np.ascontiguousarray(mean)),
        [std] * len(positions),
    )


def new_pipeline(backend: str, batch_size: int, threads: int, prefetch: int, device_id: int | None):
    dali = require_dali()
    return dali.Pipeline(
        batch_size=batch_size,
        num_threads=threads,
        device_id=device_id if backend == "mixed" else None,
        prefetch_queue_depth=prefetch,
        exec_dynamic=True,  # outputs on the consumer's CUDA stream: no host wait for the GPU
    )


def view_pipeline(
    source: Callable[[], tuple],
    backend: str,
    batch_size: int,
    threads: int,
    prefetch: int,
    device_id: int | None,
    float16: bool = False,
    channels_last: bool = False,
):
    """The DALI pipeline of 224 views: `source()` gives a batch's VIEW_INPUTS (lists of per-sample arrays; see
    `dali_loader.crop_inputs`) and raises StopIteration at the end of an epoch. Its one output is the batch of
    normalised views, (n, 224, 224, 3) when `channels_last` (a permute makes it a channels_last NCHW tensor
    without a copy), else (n, 3, 224, 224), in float16 or float32 (DALI has no bfloat16: under bf16 precision
    the first layer casts, as it would cast a float32 input)."""
    from nvidia.dali import fn, types

    pipe = new_pipeline(backend, batch_size, threads, prefetch, device_id)
    dtypes = [types.UINT8, types.INT32, types.INT32, types.FLOAT, types.FLOAT, types.INT32, types.FLOAT, types.FLOAT]
    with pipe:
        jpeg, anchor, shape, roi_start, roi_end, mirror, mean, std = fn.external_source(
            source=source, num_outputs=len(VIEW_INPUTS), batch=True, dtype=dtypes
        )
        image = fn.decoders.image_slice(
            jpeg,
            anchor,
            shape,
            device=backend,
            output_type=types.RGB,
            normalized_anchor=False,
            normalized_shape=False,
            axis_names="HW",
            adjust_orientation=False,  # the CPU path does not turn images by their EXIF tag: nor does DALI
            jpeg_fancy_upsampling=True,  # nvJPEG upsamples chroma as libjpeg-turbo (the CPU path) does
        )
        image = fn.resize(
            image,
            size=[CROP, CROP],
            roi_start=roi_start,
            roi_end=roi_end,
            roi_relative=False,
            antialias=True,
            interp_type=types.INTERP_LINEAR,
        )
        image = fn.crop_mirror_normalize(
            image,
            mean=mean,
            std=std,
            mirror=mirror,
            dtype=types.FLOAT16 if float16 else types.FLOAT,
            output_layout="HWC" if channels_last else "CHW",
        )
        pipe.set_outputs(image)
    return pipe


def jpeg_complete(data: np.ndarray) -> bool:
    """Whether a JPEG's bytes end with its end-of-image marker (trailing padding allowed): a truncated file does
    not, and DALI would decode its missing part as grey where the CPU path refuses the file."""
    tail = bytes(data[-64:]) if len(data) else b""
    return b"\xff\xd9" in tail


def scale_boxes(sizes: np.ndarray, side: int, max_aspect: float | None) -> dict[str, np.ndarray]:
    """Per image of `sizes` ((n, 2) heights and widths): what an evaluation view at Q = `side` keeps
    (`transforms.bounded_box` of the image rescaled to Q) as a region of the original (`roi_start`, `roi_end`:
    float (y, x)) and the view's size (`size`: (h, w))."""
    from .transforms import bounded_box

    height, width = sizes[:, 0].astype(np.int64), sizes[:, 1].astype(np.int64)
    rescaled = np.stack(rescaled_sizes(height, width, np.full_like(height, side)), axis=1)
    boxes = np.array([bounded_box(tuple(size), max_aspect) for size in rescaled.tolist()], np.float64).reshape(-1, 4)
    step = sizes / rescaled  # original pixels per rescaled pixel
    return {
        "roi_start": (boxes[:, :2] * step).astype(np.float32),
        "roi_end": ((boxes[:, :2] + boxes[:, 2:]) * step).astype(np.float32),
        "size": boxes[:, 2:].astype(np.float32),
    }


def scaled_pipeline(
    source: Callable[[], tuple], backend: str, batch_size: int, threads: int, prefetch: int, device_id, scales: int
):
    """The DALI pipeline of evaluation views: each image decoded whole once and rescaled (antialiased bilinear)
    to every Q, uint8, (n, h, w, 3) per Q. `source()` gives the bytes and, per Q, `scale_boxes`'s three."""
    from nvidia.dali import fn, types

    pipe = new_pipeline(backend, batch_size, threads, prefetch, device_id)
    with pipe:
        jpeg, *boxes = fn.external_source(
            source=source, num_outputs=1 + 3 * scales, batch=True, dtype=[types.UINT8] + [types.FLOAT] * 3 * scales
        )
        image = fn.decoders.image(
            jpeg, device=backend, output_type=types.RGB, adjust_orientation=False, jpeg_fancy_upsampling=True
        )
        views = []
        for q in range(scales):
            roi_start, roi_end, size = boxes[3 * q : 3 * q + 3]
            views.append(
                fn.resize(
                    image,
                    size=size,
                    roi_start=roi_start,
                    roi_end=roi_end,
                    roi_relative=False,
                    antialias=True,
                    interp_type=types.INTERP_LINEAR,
                )
            )
        pipe.set_outputs(*views)
    return pipe
