"""The roofline estimate of benchmarks/vgg16_roofline.py: shapes on the meta device, so it runs on any CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from vgg_lightning.models import build_vgg, flops_per_image

_spec = importlib.util.spec_from_file_location(
    "vgg16_roofline", Path(__file__).resolve().parents[1] / "benchmarks" / "vgg16_roofline.py"
)
roofline = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(roofline)

H100 = {"batch": 256, "peak": 989e12, "bandwidth": 3.35e12, "matmul": 0.80}


def test_vgg16_roofline_on_h100_figures():
    with torch.device("meta"):
        net = build_vgg("D")
    rows = roofline.layer_rows("D", batch=256)
    gemms = {row.name: row for row in rows if row.flops}
    assert list(gemms) == list(net.conv_layers())  # conv1_1 ... conv5_3, fc6, fc7, fc8
    totals = roofline.summary(rows, **H100)
    assert totals["train_flops_per_image"] == 3 * flops_per_image(net)
    rate, bandwidth = H100["peak"] * H100["matmul"], H100["bandwidth"]
    assert gemms["conv1_1"].padded == pytest.approx(gemms["conv1_1"].flops * 8 / 3)  # 3 channels padded to 8
    assert gemms["conv1_1"].bound(rate, bandwidth) == "memory"
    deep = [row for name, row in gemms.items() if name[:5] in ("conv3", "conv4", "conv5")]
    assert len(deep) == 9 and all(row.bound(rate, bandwidth) == "compute" for row in deep)
    assert 0 < totals["mfu"] < totals["gemm_only_mfu"] <= H100["matmul"]
    compiled = roofline.summary(roofline.layer_rows("D", batch=256, compiled=True), **H100)
    assert totals["mfu"] < compiled["mfu"] < 1  # fusing the conv bias add into the ReLU saves whole passes
    # the figures BENCHMARKS.md quotes (its VGG-16 roofline section and summary row), as printed there
    assert round(totals["train_flops_per_image"] / 1e9, 1) == 92.8
    assert round(totals["step_s"] * 1e3, 1) == 53.6 and round(totals["images_per_s"]) == 4777
    assert round(100 * totals["mfu"]) == 45 and round(100 * totals["gemm_only_mfu"]) == 76
    assert round(compiled["images_per_s"]) == 5404 and round(100 * compiled["mfu"]) == 51
    at_peak = roofline.summary(rows, **{**H100, "matmul": 1.0})
    assert round(at_peak["images_per_s"]) == 5363 and round(100 * at_peak["mfu"]) == 50
