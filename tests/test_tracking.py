"""W&B tracking: what a job logs, read back from the offline run's own files."""

from __future__ import annotations

import shutil

import pytest
from helpers import FAST_WANDB, demo_sweep, read_results, run_cli, wandb_env

from vgg_lightning.report.wandb_files import read_wandb_run, wandb_run_files
from vgg_lightning.tracking import wandb_runs as tracking
from vgg_lightning.tracking.wandb_runs import RUN_ID_FILE

# what the issue asks W&B to get from every training job
METRICS = ("train/loss_step", "val/top1_error", "val/top5_error", "lr", "train/images_per_s", "train/epoch_time_s")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, demo_root):
    return demo_sweep(tmp_path_factory, demo_root)


def only_run(run_dir) -> dict:
    files = wandb_run_files(run_dir)
    assert len(files) == 1, files
    return read_wandb_run(files[0])


def logged_keys(run: dict) -> set[str]:
    return {key for step in run["history"] for key in step}


def test_flat_config_tags_and_name():
    assert tracking.flatten({"model": {"config": "A", "width": 0.5}, "data": {"demo": {}}, "seed": 0}) == {
        "model.config": "A",
        "model.width": 0.5,
        "data.demo": {},
        "seed": 0,
    }
    jitter = {
        "config": "D",
        "train_scale": [256, 512],
        "test_scales": [384],
        "task": "train",
        "experiment": "table3/D_jitter",
    }
    assert tracking.run_tags(jitter) == ["D", "S[256;512]", "Q384", "train", "table3/D_jitter"]
    assert tracking.run_name(jitter, job=3) == "D S[256;512] Q384 #3"
    assert tracking.run_name({**jitter, "task": "eval"}) == "D S[256;512] Q384 eval"


def test_run_id_is_kept_in_the_run_dir(tmp_path, monkeypatch):
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    first = tracking.run_id(tmp_path)
    assert first and first == tracking.run_id(tmp_path) == (tmp_path / RUN_ID_FILE).read_text().strip()
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # other ranks read the id but never make one
    assert tracking.run_id(tmp_path / "elsewhere") is None and not (tmp_path / "elsewhere").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    monkeypatch.setenv("WANDB_RUN_ID", "agent123")  # a W&B sweep agent's run wins, and is kept
    assert tracking.run_id(tmp_path) == "agent123" == (tmp_path / RUN_ID_FILE).read_text().strip()


def test_offline_unless_logged_in(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    assert tracking.wandb_mode() == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert tracking.wandb_mode() == "online"  # what `wandb login` leaves behind
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.wandb_mode() == "disabled"


def test_reader_gets_back_what_wandb_wrote(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(
        project="p",
        dir=tmp_path,
        mode="offline",
        id="abc123",
        config={"model.config": "E"},
        tags=["E"],
        group="g",
        name="n",
    )
    for step in range(3):
        run.log({"val/top1_error": 50.0 - step, "epoch": step})
    run.summary.update({"results.top1_error": 12.5})
    wandb.finish()
    wandb.teardown()  # finish() can return before the wandb-core service has written the run file
    read = read_wandb_run(wandb_run_files(tmp_path)[0])
    assert (read["id"], read["name"], read["group"], read["tags"]) == ("abc123", "n", "g", ["E"])
    assert read["config"] == {"model.config": "E"}
    assert [s["val/top1_error"] for s in read["history"]] == [50.0, 49.0, 48.0]
    assert read["summary"]["results.top1_error"] == 12.5


def test_each_job_of_a_multirun_gets_its_own_wandb_run(sweep):
    runs = {job: only_run(sweep / job) for job in ("0", "1")}
    assert runs["0"]["id"] != runs["1"]["id"]
    for job, config in (("0", "A"), ("1", "B")):
        run, results = runs[job], read_results(sweep / job)
        assert run["id"] == (sweep / job / RUN_ID_FILE).read_text().strip()
        assert run["name"] == f"{config} S256 Q256 #{job}" and run["group"] == str(sweep)
        assert run["tags"] == [config, "S256", "Q256", "train", "demo"]
        # the composed config as flat keys, the module's hyper-parameters merged into the same keys
        cfg = run["config"]
        assert cfg["model.config"] == config and cfg["data.scale"] == 256 and cfg["experiment"] == "demo"
        assert cfg["num_classes"] == 8 and not any(isinstance(v, dict) and v for v in cfg.values())
        assert set(METRICS) <= logged_keys(run), set(METRICS) - logged_keys(run)
        summary = run["summary"]
        assert summary["results.top1_error"] == results["top1_error"] and summary["results.config"] == config


def test_resumed_job_continues_its_wandb_run(sweep, tmp_path):
    run_dir = tmp_path / "job0"
    shutil.copytree(sweep / "0", run_dir)
    first = only_run(run_dir)
    run_cli(
        "experiment=demo", "model=A", *FAST_WANDB, "trainer.max_epochs=2", "ckpt_path=last", f"hydra.run.dir={run_dir}",
        f"data.root={first['config']['data.root']}", env=wandb_env(tmp_path / "cache"), cwd=tmp_path,
    )  # fmt: skip
    files = wandb_run_files(run_dir)
    assert len(files) == 2  # W&B keeps one folder per process; `wandb sync` merges them by id
    resumed = read_wandb_run(files[1])
    assert resumed["id"] == first["id"]
    trained = [step for step in resumed["history"] if "epoch" in step and not any(k.startswith("test/") for k in step)]
    assert {step["epoch"] for step in trained} == {1}  # only the new epoch (then the final test's row)
    assert resumed["summary"]["results.epochs"] == read_results(run_dir)["epochs"] == 2
