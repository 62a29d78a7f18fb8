"""What limits VGG-16 training MFU on an H100, without a GPU: a roofline estimate per weight layer.

    python benchmarks/vgg16_roofline.py                      # batch 256, bf16, 224x224, H100 SXM figures
    python benchmarks/vgg16_roofline.py --batch 512 --compiled --plot outputs/roofline_512.png

Each weight layer (conv1_1 ... conv5_3, fc6, fc7, fc8) costs 3x its forward FLOPs (torch's FlopCounterMode on a
meta-device net: shapes only) and moves at least its input, weights and output in bf16 forward, about twice that
backward; its time is the larger of FLOPs / (peak x --measured-matmul) and bytes / HBM bandwidth. conv1_1 has 3
input channels (K = 27), which cuDNN pads to --pad-channels for the tensor cores: the 'padded' column. The rest
of a step is memory-bound passes: eager PyTorch adds a conv's bias in a pass of its own (--compiled: fused into
the ReLU), ReLU, max-pool (int64 indices), dropout, autocast's weight casts, and SGD with momentum and weight
decay on fp32 parameters. All figures are estimates of a lower bound on time, not measurements.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vgg_lightning.models import build_vgg, count_parameters

BF16, FP32, INT64 = 2, 4, 8


@dataclass
class Row:
    name: str
    shape: str
    flops: float  # training FLOPs per batch, 3x forward (the MFU convention)
    padded: float  # the same at the channel count the tensor cores see
    bytes: float  # minimum HBM traffic per batch, forward + backward

    def time(self, matmul: float, bandwidth: float) -> float:
        return max(self.padded / matmul, self.bytes / bandwidth)

    def bound(self, matmul: float, bandwidth: float) -> str:
        return "compute" if self.padded / matmul >= self.bytes / bandwidth else "memory"


def counted(fn, *args):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = fn(*args)
    return out, counter.get_total_flops()


def layer_rows(config="D", batch=256, side=224, pad_channels=8, compiled=False) -> list[Row]:
    """One row per weight layer, then the memory-bound rest of a training step."""
    with torch.device("meta"):
        net, x = build_vgg(config), torch.empty(batch, 3, side, side)
    rows, rest = [], dict.fromkeys(("conv bias add", "ReLU", "max-pool", "dropout"), 0)
    for name, module in net.features.named_children():
        y, flops = counted(module, x)
        if isinstance(module, nn.Conv2d):
            cin = module.in_channels
            traffic = 3 * BF16 * (x.numel() + y.numel() + module.weight.numel() + module.bias.numel())
            shape = f"{cin}→{module.out_channels}, {y.shape[-1]}²"
            rows.append(Row(name, shape, 3 * flops, 3 * flops * -(-cin // pad_channels) * pad_channels / cin, traffic))
            rest["conv bias add"] += 3 * BF16 * y.numel()  # add_ (read, write); backward: grad's sum (read)
        elif isinstance(module, nn.ReLU):
            rest["ReLU"] += 5 * BF16 * y.numel()  # read, write; backward reads grad and output, writes grad
        elif isinstance(module, nn.MaxPool2d):  # read, write, indices out; backward: grad and indices in, grad out
            rest["max-pool"] += 2 * BF16 * (x.numel() + y.numel()) + 2 * INT64 * y.numel()
        x = y
    x = x.flatten(1)
    for name, fc in (("fc6", net.head.fc6), ("fc7", net.head.fc7), ("fc8", net.head.fc8)):
        weight = fc.weight.flatten(1)
        y, flops = counted(F.linear, x, weight, fc.bias)  # bias in cuBLASLt's epilogue
        traffic = 3 * BF16 * (x.numel() + y.numel() + weight.numel() + fc.bias.numel())
        rows.append(Row(name, f"{weight.shape[1]}→{weight.shape[0]}", 3 * flops, 3 * flops, traffic))
        if name != "fc8":
            rest["ReLU"] += 5 * BF16 * y.numel()
            rest["dropout"] += 5 * BF16 * y.numel()  # 2 bf16 + a bool mask, forward and backward
        x = y
    params = count_parameters(net)
    rest["autocast casts"] = (FP32 + BF16) * (2 * params + 3 * side * side * batch)  # weights there and back, images
    rest["SGD step (fp32)"] = 5 * FP32 * params  # read param, grad, momentum; write param, momentum
    if compiled:  # Inductor peels the bias off cuDNN's conv and adds it in the ReLU's pass
        del rest["conv bias add"]
    notes = {
        "conv bias add": "eager: own pass",
        "ReLU": "2 fwd + 3 bwd passes",
        "max-pool": "int64 indices",
        "dropout": "fc6, fc7",
        "autocast casts": "fp32↔bf16",
        "SGD step (fp32)": f"{params / 1e6:.0f}M",
    }
    return rows + [Row(name, notes[name], 0.0, 0.0, float(traffic)) for name, traffic in rest.items()]


def summary(rows: list[Row], batch: int, peak: float, bandwidth: float, matmul: float) -> dict:
    """Roofline-bound step time, images/s and the MFU it implies (3x forward FLOPs against the dense peak)."""
    step = sum(row.time(peak * matmul, bandwidth) for row in rows)
    gemms = sum(row.time(peak * matmul, bandwidth) for row in rows if row.flops)
    flops = sum(row.flops for row in rows) / batch
    return {"step_s": step, "images_per_s": batch / step, "mfu": batch / step * flops / peak,
            "gemm_only_mfu": batch / gemms * flops / peak, "train_flops_per_image": flops}  # fmt: skip


def table(rows: list[Row], batch: int, peak: float, bandwidth: float, matmul: float) -> str:
    step, total = summary(rows, batch, peak, bandwidth, matmul)["step_s"], sum(row.flops for row in rows)
    lines = ["| layer | shape | GFLOP train/img | padded | FLOP share | FLOP/byte | bound | time share |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        padded = f"{row.padded / batch / 1e9:.2f}" if row.padded != row.flops else ""
        gflop = f"{row.flops / batch / 1e9:.2f}" if row.flops else "-"
        lines.append(f"| {row.name} | {row.shape} | {gflop} | {padded} | {100 * row.flops / total:.1f}% | "
                     f"{row.flops / row.bytes:.0f} | {row.bound(peak * matmul, bandwidth)} | "
                     f"{100 * row.time(peak * matmul, bandwidth) / step:.1f}% |")  # fmt: skip
    return "\n".join(lines)


def plot(rows: list[Row], args, path: Path) -> None:
    from vgg_lightning.plots import plt, save  # Agg, the report's DPI

    fig, (roof, bars) = plt.subplots(1, 2, figsize=(13, 5.5))
    rate = args.peak * args.measured_matmul
    for top, style, label in ((args.peak, "k--", "dense bf16 peak"), (rate, "k-", "measured matmul")):
        intensity = [10, top / args.bandwidth, 1e4]  # the ridge where memory stops limiting
        roof.loglog(intensity, [min(top, i * args.bandwidth) / 1e12 for i in intensity], style, label=label)
    for n, row in enumerate(row for row in rows if row.flops):
        i = row.flops / row.bytes
        roof.plot(i, min(rate, i * args.bandwidth) / 1e12, "o")
        roof.annotate(row.name, (i, min(rate, i * args.bandwidth) / 1e12), (0, -12 - 9 * (n % 3)),
                      textcoords="offset points", fontsize=7, ha="center")  # fmt: skip
    roof.set(xlabel="arithmetic intensity (FLOP/byte)", ylabel="attainable TFLOP/s", title="roofline")
    roof.legend()
    times = [row.time(rate, args.bandwidth) * 1e3 for row in rows]
    colours = ["tab:blue" if row.bound(rate, args.bandwidth) == "compute" else "tab:red" for row in rows]
    bars.barh([row.name for row in rows][::-1], times[::-1], color=colours[::-1])
    bars.set(xlabel=f"ms per step of {args.batch} (blue: compute-bound, red: memory-bound)", title="time")
    path.parent.mkdir(parents=True, exist_ok=True)
    save(fig, f"VGG-{args.config} training, batch {args.batch}, bf16: roofline on {args.device}", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="D")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--peak", type=float, default=989e12, help="dense bf16 FLOP/s (H100 SXM)")
    parser.add_argument("--bandwidth", type=float, default=3.35e12, help="HBM bytes/s (H100 SXM, HBM3)")
    parser.add_argument("--measured-matmul", type=float, default=0.80, help="a big bf16 GEMM's share of --peak")
    parser.add_argument("--pad-channels", type=int, default=8, help="cuDNN's channel padding for conv1_1")
    parser.add_argument("--compiled", action="store_true", help="torch.compile: the conv bias add fused away")
    parser.add_argument("--device", default="H100 SXM", help="the name on the plot")
    parser.add_argument("--plot", type=Path, default=Path("outputs/vgg16_roofline.png"))
    args = parser.parse_args()
    rows = layer_rows(args.config, args.batch, args.side, args.pad_channels, args.compiled)
    figures = (args.batch, args.peak, args.bandwidth, args.measured_matmul)
    mode = "compiled" if args.compiled else "eager"
    print(
        f"VGG-{args.config}, batch {args.batch}, {args.side}x{args.side}, bf16, {mode}; "
        f"{args.peak / 1e12:.0f} TFLOP/s x {args.measured_matmul:.2f}, {args.bandwidth / 1e12:.2f} TB/s\n"
    )
    print(table(rows, *figures))
    total, ideal = summary(rows, *figures), summary(rows, args.batch, args.peak, args.bandwidth, 1.0)
    print(f"\ntraining FLOPs per image: {total['train_flops_per_image'] / 1e9:.1f} G (3x forward)")
    print(
        f"roofline-bound step: {total['step_s'] * 1e3:.1f} ms = {total['images_per_s']:.0f} images/s, "
        f"MFU ceiling {100 * total['mfu']:.0f}% (GEMMs alone: {100 * total['gemm_only_mfu']:.0f}%)"
    )
    print(f"with GEMMs at 100% of peak: {ideal['images_per_s']:.0f} images/s, MFU ceiling {100 * ideal['mfu']:.0f}%")
    try:
        plot(rows, args, args.plot)
        print(f"plot: {args.plot}")
    except ImportError:
        print("no matplotlib: no plot")


if __name__ == "__main__":
    main()
