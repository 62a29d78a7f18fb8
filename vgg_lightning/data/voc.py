"""PASCAL VOC-2007 / VOC-2012 classification, as the devkit unpacks: `JPEGImages/<id>.jpg`,
`Annotations/<id>.xml` and `ImageSets/Main/<split>.txt` (one image id a line) under `root` (e.g.
`VOCdevkit/VOC2007`, with the test tar unpacked into the same folder). An image's labels are the classes of
its objects: positive for a class with an object not marked difficult, DIFFICULT for one with difficult
objects only (left out of that class's AP, as VOC's own evaluation does), negative otherwise."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np

from .labelled import DIFFICULT, NEGATIVE, POSITIVE, LabelledImages
from .layout import DataLayoutError

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")  # fmt: skip
# VOC-2012's test annotations are not public (its server scores them): train on train, test on val
DEFAULT_SPLITS = {"voc2007": ("trainval", "test"), "voc2012": ("train", "val")}
FOLDERS = ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main"))


def _shown(items: list[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def image_labels(xml_path: str) -> dict[str, bool]:
    """class -> whether every object of that class in the image is marked difficult."""
    found: dict[str, bool] = {}
    for obj in ET.parse(xml_path).getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        found[name] = found.get(name, True) and difficult
    return found


def read_voc(root: str, splits: Sequence[str] | None = None, name: str = "voc2007") -> LabelledImages:
    splits = tuple(splits or DEFAULT_SPLITS.get(name, ("trainval", "test")))
    if not os.path.isdir(root):
        raise DataLayoutError(
            f"VOC root {root!r} does not exist: set features.root=/path/to/VOCdevkit/VOC2007 (the folder holding "
            f"JPEGImages/, Annotations/, ImageSets/Main/)"
        )
    missing = [f for f in FOLDERS if not os.path.isdir(os.path.join(root, f))]
    if missing:
        inside = sorted(e.name for e in os.scandir(root) if e.is_dir())
        hint = f" (it holds {_shown(inside)}: name the VOC20xx folder itself)" if inside else ""
        raise DataLayoutError(f"{root!r} is not a VOC folder: missing {', '.join(missing)}{hint}")
    main = os.path.join(root, "ImageSets", "Main")
    absent = [s for s in splits if not os.path.isfile(os.path.join(main, f"{s}.txt"))]
    if absent:
        there = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt") and "_" not in f)
        raise DataLayoutError(
            f"{main!r} has no {', '.join(f'{s}.txt' for s in absent)} (splits there: {', '.join(there) or 'none'}); "
            f"VOC-2007's test set is a tar of its own, unpacked into the same folder; VOC-2012's test labels are not "
            f"public, so use features.splits=[train,val]"
        )
    ids, names = [], []
    for split in splits:
        with open(os.path.join(main, f"{split}.txt")) as f:
            split_ids = [line.split()[0] for line in f if line.strip()]
        ids += split_ids
        names += [split] * len(split_ids)
    problems, labels, paths = [], np.full((len(ids), len(CLASSES)), NEGATIVE, dtype=np.int8), []
    no_image = [i for i in ids if not os.path.isfile(os.path.join(root, "JPEGImages", f"{i}.jpg"))]
    no_xml = [i for i in ids if not os.path.isfile(os.path.join(root, "Annotations", f"{i}.xml"))]
    if no_image:
        problems.append(f"{len(no_image)} image(s) listed but not in JPEGImages/: {_shown(no_image)}")
    if no_xml:
        problems.append(f"{len(no_xml)} image(s) without an annotation in Annotations/: {_shown(no_xml)}")
    if not ids:
        problems.append(f"the splits {', '.join(splits)} list no images")
    if problems:
        raise DataLayoutError(f"VOC folder {root!r}:\n  - " + "\n  - ".join(problems))
    unknown: set[str] = set()
    for row, image_id in enumerate(ids):
        for cls, difficult_only in image_labels(os.path.join(root, "Annotations", f"{image_id}.xml")).items():
            if cls not in CLASSES:
                unknown.add(cls)
                continue
            labels[row, CLASSES.index(cls)] = DIFFICULT if difficult_only else POSITIVE
        paths.append(os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
    if unknown:
        raise DataLayoutError(
            f"VOC annotations under {root!r} name classes outside VOC's 20: {_shown(sorted(unknown))}"
        )
    return LabelledImages(name, paths, labels, list(CLASSES), np.array(names))
