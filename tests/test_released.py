"""The released nets in every task: `weights=caffe weights_path=...` (and `.caffemodel` files in an ensemble) and
`weights=torchvision`, the input scaling that follows them, the experiments of experiments/released/ (one per
protocol row of Tables 3-6) and their section of the report. The files are narrow stand-ins of the authors' D
and E (helpers.write_released: their 2014 layout, the demo's 8 classes)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from helpers import FAST, REPO, compose_cfg, narrow, read_results, run_cli, write_released

from vgg_lightning import paper
from vgg_lightning.checkpoints.files import CheckpointError
from vgg_lightning.checkpoints.nets import task_nets
from vgg_lightning.checkpoints.weights import NamedNet
from vgg_lightning.evaluation.loader import ScaledImages
from vgg_lightning.evaluation.protocols import posterior
from vgg_lightning.models import from_caffe, to_torchvision
from vgg_lightning.models.released import RELEASED as RELEASED_FILES
from vgg_lightning.report.cli import main as report
from vgg_lightning.report.released import released_table
from vgg_lightning.report.runs import Run

DEMO_CLASSES = 8
RELEASED = sorted(p for p in (REPO / "experiments" / "released").glob("table*/*.yaml"))
MEAN = torch.tensor(paper.MEAN_RGB).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def released_files(tmp_path_factory) -> tuple[Path, Path]:
    """Narrow stand-ins of VGG_ILSVRC_16_layers.caffemodel and VGG_ILSVRC_19_layers.caffemodel, 8 classes."""
    folder = tmp_path_factory.mktemp("released")
    d = write_released(folder / "VGG_ILSVRC_16_layers.caffemodel", "D", DEMO_CLASSES, seed=0)
    return d, write_released(folder / "VGG_ILSVRC_19_layers.caffemodel", "E", DEMO_CLASSES, seed=1)


def test_each_protocol_row_of_tables_3_to_6_has_a_released_experiment():
    """Table 3's and 4's jittered rows (a single Q, then three), all of Table 5 and 6: each file names its row,
    whose protocol and Q it tests with, on weights=caffe; weights=torchvision switches the input scaling too."""
    names = {f"{p.parent.name}/{p.stem}" for p in RELEASED}
    jittered = {
        paper.key(r) for t in (3, 4) for r in paper.TABLES[t] if r.config in "DE" and r.train_scale == paper.JITTER
    }
    assert names == jittered | {paper.key(r) for t in (5, 6) for r in paper.TABLES[t]}
    for name in sorted(names):
        row = paper.row(name)
        cfg = compose_cfg(f"experiment=released/{name}")
        assert (cfg.task, cfg.weights, cfg.paper, cfg.data.normalize) == ("eval", "caffe", name, "paper"), name
        assert (cfg.eval.protocol, tuple(cfg.eval.scales)) == ("dense" if row.table < 5 else row.protocol,
                                                               row.test_scales)  # fmt: skip
        assert cfg.model.config == row.config.split("+")[0]  # D+E: weights_path is D's, eval.ensemble E's
    assert compose_cfg("experiment=released/table5/E_multicrop", "weights=torchvision").data.normalize == "torchvision"


def test_the_docs_give_one_command_per_row_with_the_papers_figures():
    """docs/caffe.md: a command per released experiment, the figure beside it that paper.py holds."""
    text = (REPO / "docs" / "caffe.md").read_text()
    found = re.findall(r"experiment=released/(\S+) .*# .*top-1 ([\d.]+), top-5 ([\d.]+)$", text, re.M)
    assert sorted(name for name, *_ in found) == sorted(f"{p.parent.name}/{p.stem}" for p in RELEASED)
    for name, top1, top5 in found:
        assert paper.figures(name) == {"top1_error": float(top1), "top5_error": float(top5)}, name
        command = next(line for line in text.splitlines() if f"experiment=released/{name} " in line)
        first = RELEASED_FILES["E" if name.split("/")[1].startswith("E") else "D"].file  # D+E: D's, then E's
        assert f"weights_path={first}" in command and ("DE_" not in name or "eval.ensemble=[" in command)


def one_per_class(demo_root: str, root: Path) -> str:
    """The demo's val split, one image per class (8 images): the reference below computes each by hand."""
    for folder in sorted((Path(demo_root) / "val").iterdir()):
        (root / "val" / folder.name).mkdir(parents=True)
        shutil.copy(sorted(folder.iterdir())[0], root / "val" / folder.name)
    shutil.copy(Path(demo_root) / "demo.json", root)
    return str(root)


def test_table_3_on_the_released_d_through_the_cli_equals_its_posteriors_by_hand(
    released_files, demo_root, cli_env, tmp_path
):
    """experiment=released/table3/D_jitter weights_path=<D's file>: results.json says where the net came from;
    the errors and the mean NLL are those of D's dense posteriors at Q = 384 computed here on RGB minus the
    mean pixel (no data.normalize given: it follows weights=caffe). Then the report sets it beside its row."""
    d, _ = released_files
    root = one_per_class(demo_root, tmp_path / "val8")
    run_dir = tmp_path / "D_jitter"
    run_cli(
        "experiment=released/table3/D_jitter", "data=demo", f"data.root={root}", f"weights_path={d}",
        "data.num_workers=0", "logger=none", "print_config=false", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    results = read_results(run_dir)
    net = from_caffe(d, "D").eval()
    assert (results["config"], results["test_scales"], results["protocol"]) == ("D", [384], "dense")
    assert results["weights"] == [str(d)] and results["train_scale"] == list(paper.JITTER)
    assert results["weights_source"] == [net.source]  # file, bytes, sha256, what was folded
    images = ScaledImages(root, [384])
    with torch.no_grad():
        probs = torch.cat([posterior([net], [images[i]["images"][0].float()[None] - MEAN], "dense")
                           for i in range(len(images))])  # fmt: skip
    labels = torch.tensor([images[i]["label"] for i in range(len(images))])
    assert 0.2 < probs.max(1).values.mean() < 0.95  # neither flat nor one-hot: the NLL below says something
    assert results["images"] == len(labels) == DEMO_CLASSES
    nll = -probs[torch.arange(len(labels)), labels].log().mean()
    assert results["nll"] == pytest.approx(float(nll), abs=1e-4)
    assert results["top1_error"] == pytest.approx(100.0 * float((probs.argmax(1) != labels).float().mean()))

    out = tmp_path / "report"
    assert report([str(run_dir), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| D_jitter |"))
    assert "| D (Caffe: VGG_ILSVRC_16_layers.caffemodel) | 384 | dense | table3/D_jitter | – | – |" in line
    assert "| ours top-1 |" not in text  # no run of ours: the main table is left out


def test_table_6_takes_a_caffe_file_in_eval_ensemble(released_files, demo_root):
    """experiment=released/table6/DE_dense: D's file as weights_path, E's in eval.ensemble, each of its own
    config, as task=eval loads them; or both where checkpoints are named."""
    from vgg_lightning.tasks.eval import load_nets

    d, e = released_files
    cfg = compose_cfg("experiment=released/table6/DE_dense", "data=demo", f"data.root={demo_root}",
                      f"weights_path={d}", f"eval.ensemble=[{e}]")  # fmt: skip
    nets, scales, paths = load_nets(cfg, DEMO_CLASSES)
    assert [net.config for net in nets] == ["D", "E"] and paths == [str(d), str(e)]
    assert scales == [paper.JITTER] * 2 and [net.source["file"] for net in nets] == [d.name, e.name]
    # the same nets named where checkpoints are (ckpt_path=, eval.ensemble=): a .caffemodel is a Caffe net
    cfg = compose_cfg("task=eval", f"ckpt_path={e}", f"eval.ensemble=[{d}]", "data=demo", f"data.root={demo_root}")
    assert [net.config for net in load_nets(cfg, DEMO_CLASSES)[0]] == ["E", "D"]


def released_run(label: str, tmp_path: Path, kind: str, config: str, q: list, protocol: str, top1, top5) -> Run:
    sources = [{"format": kind, "config": c, "file": f"{c}.{kind}"} for c in config.split("+")]
    results = {"task": "eval", "config": config, "dataset": "imagenet", "num_classes": 1000, "test_scales": q,
               "protocol": protocol, "top1_error": top1, "top5_error": top5, "weights_source": sources}  # fmt: skip
    return Run(label, tmp_path, results, None)


def test_the_report_sets_released_runs_on_imagenet_beside_the_jittered_rows(tmp_path):
    runs = [
        released_run("tv", tmp_path, "torchvision", "D", [384], "dense", 27.0, 9.0),
        released_run("d384", tmp_path, "caffe", "D", [384], "dense", 25.0, 8.0),
        released_run("de", tmp_path, "caffe", "D+E", [256, 384, 512], "dense_multicrop", 23.5, 6.9),
    ]
    rows = released_table(runs).splitlines()
    d384, de, tv = (next(r for r in rows if r.startswith(f"| {label} |")) for label in ("d384", "de", "tv"))
    assert rows.index(d384) < rows.index(de) < rows.index(tv)  # the authors' nets first, then torchvision's
    assert d384.endswith("| table3/D_jitter | 25.6 | 8.1 | 25.00 | 8.00 | -0.60 | -0.10 |")
    assert de.endswith("| table6/DE_dense_multicrop | 23.7 | 6.8 | 23.50 | 6.90 | -0.20 | +0.10 |")
    assert "| D (torchvision: D.torchvision) |" in tv and tv.endswith("| +1.40 | +0.90 |")
    assert released_table([Run("ours", tmp_path, {"config": "D", "top1_error": 1.0, "top5_error": 1.0}, None)]) is None


def test_a_fine_tune_from_the_released_d_starts_from_it_and_its_checkpoints_say_so(
    released_files, demo_root, cli_env, tmp_path
):
    """weights=caffe in training: with lr 0 the checkpoint holds the released net, and says where it came from
    (`weights_source`) and the input it takes (`normalize`: paper, which data.normalize followed)."""
    d, _ = released_files
    run_dir = tmp_path / "finetune"
    result = run_cli("data=demo", f"data.root={demo_root}", *FAST, "weights=caffe", f"weights_path={d}",
                     "optim.lr=0", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path)  # fmt: skip
    assert f"warm start of D from {d} (config D)" in result.stdout + result.stderr
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    released = from_caffe(d, "D")
    assert checkpoint["hyper_parameters"]["weights_source"] == released.source
    assert checkpoint["hyper_parameters"]["normalize"] == "paper"
    for key, value in released.state_dict().items():
        torch.testing.assert_close(checkpoint["state_dict"][f"net.{key}"], value, rtol=0, atol=0)


def test_predict_and_features_take_the_released_nets(released_files, demo_root, tmp_path):
    """task=predict's Predictor (the authors' Q of 384, paper's scaling) and task=features' nets, D's and E's from
    a .caffemodel in features.ensemble, as the tasks build them from their config."""
    from vgg_lightning.tasks.features import feature_nets
    from vgg_lightning.tasks.predict import predictor_for

    d, e = released_files
    cfg = compose_cfg("task=predict", "weights=caffe", f"weights_path={d}", f"inputs={demo_root}/val")
    predictor, train_scale, paths = predictor_for(cfg)
    assert (predictor.normalize, predictor.scales, train_scale, paths) == ("paper", [384], paper.JITTER, [str(d)])
    assert predictor.classes == [str(i) for i in range(DEMO_CLASSES)]  # not ImageNet's 1000: their numbers
    (net,) = predictor.nets
    for key, value in from_caffe(d, "D").state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value, rtol=0, atol=0)

    cfg = compose_cfg("task=features", "weights=caffe", f"weights_path={d}", f"features.ensemble=[{e}]")
    nets, paths = feature_nets(cfg)
    assert [net.config for net in nets] == ["D", "E"] and paths == [str(d), str(e)]
    assert [net.source["sha256"] for net in nets] == [from_caffe(p, None).source["sha256"] for p in (d, e)]


def test_torchvision_files_join_an_ensemble_and_each_net_must_take_the_runs_input(released_files, tmp_path):
    """An ensemble member that is torchvision's file is told apart from a checkpoint of ours by what it holds,
    and its config by its layers; a net is refused when it takes another input scaling than the run's."""
    d, _ = released_files
    vgg16, vgg19 = tmp_path / "vgg16-397923af.pth", tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(to_torchvision(narrow("D", classes=1000)), vgg16)
    torch.save(to_torchvision(narrow("E", seed=1, classes=1000)), vgg19)
    named = [NamedNet("torchvision", str(vgg16), "D"), NamedNet("checkpoint", str(vgg19))]
    used = task_nets(named, {"config": "D"}, 1000, normalize="torchvision")
    assert [(u.kind, u.net.config, u.net.source["file"]) for u in used] == [
        ("torchvision", "D", vgg16.name),
        ("torchvision", "E", vgg19.name),
    ]
    with pytest.raises(ValueError, match=rf"{vgg19}: torchvision's nets take data.normalize=torchvision, not "
                                         "data.normalize=paper"):  # fmt: skip
        task_nets([NamedNet("checkpoint", str(vgg19))], {"config": "D"}, normalize="paper")
    with pytest.raises(CheckpointError, match=f"{d}: its net has 8 classes, the data 1000"):
        task_nets([NamedNet("caffe", str(d), "D")], {"config": "D"}, 1000)
    with pytest.raises(ValueError, match="weights=caffe: the released Caffe nets take data.normalize=paper"):
        task_nets([NamedNet("caffe", str(d), "D")], {"config": "D"}, normalize="torchvision")
    assert json.loads(json.dumps(used[0].net.source))["bytes"] == vgg16.stat().st_size


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "torch<1.6 format (torchvision's own files)"])
def test_the_torch_free_check_takes_torchvisions_file_named_as_a_checkpoint(zipped, demo_root, tmp_path, monkeypatch):
    """torchvision's VGG file named where checkpoints are (ckpt_path=) is read by the check without torch as
    torchvision's (no header of ours inside), in either of torch's formats: the run takes its input scaling,
    and a command line that gives another is refused."""
    from vgg_lightning.checkpoints.header import read_header
    from vgg_lightning.tasks import from_weights as module

    vgg11 = tmp_path / "vgg11-8a719046.pth"
    torch.save(to_torchvision(narrow("A", classes=1000)), vgg11, _use_new_zipfile_serialization=zipped)
    assert read_header(str(vgg11)) is None
    common = ["task=eval", f"ckpt_path={vgg11}", "data=demo", f"data.root={demo_root}"]
    # what the app's command line gave (Hydra's overrides): nothing of data.normalize, then data.normalize=paper
    monkeypatch.setattr(module, "command_line_keys", lambda: {"task", "ckpt_path", "data", "data.root"})
    cfg = compose_cfg(*common)
    assert cfg.data.normalize == "paper" and module.from_weights(cfg, None, "eval") is None
    assert cfg.data.normalize == "torchvision"
    monkeypatch.setattr(module, "command_line_keys", lambda: {"task", "ckpt_path", "data", "data.normalize"})
    with pytest.raises(CheckpointError, match=f"data.normalize=paper, but {vgg11} was trained with data.normalize="
                                              "torchvision"):  # fmt: skip
        module.from_weights(compose_cfg(*common, "data.normalize=paper"), None, "eval")
