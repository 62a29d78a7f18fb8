"""Dense evaluation images/s: batches of equal rescaled shape (shape bucketing) against one image at a time.

    python benchmarks/dense_eval.py [--images 96] [--config D] [--width 0.125] [--scale 256] [--batch 16]

Both run side by side in this one process, on the CPU by default, through the real path (`Evaluator` under
`trainer.test`: read, decode and rescale to Q in `--workers` loader processes, as an evaluation does with
data.num_workers, then normalise, `score_map` on the image and its flip, softmax), over a
generated val set shaped like ImageNet's (60 % with a long side of 500 and a few common aspects, so many
images share a shape, as 500x375 does on ImageNet). The two take turns, and each counts with its fastest of
`--repeats` runs, to filter out the load other processes put on this shared machine. Both must give the
same errors: a batch computes what one image at a time computes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from imagenet_like import make_set  # noqa: E402  (the data benchmark's ImageNet-like images)

from vgg_lightning.evaluation.evaluator import Evaluator  # noqa: E402
from vgg_lightning.models import build_vgg  # noqa: E402


def write_val_set(root: Path, count: int, classes: int, seed: int = 0) -> list[tuple[int, int]]:
    """`root/val/<class>/*.JPEG`; (width, height) per file."""
    return [(width, height) for height, width, _ in make_set(root, count, seed, split="val", classes=classes)]


def timed(evaluator: Evaluator, accelerator: str) -> tuple[float, dict]:
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    started = time.perf_counter()
    trainer.test(evaluator, verbose=False)
    return evaluator.errors["images"] / (time.perf_counter() - started), evaluator.errors


def main(argv=None, report=None) -> dict:
    """images/s per mode; each mode's best so far also goes to `report(key, value)` as it is measured."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--config", default="D")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--scale", type=int, default=256, help="test scale Q")
    parser.add_argument("--batches", default="16,4", help="bucketed batch sizes to try (16 is eval.batch_size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu", help="cpu, gpu: Lightning's accelerator")
    parser.add_argument("--workers", type=int, default=max(1, len(os.sched_getaffinity(0)) - 1),
                        help="loader processes that decode (default: the cores but one)")  # fmt: skip
    args = parser.parse_args(argv)
    classes = 10
    torch.manual_seed(0)
    net = build_vgg(args.config, num_classes=classes, width=args.width, init="xavier").eval()
    sizes = [int(b) for b in args.batches.split(",")] + [1]
    modes = [(batch, nhwc) for nhwc in (False, True) for batch in sizes]
    best, errors, batches = dict.fromkeys(modes, 0.0), {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        shapes = write_val_set(Path(tmp), args.images, classes)
        common = Counter(shapes).most_common(3)
        print(
            f"{args.images} generated JPEGs, {len(set(shapes))} distinct sizes (most common: "
            + ", ".join(f"{w}x{h} x{n}" for (w, h), n in common)
            + f"); VGG-{args.config} width {args.width}, dense at Q={args.scale} with flips; "
            f"{args.accelerator}, {args.workers} loader workers, torch threads {torch.get_num_threads()}, "
            f"best of {args.repeats}"
        )
        for _ in range(args.repeats):
            for batch, nhwc in modes:
                evaluator = Evaluator([net], tmp, "dense", [args.scale], batch_size=batch, channels_last=nhwc,
                                      num_workers=args.workers)  # fmt: skip
                batches[batch] = len(evaluator.loader())
                rate, errors[batch, nhwc] = timed(evaluator, args.accelerator)
                best[batch, nhwc] = max(best[batch, nhwc], rate)
                if report:
                    report(f"{'nhwc' if nhwc else 'nchw'}_batch_{batch}", best[batch, nhwc])
    assert len({tuple(e.items()) for e in errors.values()}) == 1, errors  # the same posteriors every way
    print("\n| memory format | images per batch | batches | images/s | / one at a time |\n|---|---|---|---|---|")
    for batch, nhwc in modes:
        rate, single = best[batch, nhwc], best[1, nhwc]
        what = "1 (one at a time)" if batch == 1 else f"<= {batch}"
        print(f"| {'NHWC' if nhwc else 'NCHW'} | {what} | {batches[batch]} | {rate:.1f} | {rate / single:.2f}x |")
    print(f"\nthe same errors every way (top-1 {errors[1, False]['top1_error']}%)")
    return {f"{'nhwc' if nhwc else 'nchw'}_batch_{batch}": rate for (batch, nhwc), rate in best.items()}


if __name__ == "__main__":
    main()
