"""Runs you can trust (issue 16): each numbered case of the issue through the CLI where a user meets it."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, REPO, read_results, run_cli
from PIL import Image

HELPERS = str(Path(__file__).parent / "helpers")
STEPS = [
    *(a for a in FAST if not a.startswith("trainer.max_epochs")),
    "trainer.limit_test_batches=2",
    "print_config=false",
]


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_error(result, *expected: str) -> None:
    """A refusal: non-zero exit, no traceback, at most two lines on stderr, naming what the user must change."""
    assert result.returncode != 0, result.stdout[-2000:]
    lines = errors(result)
    assert "Traceback" not in result.stderr and 1 <= len(lines) <= 2, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]


def write_jpeg(path: Path, height: int = 40, width: int = 48, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")


def image_folder(root: Path, train=("a", "b"), val=("a", "b"), per_class: int = 3) -> Path:
    for split, classes in (("train", train), ("val", val)):
        for c in classes:
            for i in range(per_class if split == "train" else 2):
                write_jpeg(root / split / c / f"{c}{i}.JPEG", seed=i)
    return root


# -- 1, 8, 11, 12: a run dir holds one run; ckpt_path=last is its newest state; honest, quiet runs ---------
def test_run_dir_refuses_a_fresh_run_and_resumes_its_newest_state(cli_env, tmp_path, demo_root):
    run_dir = tmp_path / "D"
    common = ["experiment=table3/A_S256", "data=demo", f"data.root={demo_root}", *STEPS]
    first = run_cli(*common, "trainer.max_steps=2", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path)
    log = first.stdout + first.stderr
    # 12: each log line once, no advertising, no monitor warning before the first validation
    assert log.count("Seed set to 0") == 1 and "💡" not in log and "could not find the monitored key" not in log
    # 11: a Table 3 experiment on the demo data is not set against the paper's ImageNet row
    assert read_results(run_dir)["paper"] is None
    config, results = (run_dir / ".hydra" / "config.yaml").read_bytes(), (run_dir / "results.json").read_bytes()

    # 1: a fresh run into the dir is refused before any work, saying how to resume or where else to go
    fresh = run_cli(*common, "trainer.max_steps=3", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(fresh, "ckpt_path=last", "move_aside=true")
    # 8: a refused resume (another net) leaves the dir describing its checkpoint
    other = run_cli(*common, "ckpt_path=last", "model.width=0.125", f"hydra.run.dir={run_dir}", env=cli_env,
                    cwd=tmp_path, check=False)  # fmt: skip
    assert_one_line_error(other, "holds another net")
    assert (run_dir / ".hydra" / "config.yaml").read_bytes() == config
    assert (run_dir / "results.json").read_bytes() == results
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("last*")) == ["last.ckpt"]

    # a copy of the dir resumes into its own last.ckpt (never last-v1.ckpt), mid-epoch without a false warning
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    resumed = run_cli(*common, "ckpt_path=last", "trainer.max_steps=3", f"hydra.run.dir={copy}", env=cli_env,
                      cwd=tmp_path)  # fmt: skip
    assert "not resumable" not in resumed.stdout + resumed.stderr
    assert sorted(p.name for p in (copy / "checkpoints").glob("last*")) == ["last.ckpt"]
    # newest by the step recorded inside, not by mtime: an older state copied in later is not "last"
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", copy / "hpc_ckpt_1.ckpt")
    again = run_cli(*common, "ckpt_path=last", "trainer.max_steps=4", f"hydra.run.dir={copy}", env=cli_env,
                    cwd=tmp_path)  # fmt: skip
    assert f"resuming from {copy / 'checkpoints' / 'last.ckpt'} (step 3, " in again.stdout + again.stderr
    assert "not resumable" not in again.stdout + again.stderr  # step 3 of 2-step epochs: a mid-epoch resume
    assert read_results(copy)["steps"] == 4

    # the documented switch moves the old run aside, deleting nothing
    moved = run_cli(*common, "trainer.max_steps=1", "move_aside=true", f"hydra.run.dir={run_dir}", env=cli_env,
                    cwd=tmp_path)  # fmt: skip
    previous = [p for p in run_dir.iterdir() if p.name.startswith("previous-")]
    assert len(previous) == 1 and (previous[0] / "results.json").read_bytes() == results, moved.stderr[-2000:]
    assert (previous[0] / ".hydra" / "config.yaml").read_bytes() == config
    assert read_results(run_dir)["steps"] == 1


# -- 2: one run per dir ----------------------------------------------------------------------------------
def test_a_run_dir_held_by_a_live_run_is_refused_and_a_dead_ones_lock_is_stale(cli_env, tmp_path, demo_root):
    run_dir = tmp_path / "D"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": 0, "launch": None}
        (run_dir / ".lock").write_text(json.dumps(lock))
        args = ["experiment=demo", f"data.root={demo_root}", *STEPS, "trainer.max_steps=1", f"hydra.run.dir={run_dir}"]
        refused = run_cli(*args, env=cli_env, cwd=tmp_path, check=False)
        assert_one_line_error(refused, "in use by another run", f"pid {holder.pid}")
        assert not (run_dir / ".hydra").exists()  # refused before Hydra wrote anything
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock is stale, taken over (here by a run then refused for a bad value), released
    taken = run_cli(*args, "model.width=0", env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(taken, "model.width=0")
    assert "stale lock" in taken.stdout + taken.stderr and not (run_dir / ".lock").exists()


# -- 3: walks that terminate -----------------------------------------------------------------------------
def test_link_loops_are_walked_once_and_data_check_walks_what_training_reads(tmp_path):
    from vgg_lightning.data.datasets import ImageFolder, validate_layout

    root = image_folder(tmp_path / "R")
    (root / "train" / "a" / "loop").symlink_to(root / "train" / "a")
    (root / "train" / "b" / "x.JPEG").symlink_to(root / "train" / "b" / "y.JPEG")
    (root / "train" / "b" / "y.JPEG").symlink_to(root / "train" / "b" / "x.JPEG")
    assert validate_layout(str(root)) == ["a", "b"]  # no raw OSError from the looping file link
    train = ImageFolder(str(root), "train", train=True)
    assert len(train) == 8  # 6 images, and the 2 looping links (unreadable: skipped when read), no cycle
    assert train[train.samples.index((str(root / "train" / "b" / "x.JPEG"), 1))] is None

    check = subprocess.run([sys.executable, "-m", "vgg_lightning.data.check", str(root), "--workers", "1"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert check.returncode == 1
    failed = sorted(line.split(":")[0] for line in check.stdout.splitlines())
    assert failed == [str(root / "train" / "b" / "x.JPEG"), str(root / "train" / "b" / "y.JPEG")]
    assert "2 of 12 files" in check.stderr  # 8 train + 4 val: what training and evaluation read

    missing = subprocess.run([sys.executable, "-m", "vgg_lightning.data.check", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode == 2 and "does not exist" in missing.stderr  # 6: not "no image files"


# -- 4: bounded dense-evaluation memory -----------------------------------------------------------------
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


# -- 5, 6, 10: bad input refused before any work, in one line ---------------------------------------------
BAD_VALUES = {
    "width_zero": (["model.width=0"], ["model.width=0", "positive"]),
    "width_negative": (["model.width=-1"], ["model.width=-1"]),
    "scales_below_224": (["eval.scales=[100]"], ["eval.scales=[100]", "224"]),
    "batch_size_zero": (["data.batch_size=0"], ["data.batch_size=0"]),
    "negative_lr": (["optim.lr=-1"], ["optim.lr=-1"]),
    "unknown_task": (["task=nope"], ["task='nope'", "train, eval"]),
    "missing_root": (["data=imagefolder", "data.root=/no/such/root"], ["/no/such/root", "does not exist"]),
    "missing_checkpoint": (["task=eval", "ckpt_path=/no/such.ckpt"], ["/no/such.ckpt", "does not exist"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_refused_before_any_work_in_one_line(cli_env, tmp_path, demo_root, case):
    overrides, expected = BAD_VALUES[case]
    run_dir = tmp_path / "run"
    args = ["experiment=demo", f"data.root={demo_root}", *STEPS, *overrides, f"hydra.run.dir={run_dir}"]
    result = run_cli(*args, env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(result, *expected)
    assert "GPU available" not in result.stdout  # no Trainer was built: refused before any work
    assert "data.batch_size=0" != overrides[0] or "max_device_batch" not in result.stderr


def test_hydra_full_error_shows_the_traceback(cli_env, tmp_path, demo_root):
    result = run_cli("experiment=demo", f"data.root={demo_root}", "model.width=0", f"hydra.run.dir={tmp_path}/r",
                     env={**cli_env, "HYDRA_FULL_ERROR": "1"}, cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode != 0 and "Traceback" in result.stderr and "model.width=0" in result.stderr


def bad_data(kind: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    if kind == "different_classes":
        root = image_folder(tmp_path / "R", train=("a", "b"), val=("a", "c"))
        return [f"data.root={root}"], ["train lacks c", "val lacks b"]
    if kind == "imagenet_on_four_classes":
        root = image_folder(tmp_path / "R", train="abcd", val="abcd")
        return ["data=imagenet", f"data.root={root}"], ["data.num_classes=1000", "data=imagefolder"]
    root = image_folder(tmp_path / "R")
    for path in root.rglob("*.JPEG"):
        path.write_bytes(b"")
    return [f"data.root={root}"], ["no image decodes", "data.check"]


@pytest.mark.parametrize("kind", ["different_classes", "imagenet_on_four_classes", "empty_files"])
def test_bad_data_is_refused_before_any_work_naming_what_differs(cli_env, tmp_path, kind):
    overrides, expected = bad_data(kind, tmp_path)
    args = ["data=imagefolder", *overrides, "model.width=0.0625", *STEPS, f"hydra.run.dir={tmp_path / 'run'}"]
    result = run_cli(*args, env=cli_env, cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]
    assert "GPU available" not in result.stdout


# -- 7, 9: checkpoints staged beside their target, leftovers cleaned, a checkpoint on Ctrl-C -------------
def test_ctrl_c_checkpoints_and_saves_never_stage_in_tmpdir(cli_env, tmp_path, demo_root):
    env = {**cli_env, "PYTHONPATH": os.pathsep.join([HELPERS, cli_env.get("PYTHONPATH", "")])}
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
    from vgg_lightning.runtime.saving import AtomicCheckpointIO

    class Watch(dict):  # pickled while the staging file is open: record the folder's names then
        def __reduce__(self):
            seen.extend(os.listdir(tmp_path))
            return dict, ()

    seen: list[str] = []
    AtomicCheckpointIO().save_checkpoint({"x": Watch()}, tmp_path / "last.ckpt")
    staged = [name for name in seen if name != "last.ckpt"]
    assert len(staged) == 1 and "ckpt_" not in staged[0] and "last" not in staged[0], staged
    assert os.listdir(tmp_path) == ["last.ckpt"]


# -- 11: the report --------------------------------------------------------------------------------------
def test_the_report_skips_malformed_results_naming_each(cli_env, tmp_path):
    for name, content in (("list", [1, 2]), ("empty", {})):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "results.json").write_text(json.dumps(content))
    demo = {"task": "train", "config": "A", "experiment": "table3/A_S256", "dataset": "demo", "num_classes": 8,
            "train_scale": 256, "test_scales": [256], "protocol": "dense", "top1_error": 87.5, "top5_error": 40.0,
            "paper": {"top1_error": 29.6, "top5_error": 10.4}}  # fmt: skip
    (tmp_path / "runs" / "demo").mkdir()
    (tmp_path / "runs" / "demo" / "results.json").write_text(json.dumps(demo))
    result = run_cli(str(tmp_path / "runs"), env=cli_env, cwd=tmp_path, module="vgg_lightning.report")
    for name in ("list", "empty"):
        assert f"skipping {tmp_path / 'runs' / name / 'results.json'}" in result.stderr
    assert "57.9" not in result.stdout and "+" not in result.stdout.split("demo", 1)[1].splitlines()[0]


# -- 12: quiet defaults ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cores, devices, env, most, expected",
    [(16, 1, {}, None, 15), (16, 4, {}, None, 3), (96, 8, {}, None, 11), (16, "0,1", {}, None, 7),
     (16, [0, 1, 2, 3], {}, None, 3), (16, 1, {}, 2, 2), (1, 1, {}, None, 0),
     (12, 4, {"SLURM_STEP_ID": "0", "SLURM_CPUS_PER_TASK": "12"}, None, 11),  # srun: the task's own cores
     (96, 1, {"LOCAL_WORLD_SIZE": "8"}, None, 11)],  # torchrun's 8 processes on this machine
)  # fmt: skip
def test_default_workers_are_this_machines_share_of_cores_per_training_process(
    monkeypatch, cores, devices, env, most, expected
):
    from vgg_lightning.runtime.resolvers import _workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    for name in ("SLURM_STEP_ID", "SLURM_CPUS_PER_TASK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _workers(devices, most) == expected


def test_the_configs_take_the_workers_rule_with_the_trainers_devices(monkeypatch):
    from test_cli import compose_cfg

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    assert compose_cfg("trainer=ddp").data.num_workers == 3  # 4 GPUs
    assert compose_cfg("data=demo").data.num_workers == 2  # at most 2 for the demo


# -- 13: a checkpoint never runs code --------------------------------------------------------------------
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
    assert {p.name for p, _ in calls} == {"checkpoints.py"} and all("weights_only=True" in line for _, line in calls)


# -- 14: archives are not trusted ------------------------------------------------------------------------
def test_prepare_refuses_an_archive_member_outside_the_target(tmp_path):
    from test_prepare import make_archives

    from vgg_lightning.data.prepare import ARCHIVES

    source = tmp_path / "source"
    make_archives(source)
    val = source / ARCHIVES["val"]
    with tarfile.open(val, "a") as tar:
        info = tarfile.TarInfo("../../escaped.JPEG")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    result = subprocess.run([sys.executable, "-m", "vgg_lightning.data.prepare", str(source), str(tmp_path / "root"),
                             "--splits", "val"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and "refusing a crafted archive member" in result.stderr, result.stderr
    assert not list(tmp_path.rglob("escaped.JPEG"))
    assert not (tmp_path / "root" / "val").exists()
