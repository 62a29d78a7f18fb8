"""The model zoo against the paper's Table 1/2 and against torchvision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vgg_lightning import paper
from vgg_lightning.models import CONFIGS, build_vgg, count_parameters, flops_per_image, from_torchvision, to_torchvision
from vgg_lightning.models.vgg import parse_block


@pytest.mark.parametrize("config", CONFIGS)
def test_parameter_counts_equal_table_2(config):
    assert count_parameters(build_vgg(config)) == paper.PARAMETERS[config]


@pytest.mark.parametrize(
    "config, weight_layers", [("A", 11), ("A-LRN", 11), ("B", 13), ("C", 16), ("D", 16), ("E", 19)]
)
def test_weight_layers_per_table_1(config, weight_layers):
    assert len(build_vgg(config, width=0.0625).conv_layers()) == weight_layers


def test_config_c_uses_1x1_convs_without_padding():
    layers = build_vgg("C", width=0.0625).conv_layers()
    assert [n for n, m in layers.items() if n.startswith("conv") and m.kernel_size == (1, 1)] == [
        "conv3_3",
        "conv4_3",
        "conv5_3",
    ]
    assert layers["conv3_3"].padding == (0, 0) and layers["conv3_2"].padding == (1, 1)


def test_a_lrn_places_lrn_after_the_first_relu_with_alexnet_settings():
    names = list(build_vgg("A-LRN", width=0.0625).features._modules)
    assert names[:4] == ["conv1_1", "relu1_1", "lrn1", "pool1"]
    lrn = build_vgg("A-LRN", width=0.0625).features.lrn1
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 5e-4, 0.75, 2.0)


@pytest.mark.parametrize("name, config", [("d", "D"), ("a_lrn", "A-LRN"), ("A-LRN", "A-LRN"), (" e ", "E")])
def test_names_are_case_insensitive(name, config):
    net = build_vgg(name, width=0.0625)
    assert net.config == config
    assert net.spec() == build_vgg(config, width=0.0625).spec()


def test_unknown_config_lists_the_six_names():
    with pytest.raises(ValueError) as error:
        build_vgg("F")
    assert "'F'" in str(error.value)
    for config in CONFIGS:
        assert config in str(error.value)


def test_parse_block_reads_the_paper_notation():
    kinds = [(layer.kind, layer.kernel, layer.channels) for layer in parse_block("3-256 x2, 1-256")]
    assert kinds == [("conv", 3, 256), ("conv", 3, 256), ("conv", 1, 256)]
    with pytest.raises(ValueError, match="cannot read"):
        parse_block("5x5-64")


def test_full_width_vgg16_forward_at_224_and_flops():
    """The one full-width test: the paper's D at 224x224 (about 15.5 G multiply-adds, Sec. 6 of paper.md)."""
    model = build_vgg("D").eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    assert flops_per_image(model) / 2 == pytest.approx(15.5e9, rel=0.01)


def _narrow_torchvision(config: str, width: float) -> nn.Module:
    """A torchvision VGG of the same narrow width (its own `make_layers`, a matching classifier)."""
    cfg_name = {"A": "A", "B": "B", "D": "D", "E": "E"}[config]
    cfg = [v if v == "M" else round(v * width) for v in torchvision.models.vgg.cfgs[cfg_name]]
    model = torchvision.models.vgg.VGG(torchvision.models.vgg.make_layers(cfg), num_classes=10)
    hidden, last = round(4096 * width), round(512 * width)
    model.classifier = nn.Sequential(
        nn.Linear(last * 49, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(True),
        nn.Dropout(), nn.Linear(hidden, 10),
    )  # fmt: skip
    return model.eval()


@pytest.mark.parametrize("config", ["A", "B", "D", "E"])
def test_from_torchvision_gives_torchvision_logits(config):
    reference = _narrow_torchvision(config, 0.125)
    model = from_torchvision(reference, config).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
    # and back: torchvision loads our export as it is
    fresh = _narrow_torchvision(config, 0.125)
    fresh.load_state_dict(to_torchvision(model))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), reference(x))


def test_full_width_vgg11_from_torchvision_state_dict():
    reference = torchvision.models.vgg11().eval()
    model = from_torchvision(reference.state_dict(), "a").eval()
    assert model.num_classes == 1000 and model.width == 1.0
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


def test_from_torchvision_refuses_other_configs():
    vgg11 = _narrow_torchvision("A", 0.125).state_dict()
    with pytest.raises(ValueError, match=r"vgg11 \(config A\), not config D"):
        from_torchvision(vgg11, "D")
    with pytest.raises(ValueError, match="torchvision has no VGG config C"):
        from_torchvision(vgg11, "C")
    with pytest.raises(ValueError, match="torchvision has no VGG config A-LRN"):
        from_torchvision(vgg11, "a_lrn")
    with pytest.raises(ValueError, match="batch-norm"):
        from_torchvision(torchvision.models.vgg11_bn(num_classes=10), "A")


def _reference_score_map(tv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Dense evaluation by hand from torchvision's layers: fc6 as a 7x7 conv, fc7 and fc8 as 1x1 convs."""
    fc6, fc7, fc8 = tv.classifier[0], tv.classifier[3], tv.classifier[6]
    feats = tv.features(x)
    y = F.relu(F.conv2d(feats, fc6.weight.view(fc6.out_features, -1, 7, 7), fc6.bias))
    y = F.relu(F.conv2d(y, fc7.weight[:, :, None, None], fc7.bias))
    return F.conv2d(y, fc8.weight[:, :, None, None], fc8.bias)


def test_score_map_matches_a_reference_on_a_non_square_image():
    tv = _narrow_torchvision("D", 0.125)
    model = from_torchvision(tv, "D").eval()
    x = torch.randn(1, 3, 256, 352)
    with torch.no_grad():
        scores = model.score_map(x)
        torch.testing.assert_close(scores, _reference_score_map(tv, x), rtol=1e-4, atol=1e-5)
    assert scores.shape == (1, 10, 2, 5)  # (256/32 - 6, 352/32 - 6)


def test_score_map_equals_forward_at_224():
    model = build_vgg("C", num_classes=7, width=0.125, init="xavier").eval()
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.score_map(x).flatten(1), model(x), rtol=1e-5, atol=1e-5)


def test_score_map_shares_parameters_with_the_classifier():
    model = build_vgg("A", width=0.0625)
    names = {name for name, _ in model.named_parameters()}
    assert names >= {"head.fc6.weight", "head.fc7.weight", "head.fc8.weight"}
    assert not any("classifier" in name for name in names)


def test_too_small_input_is_refused_with_the_minimum_side():
    with pytest.raises(ValueError, match="at least 224"):
        build_vgg("A", width=0.0625).score_map(torch.randn(1, 3, 160, 300))


@pytest.mark.parametrize("scheme", ["gaussian", "xavier", "kaiming"])
def test_init_schemes(scheme):
    model = build_vgg("B", width=0.25, init=scheme)
    fc6 = model.head.fc6.weight
    fan_in, fan_out = fc6[0].numel(), fc6.shape[0]
    expected = {"gaussian": 0.01, "xavier": (2 / (fan_in + fan_out)) ** 0.5, "kaiming": (2 / fan_in) ** 0.5}
    assert fc6.std().item() == pytest.approx(expected[scheme], rel=0.05)
    assert all(layer.bias.abs().sum() == 0 for layer in model.conv_layers().values())
    with pytest.raises(ValueError, match="choose one of gaussian, xavier, kaiming"):
        build_vgg("A", init="orthogonal")


def test_width_scales_convs_and_fc():
    model = build_vgg("E", width=0.25, num_classes=10)
    assert model.features.conv1_1.out_channels == 16 and model.features.conv5_4.out_channels == 128
    assert model.head.fc6.out_channels == 1024 and model.head.fc8.out_channels == 10
