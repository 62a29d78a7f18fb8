"""Speed switches (channels_last, torch.compile) and model FLOP utilisation (MFU)."""

from __future__ import annotations

import logging

import lightning as L
import torch

from .models import flops_per_image

log = logging.getLogger(__name__)

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


def switched_on(setting) -> bool:
    """`auto` means: on where it helps, which is on a GPU."""
    return torch.cuda.is_available() if str(setting).lower() == "auto" else bool(setting)


class GPUSpeedups(L.Callback):
    """channels_last weights (cuDNN's fast NHWC kernels; inputs follow the weights) and torch.compile of the
    net's forward. The net's parameters and state-dict keys stay as they are, so checkpoints do not change."""

    def __init__(self, channels_last=True, compile="auto") -> None:
        self.channels_last, self.compile = switched_on(channels_last), switched_on(compile)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", None)
        if net is None:  # not a VGGClassifier (an evaluator holding several nets does its own)
            return
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        if self.compile and not getattr(net, "_compiled", False):
            net.forward = torch.compile(net.forward)
            net._compiled = True
        log.info("speed-ups: channels_last=%s compile=%s", self.channels_last, self.compile)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Hand the net back eager: the evaluation after training feeds it images of every shape, and a
        compiled forward would compile anew for each."""
        net = getattr(pl_module, "net", None)
        if net is not None and getattr(net, "_compiled", False):
            del net.forward  # the instance attribute set in setup: VGG.forward shows through again
            net._compiled = False
