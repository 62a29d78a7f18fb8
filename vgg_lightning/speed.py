"""What speed the machine allows: the `auto` rule of the speed switches, the default precision, and the GPU peaks
that model FLOP utilisation (MFU) is measured against."""

from __future__ import annotations

import torch

from .models import flops_per_image

# Dense bf16 tensor-core peaks, FLOP/s (no sparsity). Matched against torch.cuda.get_device_name().
PEAK_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "RTX 4090": 165e12,
}


def peak_flops(device: torch.device | str | None = None) -> float | None:
    """The device's dense bf16 peak, or None when it is not a GPU we know."""
    if not torch.cuda.is_available() or (device is not None and torch.device(device).type != "cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def train_flops_per_image(net) -> float:
    """Forward + backward: 3x the forward FLOPs (the convention of MFU figures)."""
    return 3.0 * flops_per_image(net)


def default_precision() -> str:
    """bf16 autocast with a GPU that has bf16 tensor cores; full fp32 elsewhere (CPU bf16 is slow)."""
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def on_here(setting) -> bool:
    """Whether a speed switch (true, false or `auto`) is on on this machine: `auto` is on where it helps, which
    is on a GPU."""
    return torch.cuda.is_available() if str(setting).lower() == "auto" else bool(setting)
