"""What a checkpoint says of its run, read without torch: the hyper-parameters our checkpoints keep (the net's
config and width, the data set it was trained on, its class names, input scaling and test scale Q), so that a
task can take them, and refuse a command line that says otherwise, before it pays for importing torch.

A checkpoint is torch's zip archive: `<name>/data.pkl` holds the pickled dict, the tensors lie beside it. Only
that pickle is read, and no global it names is ever looked up: torch's tensor and storage rebuilders come back as
inert placeholders, and a pickle that names anything else (beside `collections.OrderedDict`) is refused, as
`checkpoints.read` refuses it (in the same words: `checkpoints.files.code_in`), so reading runs no code of the
file's choosing and loads no tensor. (The weights themselves are read by `checkpoints.read`, through our
restricted unpickler, `checkpoints.unpickle`.)
"""

# torch-free, as everything it imports: the tasks' checks read checkpoints before torch is imported

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from ..models.choices import settings_spec
from .files import ZIP, CheckpointError, code_in, existing_checkpoint, pickle_record, pickled_head, refusing

TORCHVISION_FC8 = "classifier.6.weight"  # a key of every torchvision VGG state dict
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of torch's old format (torchvision's VGG files are in it)


class _Inert:
    """Whatever a pickled global would have built: takes any arguments and state, does nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


class _HeaderUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _Inert
        raise code_in(module, name)  # what a crafted file would run

    def persistent_load(self, pid):  # a tensor's storage: left in the archive
        return None


def _unpickled(path: str):
    """The pickled object of torch's zip format (its `<name>/data.pkl`), or of its old format (torch < 1.6, as
    torchvision's VGG files are: a magic number, the protocol, the system's sizes, then the object, each a
    pickle of its own); of any other pickle, the first."""
    if not pickled_head(path).startswith(ZIP):
        with open(path, "rb") as file:
            found = _HeaderUnpickler(file).load()
            if found != LEGACY_MAGIC:
                return found
            for _ in range(2):  # the protocol version, the system's sizes
                _HeaderUnpickler(file).load()
            return _HeaderUnpickler(file).load()
    with zipfile.ZipFile(path) as archive, archive.open(pickle_record(archive)) as file:
        return _HeaderUnpickler(file).load()


def read_header(path: str) -> dict | None:
    """The hyper-parameters of a vgg-lightning checkpoint (`model`, `num_classes`, `classes`, `normalize`, ...);
    None for torchvision's VGG file (a bare state dict, whose settings are torchvision's: `checkpoints.weights`);
    a CheckpointError saying why `path` is neither."""
    existing_checkpoint(path)
    try:
        checkpoint = _unpickled(path)
    except CheckpointError as error:
        raise refusing(path, error) from None
    except (zipfile.BadZipFile, OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise refusing(path, CheckpointError(f"damaged or truncated ({type(error).__name__}: {error})")) from None
    if isinstance(checkpoint, Mapping) and TORCHVISION_FC8 in checkpoint:
        return None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    if not isinstance(hparams, Mapping) or "config" not in (hparams.get("model") or {}):
        raise CheckpointError(f"{path!r} is not a vgg-lightning checkpoint (no model settings inside)")
    return dict(hparams)


def net_differences(hparams: Mapping, model: Mapping, keys: Sequence[str]) -> dict[str, tuple]:
    """{key: (the checkpoint's, this run's)} for each of `keys` (config, width) in which the net a checkpoint
    holds differs from the one `model` (conf/model) describes."""
    found = settings_spec(hparams["model"], hparams["num_classes"])
    asked = settings_spec(model, hparams["num_classes"])
    return {key: (found[key], asked[key]) for key in keys if found[key] != asked[key]}


def check_net(path: str, hparams: Mapping, model: Mapping, keys: Sequence[str]) -> None:
    """Refuse a checkpoint whose net differs from the one this run asks for in `keys` (a task that takes its
    net from the checkpoint asks only for what its command line gave), naming both."""
    differences = net_differences(hparams, model, keys)
    if differences:
        found = settings_spec(hparams["model"], hparams["num_classes"])
        said = ", ".join(f"{k} {theirs} (this run: {ours})" for k, (theirs, ours) in differences.items())
        raise CheckpointError(
            f"checkpoint {path!r} holds another net: {said}. Pass model={found['config']} "
            f"model.width={found['width']} (or the right checkpoint)"
        )
