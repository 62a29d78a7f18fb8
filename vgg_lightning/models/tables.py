"""The architectures as the papers tabulate them (Table 1, Sec. 4.1's B-shallow, Chatfield et al.'s fast nets)."""

# plain data, apart from the net that `vgg` builds from it: the settings checks read the config names without torch

from __future__ import annotations

#          block 1          block 2      block 3             block 4             block 5
TABLE_1: dict[str, tuple[str, ...]] = {
    "A":     ("3-64",         "3-128",     "3-256 x2",          "3-512 x2",          "3-512 x2"),
    "A-LRN": ("3-64, LRN",    "3-128",     "3-256 x2",          "3-512 x2",          "3-512 x2"),
    "B":     ("3-64 x2",      "3-128 x2",  "3-256 x2",          "3-512 x2",          "3-512 x2"),
    "C":     ("3-64 x2",      "3-128 x2",  "3-256 x2, 1-256",   "3-512 x2, 1-512",   "3-512 x2, 1-512"),
    "D":     ("3-64 x2",      "3-128 x2",  "3-256 x3",          "3-512 x3",          "3-512 x3"),
    "E":     ("3-64 x2",      "3-128 x2",  "3-256 x4",          "3-512 x4",          "3-512 x4"),
}  # fmt: skip

# Sec. 4.1's test of the 3x3 argument (Sec. 2.3): B with each pair of 3x3 convs replaced by one 5x5 conv (same
# receptive field, fewer non-linearities, more weights), the same pools and head; a 5x5 conv keeps the size
# (padding 2), as Table 1's convs do.
SHALLOW_NETS: dict[str, tuple[str, ...]] = {
    "B-shallow": ("5-64",      "5-128",     "5-256",             "5-512",             "5-512"),
}  # fmt: skip

# Chatfield et al. 2014, Table 1. One conv per block, so a cell can afford more words: "11-64/4 pad0" is an
# 11x11 conv with 64 channels, stride 4, padding 0 (a conv without "pad" keeps the size, as in Table 1), and
# "pool3/2" a 3x3 max-pool with stride 2, rounding up as Caffe does. The released VGG_CNN_S deploy prototxt
# differs from VGG-S below in conv2 and pool2 ("5-256 pad0, pool2/2": 33 -> 17 instead of 35 -> 17); the
# parameters and the 17x17 and 6x6 maps are the same either way (docs/models.md, "The fast nets").
#              conv1                         conv2                          conv3    conv4    conv5
FAST_NETS: dict[str, tuple[str, ...]] = {
    "VGG-F": ("11-64/4 pad0, LRN, pool3/2",  "5-256, LRN, pool3/2",         "3-256", "3-256", "3-256, pool3/2"),
    "VGG-M": ("7-96/2 pad0, LRN, pool3/2",   "5-256/2 pad1, LRN, pool3/2",  "3-512", "3-512", "3-512, pool3/2"),
    "VGG-S": ("7-96/2 pad0, LRN, pool3/3",   "5-256 pad1, pool3/2",         "3-512", "3-512", "3-512, pool3/3"),
}  # fmt: skip

CONFIGS: tuple[str, ...] = tuple(TABLE_1)
SHALLOW_CONFIGS: tuple[str, ...] = tuple(SHALLOW_NETS)
FAST_CONFIGS: tuple[str, ...] = tuple(FAST_NETS)
ALL_CONFIGS: tuple[str, ...] = CONFIGS + SHALLOW_CONFIGS + FAST_CONFIGS
