"""task=features' descriptor (Appendix B): fc7 run densely, pooled, flipped, averaged or stacked over Q, nets
stacked, L2-normalised, as torchvision's layers give it; and its extraction in shards that a stopped job resumes."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import narrow

from vgg_lightning.data.readers import read_labelled
from vgg_lightning.evaluation.descriptors import FeatureExtractor, Shards, descriptor


def test_descriptor_shape_norm_flip_and_nets_stacked():
    a, b = narrow("A", 0), narrow("B", 1)
    x, y = torch.randn(3, 3, 224, 256), torch.randn(3, 3, 256, 288)  # one set of images at two Q
    with torch.no_grad():
        one = descriptor([a], [x])
        both = descriptor([a, b], [x, y], "stack")
        flipped = descriptor([a], [x.flip(-1)])
    assert one.shape == (3, 256) and both.shape == (3, 2 * 2 * 256)  # fc7 is 4096 x width 1/16
    torch.testing.assert_close(one.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(both.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(flipped, one)  # averaged with its flip: a flipped image has the same descriptor
    with torch.no_grad():  # the nets' parts side by side, in their order
        torch.testing.assert_close(F.normalize(both[:, 512:], dim=1), descriptor([b], [x, y], "stack"))
        torch.testing.assert_close(F.normalize(both[:, :512], dim=1), descriptor([a], [x, y], "stack"))


def test_averaging_over_q_is_the_sum_of_the_stacked_parts():
    net = narrow()
    images = [torch.randn(2, 3, 224, 224), torch.randn(2, 3, 256, 256)]
    with torch.no_grad():
        stacked, averaged = descriptor([net], images, "stack"), descriptor([net], images, "average")
    assert stacked.shape == (2, 512) and averaged.shape == (2, 256)
    torch.testing.assert_close(F.normalize(stacked[:, :256] + stacked[:, 256:], dim=1), averaged)
    assert not torch.allclose(stacked[:, :256], stacked[:, 256:])  # the two Q really differ
    with pytest.raises(ValueError, match="features.aggregate='max': choose one of average, stack"):
        descriptor([net], images, "max")


def test_descriptor_equals_torchvisions_layers_run_densely_by_hand():
    net = narrow("A")  # A at width 1/16: torchvision's make_layers builds the same conv stack
    reference = torchvision.models.vgg.make_layers([4, "M", 8, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"]).eval()
    ours = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    theirs = [m for m in reference if isinstance(m, torch.nn.Conv2d)]
    for mine, its in zip(ours, theirs, strict=True):
        its.load_state_dict(mine.state_dict())
    x = torch.randn(1, 3, 224, 256)
    with torch.no_grad():
        pooled = []
        for image in (x, x.flip(-1)):
            fc6, fc7 = net.head.fc6, net.head.fc7  # as torchvision's Linear weights, slid over the map
            h = F.relu(F.conv2d(reference(image), fc6.weight.flatten(1).view(256, 32, 7, 7), fc6.bias))
            h = F.relu(F.conv2d(h, fc7.weight.flatten(1)[:, :, None, None], fc7.bias))
            assert h.shape[-2:] == (1, 2)  # the fc7 map of a 224x256 image: two positions
            pooled.append(h.mean(dim=(2, 3)))
        expected = F.normalize((pooled[0] + pooled[1]) / 2, dim=1)
        got = descriptor([net], [x])
        assert net.feature_map(x).shape == (1, 256, 1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_a_resumed_extraction_computes_only_the_missing_shards(demo_root, tmp_path):
    images = read_labelled("imagefolder", demo_root, ["val"])
    net = narrow()

    def extract(todo):
        shards = Shards(tmp_path / "shards", {"images": len(images)})
        extractor = FeatureExtractor([net], images, shards, todo, [224], batch_size=4, shard_size=5)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.test(extractor, verbose=False)
        return shards

    shards = extract(range(len(images)))
    assert len(shards.files()) >= 3 and shards.done() == set(range(len(images)))
    indices, full = shards.join()
    first = shards.files()[0]
    lost = set(np.load(first)["indices"].tolist())
    first.unlink()
    todo = [i for i in range(len(images)) if i not in shards.done()]
    assert set(todo) == lost
    resumed = extract(todo)
    again_indices, again = resumed.join()
    assert again_indices.tolist() == indices.tolist() == list(range(len(images)))
    np.testing.assert_allclose(again, full, rtol=1e-5, atol=1e-6)
