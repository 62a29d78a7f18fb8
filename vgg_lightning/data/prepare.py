"""`python -m vgg_lightning.data.prepare SOURCE ROOT`: the official ILSVRC-2012 downloads -> the ImageNet layout.

SOURCE holds the files image-net.org hands out, under their own names: the train tar (a tar of one tar per
wnid), the val tar (50,000 images in one flat folder) and the devkit (whose ground truth sorts the val
images). ROOT receives `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` and torchvision's `meta.bin` (the class
names), which is also the layout `torchvision.datasets.ImageNet(ROOT)` reads.

The unpacking is torchvision's own (`torchvision.datasets.imagenet`), with two changes around it: its md5
check of the archives (minutes on the 140 GB train tar) is skipped unless `--verify-md5` asks for it, and
each split is built in a staging folder inside ROOT and renamed into place only once it is complete and
passes `validate_layout`, so an interrupted run never leaves a folder that looks prepared. Every archive
member is checked by tarfile's `data` filter: none lands outside ROOT. An existing
split folder is never touched: the run stops before any work and says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from unittest import mock

from torchvision.datasets import imagenet as tv
from torchvision.datasets.utils import check_md5

from ..errors import one_line_errors
from .layout import DataLayoutError, is_image_file, validate_layout

SPLITS = ("train", "val")
ARCHIVES = {key: name for key, (name, _) in tv.ARCHIVE_META.items()}  # train, val, devkit -> official file name


class PrepareError(RuntimeError):
    """What is missing or in the way; the message says what to do."""


def needed_archives(splits) -> list[str]:
    """The devkit is always needed: it sorts the val images, and its class names go into meta.bin."""
    return ["devkit", *splits]


FIRST_MEMBER = {"train": ("a class tar (<wnid>.tar)", lambda name: name.endswith(".tar")),
                "val": ("an image", is_image_file)}  # fmt: skip


def archive_problem(key: str, path: str) -> str | None:
    """Why `path` is not the `key` archive as image-net.org hands it out (None: it opens as one): not a tar
    archive (the devkit: not a gzip-compressed one), or its first member not what that archive holds. Only
    its first member is read."""
    compressed = path.endswith(".gz")
    try:
        with tarfile.open(path, "r:gz" if compressed else "r:") as tar:
            first = tar.next()
    except (tarfile.TarError, EOFError, OSError) as error:
        kind = "gzip-compressed tar archive (.tar.gz)" if compressed else "tar archive"
        return f"{path} is not a {kind} ({error}): download it again"
    what, fits = FIRST_MEMBER.get(key, (None, None))
    if fits is not None and (first is None or not fits(first.name)):
        return f"{path} does not hold {what} first ({first.name if first else 'it is empty'}): is it the {key} archive?"
    return None


def check_inputs(source: str, root: str, splits) -> dict[str, str]:
    """Every problem at once, before any work: missing archives, files that are not the archives, split
    folders already in ROOT."""
    paths = {key: os.path.join(source, ARCHIVES[key]) for key in needed_archives(splits)}
    problems = [f"missing {path} (the {key} archive)" for key, path in paths.items() if not os.path.isfile(path)]
    if problems:
        problems.append(f"download them from https://image-net.org/ (ILSVRC2012) into {source}, with these names")
    problems += [problem for key, path in paths.items() if os.path.isfile(path) and (
        problem := archive_problem(key, path))]  # fmt: skip
    problems += [
        f"{os.path.join(root, split)} already exists: remove it, or prepare into another ROOT"
        for split in splits
        if os.path.exists(os.path.join(root, split))
    ]
    if problems:
        raise PrepareError("cannot prepare ImageNet:\n  - " + "\n  - ".join(problems))
    return paths


def verify_md5(paths: dict[str, str]) -> None:
    for key, path in paths.items():
        print(f"checking the md5 of {path} ...", flush=True)
        if not check_md5(path, tv.ARCHIVE_META[key][1]):
            raise PrepareError(f"{path} is not the official {ARCHIVES[key]} (md5 differs): download it again")


@contextmanager
def _without_md5_check():
    """torchvision's parsers check each archive's md5 against the official one on every call; we check the
    files' presence ourselves, and their md5 only when asked."""
    with mock.patch.dict(tv.ARCHIVE_META, {key: (name, None) for key, name in ARCHIVES.items()}):
        yield


def _inside_only(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """tarfile's `data` filter, which also refuses an absolute name instead of stripping its slash (an
    ImageNet archive has none: `/etc/x` is a crafted member, not `etc/x` meant inside ROOT)."""
    if member.name.startswith(("/", os.sep)):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest_path)


@contextmanager
def _members_stay_inside(path: str):
    """torchvision's parsers call `tarfile.extractall` without a filter, and Python 3.11 then trusts every
    member: a crafted archive could write outside ROOT (`../x`, an absolute path, a link out). tarfile's
    documented default filter, set here to `data` (`_inside_only`), refuses such members (and strips modes
    that make no sense for images); the refusal names the member and the archive `path`, and so does the
    error of an archive damaged after its first member."""
    with mock.patch.object(tarfile.TarFile, "extraction_filter", staticmethod(_inside_only)):
        try:
            yield
        except tarfile.FilterError as error:
            raise PrepareError(f"refusing a crafted archive member of {path}: {error}") from error
        except (tarfile.TarError, EOFError) as error:
            raise PrepareError(f"{path} is damaged ({error}): download it again") from error


def unpack(paths: dict[str, str], staging: str, splits) -> int:
    """Unpack the archives into `staging` with torchvision's parsers; returns the number of classes."""
    with _without_md5_check():
        print(f"reading {paths['devkit']}", flush=True)
        with _members_stay_inside(paths["devkit"]):
            tv.parse_devkit_archive(staging, paths["devkit"])
        wnid_to_classes, val_wnids = tv.load_meta_file(staging)
        if "val" in splits:
            print(f"unpacking {paths['val']} and sorting it into class folders", flush=True)
            with _members_stay_inside(paths["val"]):
                tv.parse_val_archive(staging, paths["val"], wnids=val_wnids)
            unsorted = [e.name for e in os.scandir(os.path.join(staging, "val")) if e.is_file()]
            if unsorted:
                raise PrepareError(
                    f"{paths['val']} holds {len(unsorted)} more images than the devkit's ground truth has labels "
                    f"({len(val_wnids)}): is this the devkit of the same release?"
                )
        if "train" in splits:
            print(f"unpacking {paths['train']} and its {len(wnid_to_classes)} class archives", flush=True)
            with _members_stay_inside(paths["train"]):
                tv.parse_train_archive(staging, paths["train"])
    return len(wnid_to_classes)


def prepare(source: str, root: str, splits=SPLITS, md5: bool = False) -> str:
    splits = tuple(splits)
    paths = check_inputs(source, root, splits)
    if md5:
        verify_md5(paths)
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".prepare-", dir=root)  # same file system as ROOT: renames are instant
    try:
        num_classes = unpack(paths, staging, splits)
        validate_layout(staging, splits, num_classes)
        for name in (*splits, tv.META_FILE):
            if not os.path.exists(os.path.join(root, name)):  # meta.bin may be there from the other split
                os.rename(os.path.join(staging, name), os.path.join(root, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"prepared {', '.join(splits)} in {root}: train with data=imagenet data.root={root}")
    return root


@one_line_errors(PrepareError, DataLayoutError, code=2)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vgg_lightning.data.prepare", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    parser.add_argument("source", help=f"the folder holding {', '.join(ARCHIVES.values())}")
    parser.add_argument("root", help="where train/ and val/ go (the data.root of training)")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--verify-md5", action="store_true", help="check the archives against the official md5s first")
    args = parser.parse_args(argv)
    prepare(args.source, args.root, args.splits, md5=args.verify_md5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
