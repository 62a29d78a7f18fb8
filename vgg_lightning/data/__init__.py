"""Data: ImageNet-layout folders, the paper's augmentation, the demo set."""

from .datasets import DataLayoutError, ImageFolder, validate_layout
from .decode import CorruptImageError

__all__ = ["CorruptImageError", "DataLayoutError", "ImageFolder", "ImageNetDataModule", "validate_layout"]


def __getattr__(name: str):
    # the datamodule imports Lightning: the data commands (prepare, check) start faster without it
    if name == "ImageNetDataModule":
        from .datamodule import ImageNetDataModule

        return ImageNetDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
