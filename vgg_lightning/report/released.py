"""The report's section on released weights (experiments/released/: the authors' Caffe D and E, or torchvision's
nets under the same protocols): each run beside the paper's row of the same protocol and Q. The authors' nets
are the paper's jittered D and E, so their rows are Tables 3-6's jittered ones; torchvision's, trained with
another recipe, are set beside the same rows to show what each protocol does to them."""

from __future__ import annotations

from .. import paper
from ..paper import format_test_scales
from .runs import ERRORS, Run

KIND_NAMES = {"caffe": "Caffe", "torchvision": "torchvision"}
PROTOCOL_ORDER = ("center", "dense", "multicrop", "dense_multicrop")


def is_released(run: Run) -> bool:
    """Whether any of a run's nets is released weights (results.json's `weights_source`, one per net)."""
    return any(run.results.get("weights_source") or ())


def released_row(run: Run) -> paper.Row | None:
    """The paper's jittered row with this run's nets, Q and protocol (D+E: Table 6's)."""
    protocol = run.results.get("protocol", "dense")
    return paper.find_row(run.config, paper.JITTER, run.test_scales, protocol)


def nets_label(run: Run) -> str:
    """'D (Caffe: VGG_ILSVRC_16_layers.caffemodel)', one per net; 'ours' for a checkpoint trained here."""
    sources = run.results.get("weights_source") or []
    return " + ".join(
        f"{source['config']} ({KIND_NAMES.get(source['format'], source['format'])}: {source['file']})"
        if source
        else "ours"
        for source in sources
    )


def _sort_key(run: Run) -> tuple:
    kinds = sorted({source["format"] for source in run.results.get("weights_source") or [] if source})
    protocol = run.results.get("protocol")
    order = PROTOCOL_ORDER.index(protocol) if protocol in PROTOCOL_ORDER else len(PROTOCOL_ORDER)
    return kinds, run.dataset, run.config, len(run.test_scales), order, run.label


def _number(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def released_table(runs: list[Run]) -> str | None:
    """One row per run of released weights; the paper's figures and Δ for runs on ILSVRC-2012 only. None when
    there is no such run."""
    released = sorted((r for r in runs if is_released(r)), key=_sort_key)
    if not released:
        return None
    lines = [
        "## The released nets under the paper's protocols (Tables 3-6)",
        "",
        "| run | data | nets | Q | protocol | paper row | paper top-1 | paper top-5 | top-1 | top-5 | Δ top-1 | Δ top-5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in released:
        row = released_row(run)
        on_imagenet = paper.on_ilsvrc2012(run.results.get("dataset"), run.results.get("num_classes"))
        theirs = {k: getattr(row, k) for k in ERRORS} if row and on_imagenet else {}
        delta = {k: run.error(k) - theirs[k] for k in theirs if run.error(k) is not None}
        lines.append(
            f"| {run.label} | {run.dataset} | {nets_label(run)} | {format_test_scales(run.test_scales) or '–'} | "
            f"{run.results.get('protocol', '–')} | {paper.key(row) if row else '–'} | "
            + " | ".join(_number(theirs.get(k), ".1f") for k in ERRORS) + " | "
            + " | ".join(_number(run.error(k), ".2f") for k in ERRORS) + " | "
            + " | ".join(_number(delta.get(k), "+.2f") for k in ERRORS) + " |"
        )  # fmt: skip
    lines += [
        "",
        "Top-1 / top-5 error on the validation set, in %; Δ = ours − paper. The paper's figures are those of its own "
        "(jittered) D and E, which the authors released; runs on other data than ILSVRC-2012 have none.",
    ]
    return "\n".join(lines)
