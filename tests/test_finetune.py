"""Fine-tuning: a checkpoint or torchvision's weights onto a data set with other classes (fc8 replaced), the
head alone (model.freeze=features) or at its own lr (optim.head_lr), and experiments/finetune.yaml end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import FAST, image_folder, read_results, run_cli

from vgg_lightning.data.demo import make_demo_dataset
from vgg_lightning.models import build_vgg, to_torchvision
from vgg_lightning.training.module import VGGClassifier

OPTIM = {"lr": 0.01, "head_lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "factor": 0.1, "patience": 1}


def classifier(**model) -> VGGClassifier:
    torch.manual_seed(0)
    return VGGClassifier({"config": "A", "width": 0.0625, "init": "xavier", **model}, OPTIM, num_classes=4)


def test_freeze_features_trains_the_head_alone_at_its_own_lr():
    module = classifier(freeze="features")
    optimizer = module.configure_optimizers()["optimizer"]
    assert [group["lr"] for group in optimizer.param_groups] == [0.1]  # the head's group only
    features = {k: v.clone() for k, v in module.net.features.state_dict().items()}
    head = module.net.head.fc8.weight.detach().clone()
    loss = F.cross_entropy(module(torch.randn(2, 3, 224, 224)), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    for key, value in module.net.features.state_dict().items():
        torch.testing.assert_close(value, features[key], rtol=0, atol=0)
    assert not torch.equal(module.net.head.fc8.weight, head)

    unfrozen = classifier().configure_optimizers()["optimizer"]
    assert [group["lr"] for group in unfrozen.param_groups] == [0.01, 0.1]  # convs, head (fc6-fc8)
    with pytest.raises(ValueError, match="model.freeze='convs': choose one of None, features"):
        classifier(freeze="convs")


def test_weights_torchvision_in_training_is_used_not_ignored(demo_root, cli_env, tmp_path):
    """A generated torchvision-format file (a narrow A's, 1000 classes) onto the 8-class demo: with lr 0 the
    trained net is the file's, but for fc8, which is new."""
    torch.manual_seed(1)
    source = build_vgg("A", num_classes=1000, width=0.0625, init="xavier")
    weights = tmp_path / "vgg11.pth"
    torch.save(to_torchvision(source), weights)
    run_dir = tmp_path / "run"
    common = ["experiment=demo", f"data.root={demo_root}", *FAST, "weights=torchvision", f"weights_path={weights}"]
    result = run_cli(*common, "optim.lr=0", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path)
    log = result.stdout + result.stderr
    assert f"warm start of A from {weights}" in log and "fc8: a new 8-class layer" in log
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    torch.testing.assert_close(state["net.features.conv1_1.weight"], source.features.conv1_1.weight)
    torch.testing.assert_close(state["net.head.fc7.weight"], source.head.fc7.weight)
    assert state["net.head.fc8.weight"].shape[0] == 8

    both = run_cli(*common, "model.init_from=x.ckpt", f"hydra.run.dir={tmp_path / 'both'}", env=cli_env,
                   cwd=tmp_path, check=False)  # fmt: skip
    assert both.returncode != 0 and "the net starts from one of them" in both.stderr


SUBSET = ("disc_red", "triangle_yellow", "disc_cyan", "triangle_purple")  # 4 of the demo's 8 hues, far apart


def test_finetune_recipe_on_a_4_class_subset_from_an_8_class_demo_checkpoint(cli_env, tmp_path, demo_run):
    """experiments/finetune.yaml with the demo's checkpoint, in torchvision's format, in place of torchvision's
    file; the net's size, the schedule (32 steps, lr 0.01, the head's 0.05) and no dropout are the demo's, so
    that it learns in seconds. It learns: val error well below chance."""
    demo = make_demo_dataset(str(tmp_path / "demo"), train_per_class=32, val_per_class=8)
    subset = tmp_path / "subset"
    for split in ("train", "val"):
        for name in SUBSET:
            shutil.copytree(Path(demo, split, name), subset / split / name)
    source_dir = demo_run  # the demo, trained on a larger set of the same 8 classes
    source = torch.load(source_dir / "checkpoints" / "last.ckpt", weights_only=True)
    weights = tmp_path / "vgg11_demo.pth"  # what --to torchvision writes
    run_cli(str(source_dir / "checkpoints" / "last.ckpt"), "--to", "torchvision", "--out", str(weights),
            module="vgg_lightning.export", env=cli_env, cwd=tmp_path)  # fmt: skip

    run_dir = tmp_path / "finetune"
    result = run_cli(
        "experiment=finetune", f"data.root={subset}", f"weights_path={weights}", "model=A", "model.width=0.125",
        "model.dropout=0", "data.batch_size=16", "data.num_workers=0", "trainer.max_epochs=4", "optim.lr=0.01",
        "optim.head_lr=0.05", "trainer.gradient_clip_val=1.0", "logger=csv", f"hydra.run.dir={run_dir}",
        env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert "left as initialised: fc8 (fc8: a new 4-class layer, the checkpoint's has 8 classes)" in log
    tuned = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert tuned["state_dict"]["net.head.fc8.weight"].shape[0] == 4
    assert tuned["hyper_parameters"]["classes"] == sorted(SUBSET)
    assert source["state_dict"]["net.head.fc8.weight"].shape[0] == 8
    results = read_results(run_dir)
    assert results["num_classes"] == 4 and results["top1_error"] < 50.0  # chance: 75%


def test_finetune_as_documented_from_one_of_our_checkpoints_takes_its_net(cli_env, tmp_path, demo_run):
    """The README's command, `experiment=finetune data.root=... weights=null model.init_from=<the demo's
    last.ckpt>`: the net is the checkpoint's (A at width 1/8, not the experiment's default D at full width),
    with its input scaling; fc8 is new. The run's W&B run is offline and says so in one line."""
    ckpt = demo_run / "checkpoints" / "last.ckpt"
    folder = image_folder(tmp_path / "photos", train=("ant", "bee"), val=("ant", "bee"), per_class=4)
    run_dir = tmp_path / "run"
    result = run_cli(
        "experiment=finetune", f"data.root={folder}", "weights=null", f"model.init_from={ckpt}",
        "data.batch_size=4", "data.num_workers=0", "trainer.max_steps=2", f"hydra.run.dir={run_dir}",
        env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "warm start of A from" in output and "fc8: a new 2-class layer, the checkpoint's has 8 classes" in output
    tuned = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert (tuned["model"]["config"], tuned["model"]["width"], tuned["normalize"]) == ("A", 0.125, "torchvision")
    assert (
        tuned["classes"] == ["ant", "bee"] and tuned["dataset"] == "imagefolder" and tuned["data_root"] == str(folder)
    )
    w_and_b = [line for line in output.splitlines() if "wandb" in line.lower() or "W&B" in line]
    assert len(w_and_b) == 1 and w_and_b[0].startswith("W&B run A S256 Q256: offline in"), w_and_b
    # 2 batches an epoch, under the logging interval (20): logged once an epoch, and Lightning has no warning
    assert "smaller than the logging interval" not in output
