"""An override Hydra refused, said in one line: a value that Hydra's grammar reads as its own (a glob's `[0-3]`
is a list to it) and how to quote it; a key that is not in the config and the nearest ones that are."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence

from omegaconf import DictConfig

UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")
NEAREST = 4  # keys named at most


def quote_message(override: str, reason: str) -> str:
    """For Hydra's OverrideParseException: the override, why, and the same override quoted."""
    key, _, value = override.partition("=")
    return (
        f"{override}: Hydra reads [ ] {{ }} ( ) , and quotes in a value as its own syntax ({reason}). Quote the "
        f"value, in single quotes for the shell: '{key}=\"{value}\"'"
    )


def config_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every dotted key of a config (`model`, `model.width`, ...), without resolving any value."""
    keys = []
    for key in cfg.keys():
        name = f"{prefix}{key}"
        keys.append(name)
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            keys += config_keys(node, f"{name}.")
    return keys


def nearest_keys(key: str, keys: Sequence[str]) -> tuple[list[str], bool]:
    """(the keys closest to `key` by difflib's ratio, closest first, True); or, when none is close, (the keys
    beside it, False)."""
    close = difflib.get_close_matches(key, keys, n=NEAREST, cutoff=0.6)
    if close:
        return close, True
    branch = key.rpartition(".")[0]
    return [k for k in keys if k.rpartition(".")[0] == branch], False


def composed_without(bad_key: str, args: Sequence[str]) -> DictConfig | None:
    """The app's config composed with the command line's other overrides, or (when another is bad too) with
    its group choices alone (`experiment=demo`), or with none; None if even that fails."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config_files import primary_config_dir

    others = [a for a in args if "=" in a and not a.startswith(("-", "hydra.")) and a.split("=", 1)[0] != bad_key]
    for overrides in (others, [a for a in others if "." not in a.split("=", 1)[0]], []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(primary_config_dir(), version_base="1.3"):
                return compose("config", overrides=overrides)
        except Exception:
            continue
    return None


def unknown_key_message(text: str, args: Sequence[str] = ()) -> str | None:
    """For Hydra's "Could not override 'key'": the key is unknown, the nearest ones, and how to add a new one."""
    match = UNKNOWN_KEY.search(text)
    if match is None:
        return None
    key = match.group(1)
    given = next((a for a in args if a.split("=", 1)[0] == key), f"{key}=...")
    cfg = composed_without(key, args or sys.argv[1:])
    near, close = nearest_keys(key, config_keys(cfg)) if cfg is not None else ([], False)
    if close:
        said = f"; did you mean {' or '.join(near)}?"
    else:
        shown = ", ".join(near[:12]) + (", ..." if len(near) > 12 else "")
        said = f"; the keys there: {shown}" if near else ""
    return f"{given}: no key {key!r} in the config{said} (a key of your own: +{given}; every key: --cfg job)"
