"""The data sets' folder layouts, checked before any work: ImageNet's splits and class folders (missing, miscounted,
different, empty), the walk (links followed, loops walked once), and the readers of Appendix B's sets (VOC, Caltech)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import FAST, STEPS, assert_one_line_error, image_folder, make_folder, run_cli, write_jpeg
from PIL import Image

from vgg_lightning.data import DataLayoutError, ImageNetDataModule
from vgg_lightning.data.check import main as check_main
from vgg_lightning.data.labelled import DIFFICULT, POSITIVE
from vgg_lightning.data.readers import read_labelled


def test_missing_split_is_named(tmp_path):
    root = make_folder(tmp_path, {"a": 1, "b": 1}, splits=("train",))
    with pytest.raises(DataLayoutError, match=r"missing split folder '.*/val'"):
        _ = ImageNetDataModule(root, num_classes=None).num_classes


def test_wrong_class_count_names_found_and_expected(tmp_path):
    for split in ("train", "val"):  # 998 wnid folders, one (unreadable, never decoded) file each
        for i in range(998):
            (tmp_path / split / f"n{i:08d}").mkdir(parents=True)
            (tmp_path / split / f"n{i:08d}" / "x.JPEG").touch()
        # one that decodes: a data set of which no image decodes is refused before any work (issue 16)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "n00000000" / "x.JPEG", "JPEG")
    with pytest.raises(DataLayoutError) as error:
        _ = ImageNetDataModule(str(tmp_path), num_classes=1000).num_classes
    assert "/train' has 998 class folders, expected 1000" in str(error.value)
    assert "/val' has 998 class folders, expected 1000" in str(error.value)
    assert ImageNetDataModule(str(tmp_path), num_classes=None).num_classes == 998  # data=imagefolder follows


def test_splits_with_different_classes_are_refused_naming_the_folders(tmp_path, cli_env):
    root = make_folder(tmp_path / "data", {"cat": 1, "dog": 1}, splits=("train",))
    make_folder(tmp_path / "data", {"cat": 1, "eel": 1}, splits=("val",))
    with pytest.raises(DataLayoutError) as error:
        _ = ImageNetDataModule(root, num_classes=None).num_classes
    message = str(error.value)
    assert "different class folders" in message and "train: 2 (only here: dog)" in message
    assert "val: 2 (only here: eel)" in message
    # through the CLI: refused before any work, nothing written
    result = run_cli(
        "data=imagefolder", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}", env=cli_env, cwd=tmp_path,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "train: 2 (only here: dog), val: 2 (only here: eel)" in result.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_empty_class_is_named(tmp_path):
    root = make_folder(tmp_path, {"full": 1, "hollow": 0})
    with pytest.raises(DataLayoutError, match=r"1 class folder\(s\) hold no images: hollow"):
        ImageNetDataModule(root, num_classes=None).setup("fit")


def test_cli_refuses_a_bad_layout_before_any_work(tmp_path, cli_env):
    root = make_folder(tmp_path / "data", {"a": 1, "b": 1, "c": 1})
    run_dir = tmp_path / "run"
    result = run_cli(
        "data=imagenet", f"data.root={root}", *FAST, f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path, check=False
    )
    assert result.returncode != 0
    assert "has 3 class folders, expected 1000" in result.stderr and result.stderr.count("error: data root") == 1
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "results.json").exists()


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


def jpeg(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 60, 30)).save(path, quality=80)


def voc_folder(root, images: dict[str, list[tuple[str, int]]], splits: dict[str, list[str]]):
    for image_id, objects in images.items():
        jpeg(root / "JPEGImages" / f"{image_id}.jpg")
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objects)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{body}</annotation>")
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_voc_reader_labels_from_the_annotations(tmp_path):
    images = {"000001": [("dog", 0), ("person", 0)], "000002": [("cat", 1)], "000003": [("cat", 1), ("cat", 0)]}
    root = voc_folder(tmp_path / "VOC2007", images, {"trainval": ["000001", "000002"], "test": ["000003"]})
    found = read_labelled("voc2007", str(root))
    assert found.multi_label and found.labels.shape == (3, 20) and len(found.classes) == 20
    assert found.splits.tolist() == ["trainval", "trainval", "test"]
    dog, person, cat = (found.classes.index(c) for c in ("dog", "person", "cat"))
    assert found.labels[0, dog] == found.labels[0, person] == POSITIVE and found.labels[0].sum() == 2
    assert found.labels[1, cat] == DIFFICULT  # only a difficult cat
    assert found.labels[2, cat] == POSITIVE  # one cat not difficult
    with pytest.raises(DataLayoutError, match="no train.txt, val.txt .splits there: test, trainval."):
        read_labelled("voc2012", str(root))  # VOC-2012's default splits: train, val
    with pytest.raises(DataLayoutError, match="missing JPEGImages, Annotations.*name the VOC20xx folder itself"):
        read_labelled("voc2007", str(tmp_path))
    (root / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(DataLayoutError, match="1 image\\(s\\) listed but not in JPEGImages/: 000003"):
        read_labelled("voc2007", str(root))
    bad = voc_folder(tmp_path / "bad", {"1": [("unicorn", 0)]}, {"trainval": ["1"], "test": ["1"]})
    with pytest.raises(DataLayoutError, match="outside VOC's 20: unicorn"):
        read_labelled("voc2007", str(bad))


def caltech_folder(root, classes: list[str]):
    for name in classes:
        jpeg(root / name / "image_0001.jpg")
    return root


CALTECH_101 = ["BACKGROUND_Google", "Faces", "Faces_easy"] + [f"class{i:03d}" for i in range(99)]


def test_caltech_reader_counts_the_background_class(tmp_path):
    root = caltech_folder(tmp_path / "caltech101" / "101_ObjectCategories", CALTECH_101)
    found = read_labelled("caltech101", str(tmp_path / "caltech101"))  # the archive's folder inside is found
    assert len(found.classes) == 102 and len(found) == 102 and not found.multi_label
    assert found.labels.tolist() == list(range(102)) and "BACKGROUND_Google" in found.classes
    (root / "BACKGROUND_Google" / "image_0001.jpg").unlink()
    (root / "BACKGROUND_Google").rmdir()
    with pytest.raises(DataLayoutError, match="101 class folders, expected 102.*BACKGROUND_Google: it is missing"):
        read_labelled("caltech101", str(root))
    (root / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="1 class folder\\(s\\) hold no images: empty"):
        read_labelled("caltech101", str(root))
    with pytest.raises(DataLayoutError, match="expected 257 .*257.clutter"):
        read_labelled("caltech256", str(root))
    with pytest.raises(DataLayoutError, match="features.dataset='caltech': choose one of imagefolder, voc2007"):
        read_labelled("caltech", str(root))


def test_data_check_reads_the_layouts(tmp_path, capsys):
    root = caltech_folder(tmp_path / "101_ObjectCategories", CALTECH_101)
    assert check_main([str(root), "--layout", "caltech101", "--workers", "1"]) == 0
    assert "caltech101: 102 images, 102 classes" in capsys.readouterr().err
    (root / "Faces" / "image_0001.jpg").write_bytes(b"not a jpeg")
    assert check_main([str(root), "--layout", "caltech101", "--workers", "1"]) == 1
    assert "Faces/image_0001.jpg" in capsys.readouterr().out
    assert check_main([str(tmp_path), "--layout", "voc2007", "--workers", "1"]) == 2
    assert "is not a VOC folder" in capsys.readouterr().err


def test_a_link_out_of_its_class_folder_is_never_followed_and_data_check_names_it(tmp_path):
    """train/a/up -> .. would bring class b's images in again as class a's (silently wrong labels)."""
    from vgg_lightning.data.layout import split_samples
    from vgg_lightning.tasks.predict import input_files

    root = image_folder(tmp_path / "R")  # a and b: 3 training images each
    (root / "train" / "a" / "up").symlink_to("..")
    (root / "train" / "b" / "val_b").symlink_to(root / "val" / "b")  # val images as training ones: a leak
    write_jpeg(root / "train" / "a" / "sub" / "s.JPEG")
    (root / "train" / "a" / "again").symlink_to("sub")  # stays inside its class folder: read, and once
    classes, samples = split_samples(str(root / "train"))
    found = {c: sorted(os.path.relpath(p, root / "train") for p, i in samples if classes[i] == c) for c in classes}
    assert found == {"a": ["a/a0.JPEG", "a/a1.JPEG", "a/a2.JPEG", "a/again/s.JPEG"],
                     "b": ["b/b0.JPEG", "b/b1.JPEG", "b/b2.JPEG"]}  # fmt: skip
    assert len(input_files(str(root / "train" / "a"))) == 4  # predict's folder walk is the same one

    check = subprocess.run([sys.executable, "-m", "vgg_lightning.data.check", str(root), "--workers", "1"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert check.returncode == 1 and "Traceback" not in check.stderr, check.stderr
    named = sorted(line.split(": ")[0] for line in check.stdout.splitlines())
    assert named == [str(root / "train" / "a" / "up"), str(root / "train" / "b" / "val_b")], check.stdout
    assert "outside its class folder" in check.stdout and "0 of 11 files could not be decoded" in check.stderr


def test_a_name_that_is_not_utf8_is_refused_by_every_reader(cli_env, tmp_path, demo_run, capsys):
    """Training once took such a class folder, and predict then crashed writing predictions.csv."""
    root = image_folder(tmp_path / "R")
    latin1 = os.fsdecode(b"caf\xe9")  # a folder named in Latin-1 on a UTF-8 system
    for split in ("train", "val"):
        write_jpeg(root / split / latin1 / "x.JPEG")
    args = ["data=imagefolder", f"data.root={root}", "model.width=0.0625", *STEPS, "trainer.max_steps=1"]
    train = run_cli(*args, f"hydra.run.dir={tmp_path / 'train'}", env=cli_env, cwd=tmp_path, check=False)
    assert_one_line_error(train, f"{root / 'train'}/caf\\xe9: the name is not valid UTF-8", "convmv")
    predict = run_cli("task=predict", f"ckpt_path={demo_run / 'checkpoints' / 'last.ckpt'}", f"inputs={root / 'val'}",
                      "logger=none", f"hydra.run.dir={tmp_path / 'predict'}", env=cli_env, cwd=tmp_path,
                      check=False)  # fmt: skip
    assert_one_line_error(predict, "caf\\xe9", "not valid UTF-8")
    assert not (tmp_path / "predict" / "predictions.csv").exists()
    assert check_main([str(root), "--workers", "1"]) == 2
    assert "caf\\xe9: the name is not valid UTF-8" in capsys.readouterr().err
