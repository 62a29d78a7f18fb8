"""The one way a checkpoint file is opened: `torch.load` with a pickle module of our own, whose unpickler builds
only what our checkpoints and torchvision's weight files hold (Python's "restricting globals"). No file can run
code, on every torch this package allows and whatever TORCH_FORCE_(NO_)WEIGHTS_ONLY_LOAD say.

Why not torch's own `weights_only=True` loader alone:
- it had bypasses that ran a crafted file's code up to torch 2.5 (CVE-2025-32434), and memory corruption through
  crafted opcodes and storage sizes up to 2.9 (CVE-2026-24747); pyproject allows torch >= 2.3;
- TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 switches it off for every call that leaves `weights_only` unset (Lightning's
  resume among them), and any imported library may widen it for everyone (`torch.serialization.add_safe_globals`).
Here the allow-list is ours (`ALLOWED`: containers, tensors and their storages, nothing callable beyond torch's
tensor rebuild), and the storages a zip checkpoint declares are checked against its records before torch reads
them. A file that is neither a torch zip nor a pickle is named for what it is; a TorchScript archive (code) is
refused: `torch.load` would hand it to `torch.jit.load`."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import threading
import types
import warnings
import zipfile
from collections.abc import Iterator

import torch

from ..compat import TORCH_PICKLE_GLOBALS
from .files import ZIP, CheckpointError, CodeInCheckpoint, code_in, pickle_record, pickled_head

ALLOWED = {("collections", "OrderedDict"), *TORCH_PICKLE_GLOBALS}
_STORAGE = re.compile(r"[A-Za-z0-9]+Storage")  # torch.FloatStorage, torch.BFloat16Storage, ...: typed storages
_FORCING = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
_ENVIRONMENT = threading.Lock()


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise code_in(module, name)
        return super().find_class(module, name)


def _load(file, **kwargs):
    return _Restricted(file, **kwargs).load()


# what torch.load calls as its pickle module: its unpickler subclasses ours (torch resolves the storage types
# itself before asking us), and old-style files are read with `load`
RESTRICTED_PICKLE = types.ModuleType("vgg_lightning_restricted_pickle")
RESTRICTED_PICKLE.Unpickler, RESTRICTED_PICKLE.load = _Restricted, _load


def _storage_dtype(module: str, name: str) -> torch.dtype:
    with warnings.catch_warnings():  # torch.FloatStorage & co. are deprecated, and still what torch.save writes
        warnings.simplefilter("ignore")
        dtype = (
            getattr(getattr(torch, name, None), "dtype", None)
            if module == "torch" and _STORAGE.fullmatch(name)
            else None
        )
    if not isinstance(dtype, torch.dtype):
        raise code_in(module, name)
    return dtype


class _StorageScan(_Restricted):
    """Unpickles a zip checkpoint's pickle without reading a tensor: the rebuild functions are stand-ins, and
    each storage the pickle names is noted (record key, bytes)."""

    def __init__(self, file) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages: dict[str, int] = {}

    def find_class(self, module: str, name: str):
        if "Storage" in name:
            return _storage_dtype(module, name)
        found = super().find_class(module, name)
        return found if isinstance(found, type) else (lambda *args, **kwargs: None)

    def persistent_load(self, saved_id):
        _, dtype, key, _, numel = saved_id  # ("storage", storage type, record key, location, elements)
        if not isinstance(dtype, torch.dtype) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"a storage of unknown type {dtype!r} or size {numel!r}")
        self.storages[str(key)] = numel * torch.empty((), dtype=dtype).element_size()


def _check_archive(path: str) -> None:
    """Refuse a TorchScript archive, and storages whose records are missing or of another size than declared."""
    with zipfile.ZipFile(path) as archive:
        sizes = {info.filename.split("/", 1)[-1]: info.file_size for info in archive.infolist()}
        if "constants.pkl" in sizes:
            raise CodeInCheckpoint("it is a TorchScript archive: code (a traced or scripted module), not a checkpoint")
        scan = _StorageScan(io.BytesIO(archive.read(pickle_record(archive))))
        scan.load()
    for key, nbytes in scan.storages.items():
        if sizes.get(f"data/{key}") != nbytes:
            raise CheckpointError(f"tensor data {key!r}: {nbytes} bytes declared, {sizes.get(f'data/{key}')} stored")


@contextlib.contextmanager
def _unforced() -> Iterator[None]:
    """Hide TORCH_FORCE_(NO_)WEIGHTS_ONLY_LOAD from torch.load: our pickle module decides what is built (torch
    refuses a pickle module when forced to weights_only, and the other one is what this module exists to ignore)."""
    with _ENVIRONMENT:
        saved = {name: os.environ.pop(name) for name in _FORCING if name in os.environ}
        try:
            yield
        finally:
            os.environ.update(saved)


def load(path: str) -> object:
    """The file's content on the CPU, built by the restricted unpickler; CheckpointError (CodeInCheckpoint for
    code) naming what is wrong otherwise. Zip checkpoints are memory-mapped: only the parts used are read."""
    is_zip = pickled_head(path).startswith(ZIP)
    try:
        if is_zip:
            _check_archive(path)
        with _unforced():
            return torch.load(
                path, map_location="cpu", pickle_module=RESTRICTED_PICKLE, weights_only=False, mmap=is_zip
            )
    except CheckpointError:
        raise
    except Exception as error:
        cause = error.__context__ if isinstance(error.__context__, CheckpointError) else None
        if cause is not None:
            raise cause from None
        raise CheckpointError(f"damaged or truncated ({type(error).__name__}: {error})") from error
