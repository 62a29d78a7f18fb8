"""The test protocols of Sec. 3.2: dense, multi-crop, multi-scale, ensembles, shape bucketing, weights."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from vgg_lightning.evaluation.evaluator import Evaluator
from vgg_lightning.evaluation.loader import ShapeBatchSampler
from vgg_lightning.evaluation.protocols import dense_posterior, multicrop_views, posterior
from vgg_lightning.models import TORCHVISION, build_vgg, to_torchvision, torchvision_weights_path
from vgg_lightning.tasks.eval import load_nets
from vgg_lightning.training.module import VGGClassifier

CLASSES = 5


def narrow(config: str = "A", seed: int = 0, classes: int = CLASSES):
    torch.manual_seed(seed)
    return build_vgg(config, num_classes=classes, width=0.0625, init="xavier").eval()


def peaked(net, gain: float = 30.0):
    """The net with its class scores scaled by `gain`: a narrow random net's posteriors are near uniform, so
    the order of softmax and averaging, or a missing flip, would change them by less than any tolerance; a
    scaled net's top posteriors are 0.6-0.99, as a trained net's are."""
    with torch.no_grad():
        net.head.fc8.weight.mul_(gain)
        net.head.fc8.bias.mul_(gain)
    return net


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> str:
    """val/<class>/*.JPEG of ImageNet-like varied sizes, several sharing one (as 500x375 does on ImageNet)."""
    root = tmp_path_factory.mktemp("folder")
    sizes = [(300, 225), (300, 225), (225, 300), (300, 225), (250, 240), (225, 300), (300, 225), (260, 300)]
    rng = np.random.default_rng(0)
    for i, (width, height) in enumerate(sizes):
        folder = root / "val" / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)
    return str(root)


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


def test_shape_batches_cover_every_image_once_over_the_ranks():
    rng = np.random.default_rng(0)
    keys = [((256, int(w)),) for w in rng.choice([341, 384, 256, 300], size=103)] + [None]
    seen = []
    for rank in range(3):
        for batch in ShapeBatchSampler(keys, batch_size=8, rank=rank, world_size=3):
            assert 1 <= len(batch) <= 8 and len({keys[i] for i in batch}) == 1  # one shape per batch
            seen += batch
    assert sorted(seen) == list(range(len(keys)))  # each image exactly once, none padded in


def posteriors_by_index(evaluator: Evaluator) -> dict[int, torch.Tensor]:
    found = {}
    with torch.no_grad():
        for batch in evaluator.loader():
            for probs, _, indices in evaluator.group_posteriors(batch):
                found.update(zip(indices.tolist(), probs))
    return found


def test_bucketed_batches_equal_one_image_at_a_time_and_the_errors_count_every_image(image_folder):
    net = narrow()
    batched = Evaluator([net], image_folder, "dense", scales=[224, 256], batch_size=3)
    batch_sizes = [len(b) for b in batched.loader().batch_sampler]
    assert sorted(batch_sizes) == [1, 1, 1, 2, 3]  # the four 300x225 in batches of 3 and 1, the two 225x300, ...
    grouped = posteriors_by_index(batched)
    alone = posteriors_by_index(Evaluator([net], image_folder, "dense", scales=[224, 256], batch_size=1))
    assert sorted(grouped) == sorted(alone) == list(range(8))
    nhwc = posteriors_by_index(
        Evaluator([narrow()], image_folder, "dense", scales=[224, 256], batch_size=3, channels_last=True)
    )
    for index in alone:
        torch.testing.assert_close(grouped[index], alone[index], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(nhwc[index], alone[index], rtol=1e-4, atol=1e-6)

    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(batched, verbose=False)
    labels = torch.tensor(batched.dataset.folder.targets)
    probs = torch.stack([alone[i] for i in range(8)])
    top1 = 100.0 * (probs.argmax(1) != labels).float().mean()
    top5 = 100.0 * (~(probs.topk(5, dim=1).indices == labels[:, None]).any(1)).float().mean()
    nll = -probs[torch.arange(8), labels].log().mean()
    assert batched.errors == {
        "top1_error": round(float(top1), 3),
        "top5_error": round(float(top5), 3),
        "images": 8,
        "nll": pytest.approx(float(nll), abs=2e-6),
    }


def checkpoint(path, config: str, seed: int) -> str:
    module = VGGClassifier(
        {"config": config, "width": 0.0625, "init": "xavier"}, {}, num_classes=CLASSES, train_scale=256
    )
    torch.manual_seed(seed)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return str(path)


def eval_cfg(**overrides):
    cfg = {"weights": None, "weights_path": None, "ckpt_path": None, "model": {"config": "A", "width": 0.0625},
           "data": {"normalize": "paper"}, "eval": {"ensemble": []}}  # fmt: skip
    return OmegaConf.merge(cfg, overrides)


def test_load_nets_for_one_checkpoint_an_ensemble_or_none(tmp_path):
    a, b = checkpoint(tmp_path / "a.ckpt", "A", 0), checkpoint(tmp_path / "b.ckpt", "B", 1)
    nets, scales, sources = load_nets(eval_cfg(ckpt_path=a, eval={"ensemble": [b]}), CLASSES)
    assert [net.config for net in nets] == ["A", "B"] and scales == [256, 256] and sources == [a, b]
    saved = torch.load(b, weights_only=False)["state_dict"]["net.features.conv1_1.weight"]
    torch.testing.assert_close(nets[1].features.conv1_1.weight, saved)
    with pytest.raises(ValueError, match="config B \\(this run: A\\)"):
        load_nets(eval_cfg(ckpt_path=b), CLASSES)  # one net must be the one the run names
    with pytest.raises(ValueError, match="5 classes, the data has 8"):
        load_nets(eval_cfg(eval={"ensemble": [a, b]}), 8)
    with pytest.raises(ValueError, match="eval.ensemble=\\[a.ckpt,b.ckpt\\]"):
        load_nets(eval_cfg(), CLASSES)


def test_torchvision_weights_come_from_the_hub_cache_or_a_file_never_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = eval_cfg(weights="torchvision", data={"normalize": "torchvision"})
    with pytest.raises(FileNotFoundError, match="never downloads.*weights_path=/path/to/vgg11-8a719046.pth"):
        load_nets(cfg, CLASSES)
    with pytest.raises(ValueError, match="data.normalize=torchvision"):
        load_nets(eval_cfg(weights="torchvision"), CLASSES)

    cached = tmp_path / "torch" / "hub" / "checkpoints" / TORCHVISION["A"].file
    cached.parent.mkdir(parents=True)
    source = narrow("A")
    torch.save(to_torchvision(source), cached)
    assert torchvision_weights_path("A", None) == str(cached)
    (net,), _, (found,) = load_nets(cfg, CLASSES)
    assert found == str(cached) and net.config == "A"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), source(x))

    elsewhere = tmp_path / "mine.pth"
    os.replace(cached, elsewhere)
    assert load_nets(
        eval_cfg(weights="torchvision", weights_path=str(elsewhere), data={"normalize": "torchvision"}), CLASSES
    )[2] == [str(elsewhere)]
    with pytest.raises(ValueError, match="model=A, B, D or E"):
        torchvision_weights_path("C", None)


def reference_posteriors(net, root: str, protocol: str, q: int = 256):
    """Each val image's posterior computed another way than the Evaluator: one image at a time, the
    torchvision normalisation written out, the fc head slid over the feature map by hand (dense) and the
    crops cut by hand at round(linspace(0, side - 224, 5)) and each flipped (multi-crop)."""
    from vgg_lightning.evaluation.loader import ScaledImages

    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    dataset = ScaledImages(root, [q])
    posteriors, labels = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            x = ((item["images"][0].float() / 255 - mean) / std)[None]
            views = []
            if protocol == "dense":  # the image and its mirror image
                for image in (x, x.flip(-1)):
                    f = net.features(image)
                    windows = [
                        net.head.logits(f[:, :, r : r + 7, c : c + 7])
                        for r in range(f.shape[2] - 6)
                        for c in range(f.shape[3] - 6)
                    ]
                    views.append(torch.stack(windows).mean(0).softmax(1))
            else:  # the crops and their mirror images
                rows = np.round(np.linspace(0, x.shape[2] - 224, 5)).astype(int)
                cols = np.round(np.linspace(0, x.shape[3] - 224, 5)).astype(int)
                for crop in (x[..., r : r + 224, c : c + 224] for r in rows for c in cols):
                    views += [net(crop).softmax(1), net(crop.flip(-1)).softmax(1)]
            posteriors.append(torch.cat(views).mean(0))
            labels.append(item["label"])
    return torch.stack(posteriors), torch.tensor(labels)


@pytest.mark.parametrize("protocol", ["dense", "multicrop"])
def test_dense_and_multicrop_through_the_cli_equal_a_reference_computed_by_hand(protocol, cli_env, tmp_path, demo_root):
    from conftest import read_results, run_cli

    # the demo's net (A, width 1/16, kaiming init): its posteriors are peaked (class scores spread over ~10)
    torch.manual_seed(0)
    model = {"config": "A", "width": 0.0625, "init": "kaiming"}
    module = VGGClassifier(model, {}, num_classes=8, train_scale=256)
    ckpt = tmp_path / "peaked.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, ckpt)
    root = tmp_path / "one_per_class"  # 8 val images (50 views each in multi-crop)
    for folder in sorted((Path(demo_root) / "val").iterdir()):
        (root / "val" / folder.name).mkdir(parents=True)
        shutil.copy(sorted(folder.iterdir())[0], root / "val" / folder.name)
    shutil.copy(Path(demo_root) / "demo.json", root)
    run_dir = tmp_path / "eval"
    run_cli(
        "task=eval", "experiment=demo", "model.width=0.0625", f"data.root={root}", "data.num_workers=0",
        "logger=none", f"eval={protocol}", f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    results = read_results(run_dir)
    probs, labels = reference_posteriors(module.net.eval(), str(root), protocol)
    assert probs.max(1).values.mean() > 0.5  # peaked: the protocol's order of softmax and averaging shows
    nll = -probs[torch.arange(len(labels)), labels].clamp_min(1e-30).log().mean()
    top1 = 100.0 * (probs.argmax(1) != labels).float().mean()
    assert results["images"] == 8 and results["protocol"] == protocol
    assert results["nll"] == pytest.approx(float(nll), abs=1e-4)
    assert results["top1_error"] == pytest.approx(float(top1), abs=1e-3)
