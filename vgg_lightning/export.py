"""`python -m vgg_lightning.export CKPT --to onnx|torchscript|torchvision --out FILE [--score-map]`

- `onnx`: the classifier with a dynamic batch (input `images` (N, 3, 224, 224), output `logits`); with
  `--score-map` the fully-convolutional net (`VGG.score_map`) with a dynamic batch, height and width (any side
  >= 224; output `scores` (N, classes, h, w)). Needs `pip install -e ".[export]"` (onnx, onnxruntime).
- `torchscript`: the same modules traced (`torch.jit.load(FILE)` runs them without vgg-lightning).
- `torchvision`: the state dict that `torchvision.models.vgg11/13/16/19(num_classes=...)` loads, for A/B/D/E.

Each export carries what a user outside this package needs to feed the net and read its outputs (`metadata`:
the class names in output order, the input scaling as a mean and std per RGB channel on the 0-255 scale, the
input layout, the test scale Q): in the ONNX file's `metadata_props`, in the TorchScript file as its extra
file `metadata.json` (`torch.jit.load(FILE, _extra_files={"metadata.json": ""})`), and beside the
torchvision file as FILE.json.

Each export checks itself before it says it succeeded: the exported model, loaded back from FILE (through
onnxruntime for ONNX), must give the checkpoint's outputs on random inputs of another batch size (and another
height and width for a score map) than the export saw, within `ATOL` + `RTOL` x |output|. The file is written
under a temporary name and renamed to FILE only then; an existing FILE is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .checkpoints.nets import net_from_checkpoint
from .checkpoints.read import CheckpointError, checkpoint_classes, read_checkpoint, read_vgg_checkpoint
from .data.options import default_test_scale
from .data.transforms import BatchNormalizer
from .errors import one_line_errors
from .models import TORCHVISION, VGG, from_torchvision, to_torchvision
from .models.torchvision_files import TORCHVISION_NAMES

FORMATS = ("onnx", "torchscript", "torchvision")
ATOL, RTOL = 1e-4, 1e-4  # float32 on the CPU; the runtimes reorder the sums of a conv
SIDE = 224
EXTRA_FILE = "metadata.json"  # the metadata inside a TorchScript file


class ExportError(RuntimeError):
    """An export that cannot be made, or whose check failed; the message says which and why."""


class ScoreMap(nn.Module):
    """`VGG.score_map` as a module's forward, for the exporters."""

    def __init__(self, net: VGG) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.score_map(x)


def inputs(score_map: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the export sees, what it is checked on): another batch size, and for a score map another shape."""
    generator = torch.Generator().manual_seed(0)
    if score_map:
        return torch.randn(2, 3, 256, 288, generator=generator), torch.randn(3, 3, 320, 256, generator=generator)
    return torch.randn(2, 3, SIDE, SIDE, generator=generator), torch.randn(3, 3, SIDE, SIDE, generator=generator)


def metadata(hparams: Mapping, net: VGG, score_map: bool) -> dict:
    """What the exported net expects and gives: the class names in output order, an input `(pixel - mean) /
    std` per RGB channel with pixels on the 0-255 scale, in NCHW, and the view of an image at the test scale Q."""
    normalizer = BatchNormalizer(hparams.get("normalize") or "paper")
    q = int(hparams.get("test_scale") or default_test_scale(hparams.get("train_scale") or SIDE))
    view = "the whole rescaled image (any side >= 224)" if score_map else f"its centre {SIDE}x{SIDE} crop"
    return {
        "classes": checkpoint_classes({"hyper_parameters": hparams}),
        "normalize": normalizer.normalize,
        "mean": [round(v, 4) for v in normalizer.mean.flatten().tolist()],
        "std": [round(v, 4) for v in normalizer.std.flatten().tolist()],
        "input": "float32 images N x 3 x H x W (NCHW), RGB, each value (pixel - mean) / std, pixels in 0-255",
        "input_layout": "NCHW",
        "channel_order": "RGB",
        "test_scale": q,
        "preprocess": f"rescale the smaller side to test_scale ({q}), then take {view}",
        "output": "scores: N x classes x h x w (average them over h, w)" if score_map else "logits: N x classes",
        "config": net.config,
        "width": net.width,
        "num_classes": net.num_classes,
        "dataset": hparams.get("dataset"),
        "producer": "vgg-lightning",
    }


def add_onnx_metadata(path: str, props: Mapping) -> None:
    """ONNX's metadata_props hold strings: lists and numbers in JSON."""
    import onnx

    model = onnx.load(path)
    onnx.helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()})
    onnx.save(model, path)


def export_onnx(module: nn.Module, example: torch.Tensor, path: str, score_map: bool) -> None:
    output = "scores" if score_map else "logits"
    axes = {0: "batch", 2: "height", 3: "width"} if score_map else {0: "batch"}
    with warnings.catch_warnings():
        # the TorchScript-based exporter: a plain conv net needs nothing newer, and it is 10x faster here
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            path,
            input_names=["images"],
            output_names=[output],
            dynamic_axes={"images": axes, output: {0: "batch", 2: "h", 3: "w"} if score_map else {0: "batch"}},
            dynamo=False,
        )


def run_onnx(path: str, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def export_torchscript(module: nn.Module, example: torch.Tensor, path: str, score_map: bool, props: Mapping) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit.trace's deprecation notice; the traced graph has no branches
        torch.jit.save(torch.jit.trace(module, example), path, _extra_files={EXTRA_FILE: json.dumps(props)})


def run_torchscript(path: str, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit.load's deprecation notice: reading back is how its users load it
        return torch.jit.load(path, map_location="cpu")(x)


def export_torchvision(net: VGG, path: str) -> None:
    torch.save(to_torchvision(net), path)


def run_torchvision(path: str, x: torch.Tensor, net: VGG) -> torch.Tensor:
    """torchvision's own VGG on the file at width 1; a narrow net's file (which torchvision's fixed 4096-wide
    classifier cannot hold) read back by `from_torchvision`, itself tested against torchvision."""
    state = read_checkpoint(path)
    if net.width == 1.0:
        import torchvision

        model = getattr(torchvision.models, TORCHVISION_NAMES[net.config])(weights=None, num_classes=net.num_classes)
        model.load_state_dict(state)
    else:
        model = from_torchvision(state, net.config)
    return model.eval()(x)


def check(found: torch.Tensor, expected: torch.Tensor) -> float:
    if not bool(torch.isfinite(expected).all()):
        raise ExportError("the checkpoint's net gives outputs that are not finite (NaN or inf): nothing to export")
    difference = (found - expected).abs()
    # written so that a NaN fails: it is neither within the tolerance nor beyond it
    if found.shape != expected.shape or not bool((difference <= ATOL + RTOL * expected.abs()).all()):
        raise ExportError(
            f"the exported model disagrees with the checkpoint: output {tuple(found.shape)} vs "
            f"{tuple(expected.shape)}, max |difference| {difference.max().item():.3g} (tolerance {ATOL} + {RTOL} x |output|)"
        )
    return difference.max().item()


def write_export(to: str, module: nn.Module, net: VGG, path: str, example: torch.Tensor, score_map: bool,
                 props: Mapping) -> None:  # fmt: skip
    """Write the export to `path`, the metadata inside where the format holds any."""
    if to == "onnx":
        export_onnx(module, example, path, score_map)
        add_onnx_metadata(path, props)
    elif to == "torchscript":
        export_torchscript(module, example, path, score_map, props)
    else:
        export_torchvision(net, path)


def read_back(to: str, path: str, sample: torch.Tensor, net: VGG) -> torch.Tensor:
    """What the file, loaded back as its users load it, gives on `sample`."""
    if to == "onnx":
        return run_onnx(path, sample)
    if to == "torchscript":
        return run_torchscript(path, sample)
    return run_torchvision(path, sample, net)


def sidecar(out: str, to: str) -> str | None:
    """Where the metadata goes beside a file that holds none of its own (torchvision's state dict)."""
    return f"{out}.json" if to == "torchvision" else None


def export(checkpoint: str, to: str, out: str, score_map: bool = False) -> str:
    """Export a checkpoint's net to `out` with its metadata, checked; returns what was checked, in words."""
    if to not in FORMATS:
        raise ExportError(f"--to {to!r}: choose one of {', '.join(FORMATS)}")
    for path in filter(None, (out, sidecar(out, to))):
        if os.path.exists(path):
            raise ExportError(f"--out {path!r} exists: choose a new file (an export never overwrites one)")
    if to == "onnx":
        try:
            import onnx  # noqa: F401  (torch.onnx.export writes through it)
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise ExportError(f'ONNX export needs onnx and onnxruntime ({error}): pip install -e ".[export]"') from None
    saved = read_vgg_checkpoint(checkpoint)
    net = net_from_checkpoint(saved)[0].eval()
    if to == "torchvision":
        if score_map:
            raise ExportError("--score-map: a torchvision state dict holds weights only; use --to onnx or torchscript")
        if net.config not in TORCHVISION:
            raise ExportError(f"config {net.config}: torchvision has VGGs for {', '.join(TORCHVISION)} only")
    module = ScoreMap(net).eval() if score_map else net
    example, sample = inputs(score_map)
    props = metadata(saved["hyper_parameters"], net, score_map)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    staging = f"{out}.partial{Path(out).suffix}"
    # a folder that takes no file (read-only, forbidden) is said now, as an OSError naming it: the exporters
    # (torch.jit, torch.onnx) would say it later, as a RuntimeError
    open(staging, "wb").close()
    try:
        with torch.no_grad():
            expected = module(sample)
            write_export(to, module, net, staging, example, score_map, props)
            difference = check(read_back(to, staging, sample, net), expected)
        if sidecar(out, to):
            Path(f"{staging}.json").write_text(json.dumps(props, indent=1) + "\n")
            os.replace(f"{staging}.json", sidecar(out, to))
        os.replace(staging, out)
    finally:
        for path in (staging, f"{staging}.json"):
            if os.path.exists(path):
                os.remove(path)
    what = "score map" if score_map else "logits"
    where = f"beside it in {sidecar(out, to)}" if sidecar(out, to) else "inside it"
    classes = props["classes"]
    return (
        f"exported config {net.config} (width {net.width}, {net.num_classes} classes) to {to}: {out}\n"
        f"checked: {what} of a {tuple(sample.shape)} input (exported with {tuple(example.shape)}) equal the "
        f"checkpoint's within {ATOL} + {RTOL} x |output| (max |difference| {difference:.2g})\n"
        f"metadata ({where}): {len(classes)} classes ({', '.join(classes[:3])}{', ...' if len(classes) > 3 else ''}"
        f"); {props['input']}: mean {props['mean']}, std {props['std']}; {props['preprocess']}"
    )


@one_line_errors(ExportError, CheckpointError, code=1)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vgg_lightning.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a vgg-lightning checkpoint (e.g. RUN/checkpoints/last.ckpt)")
    parser.add_argument("--to", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="the file to write (never overwritten)")
    parser.add_argument("--score-map", action="store_true", help="the fully-convolutional net, any H, W >= 224")
    args = parser.parse_args(argv)
    print(export(args.checkpoint, args.to, args.out, args.score_map))
    return 0


if __name__ == "__main__":
    sys.exit(main())
