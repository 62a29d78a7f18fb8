"""The DALI graphs of `data.loader=dali` (NVIDIA DALI, an optional extra: `pip install "vgg-lightning[dali]"`).

Nothing random happens in DALI: it is given each file's bytes and, per sample, the window of the original image
that the 224 crop covers, drawn by our loader's workers (`dali_inputs`). It decodes only that window (`decoders.image_slice`: libjpeg-turbo's region decode on the CPU, nvJPEG on the GPU's
JPEG engines with `backend=mixed`), resamples it to 224x224 with the full rescale's scale factors (an
antialiased bilinear `resize` whose region of interest is the crop in the window's coordinates), flips it, and
subtracts the mean RGB less the image's colour shift, into the training dtype and layout.

Importing this module needs neither DALI nor a GPU: DALI is imported when a graph is built.
"""

from __future__ import annotations

from collections.abc import Callable

from .options import CROP, DALI_INSTALL

# the per-sample arguments of a view, after its file's bytes (dali_inputs.DaliCollate makes them)
VIEW_ARGS = ("anchor", "shape", "roi_start", "roi_end", "mirror", "mean", "std")


def require_dali():
    """The `nvidia.dali` module, or an ImportError whose one line says how to install it."""
    try:
        import nvidia.dali as dali
    except ImportError as error:
        raise ImportError(f"data.loader=dali needs NVIDIA DALI: {DALI_INSTALL}") from error
    return dali


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
    """The DALI pipeline of 224 views: `source()` gives a batch's files and VIEW_ARGS (lists of per-sample arrays;
    see `dali_inputs.DaliCollate`) and raises StopIteration at the end of an epoch. Its one output is the batch of
    normalised views, (n, 224, 224, 3) when `channels_last` (a permute makes it a channels_last NCHW tensor
    without a copy), else (n, 3, 224, 224), in float16 or float32 (DALI has no bfloat16: under bf16 precision
    the first layer casts, as it would cast a float32 input)."""
    from nvidia.dali import fn, types

    pipe = new_pipeline(backend, batch_size, threads, prefetch, device_id)
    dtypes = [types.UINT8, types.INT32, types.INT32, types.FLOAT, types.FLOAT, types.INT32, types.FLOAT, types.FLOAT]
    with pipe:
        jpeg, anchor, shape, roi_start, roi_end, mirror, mean, std = fn.external_source(
            source=source, num_outputs=1 + len(VIEW_ARGS), batch=True, dtype=dtypes
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


def scaled_pipeline(
    source: Callable[[], tuple], backend: str, batch_size: int, threads: int, prefetch: int, device_id, scales: int
):
    """The DALI pipeline of evaluation views: each image decoded whole once and rescaled (antialiased bilinear)
    to every Q, uint8, (n, h, w, 3) per Q. `source()` gives the files and, per Q, `dali_inputs.scale_boxes`'s
    three."""
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
