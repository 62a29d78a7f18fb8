"""`python -m vgg_lightning.models.summary CONFIG [--side 224] [--json] [--png FILE]`: where the memory and the
weights of a net are, layer by layer.

Each layer of the table (conv with its ReLU, LRN, pool, fc) gets its output shape, its activations (output
elements), its parameters with and without biases, its multiply-adds and its receptive field (the side of the
input window one output unit sees). The totals count every layer's output once and the input too: for D at 224,
138,357,544 parameters, 15,237,608 activations (61 MB in fp32 per image, forward only) and 15.47 G
multiply-adds. ReLUs and dropout work in place, so they add no activations of their own; the FC layers run as
the convs they are stored as, so at a side above 224 they give a score map (dense evaluation).

The figures come from the net's own modules, built on the meta device (no memory, no compute).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .vgg import INPUT_SIZE, VGG, build_vgg, out_side


@dataclass(frozen=True)
class LayerSummary:
    name: str
    kind: str  # "input", "conv", "lrn", "pool" or "fc"
    shape: tuple[int, int, int]  # (channels, height, width) of the output
    activations: int
    parameters: int
    weights: int  # parameters without the biases
    multiply_adds: int
    receptive_field: int  # side, in input pixels, of what one output unit sees


def _ints(value) -> tuple[int, int, int]:
    """kernel, stride, padding of a conv or pool (square)."""
    kernel, stride, padding = (
        v if isinstance(v, int) else v[0] for v in (value.kernel_size, value.stride, value.padding)
    )
    return kernel, stride, padding


def summarize(net: VGG, side: int = INPUT_SIZE) -> list[LayerSummary]:
    """One row per layer of `net` for a `side` x `side` RGB input, the input first."""
    channels, size, field, jump = 3, side, 1, 1
    rows = [LayerSummary("input", "input", (3, side, side), 3 * side * side, 0, 0, 0, 1)]
    layers = [(n, m) for n, m in net.features.named_children() if not isinstance(m, nn.ReLU)]
    layers += [(name, getattr(net.head, name)) for name in ("fc6", "fc7", "fc8")]
    for name, module in layers:
        kind, weights, biases, macs = "lrn", 0, 0, 0
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            kernel, stride, _ = _ints(module)
            size = out_side(module, size)
            if size < 1:
                raise ValueError(
                    f"a {side}x{side} input leaves no map for {name}: the side must be at least {net.head.min_side}"
                )
            field, jump = field + (kernel - 1) * jump, jump * stride
            kind = "pool"
        if isinstance(module, nn.Conv2d):
            kind = "fc" if name.startswith("fc") else "conv"
            channels = module.out_channels
            weights = module.weight.numel()
            biases = module.bias.numel() if module.bias is not None else 0
            macs = weights * size * size  # each weight is used once per output position
        rows.append(
            LayerSummary(
                name, kind, (channels, size, size), channels * size * size, weights + biases, weights, macs, field
            )
        )
    return rows


def totals(rows: list[LayerSummary]) -> dict:
    return {
        "parameters": sum(r.parameters for r in rows),
        "weights": sum(r.weights for r in rows),
        "activations": sum(r.activations for r in rows),
        "multiply_adds": sum(r.multiply_adds for r in rows),
    }


def summary(config: str, side: int = INPUT_SIZE, num_classes: int = 1000, width: float = 1.0) -> dict:
    """The per-layer rows and the totals, as `--json` prints them."""
    with torch.device("meta"):
        net = build_vgg(config, num_classes=num_classes, width=width)
    rows = summarize(net, side)
    return {
        "config": net.config,
        "side": side,
        "num_classes": num_classes,
        "width": width,
        "layers": [asdict(row) for row in rows],
        **totals(rows),
    }


def text_table(result: dict) -> str:
    header = (
        f"{'layer':<8} {'output':>14} {'activations':>12} {'params':>12} {'weights':>12} {'mult-adds':>15} {'RF':>5}"
    )
    lines = [f"{result['config']} at {result['side']}x{result['side']}, {result['num_classes']} classes", header]
    for r in result["layers"]:
        shape = "x".join(map(str, (r["shape"][1], r["shape"][2], r["shape"][0])))
        lines.append(
            f"{r['name']:<8} {shape:>14} {r['activations']:>12,} {r['parameters']:>12,} {r['weights']:>12,} "
            f"{r['multiply_adds']:>15,} {r['receptive_field']:>5}"
        )
    lines.append(
        f"{'total':<8} {'':>14} {result['activations']:>12,} {result['parameters']:>12,} {result['weights']:>12,} "
        f"{result['multiply_adds']:>15,}"
    )
    lines.append(
        f"{result['parameters'] / 1e6:.1f} M parameters, {result['multiply_adds'] / 1e9:.2f} G multiply-adds, "
        f"{result['activations'] / 1e6:.1f} M activations ({result['activations'] * 4 / 1e6:.0f} MB per image in "
        f"fp32, forward only)"
    )
    return "\n".join(lines)


def plot(result: dict, path: str) -> str:
    """Two bar charts over the layers: activations (where the memory is) and parameters (where the weights are)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in result["layers"]]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(names)), 6.5), sharex=True)
    for ax, key, colour in zip(axes, ("activations", "parameters"), ("tab:blue", "tab:orange")):
        values = [r[key] / 1e6 for r in result["layers"]]
        ax.bar(names, values, color=colour)
        ax.set_ylabel(f"{key} (M)")
        ax.set_title(f"{key}: {result[key] / 1e6:.1f} M in all")
    axes[-1].tick_params(axis="x", rotation=90)
    fig.suptitle(f"VGG {result['config']} at {result['side']}x{result['side']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vgg_lightning.models.summary", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("config", help="A, A-LRN, B, C, D, E, B-shallow, vgg_f, vgg_m, vgg_s")
    parser.add_argument("--side", type=int, default=INPUT_SIZE, help="input side in pixels (default 224)")
    parser.add_argument("--classes", type=int, default=1000, help="classes of fc8 (default 1000)")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1.0, the paper)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--png", metavar="FILE", help="also write a bar chart of activations and parameters")
    args = parser.parse_args(argv)
    try:
        result = summary(args.config, args.side, args.classes, args.width)
    except ValueError as error:  # an unknown config, or an input too small for fc6
        parser.error(str(error))
    print(json.dumps(result, indent=1) if args.json else text_table(result))
    if args.png:
        print(f"plot: {plot(result, args.png)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
