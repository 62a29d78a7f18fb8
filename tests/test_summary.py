"""Sec. 2.3 / 4.1: B-shallow (the 3x3 argument's test) and the per-layer summary of any config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vgg_lightning import paper
from vgg_lightning.models import build_vgg, count_parameters, flops_per_image
from vgg_lightning.models.summary import main, summary


def on_meta(config: str, **kw):
    """The full-width net as shapes only: counted in no time, no memory."""
    with torch.device("meta"):
        return build_vgg(config, **kw)


def test_b_shallow_is_b_with_one_5x5_conv_per_pair_of_3x3():
    net = on_meta("B-shallow")
    assert count_parameters(net) == paper.SHALLOW_PARAMETERS["B-shallow"] == 134_503_528
    convs = [m for n, m in net.conv_layers().items() if n.startswith("conv")]
    b = [m for n, m in build_vgg("B", width=0.0625).conv_layers().items() if n.startswith("conv")]
    assert [(c.kernel_size, c.padding) for c in convs] == [((5, 5), (2, 2))] * 5
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512] and len(b) == 2 * len(convs)
    assert build_vgg("b_shallow", width=0.0625).config == "B-shallow"
    assert build_vgg("B-shallow", width=0.0625)(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_summary_of_d_at_224_gives_the_true_sums():
    result = summary("D", 224)
    assert result["parameters"] == paper.PARAMETERS["D"] == 138_357_544
    assert result["activations"] == 15_237_608  # the quoted table's own rows, input and FC outputs included
    assert round(result["multiply_adds"] / 1e9, 2) == 15.47
    assert result["multiply_adds"] * 2 == flops_per_image(on_meta("D"), 224)  # torch's own counter
    layers = {row["name"]: row for row in result["layers"]}
    weights = {"conv1_1": 1_728, "conv1_2": 36_864, "conv2_1": 73_728, "conv3_2": 589_824, "conv4_1": 1_179_648,
               "conv5_3": 2_359_296, "fc6": 102_760_448, "fc7": 16_777_216, "fc8": 4_096_000}  # fmt: skip
    assert {name: layers[name]["weights"] for name in weights} == weights
    assert layers["conv1_1"]["shape"] == (64, 224, 224) and layers["conv1_1"]["activations"] == 3_211_264
    # receptive fields: two 3x3 convs see 5x5, three 7x7 (Sec. 2.3)
    assert (layers["conv1_1"]["receptive_field"], layers["conv1_2"]["receptive_field"]) == (3, 5)
    assert layers["conv3_3"]["receptive_field"] - layers["pool2"]["receptive_field"] == 6 * 4  # 7x7 at stride 4


def test_summary_at_a_larger_side_is_the_dense_net():
    layers = {row["name"]: row for row in summary("A", 256, num_classes=10, width=0.0625)["layers"]}
    assert layers["fc8"]["shape"] == (10, 2, 2) and layers["pool5"]["shape"][1:] == (8, 8)


def test_summary_cli_json_table_and_png(tmp_path, capsys):
    assert main(["D", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["parameters"], result["activations"]) == (138_357_544, 15_237_608)
    png = tmp_path / "d.png"
    assert main(["B-shallow", "--png", str(png)]) == 0
    assert "134,503,528" in capsys.readouterr().out and png.stat().st_size > 10_000
    with pytest.raises(SystemExit) as exit_code:
        main(["D", "--side", "100"])
    assert exit_code.value.code == 2 and "at least 224" in capsys.readouterr().err


def test_the_summary_imports_no_plotting_until_asked():
    code = "import sys, vgg_lightning.models.summary as s; s.summary('A'); print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("config", ["A", "vgg_m", "B-shallow"])
def test_summary_parameters_equal_the_nets(config):
    assert summary(config)["parameters"] == count_parameters(on_meta(config))
