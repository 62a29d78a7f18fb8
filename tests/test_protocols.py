"""The test protocols of Sec. 3.2 as posteriors: dense (the classifier slid over the map, with the flip),
multi-crop (a 5x5 grid and its flips), and their averages over scales, protocols and the nets of an ensemble."""

from __future__ import annotations

import pytest
import torch
from helpers import CLASSES, narrow

from vgg_lightning.evaluation.protocols import dense_posterior, multicrop_views, posterior
from vgg_lightning.models import build_vgg


def peaked(net, gain: float = 30.0):
    """The net with its class scores scaled by `gain`: a narrow random net's posteriors are near uniform, so
    the order of softmax and averaging, or a missing flip, would change them by less than any tolerance; a
    scaled net's top posteriors are 0.6-0.99, as a trained net's are."""
    with torch.no_grad():
        net.head.fc8.weight.mul_(gain)
        net.head.fc8.bias.mul_(gain)
    return net


def test_dense_equals_the_fc_classifier_slid_over_the_feature_map_by_hand():
    net = peaked(narrow())
    x = torch.randn(2, 3, 256, 320)
    with torch.no_grad():
        reference = []
        for image in (x, x.flip(-1)):
            features = net.features(image)  # (2, 32, 8, 10): 2 x 4 positions of the 7x7 fc6 window
            windows = [
                net.head.logits(features[:, :, i : i + 7, j : j + 7])
                for i in range(features.shape[2] - 6)
                for j in range(features.shape[3] - 6)
            ]
            assert len(windows) == 8
            reference.append(torch.stack(windows).mean(dim=0).softmax(dim=1))  # mean of scores, then softmax
        got = dense_posterior(net, x)
        # the wrong order (softmax at each position, then the spatial mean) is visible on this net
        maps = net.score_map(torch.cat([x, x.flip(-1)]))
        wrong = maps.softmax(1).mean(dim=(2, 3)).view(2, *got.shape).mean(0)
    torch.testing.assert_close(got, (reference[0] + reference[1]) / 2, rtol=1e-4, atol=1e-6)
    assert (got - wrong).abs().max() > 1e-2


def test_dense_on_a_224_image_is_the_classifier_and_its_flip():
    net = peaked(narrow())
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        unflipped = net(x).softmax(1)
        expected = (unflipped + net(x.flip(-1)).softmax(1)) / 2
        torch.testing.assert_close(dense_posterior(net, x), expected, rtol=1e-4, atol=1e-6)
    assert (unflipped - expected).abs().max() > 1e-2  # the flip's half is visible


class StubNet(torch.nn.Module):
    """A 1x1 conv as the whole net: cheap, and its views differ. Counts the views it is shown."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, CLASSES, 1)
        with torch.no_grad():
            self.conv.weight.mul_(10)  # peaked posteriors: averaging scores instead would be visible
        self.views = 0

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        self.views += x.shape[0]
        return self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_map(x).mean(dim=(2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_dense_in_bf16_channels_last_stays_close_to_fp32_on_gpu():
    torch.manual_seed(0)
    net = build_vgg("D", num_classes=CLASSES, width=0.25, init="xavier").cuda().eval()
    x = torch.randn(2, 3, 256, 320, device="cuda")
    with torch.no_grad():
        exact = dense_posterior(net, x)
        net.to(memory_format=torch.channels_last)
        with torch.autocast("cuda", torch.bfloat16):
            fast = dense_posterior(net, x.contiguous(memory_format=torch.channels_last))
    assert fast.dtype == torch.float32 and (fast - exact).abs().max() < 2e-2


def test_multicrop_is_a_5x5_grid_with_flips_150_views_over_3_scales():
    x = torch.arange(2 * 3 * 256 * 300, dtype=torch.float32).view(2, 3, 256, 300)
    views = multicrop_views(x)
    assert views.shape == (2 * 50, 3, 224, 224)
    first, last = views[:50], views[50:]
    torch.testing.assert_close(first[0], x[0, :, :224, :224])  # top-left corner
    torch.testing.assert_close(first[24], x[0, :, -224:, -224:])  # bottom-right corner
    torch.testing.assert_close(first[12], x[0, :, 16:240, 38:262])  # the centre of the grid
    torch.testing.assert_close(first[25:], first[:25].flip(-1))  # then the flips
    torch.testing.assert_close(last[0], x[1, :, :224, :224])

    net = StubNet(0)
    # left-to-right ramps: every crop and flip has its own mean colour, so the views' posteriors differ
    images = [torch.linspace(-3, 3, q + 40).expand(1, 3, q, q + 40) * torch.randn(1, 3, 1, 1) for q in (224, 240, 256)]
    with torch.no_grad():
        probs = posterior([net], images, "multicrop", crop_batch=64)
        assert net.views == 150
        scores = net(torch.cat([multicrop_views(x) for x in images]))
    per_view = scores.softmax(1)
    torch.testing.assert_close(probs, per_view.mean(0, keepdim=True))  # 150 views, each weighing the same
    assert (probs - scores.mean(0, keepdim=True).softmax(1)).abs().max() > 1e-2  # not softmax of mean scores


def test_ensembles_scales_and_protocols_average_posteriors():
    nets = [StubNet(0), StubNet(1)]
    images = [torch.randn(2, 3, 224, 240), torch.randn(2, 3, 232, 250)]
    with torch.no_grad():
        ensemble = posterior(nets, images, "dense")
        single = [posterior([net], images, "dense") for net in nets]
        torch.testing.assert_close(ensemble, (single[0] + single[1]) / 2)
        scales = [dense_posterior(nets[0], x) for x in images]
        torch.testing.assert_close(single[0], (scales[0] + scales[1]) / 2)
        one = [x[:1] for x in images]  # multi-crop is 50 views a scale: one image is enough
        both = posterior(nets[:1], one, "dense_multicrop")
        multicrop = posterior(nets[:1], one, "multicrop")
        torch.testing.assert_close(both, (single[0][:1] + multicrop) / 2)
    torch.testing.assert_close(ensemble.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="eval.protocol='fancy'"):
        posterior(nets, images, "fancy")
