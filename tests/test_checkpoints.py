"""Checkpoints: saves staged beside their target (never in $TMPDIR) and one on Ctrl-C; files read safely (a
checkpoint never runs code); the nets a task takes from checkpoints, an ensemble's or torchvision's files."""

from __future__ import annotations

import ast
import os
import pickle
import re
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import (
    CLASSES,
    REPO,
    STEPS,
    assert_one_line_error,
    narrow,
    read_results,
    run_cli,
    run_cli_calls,
    with_callbacks,
)
from omegaconf import OmegaConf

from vgg_lightning.checkpoints.files import CheckpointError
from vgg_lightning.checkpoints.read import read_checkpoint
from vgg_lightning.checkpoints.write import AtomicCheckpointIO, BackgroundCheckpointIO
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


def plant(path: Path, marker: Path, kind: str = "zip") -> Path:
    """A file at `path` whose unpickling runs `touch marker`: torch.save's zip, or a bare (old-style) pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"state_dict": RunsCode(marker), "global_step": 9, "epoch": 9}
    if kind == "zip":
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content, protocol=2))
    return path


def mismatched_storage(path: Path) -> Path:
    """torch.save's zip of one tensor whose data record is shorter than the storage its pickle declares (what
    torch < 2.10 read past the end of)."""
    torch.save({"w": torch.zeros(64)}, path)
    with zipfile.ZipFile(path) as source:
        records = {info.filename: source.read(info) for info in source.infolist()}
    short = next(name for name in records if name.endswith("/data/0"))
    records[short] = records[short][:16]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for name, data in records.items():
            target.writestr(name, data)
    return path


def test_the_safe_reader_builds_only_tensors_and_plain_data_whatever_torch_is_told(tmp_path, monkeypatch):
    """Ours and Lightning's reads (its resume reads through the strategy's checkpoint IO) of crafted files, with
    torch's own safety switched off for every caller that leaves `weights_only` unset."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "PWNED"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "script.pt")
    (tmp_path / "notes.txt").write_text("a text file, not a checkpoint\n")
    (tmp_path / "truncated.ckpt").write_bytes(plant(tmp_path / "whole.ckpt", marker).read_bytes()[:300])
    refused = {
        plant(tmp_path / "zip.ckpt", marker): "its pickle calls posix.system, which loading would run",
        plant(tmp_path / "old.ckpt", marker, "pickle"): "its pickle calls posix.system, which loading would run",
        tmp_path / "script.pt": "it is a TorchScript archive",
        mismatched_storage(tmp_path / "short.ckpt"): "256 bytes declared, 16 stored",
        tmp_path / "notes.txt": "not a checkpoint but a text file",
        tmp_path / "truncated.ckpt": "damaged or truncated",
    }
    readers = [read_checkpoint, AtomicCheckpointIO().load_checkpoint, BackgroundCheckpointIO().load_checkpoint]
    for path, message in refused.items():
        for read in readers:
            with pytest.raises(CheckpointError, match=re.escape(message)) as refusal:
                read(str(path))
            assert "weights_only" not in str(refusal.value)  # never the advice to load unsafely
    assert not marker.exists()

    net = narrow()  # what we do read: our checkpoints, and torchvision's weights (old ones in the pickle format)
    torch.save(net.state_dict(), tmp_path / "old-style.pth", _use_new_zipfile_serialization=False)
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")  # torch would refuse our pickle module when forced
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    for read in readers:
        state = read(str(tmp_path / "old-style.pth"))
        assert state.keys() == net.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_a_trainer_reads_checkpoints_only_through_the_safe_reader():
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    from lightning.pytorch.strategies import SingleDeviceStrategy

    from vgg_lightning.checkpoints.write import check_safe_reading, safe_plugins

    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    check_safe_reading(L.Trainer(plugins=safe_plugins([]), **quiet))  # trainer.plugins=null: ours is added
    with pytest.raises(ValueError, match="trainer.plugins: TorchCheckpointIO reads checkpoints past"):
        check_safe_reading(L.Trainer(plugins=safe_plugins([TorchCheckpointIO()]), **quiet))

    class OwnReading(SingleDeviceStrategy):  # as FSDP and DeepSpeed read their files
        def load_checkpoint(self, checkpoint_path, weights_only=None):
            return torch.load(checkpoint_path)

    with pytest.raises(ValueError, match="trainer.strategy: OwnReading reads checkpoints its own way"):
        check_safe_reading(L.Trainer(strategy=OwnReading("cpu"), **quiet))


def test_a_code_carrying_file_planted_where_a_checkpoint_is_looked_for_is_refused_and_never_run(
    cli_env, tmp_path, demo_root, demo_run
):
    """Each place a task finds a checkpoint, with torch's own safety off (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, as
    on torch < 2.6 where weights_only was not the default): one line, and the planted command never runs. A run
    dir's last*.ckpt and hpc_ckpt_*.ckpt are what ckpt_path=last looks at (ours; Lightning's own "last" and "hpc"
    rules loaded them before)."""
    marker, evil = tmp_path / "PWNED", plant(tmp_path / "evil.ckpt", tmp_path / "PWNED")
    run_dir = tmp_path / "run"
    for name in ("last.ckpt", "last-v1.ckpt", "last-interrupted.ckpt"):
        plant(run_dir / "checkpoints" / name, marker)
    plant(run_dir / "hpc_ckpt_1.ckpt", marker, "pickle")
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    good = str(demo_run / "checkpoints" / "last.ckpt")
    common = ["experiment=demo", f"data.root={demo_root}", *STEPS]
    calls = {
        "ckpt_path=last": [*common, "ckpt_path=last", f"hydra.run.dir={run_dir}"],
        "resume": [*common, f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'resumed'}"],
        "init_from": [*common, f"model.init_from={evil}", f"hydra.run.dir={tmp_path / 'warm'}"],
        "ensemble": [*common, "task=eval", f"ckpt_path={good}", f"eval.ensemble=[{evil}]",
                     f"hydra.run.dir={tmp_path / 'eval'}"],
        "predict": ["task=predict", f"ckpt_path={evil}", f"inputs={demo_root}/val", "print_config=false",
                    f"hydra.run.dir={tmp_path / 'predict'}"],
        "features": [*common, "task=features", f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'features'}"],
        "export": ["-m", "vgg_lightning.export", str(evil), "--to", "torchvision", "--out", str(tmp_path / "x.pth")],
        "text": [*common, "task=eval", f"ckpt_path={tmp_path / 'notes.txt'}", f"hydra.run.dir={tmp_path / 'text'}"],
    }  # fmt: skip
    env = {**cli_env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    results = dict(zip(calls, run_cli_calls(*calls.values(), env=env, cwd=tmp_path)))
    assert not marker.exists()
    for name in ("resume", "init_from", "ensemble", "predict", "features", "export"):
        assert_one_line_error(results[name], f"refusing '{evil}': its pickle calls posix.system")
    names = ("last.ckpt", "last-interrupted.ckpt", "last-v1.ckpt", "hpc_ckpt_1.ckpt")
    assert_one_line_error(results["ckpt_path=last"], "ckpt_path=last: checkpoints/", *names, "cannot be read",
                          "its pickle calls posix.system", "move_aside=true")  # fmt: skip
    assert_one_line_error(results["text"], "not a checkpoint but a text file")
    assert "weights_only" not in results["text"].stderr
    assert not (run_dir / "results.json").exists() and not (tmp_path / "x.pth").exists()


def test_every_torch_load_in_the_package_is_the_safe_one():
    calls = [
        (str(path.relative_to(REPO)), {k.arg: ast.unparse(k.value) for k in node.keywords}.get("pickle_module"))
        for path in (REPO / "vgg_lightning").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load"
    ]
    assert calls == [("vgg_lightning/checkpoints/unpickle.py", "RESTRICTED_PICKLE")]


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
