"""Speed switches: channels_last and torch.compile change no numbers; bf16 stays close; MFU arithmetic.
The GPU-only tests skip cleanly on a CPU machine."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from vgg_lightning.models import build_vgg, flops_per_image
from vgg_lightning.models.vgg import FC_WIDTH, _counted_flops
from vgg_lightning.speed import default_precision, peak_flops, train_flops_per_image
from vgg_lightning.training.callbacks import GPUSpeedups

OPTIM = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "factor": 0.1, "patience": 3, "max_decreases": 3}
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Holder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net


def test_vgg16_training_flops_are_3x_forward():
    # the figure: about 93 GFLOP per 224x224 image for forward + backward of VGG-16
    assert train_flops_per_image(build_vgg("D")) == pytest.approx(93e9, rel=0.01)


@pytest.mark.parametrize("config, name", [("A", "vgg11"), ("B", "vgg13"), ("D", "vgg16"), ("E", "vgg19")])
def test_flops_equal_torch_flop_counter_on_torchvision_vgg(config, name):
    with torch.device("meta"):
        reference, image = getattr(torchvision.models, name)(weights=None), torch.empty(1, 3, 224, 224)
        ours = build_vgg(config)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        reference(image)
    assert flops_per_image(ours) == counter.get_total_flops()


def test_dense_flops_at_256_follow_the_score_map():
    """At 256 every conv map is (256/224)^2 = 64/49 as large, and the FC layers, run as convs, give a 2x2 score
    map: four times the FC work of 224 (hand count of the FC layers of D: 7x7x512 -> 4096 -> 4096 -> 1000)."""
    with torch.device("meta"):
        net = build_vgg("D")
    fc = 2 * (7 * 7 * 512 * FC_WIDTH + FC_WIDTH * FC_WIDTH + FC_WIDTH * 1000)
    convs = flops_per_image(net, 224) - fc
    assert convs * 64 % 49 == 0
    assert flops_per_image(net, 256) == convs * 64 // 49 + 4 * fc


def test_flop_count_is_cached_per_architecture():
    net = build_vgg("A", width=0.0625, num_classes=10)
    first = flops_per_image(net)
    hits = _counted_flops.cache_info().hits
    assert flops_per_image(build_vgg("A", width=0.0625, num_classes=10)) == first
    assert _counted_flops.cache_info().hits == hits + 1


def test_cpu_defaults_are_harmless():
    if torch.cuda.is_available():
        pytest.skip("CPU defaults")
    assert default_precision() == "32-true" and peak_flops() is None
    callback = GPUSpeedups("auto", "auto")
    assert (callback.channels_last, callback.compile) == (False, False)


def test_channels_last_changes_layout_not_numbers():
    torch.manual_seed(0)
    net = build_vgg("B", width=0.125, num_classes=10, init="xavier").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = net(x)
    holder = Holder(net)
    GPUSpeedups(channels_last=True, compile=False).setup(None, holder, "fit")
    assert net.features.conv2_1.weight.is_contiguous(memory_format=torch.channels_last)
    assert set(holder.state_dict()) == {f"net.{k}" for k in net.state_dict()}
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)


@gpu
def test_bf16_autocast_stays_close_to_fp32_on_gpu():
    net = build_vgg("D", width=0.25, num_classes=10, init="xavier").cuda().eval()
    x = torch.randn(4, 3, 224, 224, device="cuda")
    with torch.no_grad():
        reference = net(x).float()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = net(x).float()
    assert (low - reference).abs().max() / reference.abs().max() < 0.05
    assert peak_flops("cuda") is None or peak_flops("cuda") > 1e14


@gpu
def test_compile_and_channels_last_equal_eager_on_gpu():
    net = build_vgg("A", width=0.25, num_classes=10, init="xavier").cuda().eval()
    x = torch.randn(2, 3, 224, 224, device="cuda")
    with torch.no_grad():
        expected = net(x)
    GPUSpeedups(channels_last=True, compile=True).setup(None, Holder(net), "fit")
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("fused", [True, False])
def test_fused_sgd_is_a_switch_and_the_same_update(fused):
    from vgg_lightning.training.module import VGGClassifier

    optim = OPTIM
    torch.manual_seed(0)
    reference = VGGClassifier({"config": "A", "width": 0.0625, "init": "xavier"}, optim, num_classes=4)
    module = VGGClassifier({"config": "A", "width": 0.0625, "init": "xavier"}, {**optim, "fused": fused}, num_classes=4)
    module.load_state_dict(reference.state_dict())
    optimizers = [m.configure_optimizers()["optimizer"] for m in (reference, module)]
    assert optimizers[1].defaults["fused"] is (True if fused else None)
    assert optimizers[0].defaults["fused"] is (True if torch.cuda.is_available() else None)  # auto
    for step in range(3):
        x, y = torch.randn(2, 3, 224, 224), torch.tensor([step % 4, 1])
        for m, optimizer in zip((reference, module), optimizers):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(m.net.eval()(x), y).backward()
            optimizer.step()
    for a, b in zip(reference.parameters(), module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mfu_unknown_is_said_at_train_start_without_a_known_peak(caplog):
    import logging

    from vgg_lightning.training.callbacks import ImagesPerSecond
    from vgg_lightning.training.module import VGGClassifier

    if torch.cuda.is_available():
        pytest.skip("a CPU run")
    with caplog.at_level(logging.DEBUG, logger="vgg_lightning.training.callbacks"):
        ImagesPerSecond().on_train_start(None, VGGClassifier({"config": "A", "width": 0.0625}, OPTIM, num_classes=2))
    # in the log file, not on the console (INFO): no one looks for MFU on a CPU
    assert [(r.levelno, r.getMessage()) for r in caplog.records if "MFU" in r.getMessage()] == [
        (logging.DEBUG, "MFU unknown: no dense bf16 peak known for the CPU (vgg_lightning/speed.py, PEAK_BF16)")
    ]


def test_fc6_and_its_gradient_are_never_copied_in_a_channels_last_training_step():
    """channels_last (GPUSpeedups) stores fc6's kernel as (out, h, w, c): flattening it in (c, h, w) order for the
    matrix product would copy it (411 MB for VGG-16) at every forward, and its gradient again at every backward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    net = build_vgg("A", width=0.0625, num_classes=10, init="xavier")
    GPUSpeedups(channels_last=True, compile=False).setup(None, Holder(net), "fit")
    fc6 = net.head.fc6.weight
    assert fc6.is_contiguous(memory_format=torch.channels_last)

    class Copies(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.sizes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in (torch.ops.aten.clone, torch.ops.aten.copy_, torch.ops.aten._to_copy):
                self.sizes.append(out.numel())
            return out

    x = torch.randn(2, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with Copies() as copies:
        torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1])).backward()
    size = fc6.numel()
    assert size not in copies.sizes, (size, copies.sizes)
    assert fc6.grad.stride() == fc6.stride()  # the gradient in the kernel's own layout: the optimiser copies nothing
