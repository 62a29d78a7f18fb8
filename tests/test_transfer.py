"""Appendix B's transfer protocol: linear SVMs on fixed descriptors, C chosen on held-out images, its two metrics
against scikit-learn's, the random and the set's own splits; and the whole chain (train, features, transfer) on
the demo set through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, read_results, run_cli
from omegaconf import OmegaConf
from sklearn.metrics import average_precision_score, balanced_accuracy_score, recall_score

from vgg_lightning.data.demo import make_demo_dataset
from vgg_lightning.data.labelled import DIFFICULT, NEGATIVE, POSITIVE
from vgg_lightning.evaluation import svm as protocol


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


# -- the chain through the CLI ----------------------------------------------------------------------------
def test_demo_chain_train_features_transfer_through_the_cli(cli_env, tmp_path, demo_run):
    """demo_run (the demo trained through the CLI) -> task=features on a set it never saw -> task=transfer ->
    the report."""
    demo = make_demo_dataset(str(tmp_path / "demo"), train_per_class=6, val_per_class=4)  # 80 images, 8 classes
    (Path(demo) / "train" / "disc_red" / "notes.txt").write_text("not an image")  # counted, left out
    common = [f"data.root={demo}", "logger=csv", "data.num_workers=0"]
    ckpt = demo_run / "checkpoints" / "last.ckpt"
    features_args = ["task=features", "experiment=demo", *common, f"ckpt_path={ckpt}", "features.scales=[224]",
                     f"hydra.run.dir={tmp_path / 'features'}"]  # fmt: skip
    said = run_cli(*features_args, env=cli_env, cwd=tmp_path)
    assert "train: left out 1 file(s) that are not images by their extension (disc_red/notes.txt)" in said.stdout
    with np.load(tmp_path / "features" / "features.npz") as found:
        features, labels, paths = found["features"], found["labels"], found["paths"]
        assert features.dtype == np.float32 and features.shape == (80, 512)  # fc7 of the demo's width 1/8
        np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, rtol=1e-5)
        assert sorted(set(found["splits"].tolist())) == ["train", "val"] and len(found["classes"]) == 8
        assert all(p.startswith(demo) for p in paths.tolist()) and np.bincount(labels).tolist() == [10] * 8
    assert not (tmp_path / "features" / "feature_shards").exists()  # joined into features.npz
    again = run_cli(*features_args, env=cli_env, cwd=tmp_path, check=False)  # a run dir holds one run
    assert_one_line_error(again, "already holds a run (features.npz)", "move_aside=true")

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
    # the nets named, so that the layout is what is refused
    layout = run_cli("task=features", "weights=torchvision", "features.dataset=caltech101", f"features.root={tmp_path}",
                     "logger=none", f"hydra.run.dir={tmp_path / 'run2'}", env=cli_env, cwd=tmp_path,
                     check=False)  # fmt: skip
    assert layout.returncode != 0 and "expected 102" in layout.stderr
    # arrays of Python objects: np.load would need allow_pickle (which runs code): refused, never unpickled
    crafted = tmp_path / "crafted.npz"
    np.savez(crafted, features=np.array([{"a": 1}], dtype=object), labels=np.zeros(1, dtype=np.int64))
    objects = run_cli("task=transfer", f"transfer.features={crafted}", "logger=none",
                      f"hydra.run.dir={tmp_path / 'run3'}", env=cli_env, cwd=tmp_path, check=False)  # fmt: skip
    assert_one_line_error(objects, f"transfer.features='{crafted}' is not a features.npz", "features hold Python")
