"""Checkpoints: saves staged beside their target (never in $TMPDIR) and one on Ctrl-C; files read safely (a
checkpoint never runs code); the nets a task takes from checkpoints, an ensemble's or torchvision's files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from helpers import CLASSES, REPO, STEPS, assert_one_line_error, narrow, read_results, run_cli, with_callbacks
from omegaconf import OmegaConf

from vgg_lightning.models import TORCHVISION, to_torchvision, torchvision_weights_path
from vgg_lightning.tasks.eval import load_nets
from vgg_lightning.training.module import VGGClassifier


def test_ctrl_c_checkpoints_and_saves_never_stage_in_tmpdir(cli_env, tmp_path, demo_root):
    env = with_callbacks(cli_env)
    run_dir = tmp_path / "D"
    common = ["experiment=demo", f"data.root={demo_root}", *STEPS, "trainer.limit_train_batches=4",
              "trainer.max_steps=4", f"hydra.run.dir={run_dir}"]  # fmt: skip
    interrupted = run_cli(*common, "+callbacks.tmp._target_=trust_callbacks.UnusableTempdir",
                          "+callbacks.stop._target_=trust_callbacks.InterruptAtStep", "+callbacks.stop.step=2",
                          env=env, cwd=tmp_path, check=False)  # fmt: skip
    assert interrupted.returncode != 0
    saved = run_dir / "checkpoints" / "last-interrupted.ckpt"
    assert saved.is_file(), interrupted.stderr[-3000:]  # written although $TMPDIR is unusable
    assert torch.load(saved, map_location="cpu", weights_only=True)["global_step"] == 2
    assert not (run_dir / ".lock").exists()

    leftover = run_dir / "checkpoints" / ".partial-999-0"  # what a save killed half-way leaves
    leftover.write_bytes(b"half a checkpoint")
    resumed = run_cli(*common, "ckpt_path=last", env=env, cwd=tmp_path)
    log = resumed.stdout + resumed.stderr
    assert f"resuming from {saved} (step 2" in log and "removing" in log and not leftover.exists()
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("last*"))
    assert names == ["last.ckpt"], names  # the Ctrl-C checkpoint is gone once the fit ended normally
    assert read_results(run_dir)["steps"] == 4


def test_staging_names_match_no_lightning_checkpoint_rule(tmp_path):
    from vgg_lightning.checkpoints.write import AtomicCheckpointIO

    class Watch(dict):  # pickled while the staging file is open: record the folder's names then
        def __reduce__(self):
            seen.extend(os.listdir(tmp_path))
            return dict, ()

    seen: list[str] = []
    AtomicCheckpointIO().save_checkpoint({"x": Watch()}, tmp_path / "last.ckpt")
    staged = [name for name in seen if name != "last.ckpt"]
    assert len(staged) == 1 and "ckpt_" not in staged[0] and "last" not in staged[0], staged
    assert os.listdir(tmp_path) == ["last.ckpt"]


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("use", ["eval", "init_from", "ensemble"])
def test_a_crafted_checkpoint_is_refused_without_running_its_code(cli_env, tmp_path, demo_root, use):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    if use == "init_from":  # a bare pickle (torch's legacy format)
        evil.write_bytes(pickle.dumps({"state_dict": RunsCode(marker)}))
    else:
        torch.save({"state_dict": RunsCode(marker)}, evil)
    overrides = {"eval": ["task=eval", f"ckpt_path={evil}"], "init_from": [f"model.init_from={evil}"],
                 "ensemble": ["task=eval", f"ckpt_path={evil}", f"eval.ensemble=[{evil}]"]}[use]  # fmt: skip
    args = ["experiment=demo", f"data.root={demo_root}", *STEPS, *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_cli(*args, env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(result, "refusing", str(evil))
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_the_safe_one():
    calls = [(path, line) for path in (REPO / "vgg_lightning").rglob("*.py")
             for line in path.read_text().splitlines() if "torch.load(" in line]  # fmt: skip
    files = {str(p.relative_to(REPO)) for p, _ in calls}
    assert files == {"vgg_lightning/checkpoints/read.py"} and all("weights_only=True" in line for _, line in calls)


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
