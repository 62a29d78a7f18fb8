"""Appendix B: the fc7 descriptor, the linear-SVM protocol, its two metrics, the VOC and Caltech readers, and the
whole chain on the demo set through the CLI."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import read_results, run_cli
from omegaconf import OmegaConf
from PIL import Image
from sklearn.metrics import average_precision_score, balanced_accuracy_score, recall_score

from vgg_lightning import paper
from vgg_lightning.data import DataLayoutError
from vgg_lightning.data.check import main as check_main
from vgg_lightning.data.demo import make_demo_dataset
from vgg_lightning.data.labelled import DIFFICULT, NEGATIVE, POSITIVE
from vgg_lightning.data.readers import read_labelled
from vgg_lightning.evaluation import svm as protocol
from vgg_lightning.evaluation.descriptors import FeatureExtractor, Shards, descriptor
from vgg_lightning.models import build_vgg


def narrow(config: str = "A", seed: int = 0):
    torch.manual_seed(seed)
    return build_vgg(config, num_classes=5, width=0.0625, init="xavier").eval()


# -- the descriptor -----------------------------------------------------------------------------------------
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


# -- the metrics ------------------------------------------------------------------------------------------
def test_mean_class_recall_is_sklearns_balanced_accuracy():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 1, 0, 1, 1, 2, 0, 0, 2])
    by_hand = 100 * np.mean([2 / 3, 2 / 2, 2 / 4])
    assert protocol.mean_class_recall(labels, predicted) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(100 * balanced_accuracy_score(labels, predicted))
    assert by_hand == pytest.approx(100 * recall_score(labels, predicted, average="macro"))


def test_mean_ap_leaves_difficult_images_out_as_voc_does():
    rng = np.random.default_rng(0)
    labels = rng.choice([POSITIVE, NEGATIVE, NEGATIVE, DIFFICULT], size=(40, 3)).astype(np.int8)
    scores = rng.normal(size=(40, 3)) + labels
    expected = np.mean([
        average_precision_score(labels[labels[:, c] != DIFFICULT, c] == POSITIVE, scores[labels[:, c] != DIFFICULT, c])
        for c in range(3)
    ])  # fmt: skip
    assert protocol.mean_ap(labels, scores) == pytest.approx(100 * expected)
    counted_as_negative = np.mean([average_precision_score(labels[:, c] == POSITIVE, scores[:, c]) for c in range(3)])
    assert abs(100 * counted_as_negative - protocol.mean_ap(labels, scores)) > 0.1
    # by hand: positives ranked 1st and 3rd -> AP = (1/1 + 2/3) / 2
    assert protocol.mean_ap(np.array([[1], [0], [1], [0]]), np.array([[0.9], [0.8], [0.7], [0.1]])) == pytest.approx(
        100 * (1 + 2 / 3) / 2
    )


# -- the SVM protocol -------------------------------------------------------------------------------------
def test_random_splits_take_30_per_class_for_training_and_up_to_50_for_testing():
    labels = np.repeat(np.arange(4), [31, 80, 45, 200])
    rng = np.random.default_rng(0)
    train, test = protocol.random_split(labels, 30, 50, rng)
    assert np.bincount(labels[train]).tolist() == [30] * 4
    assert np.bincount(labels[test]).tolist() == [1, 50, 15, 50] and not set(train) & set(test)
    again, _ = protocol.random_split(labels, 30, 50, rng)
    assert set(again) != set(train)  # each split draws anew
    _, rest = protocol.random_split(labels, 30, None, np.random.default_rng(0))
    assert np.bincount(labels[rest]).tolist() == [1, 50, 15, 170]  # Caltech-256: the rest for testing


def test_c_is_chosen_on_held_out_training_images(monkeypatch):
    labels = np.repeat(np.arange(3), 10)
    held = protocol.holdout(labels, 0.2, np.random.default_rng(0))
    assert np.bincount(labels[held]).tolist() == [2, 2, 2]
    calls = []

    def fake_svm(train_x, train_y, test_x, C, classes):
        calls.append((len(train_x), len(test_x), C))
        scores = np.zeros((len(test_x), classes))
        if C == 1.0:  # only this C classifies the held-out images correctly
            scores[np.arange(len(test_x)), test_y_of[len(test_x)]] = 1
        return scores

    x = np.arange(30, dtype=float)[:, None]
    test_y_of = {}
    real_holdout = protocol.holdout

    def spy_holdout(y, fraction, rng):
        mask = real_holdout(y, fraction, rng)
        test_y_of[int(mask.sum())] = y[mask]
        return mask

    monkeypatch.setattr(protocol, "svm_scores", fake_svm)
    monkeypatch.setattr(protocol, "holdout", spy_holdout)
    C, search = protocol.choose_C(x, labels, [0.1, 1.0, 10.0], 0.2, 3, np.random.default_rng(0))
    assert C == 1.0 and search[1.0] == 100.0 and search[0.1] < 100.0
    assert calls == [(24, 6, 0.1), (24, 6, 1.0), (24, 6, 10.0)]  # trained on 80%, scored on the 20% held out


def test_the_protocol_on_separable_features_over_three_splits():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 40)
    features = np.eye(5)[labels] + rng.normal(scale=0.2, size=(200, 5))
    data = {"features": features, "labels": labels, "splits": np.full(200, ""), "classes": np.arange(5)}
    cfg = OmegaConf.create({"train_split": None, "test_split": None, "train_per_class": 10, "test_per_class": 20,
                            "splits": 3, "holdout": 0.2, "C": [0.1, 1, 10], "seed": 0})  # fmt: skip
    found = protocol.run_protocol(data, cfg)
    assert found["metric"] == "mean_class_recall" and found["mean_class_recall"] > 95
    assert [s["train_images"] for s in found["splits"]] == [50] * 3 and [s["test_images"] for s in found["splits"]] == [
        100
    ] * 3
    with pytest.raises(ValueError, match="transfer.train_split='trainval': the features' splits are none"):
        protocol.run_protocol(data, OmegaConf.merge(cfg, {"train_split": "trainval", "test_split": "test"}))
    with pytest.raises(ValueError, match="train_per_class=40 leaves no test image"):
        protocol.run_protocol(data, OmegaConf.merge(cfg, {"train_per_class": 40}))


def test_the_protocol_on_a_multi_label_set_with_its_own_splits():
    rng = np.random.default_rng(0)
    labels = (rng.random((120, 4)) < 0.4).astype(np.int8)
    labels[rng.random((120, 4)) < 0.1] = DIFFICULT
    features = (labels == POSITIVE) + rng.normal(scale=0.3, size=(120, 4))
    data = {
        "features": features,
        "labels": labels,
        "splits": np.repeat(["trainval", "test"], 60),
        "classes": np.arange(4),
    }
    cfg = OmegaConf.create({"train_split": "trainval", "test_split": "test", "train_per_class": 30,
                            "test_per_class": None, "splits": 3, "holdout": 0.2, "C": [0.1, 1], "seed": 0})  # fmt: skip
    found = protocol.run_protocol(data, cfg)
    assert found["metric"] == "mean_ap" and found["mean_ap"] > 90 and found["std"] == 0.0
    assert [(s["train_images"], s["test_images"]) for s in found["splits"]] == [(60, 60)]  # the set's own split, once
    with pytest.raises(ValueError, match="multi-label set .VOC. is tested on its own splits"):
        protocol.run_protocol(data, OmegaConf.merge(cfg, {"train_split": None, "test_split": None}))


# -- the readers ------------------------------------------------------------------------------------------
def jpeg(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path, quality=80)


def voc_folder(root, images: dict[str, list[tuple[str, int]]], splits: dict[str, list[str]]):
    for image_id, objects in images.items():
        jpeg(root / "JPEGImages" / f"{image_id}.jpg")
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objects)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{body}</annotation>")
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_voc_reader_labels_from_the_annotations(tmp_path):
    images = {"000001": [("dog", 0), ("person", 0)], "000002": [("cat", 1)], "000003": [("cat", 1), ("cat", 0)]}
    root = voc_folder(tmp_path / "VOC2007", images, {"trainval": ["000001", "000002"], "test": ["000003"]})
    found = read_labelled("voc2007", str(root))
    assert found.multi_label and found.labels.shape == (3, 20) and len(found.classes) == 20
    assert found.splits.tolist() == ["trainval", "trainval", "test"]
    dog, person, cat = (found.classes.index(c) for c in ("dog", "person", "cat"))
    assert found.labels[0, dog] == found.labels[0, person] == POSITIVE and found.labels[0].sum() == 2
    assert found.labels[1, cat] == DIFFICULT  # only a difficult cat
    assert found.labels[2, cat] == POSITIVE  # one cat not difficult
    with pytest.raises(DataLayoutError, match="no train.txt, val.txt .splits there: test, trainval."):
        read_labelled("voc2012", str(root))  # VOC-2012's default splits: train, val
    with pytest.raises(DataLayoutError, match="missing JPEGImages, Annotations.*name the VOC20xx folder itself"):
        read_labelled("voc2007", str(tmp_path))
    (root / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(DataLayoutError, match="1 image\\(s\\) listed but not in JPEGImages/: 000003"):
        read_labelled("voc2007", str(root))
    bad = voc_folder(tmp_path / "bad", {"1": [("unicorn", 0)]}, {"trainval": ["1"], "test": ["1"]})
    with pytest.raises(DataLayoutError, match="outside VOC's 20: unicorn"):
        read_labelled("voc2007", str(bad))


def caltech_folder(root, classes: list[str]):
    for name in classes:
        jpeg(root / name / "image_0001.jpg")
    return root


CALTECH_101 = ["BACKGROUND_Google", "Faces", "Faces_easy"] + [f"class{i:03d}" for i in range(99)]


def test_caltech_reader_counts_the_background_class(tmp_path):
    root = caltech_folder(tmp_path / "caltech101" / "101_ObjectCategories", CALTECH_101)
    found = read_labelled("caltech101", str(tmp_path / "caltech101"))  # the archive's folder inside is found
    assert len(found.classes) == 102 and len(found) == 102 and not found.multi_label
    assert found.labels.tolist() == list(range(102)) and "BACKGROUND_Google" in found.classes
    (root / "BACKGROUND_Google" / "image_0001.jpg").unlink()
    (root / "BACKGROUND_Google").rmdir()
    with pytest.raises(DataLayoutError, match="101 class folders, expected 102.*BACKGROUND_Google: it is missing"):
        read_labelled("caltech101", str(root))
    (root / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="1 class folder\\(s\\) hold no images: empty"):
        read_labelled("caltech101", str(root))
    with pytest.raises(DataLayoutError, match="expected 257 .*257.clutter"):
        read_labelled("caltech256", str(root))
    with pytest.raises(DataLayoutError, match="features.dataset='caltech': choose one of imagefolder, voc2007"):
        read_labelled("caltech", str(root))


def test_data_check_reads_the_layouts(tmp_path, capsys):
    root = caltech_folder(tmp_path / "101_ObjectCategories", CALTECH_101)
    assert check_main([str(root), "--layout", "caltech101", "--workers", "1"]) == 0
    assert "caltech101: 102 images, 102 classes" in capsys.readouterr().err
    (root / "Faces" / "image_0001.jpg").write_bytes(b"not a jpeg")
    assert check_main([str(root), "--layout", "caltech101", "--workers", "1"]) == 1
    assert "Faces/image_0001.jpg" in capsys.readouterr().out
    assert check_main([str(tmp_path), "--layout", "voc2007", "--workers", "1"]) == 2
    assert "is not a VOC folder" in capsys.readouterr().err


# -- resumable, sharded extraction ------------------------------------------------------------------------
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


# -- the chain through the CLI ----------------------------------------------------------------------------
def test_demo_chain_train_features_transfer_through_the_cli(cli_env, tmp_path, demo_run):
    """demo_run (the demo trained through the CLI) -> task=features on a set it never saw -> task=transfer ->
    the report."""
    demo = make_demo_dataset(str(tmp_path / "demo"), train_per_class=6, val_per_class=4)  # 80 images, 8 classes
    common = [f"data.root={demo}", "logger=csv", "data.num_workers=0"]
    ckpt = demo_run / "checkpoints" / "last.ckpt"
    features_args = ["task=features", "experiment=demo", *common, f"ckpt_path={ckpt}", "features.scales=[224]",
                     f"hydra.run.dir={tmp_path / 'features'}"]  # fmt: skip
    run_cli(*features_args, env=cli_env, cwd=tmp_path)
    with np.load(tmp_path / "features" / "features.npz") as found:
        features, labels, paths = found["features"], found["labels"], found["paths"]
        assert features.dtype == np.float32 and features.shape == (80, 256)  # fc7 of width 1/16
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, rtol=1e-5)
        assert sorted(set(found["splits"].tolist())) == ["train", "val"] and len(found["classes"]) == 8
        assert all(p.startswith(demo) for p in paths.tolist()) and np.bincount(labels).tolist() == [10] * 8
    assert not (tmp_path / "features" / "feature_shards").exists()  # joined into features.npz
    again = run_cli(*features_args, env=cli_env, cwd=tmp_path)
    assert "features.npz exists: nothing to compute" in again.stderr + again.stdout

    transfer_args = ["task=transfer", f"transfer.features={tmp_path / 'features' / 'features.npz'}",
                     "transfer.train_per_class=5", "transfer.test_per_class=null", "logger=csv"]  # fmt: skip
    run_cli(*transfer_args, f"hydra.run.dir={tmp_path / 'transfer'}", env=cli_env, cwd=tmp_path)
    results = read_results(tmp_path / "transfer")
    assert results["task"] == "transfer" and results["metric"] == "mean_class_recall" and results["paper"] is None
    assert [s["test_images"] for s in results["splits"]] == [40] * 3 and results["dataset"] == "imagefolder"
    chance = 100 / 8
    assert results["mean_class_recall"] > 2 * chance, results  # the features carry the classes

    report = run_cli(str(tmp_path / "transfer"), "--out", str(tmp_path / "report"), module="vgg_lightning.report",
                     env=cli_env, cwd=tmp_path)  # fmt: skip
    assert "Table 11" in report.stdout and f"{results['mean_class_recall']:.2f}" in report.stdout


def test_bad_transfer_input_fails_before_any_work(cli_env, tmp_path):
    missing = run_cli("task=transfer", "transfer.features=/nowhere/features.npz", "logger=none",
                      f"hydra.run.dir={tmp_path / 'run'}", env=cli_env, cwd=tmp_path, check=False)  # fmt: skip
    assert missing.returncode != 0 and "transfer.features='/nowhere/features.npz' does not exist" in missing.stderr
    layout = run_cli("task=features", "features.dataset=caltech101", f"features.root={tmp_path}", "logger=none",
                     f"hydra.run.dir={tmp_path / 'run2'}", env=cli_env, cwd=tmp_path, check=False)  # fmt: skip
    assert layout.returncode != 0 and "expected 102" in layout.stderr


# -- the paper's data --------------------------------------------------------------------------------------
def test_table_11_cells_and_the_experiments_scales():
    assert paper.transfer_cell("E+D", "caltech101") == paper.TransferCell("mean_class_recall", 92.7, 0.5)
    assert paper.transfer_cell("D", "voc2007").value == 89.3 and paper.transfer_cell("A", "voc2007") is None
    from test_cli import compose_cfg

    for name, spec in paper.TRANSFER_SETS.items():
        cfg = compose_cfg(f"experiment=transfer/{name}")
        assert (cfg.features.dataset, tuple(cfg.features.scales), cfg.features.aggregate) == (
            name,
            spec["scales"],
            spec["aggregate"],
        )
    assert json.loads(json.dumps(paper.TABLE_12)) == {"image only": 79.2, "image and person box": 84.0}
