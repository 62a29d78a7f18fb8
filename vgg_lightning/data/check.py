"""`python -m vgg_lightning.data.check ROOT`: decode every image under ROOT, list the ones that fail and why.

Every file the training would read (by extension, as the loader picks them) is decoded in full by the same
code the loader uses, in a pool of processes. The failures go to stdout as `path: reason`, one a line (the
progress bar goes to stderr), and so do the links to a folder outside its class folder, which no reader
follows; the exit code is 1 when there are any, 2 when ROOT holds no images. With
`--layout voc2007|voc2012|caltech101|caltech256|imagefolder`, ROOT is first checked as that data set's layout
(as task=features reads it; exit code 2 and what is wrong when it is not), and the images it lists are decoded.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from rich.console import Console
from rich.progress import track

from ..errors import one_line_errors
from .decode import check_file
from .layout import DataLayoutError, image_files, split_samples
from .readers import READERS, read_labelled

SPLITS = ("train", "val")


def files_to_check(root: str, outside: list[str] | None = None) -> list[str]:
    """What training and evaluation read: of a data root, the samples of its splits (train/, val/); of a split
    or any other folder, its images. The same walk as the loader's (`layout.image_files`: links followed
    while they stay inside their class folder, folder cycles not); the links it does not follow go into
    `outside`."""
    splits = [os.path.join(root, split) for split in SPLITS if os.path.isdir(os.path.join(root, split))]
    if splits:
        return [path for split in splits for path, _ in split_samples(split, outside)[1]]
    return list(image_files(root, outside))


def scan(paths: list[str], workers: int) -> list[tuple[str, str]]:
    """(path, reason) for every file that does not decode."""
    with ProcessPoolExecutor(workers) as pool:
        reasons = pool.map(check_file, paths, chunksize=max(1, min(256, len(paths) // (8 * workers))))
        progress = track(reasons, total=len(paths), description="decoding", console=Console(stderr=True))
        # the bar first: zip stops at the first iterable that ends, and the bar's last step is taken on that call
        return [(path, reason) for reason, path in zip(progress, paths) if reason is not None]


@one_line_errors(DataLayoutError, code=2)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vgg_lightning.data.check", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    parser.add_argument("root", help="a data root, a split or any folder of images")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: one per core)")
    parser.add_argument("--layout", choices=sorted(READERS), help="check ROOT as this data set's layout first")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        print(f"error: {args.root!r} does not exist (or is not a folder)", file=sys.stderr)
        return 2
    outside: list[str] = []
    if args.layout:
        images = read_labelled(args.layout, args.root)
        print(f"{args.layout}: {len(images)} images, {len(images.classes)} classes", file=sys.stderr)
        paths = images.paths
    else:
        paths = files_to_check(args.root, outside)
    if not paths:
        print(f"error: no image files under {args.root!r}", file=sys.stderr)
        return 2
    failures = scan(paths, max(1, args.workers))
    for path, reason in failures:
        print(f"{path}: {reason}")
    for link in outside:
        print(f"{link}: a link to {os.path.realpath(link)}, outside its class folder: not read")
    print(f"{len(failures)} of {len(paths)} files could not be decoded", file=sys.stderr)
    if outside:
        print(f"{len(outside)} link(s) out of their class folder not followed", file=sys.stderr)
    return 1 if failures or outside else 0


if __name__ == "__main__":
    sys.exit(main())
