"""The authors' released nets, as the Caffe model zoo's pages describe them: which file is which config, where it
is linked from, how they were trained and what input they take. Plain data (no torch, no numpy): the app names
the file to download when one is missing before it imports anything heavy."""

# torch-free: tasks' checks read it (checkpoints.weights)

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import paper

# The input the folded nets take (models.caffe_vgg): RGB, 0-255, minus paper.MEAN_RGB, which is the released
# mean pixel (B 103.939, G 116.779, R 123.68 in the gists) in RGB order: data.normalize=paper.
NORMALIZE = "paper"
LICENCE = "CC BY-NC 4.0 (non-commercial use), https://creativecommons.org/licenses/by-nc/4.0/"


@dataclass(frozen=True)
class ReleasedNet:
    """One of the authors' released nets (licence: LICENCE)."""

    file: str
    url: str
    deploy: str
    page: str  # the Caffe model zoo gist: README, deploy prototxt, and the link to the weights
    megabytes: int


_SITE = "http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/"
RELEASED = {
    "D": ReleasedNet("VGG_ILSVRC_16_layers.caffemodel", _SITE + "VGG_ILSVRC_16_layers.caffemodel",
                     "VGG_ILSVRC_16_layers_deploy.prototxt", "https://gist.github.com/ksimonyan/211839e770f7b538e2d8",
                     528),
    "E": ReleasedNet("VGG_ILSVRC_19_layers.caffemodel", _SITE + "VGG_ILSVRC_19_layers.caffemodel",
                     "VGG_ILSVRC_19_layers_deploy.prototxt", "https://gist.github.com/ksimonyan/3785162f95cd2d5fee77",
                     548),
}  # fmt: skip
# "In the paper, the model is denoted as the configuration D [E] trained with scale jittering" (both gists):
# results.json records this S for them, and the report sets them beside the paper's jittered rows
TRAIN_SCALE = paper.JITTER
TEST_SCALE = 384  # Q when none is given: the middle of the jittered range, as Table 3 tests them


def where_to_get(config: str | None) -> str:
    """Which released file is config's, and the page that links it; both nets when the config is not known."""
    nets = [(c, RELEASED[c]) for c in ([config] if config in RELEASED else RELEASED)]
    return "; ".join(f"config {c}'s released weights are {net.file}, linked from {net.page}" for c, net in nets)


def missing_file(path: str | os.PathLike, config: str | None) -> str:
    """The one line that a missing Caffe file gets: what to download, and where from."""
    return f"{os.fspath(path)} is not a file (vgg-lightning never downloads): {where_to_get(config)}"
