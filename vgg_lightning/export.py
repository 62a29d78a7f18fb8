"""`python -m vgg_lightning.export CKPT --to onnx|torchscript|torchvision --out FILE [--score-map]`

- `onnx`: the classifier with a dynamic batch (input `images` (N, 3, 224, 224), output `logits`); with
  `--score-map` the fully-convolutional net (`VGG.score_map`) with a dynamic batch, height and width (any side
  >= 224; output `scores` (N, classes, h, w)). Needs `pip install -e ".[export]"` (onnx, onnxruntime).
- `torchscript`: the same modules traced (`torch.jit.load(FILE)` runs them without vgg-lightning).
- `torchvision`: the state dict that `torchvision.models.vgg11/13/16/19(num_classes=...)` loads, for A/B/D/E.

Each export checks itself before it says it succeeded: the exported model, loaded back from FILE (through
onnxruntime for ONNX), must give the checkpoint's outputs on random inputs of another batch size (and another
height and width for a score map) than the export saw, within `ATOL` + `RTOL` x |output|. The file is written
under a temporary name and renamed to FILE only then; an existing FILE is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoints.nets import net_from_checkpoint
from .checkpoints.read import CheckpointError, read_checkpoint, read_vgg_checkpoint
from .errors import one_line_errors
from .models import TORCHVISION, VGG, from_torchvision, to_torchvision
from .models.interop import TORCHVISION_NAMES

FORMATS = ("onnx", "torchscript", "torchvision")
ATOL, RTOL = 1e-4, 1e-4  # float32 on the CPU; the runtimes reorder the sums of a conv
SIDE = 224


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


def export_torchscript(module: nn.Module, example: torch.Tensor, path: str, score_map: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit.trace's deprecation notice; the traced graph has no branches
        torch.jit.save(torch.jit.trace(module, example), path)


def run_torchscript(path: str, x: torch.Tensor) -> torch.Tensor:
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
    difference = (found - expected).abs()
    if found.shape != expected.shape or bool((difference > ATOL + RTOL * expected.abs()).any()):
        raise ExportError(
            f"the exported model disagrees with the checkpoint: output {tuple(found.shape)} vs "
            f"{tuple(expected.shape)}, max |difference| {difference.max().item():.3g} (tolerance {ATOL} + {RTOL} x |output|)"
        )
    return difference.max().item()


def export(checkpoint: str, to: str, out: str, score_map: bool = False) -> str:
    """Export a checkpoint's net to `out`, checked; returns what was checked, in words."""
    if to not in FORMATS:
        raise ExportError(f"--to {to!r}: choose one of {', '.join(FORMATS)}")
    if os.path.exists(out):
        raise ExportError(f"--out {out!r} exists: choose a new file (an export never overwrites one)")
    if to == "onnx":
        try:
            import onnx  # noqa: F401  (torch.onnx.export writes through it)
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise ExportError(f'ONNX export needs onnx and onnxruntime ({error}): pip install -e ".[export]"') from None
    net, _ = net_from_checkpoint(read_vgg_checkpoint(checkpoint))
    net = net.eval()
    if to == "torchvision":
        if score_map:
            raise ExportError("--score-map: a torchvision state dict holds weights only; use --to onnx or torchscript")
        if net.config not in TORCHVISION:
            raise ExportError(f"config {net.config}: torchvision has VGGs for {', '.join(TORCHVISION)} only")
    module = ScoreMap(net).eval() if score_map else net
    example, sample = inputs(score_map)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    staging = f"{out}.partial{Path(out).suffix}"
    # a folder that takes no file (read-only, forbidden) is said now, as an OSError naming it: the exporters
    # (torch.jit, torch.onnx) would say it later, as a RuntimeError
    open(staging, "wb").close()
    try:
        with torch.no_grad():
            expected = module(sample)
            if to == "onnx":
                export_onnx(module, example, staging, score_map)
                found = run_onnx(staging, sample)
            elif to == "torchscript":
                export_torchscript(module, example, staging, score_map)
                found = run_torchscript(staging, sample)
            else:
                export_torchvision(net, staging)
                found = run_torchvision(staging, sample, net)
            difference = check(found, expected)
        os.replace(staging, out)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    what = "score map" if score_map else "logits"
    return (
        f"exported config {net.config} (width {net.width}, {net.num_classes} classes) to {to}: {out}\n"
        f"checked: {what} of a {tuple(sample.shape)} input (exported with {tuple(example.shape)}) equal the "
        f"checkpoint's within {ATOL} + {RTOL} x |output| (max |difference| {difference:.2g})"
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
