"""Top-1 and top-5 classification error in percent, as the paper's tables give them (torchmetrics: counted on
each rank, summed over the ranks at compute)."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy


class TopKError(MulticlassAccuracy):
    """Top-k classification error in percent."""

    def compute(self) -> torch.Tensor:
        return 100.0 * (1.0 - super().compute())


def error_metrics(num_classes: int, validate_args: bool = True) -> torch.nn.ModuleDict:
    """`validate_args=False` skips torchmetrics' checks of the labels (a `torch.unique`: a host-device sync per
    batch on a GPU), for labels that our own loader made."""
    return torch.nn.ModuleDict(
        {
            f"top{k}_error": TopKError(
                num_classes, top_k=min(k, num_classes), average="micro", validate_args=validate_args
            )
            for k in (1, 5)
        }
    )
