"""The Evaluator: batches of equal shapes over any number of ranks, every image counted once and scored as alone;
dense and multi-crop through the CLI against posteriors computed by hand; memory bounded on a panorama."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import CLASSES, image_folder, narrow, read_results, run_cli, write_jpeg
from PIL import Image

from vgg_lightning.evaluation.evaluator import Evaluator
from vgg_lightning.evaluation.loader import ShapeBatchSampler
from vgg_lightning.training.module import VGGClassifier


@pytest.fixture(scope="module")
def varied_sizes(tmp_path_factory) -> str:
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


def test_bucketed_batches_equal_one_image_at_a_time_and_the_errors_count_every_image(varied_sizes):
    net = narrow()
    batched = Evaluator([net], varied_sizes, "dense", scales=[224, 256], batch_size=3)
    batch_sizes = [len(b) for b in batched.loader().batch_sampler]
    assert sorted(batch_sizes) == [1, 1, 1, 2, 3]  # the four 300x225 in batches of 3 and 1, the two 225x300, ...
    grouped = posteriors_by_index(batched)
    alone = posteriors_by_index(Evaluator([net], varied_sizes, "dense", scales=[224, 256], batch_size=1))
    assert sorted(grouped) == sorted(alone) == list(range(8))
    nhwc = posteriors_by_index(
        Evaluator([narrow()], varied_sizes, "dense", scales=[224, 256], batch_size=3, channels_last=True)
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


def checkpoint_file(path: Path, num_classes: int, width: float = 0.0625) -> Path:
    """A vgg-lightning checkpoint as training writes it (the parts an evaluation reads), without training."""
    from vgg_lightning.models import from_settings

    model = {"config": "A", "width": width, "dropout": 0.5, "init": "gaussian", "init_std": 0.01}
    net = from_settings(model, num_classes)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": model, "num_classes": num_classes,
                                                          "train_scale": 256}}, path)  # fmt: skip
    return path


def peak_rss_gb(args: list[str], env: dict, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a fresh parent whose only child it is: the child's peak resident memory."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "vgg_lightning", *args],
                            env=env, cwd=cwd, capture_output=True, text=True, timeout=600)  # fmt: skip
    peak = int(re.search(r"PEAK_KB (\d+)", result.stdout).group(1)) / 2**20
    return result, peak


def test_dense_eval_of_a_10x5000_image_stays_within_its_memory_bound(cli_env, tmp_path):
    from vgg_lightning.evaluation.loader import ScaledImages

    root = image_folder(tmp_path / "R", train=(), val=("a", "b"))
    write_jpeg(root / "val" / "a" / "panorama.JPEG", height=10, width=5000)
    images = ScaledImages(str(root), [256], max_aspect=4)
    item = images[[path for path, _ in images.folder.samples].index(str(root / "val" / "a" / "panorama.JPEG"))]
    assert tuple(item["images"][0].shape) == (3, 256, 1024)  # the centred 4:1 part, not 256 x 128000

    ckpt = checkpoint_file(tmp_path / "net.ckpt", num_classes=2)
    args = ["task=eval", "eval=dense", "model=A", "model.width=0.0625", f"ckpt_path={ckpt}", "data=imagefolder",
            f"data.root={root}", "data.num_workers=0", "logger=csv", f"hydra.run.dir={tmp_path / 'eval'}"]  # fmt: skip
    result, peak = peak_rss_gb(args, cli_env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    bounds = read_results(tmp_path / "eval")["memory_bounds"]
    assert bounds["aspect_cropped"] == 1 and bounds["max_aspect"] == 4 and bounds["max_pixels"] > 0
    assert peak < 2.0, f"peak RSS {peak:.2f} GB"  # unbounded: 5.7 GB at width 1/8
