"""Data: ImageNet-layout folders, the paper's augmentation, the demo set."""

__all__ = ["CorruptImageError", "DataLayoutError", "ImageFolder", "ImageNetDataModule", "validate_layout"]

_IN_LAYOUT = ("DataLayoutError", "validate_layout")


def __getattr__(name: str):
    # Importing data.options runs this file first, and the app's settings checks stay torch-free: the datasets
    # (torch) are imported on first use. The datamodule imports Lightning: the data commands (prepare, check)
    # start faster without it.
    if name in _IN_LAYOUT:
        from . import layout

        return getattr(layout, name)
    if name == "ImageFolder":
        from .datasets import ImageFolder

        return ImageFolder
    if name == "CorruptImageError":
        from .decode import CorruptImageError

        return CorruptImageError
    if name == "ImageNetDataModule":
        from .datamodule import ImageNetDataModule

        return ImageNetDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
