"""`python -m vgg_lightning.data.prepare` on tiny fake ILSVRC-2012 archives built here; an archive member that
would land outside the target is refused."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from vgg_lightning.data.prepare import ARCHIVES, main, prepare

# (ILSVRC2012_ID, wnid, words); ids are what the devkit's val ground truth refers to
LEAVES = [(1, "n01440764", "tench, Tinca tinca"), (2, "n01443537", "goldfish"), (3, "n01484850", "great white shark")]
VAL_LABELS = [3, 1, 2, 2, 1, 3, 1]  # the ground truth, one line per val image in file-name order


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return buffer.getvalue()


def make_archives(source) -> None:
    """The three downloads, shaped as image-net.org ships them (a tar of per-wnid tars, a flat val tar, and the
    devkit with meta.mat and the val ground truth), with a non-leaf synset that must not become a class."""
    source.mkdir(exist_ok=True)
    with tarfile.open(source / ARCHIVES["train"], "w") as tar:
        for _, wnid, _ in LEAVES:
            images = {f"{wnid}_{i}.JPEG": _jpeg(i) for i in range(2)}
            _add(tar, f"{wnid}.tar", _tar_bytes(images))
    val = {f"ILSVRC2012_val_{i + 1:08d}.JPEG": _jpeg(100 + i) for i in range(len(VAL_LABELS))}
    (source / ARCHIVES["val"]).write_bytes(_tar_bytes(val))

    fields = (
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    )
    rows = [(i, wnid, words, "a gloss", 0, np.zeros(0), 0, 2) for i, wnid, words in LEAVES]
    rows.append((4, "n00015388", "animal", "a parent", 3, np.array([1, 2, 3]), 1, 0))
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": np.array(rows, dtype=[(f, "O") for f in fields])})
    truth = "".join(f"{label}\n" for label in VAL_LABELS).encode()
    with tarfile.open(source / ARCHIVES["devkit"], "w:gz") as tar:
        _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)


@pytest.fixture
def archives(tmp_path):
    make_archives(tmp_path / "downloads")
    return tmp_path / "downloads"


def test_prepare_builds_the_imagenet_layout(archives, tmp_path):
    root = tmp_path / "imagenet"
    prepare(str(archives), str(root))

    wnids = sorted(w for _, w, _ in LEAVES)
    assert sorted(os.listdir(root / "train")) == wnids and sorted(os.listdir(root / "val")) == wnids
    for wnid in wnids:
        assert sorted(os.listdir(root / "train" / wnid)) == [f"{wnid}_0.JPEG", f"{wnid}_1.JPEG"]
    # each val image sits in the folder of its ground-truth label
    wnid_of = {i: w for i, w, _ in LEAVES}
    for number, label in enumerate(VAL_LABELS, start=1):
        assert (root / "val" / wnid_of[label] / f"ILSVRC2012_val_{number:08d}.JPEG").is_file()
    # torchvision's meta.bin: class names by wnid (so torchvision.datasets.ImageNet reads ROOT as well)
    wnid_to_classes, _ = torch.load(root / "meta.bin", weights_only=True)
    assert wnid_to_classes["n01440764"] == ("tench", "Tinca tinca") and "n00015388" not in wnid_to_classes
    assert [p for p in os.listdir(root) if p.startswith(".prepare")] == []  # the staging folder is gone


def test_prepare_splits_one_at_a_time_and_never_overwrites(archives, tmp_path, capsys):
    root = tmp_path / "imagenet"
    assert main([str(archives), str(root), "--splits", "val"]) == 0
    assert not (root / "train").exists() and (root / "val").is_dir()
    marker = root / "val" / "mine.txt"
    marker.write_text("user data")

    assert main([str(archives), str(root)]) == 2
    error = capsys.readouterr().err
    assert f"{root / 'val'} already exists" in error and "train" not in os.listdir(root)  # stopped before any work
    assert marker.read_text() == "user data"

    assert main([str(archives), str(root), "--splits", "train"]) == 0
    assert len(os.listdir(root / "train")) == len(LEAVES)


def test_prepare_names_every_missing_archive(tmp_path, capsys):
    (tmp_path / "downloads").mkdir()
    assert main([str(tmp_path / "downloads"), str(tmp_path / "imagenet")]) == 2
    error = capsys.readouterr().err
    for name in ARCHIVES.values():
        assert name in error
    assert "image-net.org" in error and not (tmp_path / "imagenet").exists()


def test_prepare_refuses_a_devkit_that_does_not_match_the_val_tar(archives, tmp_path, capsys):
    val = {f"ILSVRC2012_val_{i + 1:08d}.JPEG": _jpeg(i) for i in range(len(VAL_LABELS) + 2)}
    (archives / ARCHIVES["val"]).write_bytes(_tar_bytes(val))
    assert main([str(archives), str(tmp_path / "imagenet"), "--splits", "val"]) == 2
    assert "2 more images than the devkit's ground truth has labels (7)" in capsys.readouterr().err
    assert not (tmp_path / "imagenet" / "val").exists()


def test_md5_check_is_against_the_official_archives(archives, tmp_path, capsys):
    assert main([str(archives), str(tmp_path / "imagenet"), "--verify-md5"]) == 2
    assert "is not the official" in capsys.readouterr().err


def test_prepare_refuses_an_archive_member_outside_the_target(tmp_path):
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


def test_prepare_refuses_an_absolute_member_and_a_devkit_that_is_not_gzip(archives, tmp_path, capsys):
    """tarfile's `data` filter would strip the slash and unpack `/x/y` inside ROOT as `x/y`: a train tar member
    then became a "class" that torchvision failed on with a traceback."""
    with tarfile.open(archives / ARCHIVES["train"], "a") as tar:
        _add(tar, f"{tmp_path}/escaped.tar", _tar_bytes({"x.JPEG": _jpeg(1)}))
    assert main([str(archives), str(tmp_path / "imagenet"), "--splits", "train"]) == 2
    error = capsys.readouterr().err
    assert f"refusing a crafted archive member of {archives / ARCHIVES['train']}" in error, error
    assert "absolute path" in error and not (tmp_path / "escaped.tar").exists()
    assert not (tmp_path / "imagenet" / "train").exists()

    (archives / ARCHIVES["devkit"]).write_bytes(b"<html>a login page saved under the devkit's name</html>")
    assert main([str(archives), str(tmp_path / "other"), "--splits", "val"]) == 2
    error = capsys.readouterr().err
    assert f"{archives / ARCHIVES['devkit']} is not a gzip-compressed tar archive" in error, error
    assert not (tmp_path / "other").exists()  # said before any work
