"""The checkpoint files a run names (ckpt_path=, eval.ensemble=, model.init_from=), refused when missing."""

# torch-free: the app refuses a missing file before it pays for importing torch; checkpoints/read.py (which
# reads them) raises the same error through `existing_checkpoint`

from __future__ import annotations

import codecs
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

CHECKPOINTS = "checkpoints"  # a run dir's folder of checkpoints
LAST = "last.ckpt"
ZIP, PICKLE = b"PK\x03\x04", b"\x80"  # torch.save's archive (torch >= 1.6); an old-style file: a pickle, protocol >= 2
PICKLE_RECORD = "data.pkl"  # the archive's pickle, as torch.save names it (<name>/data.pkl)
PARTIAL = ".partial-"  # a checkpoint being written (checkpoints.write): no Lightning rule reads such a name


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / LAST


class CheckpointError(ValueError):
    """A checkpoint that cannot serve this run: missing, unreadable, or of another net."""


class CodeInCheckpoint(CheckpointError):
    """A file whose pickle names a global that our readers do not build: loading it would call that global."""


def code_in(module: str, name: str) -> CodeInCheckpoint:
    """The refusal of a pickle that names `module.name`, said alike by both readers (`checkpoints.unpickle`,
    torch's; `checkpoints.header`, torch-free)."""
    return CodeInCheckpoint(f"its pickle calls {module}.{name}, which loading would run")


def refusing(path: str, error: CheckpointError) -> CheckpointError:
    """`error` (a reader's, which does not know the path) as the one line a user reads; its `reason` is the
    reader's words alone, for a message that names the file itself (`checkpoints.read.resume_path`)."""
    if isinstance(error, CodeInCheckpoint):
        said = CodeInCheckpoint(f"refusing {path!r}: {error}; a checkpoint holds tensors and plain data only")
    else:
        said = CheckpointError(f"cannot read checkpoint {path!r}: {error}")
    said.reason = str(error)
    return said


def existing_checkpoint(path: str) -> str:
    """`path`, or a CheckpointError when no file is there (a run dir named instead: its last.ckpt is said)."""
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a folder: name a file in it, e.g. {last_checkpoint(path)}")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    return path


def check_files_exist(paths: Sequence[str | None]) -> None:
    """Refuse, before any work, the first of `paths` (None: not given) that names no file."""
    for path in paths:
        if path:
            existing_checkpoint(str(path))


def pickled_head(path: str) -> bytes:
    """The first bytes of a file that may hold a checkpoint (torch's zip or an old-style pickle); otherwise a
    CheckpointError naming what the file is instead."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head.startswith((ZIP, PICKLE)):
        raise CheckpointError(f"not a checkpoint but {file_kind(head) or 'data of another kind'}")
    return head


def pickle_record(archive: zipfile.ZipFile) -> str:
    """The name of torch.save's pickle in a zip checkpoint; CheckpointError when it has none, or several."""
    pickles = [name for name in archive.namelist() if name.split("/", 1)[-1] == PICKLE_RECORD]
    if len(pickles) != 1:
        raise CheckpointError("a zip archive without torch.save's pickle")
    return pickles[0]


def file_kind(head: bytes) -> str | None:
    """What a file given as a checkpoint is, from its first bytes ('an image', 'a text file', ...), so that a
    refusal names it rather than repeat a parser's complaint; None: not known. (A Caffe model is told apart in
    models.caffe, which reads those.)"""
    if not head:
        return "an empty file"
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG")):
        return "an image"
    if head.startswith((b"\x93NUMPY", b"\x89HDF")):
        return "an array file (numpy or HDF5)"
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head)
    return "a text file" if all(c.isprintable() or c in "\n\r\t" for c in text) else None
