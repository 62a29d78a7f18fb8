"""Bad input is refused before any work, in one line: each task's checks (`vgg_lightning.tasks`) import no torch,
Lightning or torchvision, so a mistyped value, a missing file or a data folder of the wrong layout is refused in
the time it takes to compose the config; HYDRA_FULL_ERROR=1 shows the traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import STEPS, assert_one_line_error, image_folder, run_cli, this_checkout, write_checkpoint

HEAVY = ("torch", "lightning", "torchvision")

# In a fresh interpreter: compose the package's config with each case's overrides, run the app's checks on it,
# and say what each raised and which of HEAVY were imported by the end.
CHECK_CASES = """
import json, sys
from hydra import compose, initialize_config_dir
import vgg_lightning.__main__  # registers the resolvers and config groups, as the app does
from vgg_lightning.tasks import check
from vgg_lightning.app.config_files import primary_config_dir

raised = []
for overrides in json.loads(sys.argv[1]):
    with initialize_config_dir(primary_config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    try:
        check(cfg)
        raised.append(None)
    except ValueError as error:
        raised.append(str(error))
print(json.dumps({"raised": raised, "imported": [name for name in json.loads(sys.argv[2]) if name in sys.modules]}))
"""

# one mistyped value per room (models, data, evaluation, training, the paper's rows, released weights), and a valid
# config that passes every check
CASES = {
    "model.width=0": "model.width=0: expected a positive multiplier",
    "model.config=Z": "unknown VGG config 'Z'",
    "data.batch_size=0": "data.batch_size=0: expected the global batch",
    "data.scale=100": "data.scale=100: S must be at least the crop size 224",
    "data.loader=dalli": "data.loader='dalli': choose one of torch, dali",
    "eval.scales=[100]": "eval.scales=[100]: expected a list of ints Q >= 224",
    "optim.lr=-1": "optim.lr=-1: expected a learning rate >= 0",
    "paper=table3/D_jiter": "paper='table3/D_jiter': no row or finding of the paper",
    # released weights (overrides apart by spaces): what to download, where from; the input they take
    "weights=caffe": "weights=caffe needs its file, weights_path=...: config D's released weights are "
    "VGG_ILSVRC_16_layers.caffemodel, linked from https://gist.github.com/ksimonyan/211839e770f7b538e2d8",
    "task=eval model=E weights=caffe weights_path=/no/E.caffemodel": "/no/E.caffemodel is not a file (vgg-lightning "
    "never downloads): config E's released weights are VGG_ILSVRC_19_layers.caffemodel, linked from",
    "experiment=released/table6/DE_dense weights_path=/no/D.caffemodel data.normalize=torchvision": "weights=caffe: "
    "the released Caffe nets take data.normalize=paper, not data.normalize=torchvision",
    "task=predict eval.ensemble=[/no/VGG_ILSVRC_19_layers.caffemodel]": "/no/VGG_ILSVRC_19_layers.caffemodel is not "
    "a file (vgg-lightning never downloads): config D's released weights",
    "weights=torchvison": "weights='torchvison': choose one of torchvision, caffe",
}


def test_the_settings_checks_refuse_bad_values_without_importing_torch(tmp_path):
    # the valid config names a data folder that is there: the checks now read its layout too
    valid = ["logger=none", "data=imagefolder", f"data.root={image_folder(tmp_path / 'R')}"]
    overrides = [[*override.split(), "logger=none"] for override in CASES] + [valid]
    result = subprocess.run(
        [sys.executable, "-c", CHECK_CASES, json.dumps(overrides), json.dumps(HEAVY)],
        cwd=tmp_path, env=this_checkout(dict(os.environ)), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    *refusals, valid = report["raised"]
    for (override, expected), message in zip(CASES.items(), refusals):
        assert message is not None and expected in message, (override, message)
    assert valid is None  # the default config passes every check, so every room's check ran to its end
    assert report["imported"] == [], f"the settings checks imported {report['imported']}"


def cli_with_import_log(args: list[str], cli_env: dict, cwd) -> tuple[subprocess.CompletedProcess, list, list]:
    """`python -X importtime -m vgg_lightning ARGS`: the result, its import-time lines, and the rest of stderr."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vgg_lightning", *args],
        cwd=cwd, env=this_checkout(cli_env), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = result.stderr.splitlines()
    imports = [line for line in lines if line.startswith("import time:")]
    return result, imports, [line for line in lines if line.strip() and not line.startswith("import time:")]


def test_the_cli_refuses_a_bad_value_in_one_line_before_importing_torch(cli_env, tmp_path):
    args = ["experiment=demo", "model.width=0", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]
    result, imports, said = cli_with_import_log(args, cli_env, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(said) <= 2, said  # Hydra's "Error executing job" and ours
    (error,) = [line for line in said if line.startswith("error:")]
    assert error.startswith("error: model.width=0: expected a positive multiplier"), error
    assert any(re.search(r"\| +vgg_lightning\.app\.config_files$", line) for line in imports)  # the log is real
    heavy = [line for line in imports if re.search(rf"\| +({'|'.join(HEAVY)})$", line)]
    assert heavy == [], heavy


def test_the_image_extensions_are_torchvisions():
    # data/layout.py keeps its own copy so that the layout check imports no torchvision: the same files as
    # torchvision's ImageFolder must be images
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from vgg_lightning.data.layout import IMG_EXTENSIONS as ours

    assert ours == IMG_EXTENSIONS


MISSING_CKPT = "checkpoint '/no/such.ckpt' does not exist"
# what the data folder, the checkpoints and the task's inputs may get wrong -> (overrides, what the error says)
BAD_INPUTS = {
    "imagenet_on_3_classes": (["data=imagenet", "data.root={R3}"], "'{R3}/train' has 3 class folders, expected 1000"),
    "different_classes": (["data=imagefolder", "data.root={AC}"], "train: 2 (only here: b), val: 2 (only here: c)"),
    "missing_root": (["data=imagefolder", "data.root={tmp}/nowhere"], "data root '{tmp}/nowhere' does not exist"),
    "eval_missing_checkpoint": (["task=eval", "experiment=demo", "ckpt_path=/no/such.ckpt"], MISSING_CKPT),
    "predict_missing_checkpoint": (["task=predict", "ckpt_path=/no/such.ckpt", "inputs={R3}"], MISSING_CKPT),
    "train_missing_init_from": (["experiment=demo", "model.init_from=/no/such.ckpt"], MISSING_CKPT),
    "released_missing_caffe_file": (
        ["experiment=released/table3/D_jitter", "data.root={R3}", "weights_path={tmp}/VGG_ILSVRC_16_layers.caffemodel"],
        "VGG_ILSVRC_16_layers.caffemodel is not a file (vgg-lightning never downloads): config D's released weights",
    ),
    "transfer_missing_features": (
        ["task=transfer", "transfer.features={tmp}/f.npz"],
        "features='{tmp}/f.npz' does not",
    ),
    # R3 as Caltech's folder: its class folders are train/ and val/ (the nets named, so that the layout is next)
    "features_caltech_layout": (
        ["task=features", "weights=torchvision", "features.dataset=caltech101", "features.root={R3}"],
        "2 class folders, expected 102",
    ),
    # a checkpoint read without torch (CK: a narrow A of width 0.0625 trained on classes a, b with torchvision's
    # scaling): what it is, what the run needs beside it, what it says against the command line
    "eval_not_a_checkpoint": (["task=eval", "ckpt_path={tmp}/R3/train/a/a0.JPEG"], "not a checkpoint but an image"),
    "eval_without_weights": (["task=eval", "experiment=demo"], "task=eval needs the weights to use: ckpt_path="),
    "predict_without_inputs": (["task=predict", "ckpt_path={CK}"], "task=predict needs the images: inputs="),
    "eval_other_scaling": (
        ["task=eval", "ckpt_path={CK}", "data.normalize=paper"],
        "data.normalize=paper, but {CK} was trained with data.normalize=torchvision",
    ),
    "eval_other_classes": (
        ["task=eval", "ckpt_path={CK}", "data=imagefolder", "data.root={R3}"],
        "the data's 3 classes are not the 2 that '{CK}' was trained on (only in the data: c",
    ),
    "finetune_without_torchvisions_file": (
        ["experiment=finetune", "data.root={AB}"],
        "are not at torch's hub cache, {tmp}/torch/hub/checkpoints/vgg16-397923af.pth (vgg-lightning never downloads)"
        ": get vgg16-397923af.pth once with `curl -L --create-dirs -o",
    ),
    "finetune_other_width": (
        ["experiment=finetune", "data.root={AB}", "weights=null", "model.init_from={CK}", "model.width=1.0"],
        "holds another net: width 0.0625 (this run: 1.0)",
    ),
    "finetune_other_config": (
        ["experiment=finetune", "data.root={AB}", "weights=null", "model.init_from={CK}", "model=vgg_f"],
        "model.init_from={CK} holds config A, this run asks for vgg_f (the command line)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_the_cli_refuses_bad_data_and_missing_files_before_importing_torch(cli_env, tmp_path, case):
    overrides, expected = BAD_INPUTS[case]
    names = {"R3": image_folder(tmp_path / "R3", "abc", "abc"), "AC": image_folder(tmp_path / "AC", "ab", "ac")}
    names.update(tmp=tmp_path, AB=image_folder(tmp_path / "AB"))
    names["CK"] = write_checkpoint(tmp_path / "a.ckpt", normalize="torchvision") if "{CK}" in str(overrides) else ""
    run_dir = tmp_path / "run"
    args = [*(o.format(**names) for o in overrides), "logger=none", f"hydra.run.dir={run_dir}"]
    result, imports, said = cli_with_import_log(args, {**cli_env, "TORCH_HOME": str(tmp_path / "torch")}, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    # Hydra's "Error executing job", then our one error (a layout's problems follow it, one "  - " line each)
    (error,) = [line for line in said if line.startswith("error:")]
    others = [line for line in said if line != error and not line.startswith("Error executing job")]
    assert "Traceback" not in result.stderr and all(line.startswith("  - ") for line in others), said
    assert expected.format(**names) in "\n".join(said), said
    heavy = [line for line in imports if re.search(rf"\| +({'|'.join(HEAVY)})$", line)]
    assert heavy == [], heavy
    assert set(os.listdir(run_dir)) <= {".hydra", "__main__.log"}  # Hydra's own files: the run wrote nothing
    assert not (tmp_path / "cache" / "demo").exists()  # the checkpoint is refused before the demo set is made


BAD_VALUES = {
    "width_zero": (["model.width=0"], ["model.width=0", "positive"]),
    "width_negative": (["model.width=-1"], ["model.width=-1"]),
    "scales_below_224": (["eval.scales=[100]"], ["eval.scales=[100]", "224"]),
    "batch_size_zero": (["data.batch_size=0"], ["data.batch_size=0"]),
    "negative_lr": (["optim.lr=-1"], ["optim.lr=-1"]),
    "epochs_not_a_number": (["trainer.max_epochs=abc"], ["trainer.max_epochs='abc'", "an int number of epochs"]),
    "seed_not_a_number": (["seed=abc"], ["seed='abc'", "an int"]),
    "top_k_zero": (["task=predict", "top_k=0"], ["top_k=0", "an int >= 1"]),
    "features_scales_below_224": (["task=features", "features.scales=[100]"], ["features.scales=[100]", "224"]),
    "holdout_over_one": (["task=transfer", "transfer.holdout=2"], ["transfer.holdout=2", "(0, 1)"]),
    "checkpoint_is_a_folder": (["task=eval", "ckpt_path=/"], ["checkpoint '/' is a folder", "last.ckpt"]),
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
    assert set(os.listdir(run_dir)) <= {".hydra", "__main__.log"}  # refused before any work: Hydra's files alone
    assert "data.batch_size=0" != overrides[0] or "max_device_batch" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_trainer_setting_lightning_refuses_is_one_line_under_its_group(cli_env, tmp_path, demo_root):
    """trainer.accelerator=gpu where there is none: Lightning's Trainer refuses it; one line, not Hydra's
    account of the call."""
    args = ["experiment=demo", f"data.root={demo_root}", *STEPS, "trainer.accelerator=gpu"]
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(result, "trainer: No supported gpu backend found! (Lightning's Trainer refused")
    assert "Error in call to target" not in result.stderr


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
    assert set(os.listdir(tmp_path / "run")) <= {".hydra", "__main__.log"}  # refused before any work


# an override Hydra cannot take -> what the one line says of it
HYDRA_REFUSALS = {
    "inputs=photos/n0[0-3]*.JPEG": ["Hydra reads [ ] { } ( ) ,", """'inputs="photos/n0[0-3]*.JPEG"'"""],
    "model.widht=0.5": ["no key 'model.widht' in the config; did you mean model.width", "+model.widht=0.5"],
}


def test_an_override_hydra_cannot_take_says_why_in_one_line_before_importing_torch(cli_env, tmp_path):
    """A glob's [0-3] is a list to Hydra's grammar: the line says how to quote it. A mistyped key: the line says
    that it is unknown and names the nearest keys of the composed config."""
    for override, expected in HYDRA_REFUSALS.items():
        result, imports, said = cli_with_import_log(["task=predict", override], cli_env, tmp_path)
        assert result.returncode == 1 and said and said[0].startswith("error:"), said
        assert len(said) == 1 and all(text in said[0] for text in expected), said
        assert [line for line in imports if re.search(rf"\| +({'|'.join(HEAVY)})$", line)] == []
