"""What a data set's classes are called: the one rule, for a training run (its checkpoints keep the names) and
for torchvision's weights (no data at all)."""

from __future__ import annotations

import re
from collections.abc import Sequence

WNID = re.compile(r"n\d{8}")
IMAGENET_CLASSES = 1000


def imagenet_categories() -> list[str]:
    """ILSVRC-2012's 1000 class names in the order of its sorted wnids, from torchvision's bundled metadata
    (no download; the same list for every torchvision classifier)."""
    from torchvision.models import VGG16_Weights

    return list(VGG16_Weights.IMAGENET1K_V1.meta["categories"])


def class_names(folders: Sequence[str] | None = None) -> tuple[list[str], list[str] | None]:
    """(names, wnids) of the classes, in label order. ILSVRC-2012's 1000 wnid folders, or no folders at all
    (torchvision's ImageNet weights), are named by torchvision's metadata, with the wnids when known; any other
    folders (an imagefolder, the demo) are named by themselves, with no wnids."""
    if folders is None:
        return imagenet_categories(), None
    folders = list(folders)
    if len(folders) == IMAGENET_CLASSES and all(WNID.fullmatch(name) for name in folders):
        return imagenet_categories(), folders
    return folders, None
