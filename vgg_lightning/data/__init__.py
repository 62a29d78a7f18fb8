"""Data: ImageNet-layout folders, the paper's augmentation, the demo set."""

from .datamodule import ImageNetDataModule
from .datasets import DataLayoutError, ImageFolder, validate_layout
from .decode import CorruptImageError

__all__ = ["CorruptImageError", "DataLayoutError", "ImageFolder", "ImageNetDataModule", "validate_layout"]
