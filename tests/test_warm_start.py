"""Warm starts (Sec. 3.1, `model.init_from`): exactly the documented layers of A into a deeper net, every layer
from the same config, everything but fc8 from another class count, a refusal naming the layer; and why they
matter: a deep net learns warm-started where the paper's Gaussian init does not."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vgg_lightning.models import build_vgg
from vgg_lightning.models.warm_start import WARM_START_LAYERS, WarmStartError, warm_start

WIDTH = 0.0625


def checkpoint_of(net, classes: int | None = None) -> dict:
    """What a VGGClassifier checkpoint holds, as torch.load gives it."""
    return {
        "hyper_parameters": {
            "model": {"config": net.config, "width": net.width},
            "num_classes": classes or net.num_classes,
        },
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
    }


def warm_start_from(target, source):
    """warm_start as the training task calls it, with a trained net's state dict and spec."""
    return warm_start(target, source.state_dict(), source.spec())


def weights(net) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach().clone() for name, layer in net.conv_layers().items()}


@pytest.mark.parametrize("config", ["A-LRN", "B", "C", "D", "E"])
def test_warm_start_copies_exactly_the_documented_layers_from_A(config):
    torch.manual_seed(0)
    a = build_vgg("A", num_classes=4, width=WIDTH, init="xavier")
    deep = build_vgg(config, num_classes=4, width=WIDTH)
    before = weights(deep)
    mapping = warm_start_from(deep, a)
    assert list(mapping) == list(WARM_START_LAYERS) and all(k == v for k, v in mapping.items())
    source, after = weights(a), weights(deep)
    for name in after:
        expected = source[name] if name in WARM_START_LAYERS else before[name]
        torch.testing.assert_close(after[name], expected, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(deep.head.fc8.bias, a.head.fc8.bias, rtol=0, atol=0)


def test_warm_start_from_the_same_config_copies_everything():
    d384, d256 = build_vgg("D", num_classes=4, width=WIDTH), build_vgg("D", num_classes=4, width=WIDTH, init="xavier")
    mapping = warm_start_from(d384, d256)
    assert len(mapping) == 16  # 13 convs + 3 FC
    for name, weight in weights(d384).items():
        torch.testing.assert_close(weight, weights(d256)[name], rtol=0, atol=0)


def test_a_checkpoint_that_does_not_fit_names_the_layer_and_why():
    e = build_vgg("E", num_classes=4, width=WIDTH)
    before = weights(e)
    with pytest.raises(WarmStartError, match=r"conv1_1 of config E .* \(4, 3, 3, 3\).*model.width=0.125"):
        warm_start_from(e, build_vgg("A", num_classes=4, width=0.125))
    for name, weight in weights(e).items():  # checked before anything is copied
        torch.testing.assert_close(weight, before[name], rtol=0, atol=0)


@pytest.mark.parametrize("source_config", ["A", "E"])
def test_a_checkpoint_of_another_class_count_gives_everything_but_fc8(source_config, caplog):
    """Fine-tuning onto a data set with other classes: fc8 is a new layer, the rest is copied, the log says so."""
    e = build_vgg("E", num_classes=4, width=WIDTH)
    fc8 = e.head.fc8.weight.detach().clone()
    source = build_vgg(source_config, num_classes=8, width=WIDTH, init="xavier")
    with caplog.at_level("INFO"):
        mapping = warm_start_from(e, source)
    assert "fc8" not in mapping and {"conv1_1", "fc6", "fc7"} <= set(mapping)
    torch.testing.assert_close(e.head.fc8.weight, fc8, rtol=0, atol=0)  # as initialised
    torch.testing.assert_close(e.head.fc7.weight, source.head.fc7.weight, rtol=0, atol=0)
    assert "fc8: a new 4-class layer, the checkpoint's has 8 classes" in caplog.text


def two_images():
    """A red and a blue square on grey noise, scaled like torchvision's input (unit variance)."""
    generator = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(2, 3, 224, 224, generator=generator)
    x[0, 0, 40:140, 60:160] += 2.0
    x[1, 2, 80:180, 30:130] += 2.0
    return x, torch.tensor([0, 1])


def losses(net, steps: int, lr: float = 0.1) -> list[float]:
    """The paper's SGD (momentum 0.9, weight decay 5e-4) on one fixed batch (of 2: hence lr 0.1)."""
    x, y = two_images()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    found = []
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        found.append(loss.item())
    return found


def narrow(config: str, init: str):
    torch.manual_seed(0)
    return build_vgg(config, num_classes=2, width=WIDTH, init=init, dropout=0.0)  # no dropout: a clean signal


def test_warm_start_makes_a_deep_net_learn_where_the_papers_gaussian_does_not():
    """E (19 layers) from N(0, 0.01) passes no signal: its loss stays at ln 2. From Glorot's init it learns,
    slowly; warm-started from a trained A it learns at once. At width 1/16 the layers between A's are too
    narrow for N(0, 0.01) as well, so the warm-started E takes them from xavier
    (`model.init=xavier model.init_from=A.ckpt`)."""
    chance = math.log(2)
    gaussian = losses(narrow("E", "gaussian"), 3)
    assert all(abs(loss - chance) < 1e-3 for loss in gaussian), gaussian

    a = narrow("A", "xavier")
    assert losses(a, 5)[-1] < 0.1  # A itself learns from scratch

    xavier = losses(narrow("E", "xavier"), 10)
    assert xavier[-1] < chance - 0.015 and xavier[-1] < min(xavier[:-1]), xavier
    warm = narrow("E", "xavier")
    warm_start_from(warm, a)
    started = losses(warm, 5)
    assert started[-1] < 0.5 and started[-1] < xavier[4] - 0.1, (started, xavier)
