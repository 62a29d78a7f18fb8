"""VGG-F, VGG-M and VGG-S (Chatfield et al., BMVC 2014) in the model zoo, and the paper's Table 7.

The expected shapes below are worked out by hand from the issue's table (conv: floor((n + 2p - k) / s) + 1;
pool: Caffe's ceil((n - k) / s) + 1); the layer shapes are those of the released Caffe deploy prototxts
(VGG_CNN_F/M/S, Caffe Model Zoo), which fix every parameter count.
"""

from __future__ import annotations

import pytest
import torch
from helpers import FAST, read_results, run_cli
from torch import nn

from vgg_lightning import paper
from vgg_lightning.models import (
    ALL_CONFIGS,
    CONFIGS,
    FAST_CONFIGS,
    build_vgg,
    count_parameters,
    flops_per_image,
    from_torchvision,
    to_torchvision,
)
from vgg_lightning.models.vgg import parse_block, stage_sides

# (channels, side) after every conv and pool of a 224x224 input
STAGES = {
    "VGG-F": {
        "conv1": (64, 54), "pool1": (64, 27), "conv2": (256, 27), "pool2": (256, 13),
        "conv3": (256, 13), "conv4": (256, 13), "conv5": (256, 13), "pool5": (256, 6),
    },
    "VGG-M": {
        "conv1": (96, 109), "pool1": (96, 54), "conv2": (256, 26), "pool2": (256, 13),
        "conv3": (512, 13), "conv4": (512, 13), "conv5": (512, 13), "pool5": (512, 6),
    },
    "VGG-S": {
        "conv1": (96, 109), "pool1": (96, 37), "conv2": (256, 35), "pool2": (256, 17),
        "conv3": (512, 17), "conv4": (512, 17), "conv5": (512, 17), "pool5": (512, 6),
    },
}  # fmt: skip

# (out, in, kernel) of every weight layer in the released deploy prototxts (fc6 as the 6x6 conv it is here)
PROTOTXT_LAYERS = {
    "VGG-F": [(64, 3, 11), (256, 64, 5), (256, 256, 3), (256, 256, 3), (256, 256, 3)],
    "VGG-M": [(96, 3, 7), (256, 96, 5), (512, 256, 3), (512, 512, 3), (512, 512, 3)],
    "VGG-S": [(96, 3, 7), (256, 96, 5), (512, 256, 3), (512, 512, 3), (512, 512, 3)],
}
PARAMETERS = {"VGG-F": 60_834_536, "VGG-M": 102_908_520, "VGG-S": 102_908_520}
FC6_INPUTS = {"VGG-F": 9216, "VGG-M": 18432, "VGG-S": 18432}
MIN_SIDE = {"VGG-F": 199, "VGG-M": 201, "VGG-S": 205}
NAMES = [("vgg_f", "VGG-F"), ("vgg_m", "VGG-M"), ("vgg_s", "VGG-S")]  # model=<name> on the command line


def _head(last_channels: int) -> list[tuple[int, int, int]]:
    return [(4096, last_channels, 6), (4096, 4096, 1), (1000, 4096, 1)]


@pytest.fixture(scope="module")
def full_nets() -> dict[str, nn.Module]:
    """The three full-width nets, built once (about 270 M parameters together)."""
    torch.manual_seed(0)
    return {config: build_vgg(config).eval() for config in FAST_CONFIGS}


@pytest.mark.parametrize("config", FAST_CONFIGS)
def test_shapes_at_every_stage_at_224(config, full_nets):
    model, seen = full_nets[config], {}
    hooks = [
        module.register_forward_hook(lambda m, i, out, name=name: seen.__setitem__(name, tuple(out.shape[1:])))
        for name, module in model.features.named_children()
        if name.startswith(("conv", "pool"))
    ]
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224))
    for hook in hooks:
        hook.remove()
    assert seen == {name: (c, s, s) for name, (c, s) in STAGES[config].items()}
    assert logits.shape == (1, 1000)


@pytest.mark.parametrize("config", FAST_CONFIGS)
def test_layers_and_parameter_counts_match_the_released_prototxts(config, full_nets):
    model = full_nets[config]
    expected = PROTOTXT_LAYERS[config] + _head(PROTOTXT_LAYERS[config][-1][0])
    shapes = [(m.out_channels, m.in_channels, m.kernel_size[0]) for m in model.conv_layers().values()]
    assert shapes == expected
    assert count_parameters(model) == PARAMETERS[config] == sum(o * i * k * k + o for o, i, k in expected)
    assert model.head.kernel == 6 and model.head.fc6.weight[0].numel() == FC6_INPUTS[config]


@pytest.mark.parametrize("config", FAST_CONFIGS)
def test_flops_count_strides_and_pools(config, full_nets):
    stages, layers = STAGES[config], PROTOTXT_LAYERS[config]
    convs = sum(o * i * k * k * stages[f"conv{n}"][1] ** 2 for n, (o, i, k) in enumerate(layers, start=1))
    fcs = sum(o * i * k * k for o, i, k in _head(layers[-1][0]))
    assert flops_per_image(full_nets[config]) == 2 * (convs + fcs)


def test_strides_paddings_lrn_and_pools_as_the_issue_table():
    f, m, s = (build_vgg(c, width=0.0625).features for c in FAST_CONFIGS)
    conv = lambda layer: (layer.kernel_size[0], layer.stride[0], layer.padding[0])  # noqa: E731
    pool = lambda layer: (layer.kernel_size, layer.stride, layer.ceil_mode)  # noqa: E731
    assert [conv(f.conv1), conv(f.conv2), conv(f.conv3)] == [(11, 4, 0), (5, 1, 2), (3, 1, 1)]
    assert [conv(m.conv1), conv(m.conv2), conv(m.conv3)] == [(7, 2, 0), (5, 2, 1), (3, 1, 1)]
    assert [conv(s.conv1), conv(s.conv2), conv(s.conv3)] == [(7, 2, 0), (5, 1, 1), (3, 1, 1)]
    assert [pool(s.pool1), pool(s.pool2), pool(s.pool5)] == [(3, 3, True), (3, 2, True), (3, 3, True)]
    assert all(pool(net.pool1) == pool(net.pool2) == pool(net.pool5) == (3, 2, True) for net in (f, m))
    assert [n for n in f._modules if n.startswith("lrn")] == ["lrn1", "lrn2"]
    assert [n for n in m._modules if n.startswith("lrn")] == ["lrn1", "lrn2"]
    assert [n for n in s._modules if n.startswith("lrn")] == ["lrn1"]
    assert list(f._modules)[:4] == ["conv1", "relu1", "lrn1", "pool1"]  # conv -> ReLU -> LRN -> pool, as Caffe
    assert (f.lrn2.size, f.lrn2.alpha, f.lrn2.beta, f.lrn2.k) == (5, 5e-4, 0.75, 2.0)  # the same as A-LRN's
    assert sum(isinstance(layer, nn.ReLU) for layer in s) == 5


def test_a_to_e_keep_their_2x2_floor_pools():
    pools = [m for m in build_vgg("A", width=0.0625).features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.ceil_mode) for p in pools] == [(2, 2, False)] * 5


def test_parse_block_reads_the_fast_notation():
    layers = parse_block("7-96/2 pad0, LRN, pool3/3")
    assert [(x.kind, x.kernel, x.channels, x.stride, x.padding) for x in layers] == [
        ("conv", 7, 96, 2, 0),
        ("lrn", 0, 0, 1, 0),
        ("pool", 3, 0, 3, 0),
    ]
    assert (parse_block("5-256")[0].padding, parse_block("3-512 x2")[1].padding) == (2, 1)  # "same" by default
    with pytest.raises(ValueError, match="cannot read"):
        parse_block("3-256, pool3")


@pytest.mark.parametrize("name, config", NAMES + [("VGG-M", "VGG-M"), ("Vgg_S", "VGG-S"), (" vgg-f ", "VGG-F")])
def test_names(name, config):
    model = build_vgg(name, width=0.0625)
    assert model.config == config and model.spec()["config"] == config
    assert list(model.conv_layers()) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


@pytest.mark.parametrize("name", ["F", "M", "S", "vggf", "VGG-X", "CNN-F"])
def test_unknown_names_list_all_ten(name):
    with pytest.raises(ValueError) as error:
        build_vgg(name)
    assert len(ALL_CONFIGS) == 10 and CONFIGS == ("A", "A-LRN", "B", "C", "D", "E")
    assert f"{name!r}" in str(error.value) and all(config in str(error.value) for config in ALL_CONFIGS)


def test_width_scales_the_fast_nets_too():
    model = build_vgg("vgg_m", width=0.25, num_classes=10)
    assert model.features.conv1.out_channels == 24 and model.features.conv5.out_channels == 128
    assert model.head.fc6.weight.shape == (1024, 128, 6, 6) and model.head.fc8.out_channels == 10


@pytest.mark.parametrize("scheme", ["gaussian", "xavier"])
def test_init_reads_fc6_as_an_fc_layer(scheme):
    fc6 = build_vgg("vgg_f", width=0.25, init=scheme).head.fc6.weight
    fan_in, fan_out = fc6[0].numel(), fc6.shape[0]
    assert fan_in == 64 * 36
    expected = 0.01 if scheme == "gaussian" else (2 / (fan_in + fan_out)) ** 0.5
    assert fc6.std().item() == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("config", FAST_CONFIGS)
def test_score_map_on_a_larger_image_is_the_classifier_at_every_window(config):
    model = build_vgg(config, num_classes=5, width=0.125, init="xavier").eval()
    x = torch.randn(1, 3, 288, 320)
    with torch.no_grad():
        features = model.features(x)
        scores = model.score_map(x)
        assert scores.shape == (1, 5, 3, 4)  # feature map 8x9, fc6 6x6
        for i in range(3):
            for j in range(4):
                window = model.head.logits(features[..., i : i + 6, j : j + 6].contiguous())
                torch.testing.assert_close(scores[..., i, j], window, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x), scores.mean(dim=(2, 3)))
        square = torch.randn(2, 3, 224, 224)
        torch.testing.assert_close(model.score_map(square).flatten(1), model(square), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", FAST_CONFIGS)
def test_smallest_input_side(config):
    model, side = build_vgg(config, width=0.0625).eval(), MIN_SIDE[config]
    assert model.head.min_side == side
    with torch.no_grad():
        assert model.score_map(torch.randn(1, 3, side, side)).shape[-2:] == (1, 1)
        assert model.features(torch.randn(1, 3, side - 1, side - 1)).shape[-2:] == (5, 5)
        with pytest.raises(ValueError, match=f"at least {side} pixels"):
            model.score_map(torch.randn(1, 3, side - 1, 300))


@pytest.mark.parametrize("config", FAST_CONFIGS + ("A",))
def test_shape_arithmetic_agrees_with_pytorch_at_odd_sides(config):
    """The head kernel, the smallest side and the FLOPs are worked out without running the net."""
    features = build_vgg(config, width=0.0625).features
    for side in (197, 203, 210, 223, 231, 250):
        sides, x = stage_sides(features, side), torch.randn(1, 3, side, side)
        with torch.no_grad():
            for name, layer in features.named_children():
                x = layer(x)
                assert x.shape[-1] == sides[name], (side, name)


def test_torchvision_interop_refuses_the_fast_nets():
    with pytest.raises(ValueError, match="torchvision has no VGG config VGG-F: it ships A, B, D and E only"):
        from_torchvision({}, "vgg_f")
    with pytest.raises(ValueError, match="torchvision has no VGG config VGG-S"):
        to_torchvision(build_vgg("vgg_s", width=0.0625))


def test_table_7_rows():
    rows = {(r.method, r.nets): r for r in paper.TABLE_7}
    assert len(rows) == len(paper.TABLE_7) == 15
    assert {r.method for r in paper.TABLE_7} == {
        "VGG", "GoogLeNet", "MSRA", "Clarifai", "Zeiler & Fergus", "OverFeat", "Krizhevsky et al.",
    }  # fmt: skip
    # the VGG rows are the paper's own Tables 5 and 6 and its 7-net submission
    e = paper.row("table5/E_dense_multicrop")
    de = paper.row("table6/DE_dense_multicrop")
    assert (rows["VGG", 1].top1_val, rows["VGG", 1].top5_val) == (e.top1_error, e.top5_error)
    assert (rows["VGG", 2].top1_val, rows["VGG", 2].top5_val) == (de.top1_error, de.top5_error)
    assert (rows["VGG", 7].top1_val, rows["VGG", 7].top5_val) == paper.SUBMISSION_7_NETS
    # Sec. 4.5: 7.3% submitted, 6.8% with 2 nets, the single net 0.9% better than one GoogLeNet
    assert (rows["VGG", 7].top5_test, rows["VGG", 2].top5_test) == (7.3, 6.8)
    assert rows["GoogLeNet", 1].top5_test - rows["VGG", 1].top5_test == pytest.approx(0.9)
    assert rows["Clarifai", None].top5_test == 11.7 and rows["Krizhevsky et al.", 5].top5_test == 16.4
    assert rows["OverFeat", 1].top5_test is None and rows["MSRA", 11].top1_val is None


def test_demo_trains_each_fast_net(cli_env, tmp_path, demo_root):
    """`python -m vgg_lightning -m experiment=demo model=vgg_f,vgg_m,vgg_s`: the three demo runs in one process
    (one interpreter start instead of three keeps the test quick)."""
    names = [name for name, _ in NAMES]
    sweep = tmp_path / "runs"
    run_cli(
        "-m",
        "experiment=demo",
        f"model={','.join(names)}",
        f"data.root={demo_root}",
        *FAST,
        f"hydra.sweep.dir={sweep}",
        env=cli_env,
        cwd=tmp_path,
    )
    runs = {read_results(path.parent)["config"]: path.parent for path in sweep.glob("*/results.json")}
    assert sorted(runs) == sorted(names)
    for name, run_dir in runs.items():
        results = read_results(run_dir)
        assert results["task"] == "train" and results["experiment"] == "demo" and results["steps"] == 2, name
        assert 0.0 <= results["top1_error"] <= 100.0, name
        state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        assert state["net.head.fc6.weight"].shape[-2:] == (6, 6) and "net.features.conv5.weight" in state, name
