"""task=predict: class names from the checkpoint, predictions.csv, and agreement with task=eval image by image."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from helpers import read_results, run_cli

from vgg_lightning.checkpoints.header import read_header
from vgg_lightning.data.classes import class_names, imagenet_categories
from vgg_lightning.data.demo import CLASSES as DEMO_CLASSES
from vgg_lightning.evaluation.predictor import Predictor, prediction_rows
from vgg_lightning.models import build_vgg, to_torchvision
from vgg_lightning.tasks.predict import input_files


@pytest.fixture
def trained(demo_run) -> Path:
    """The demo's last.ckpt (8 classes)."""
    return demo_run / "checkpoints" / "last.ckpt"


def read_predictions(run_dir: Path) -> list[dict]:
    with open(run_dir / "predictions.csv") as f:
        return list(csv.DictReader(f))


def test_class_names_are_folder_names_or_imagenets():
    assert class_names(["disc_red", "square_blue"]) == (["disc_red", "square_blue"], None)
    wnids = [f"n{i:08d}" for i in range(1000)]
    names, kept = class_names(wnids)
    assert kept == wnids and names[0] == "tench" and len(names) == 1000
    assert class_names(None) == (imagenet_categories(), None)  # torchvision's weights: no folders at all


def test_eval_and_predict_score_the_demos_net_as_its_training_did(trained, demo_run, cli_env, tmp_path):
    """The demo's net on the val images its training tested it on (centre crop, Q=256, torchvision's scaling),
    three ways: the training's own results, task=eval and task=predict, image by image. Neither task is told the
    net, its scaling or Q; eval is told the data set (data=demo, a copy of its val split alone), and still
    scales as the net was trained, not as data=demo's default (paper) would."""
    val_only, root = tmp_path / "val_only", Path(read_header(str(trained))["data_root"])  # the demo's data set
    shutil.copytree(root / "val", val_only / "val")
    shutil.copy(root / "demo.json", val_only)
    eval_dir, predict_dir = tmp_path / "eval", tmp_path / "predict"
    run_cli("task=eval", "data=demo", f"data.root={val_only}", f"ckpt_path={trained}", "data.num_workers=0",
            f"hydra.run.dir={eval_dir}", env=cli_env, cwd=tmp_path)  # fmt: skip
    result = run_cli("task=predict", f"ckpt_path={trained}", f"inputs={val_only}/val", "data.num_workers=0", "top_k=3",
                     f"hydra.run.dir={predict_dir}", env=cli_env, cwd=tmp_path)  # fmt: skip
    rows = read_predictions(predict_dir)
    files = sorted(str(p) for p in Path(val_only, "val").rglob("*.JPEG"))
    assert [row["path"] for row in rows] == files  # one row per image
    assert list(rows[0]) == ["path", "class", "probability", "class_2", "probability_2", "class_3", "probability_3"]
    assert {row["class"] for row in rows} <= set(DEMO_CLASSES)  # names, not label numbers
    assert "image" in result.stdout and rows[0]["class"] in result.stdout  # the printed table

    wrong = [row["class"] != Path(row["path"]).parent.name for row in rows]
    trained_error = read_results(demo_run)["top1_error"]
    assert 100 * sum(wrong) / len(rows) == pytest.approx(trained_error, abs=1e-3)
    assert read_results(eval_dir)["top1_error"] == trained_error
    # a prediction is no experiment: no logger, no W&B run, unless its command line names one
    assert sorted(p.name for p in predict_dir.iterdir()) == [".hydra", "__main__.log", "predictions.csv"]
    assert "W&B" not in result.stdout + result.stderr and "wandb" not in result.stdout + result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr  # nor a library's warning about our sampler

    # image by image: the batched run gives what one image through the protocol gives
    predictor = Predictor.from_checkpoint(str(trained))
    for row in rows[::16]:
        (top, probability), *_ = predictor(row["path"], k=1)
        assert top == row["class"] and probability == pytest.approx(float(row["probability"]), abs=1e-5)


def test_predict_refuses_a_different_explicit_config_and_names_bad_inputs(trained, demo_root, cli_env, tmp_path):
    result = run_cli("task=predict", f"ckpt_path={trained}", "model=D", f"inputs={demo_root}/val", env=cli_env,
                     cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode != 0 and "config A (this run: D)" in result.stderr
    result = run_cli("task=predict", f"ckpt_path={trained}", f"inputs={tmp_path}/none*.jpg", env=cli_env,
                     cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode != 0 and "no image files there" in result.stderr


def test_predict_with_torchvision_weights_names_imagenet_classes(demo_root, cli_env, tmp_path):
    """weights=torchvision model=A: a torchvision-format file (a narrow net's, 1000 classes), ImageNet's names."""
    torch.manual_seed(0)
    weights = tmp_path / "vgg11.pth"
    torch.save(to_torchvision(build_vgg("A", num_classes=1000, width=0.0625, init="xavier")), weights)
    run_dir = tmp_path / "run"
    pattern = f"{demo_root}/val/disc_*/*.JPEG"
    run_cli(
        "task=predict", "weights=torchvision", "model=A", f"weights_path={weights}", f"inputs={pattern}",
        "data.num_workers=0", "logger=csv", f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    rows = read_predictions(run_dir)
    assert [row["path"] for row in rows] == input_files(pattern) and len(rows) == 4
    assert {row["class"] for row in rows} <= set(imagenet_categories()) and len(rows[0]) == 11  # top 5


def readme_python_api() -> str:
    """The README's "From Python" block, as written."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("**From Python**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) < 10  # "in under ten lines"
    return block


def test_the_readme_python_api_runs_as_written(trained, demo_root, capsys):
    image = sorted(Path(demo_root, "val", "disc_red").glob("*.JPEG"))[0]
    code = readme_python_api()
    code = code.replace("outputs/train/<date>/<time>/checkpoints/last.ckpt", str(trained))
    code = code.replace('"photo.jpg"', f'"{image}"')
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and all(line.split(":")[0] in DEMO_CLASSES for line in printed)
    expected = Predictor.from_checkpoint(str(trained), protocol="dense")(str(image), k=3)
    assert printed == [f"{name}: {p:.3f}" for name, p in expected]


def test_probabilities_that_are_not_finite_are_refused_naming_an_image():
    """A net whose outputs overflow: no predictions.csv of NaN rows."""
    predictor = Predictor([build_vgg("A", num_classes=3, width=0.0625)], ["a", "b", "c"])
    outputs = [[(torch.tensor([[0.2, 0.3, 0.5], [float("nan")] * 3]), torch.tensor([0, 1]))]]
    with pytest.raises(ValueError, match=r"not finite \(NaN or inf\) for 1 image\(s\), e.g. two.jpg"):
        prediction_rows(predictor, ["one.jpg", "two.jpg"], outputs, k=2)
    assert prediction_rows(predictor, ["one.jpg"], [[(torch.tensor([[0.2, 0.3, 0.5]]), torch.tensor([0]))]], k=2)
