"""The comparison report: hand-made results files (a malformed one skipped, naming it), and a real sweep on the
demo set read as a user would."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from helpers import demo_sweep, run_cli, wandb_env
from PIL import Image

from vgg_lightning.app.config_files import register_groups
from vgg_lightning.report import cli as report
from vgg_lightning.report.runs import training_curve
from vgg_lightning.tracking.wandb_runs import RUN_ID_FILE

register_groups()  # experiments/ and sweeps/ as the experiment and sweep groups, as the app does


def write_results(run_dir, **fields) -> None:
    results = {"task": "eval", "experiment": None, "dataset": "imagenet", "num_classes": 1000, "protocol": "dense",
               "epochs": 74, "steps": 370000, "wall_time_s": 1.0, "paper": None, **fields}  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs(tmp_path):
    """A plan's folder: a Table 3 row, a Table 4 row, two runs of a depth sweep, a demo run with a CSV log."""
    plan = tmp_path / "plan"
    write_results(
        plan / "D_jitter", config="D", train_scale=[256, 512], test_scales=[384], top1_error=26.0, top5_error=8.4
    )
    write_results(
        plan / "D_multi",
        config="D",
        train_scale=[256, 512],
        test_scales=[256, 384, 512],
        top1_error=25.0,
        top5_error=7.4,
    )
    for config, top1 in (("A", 30.0), ("E", 27.5)):
        write_results(
            plan / "depth" / config, config=config, train_scale=256, test_scales=[256], top1_error=top1, top5_error=10.0
        )
    demo = plan / "demo"
    write_results(demo, task="train", config="A", dataset="demo", num_classes=8, train_scale=256, test_scales=[256],
                  protocol="center", top1_error=7.81, top5_error=0.0)  # fmt: skip
    (demo / "csv" / "version_0").mkdir(parents=True)
    (demo / "csv" / "version_0" / "metrics.csv").write_text(
        "epoch,step,train/loss_step,val/top1_error,train/loss_epoch\n"
        "0,9,2.1,,\n0,23,,87.5,\n0,23,,,2.0\n1,47,,56.3,\n1,47,,,1.4\n2,71,,28.6,\n2,71,,,0.9\n"
    )
    (demo / RUN_ID_FILE).parent.mkdir()
    (demo / RUN_ID_FILE).write_text("demo1234\n")
    return plan


def table_row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in\n{text}")


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_table_matches_paper_rows_and_keeps_the_others(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert report.main([str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = (out / "report.md").read_text()
    for text in (printed, written):
        jitter = table_row(text, "plan/D_jitter")
        assert jitter[2:] == [
            "D",
            "[256;512]",
            "384",
            "dense",
            "Table 3",
            "25.6",
            "8.1",
            "26.00",
            "8.40",
            "+0.40",
            "+0.30",
        ]
        multi = table_row(text, "plan/D_multi")
        assert multi[4:7] == ["256,384,512", "dense", "Table 4"] and multi[-2:] == ["+0.20", "-0.10"]
        demo = table_row(text, "plan/demo")
        assert demo[1:] == ["demo", "A", "256", "256", "center", "–", "–", "–", "7.81", "0.00", "–", "–"]
    # sorted as the paper sorts: by config, then S
    labels = [line.split("|")[1].strip() for line in written.splitlines() if line.startswith("| plan/")]
    assert labels == ["plan/depth/A", "plan/D_jitter", "plan/D_multi", "plan/depth/E", "plan/demo"]


def test_plots_are_pngs_a_person_can_read(runs, tmp_path):
    out = tmp_path / "report"
    report.main([str(runs), "--out", str(out)])
    for name in ("error_vs_depth.png", "training_curves.png"):
        width, height = png_size(out / name)
        assert 800 <= width <= 4000 and 400 <= height <= 4000, (name, width, height)
        assert f"]({name})" in (out / "report.md").read_text()
        # drawn, not blank: axes, text and coloured lines or bars cover part of the canvas
        pixels = np.asarray(Image.open(out / name).convert("RGB")).astype(int)
        ink = (pixels < 200).any(axis=2)  # darker than the near-white background in some channel
        coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 60  # the series' colours, not greys
        assert 0.01 < ink.mean() < 0.6 and coloured.mean() > 0.001, (name, ink.mean(), coloured.mean())
        assert ink[:, : width // 2].any() and ink[:, width // 2 :].any()  # both halves drawn on


def test_training_curve_comes_from_the_csv_log(runs):
    curve = training_curve(runs / "demo")
    assert [curve[s]["val/top1_error"] for s in sorted(curve) if "val/top1_error" in curve[s]] == [87.5, 56.3, 28.6]
    assert curve[71]["train/loss_epoch"] == 0.9 and curve[9]["train/loss_step"] == 2.1
    assert training_curve(runs / "D_jitter") == {}


def test_never_overwrites_a_report(runs, tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "report.md").write_text("someone's report")
    with pytest.raises(SystemExit, match="not empty"):
        report.main([str(runs), "--out", str(taken)])
    assert (taken / "report.md").read_text() == "someone's report"
    monkeypatch.chdir(tmp_path)  # the default folder, twice in the same second: two folders
    report.main([str(runs)])
    report.main([str(runs)])
    folders = sorted((tmp_path / "reports").iterdir())
    assert len(folders) == 2 and all((f / "report.md").exists() for f in folders)


def test_nothing_to_report_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        report.main([str(tmp_path)])
    assert exit.value.code == 2 and "no results.json" in capsys.readouterr().err


def test_wandb_report_offline_says_what_it_would_create(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    report.main([str(runs), "--out", str(tmp_path / "report"), "--wandb"])
    printed = capsys.readouterr().out
    assert "offline: no W&B Report created" in printed and "demo1234" in printed and "vgg-lightning" in printed


def test_report_on_a_real_sweep(tmp_path_factory, demo_root, tmp_path):
    sweep = demo_sweep(tmp_path_factory, demo_root)
    out = tmp_path / "report"
    result = run_cli(
        str(sweep), "--out", str(out), module="vgg_lightning.report", env=wandb_env(tmp_path), cwd=tmp_path
    )
    assert table_row(result.stdout, "depth-sweep/0")[1:3] == ["demo", "A"]
    assert table_row(result.stdout, "depth-sweep/1")[1:3] == ["demo", "B"]
    png_size(out / "error_vs_depth.png")
    png_size(out / "training_curves.png")  # from the W&B run files: the sweep logged to W&B only


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


def test_a_results_file_nested_too_deep_is_skipped_in_one_line(tmp_path, capsys):
    """json's parser recurses once per level: 100,000 levels were a RecursionError traceback."""
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "results.json").write_bytes(b'{"config": "caf\xe9"}')
    with pytest.raises(SystemExit) as exit:  # argparse's "nothing to report": neither is a results file
        report.main([str(tmp_path)])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and "no results.json under" in error
    assert f"skipping {tmp_path / 'deep' / 'results.json'}: not a results file (nested too deeply" in error
    assert f"skipping {tmp_path / 'latin1' / 'results.json'}: 'utf-8' codec can't decode" in error
