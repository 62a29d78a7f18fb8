"""W&B's run files read back: an offline run keeps everything in its `run-<id>.wandb` file (an online run
keeps a copy), so the report can draw curves and find run ids without the network."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

_BLOCK, _HEADER = 32768, 7  # W&B's log format: LevelDB's, 32 KiB blocks, 7-byte record headers
_FULL, _FIRST, _LAST = 1, 2, 4


def _records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, chunks = _HEADER, b""
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        chunks = chunk if kind in (_FULL, _FIRST) else chunks + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            yield record


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def _value(item):
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    return getattr(item, kind) if kind else None


def read_wandb_run(path: Path) -> dict:
    """A run's `run-<id>.wandb` file as plain data: id, name, group, tags, config, summary and history
    (one dict per logged step)."""
    run = {"id": None, "name": None, "group": None, "tags": [], "config": {}, "summary": {}, "history": []}
    for record in _records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(id=r.run_id, name=r.display_name, group=r.run_group, tags=list(r.tags))
            run["config"].update({_key(i): _value(i) for i in r.config.update})
        elif kind == "config":
            run["config"].update({_key(i): _value(i) for i in record.config.update})
        elif kind == "summary":
            run["summary"].update({_key(i): _value(i) for i in record.summary.update})
        elif kind == "history":
            run["history"].append({_key(i): _value(i) for i in record.history.item})
    run["config"].pop("_wandb", None)
    return run


def wandb_run_files(run_dir: Path) -> list[Path]:
    """The .wandb files of a run dir, oldest first (a resumed job adds one, with the same run id)."""
    return sorted(p for p in Path(run_dir).glob("wandb/*run-*/run-*.wandb") if "latest-run" not in p.parts)
