"""Where the Hydra configs are, in a checkout or an installed wheel: conf/ (the primary config and its groups)
and, beside it, experiments/ and sweeps/, registered as the `experiment` and `sweep` groups.

The experiment and sweep files live at the repository's top level, where a reader looks for them, and not
inside conf/; Hydra reads a config group only from a folder of that name, so each of their files is stored in
Hydra's ConfigStore under its group (`experiment=table3/D_jitter`, `+sweep=depth`), with the package its
`# @package` header names. A user's own experiments join the same groups through `--config-dir` or
`hydra.searchpath` (docs/layout.md: your own experiments)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

_PACKAGED = Path(__file__).resolve().parents[1] / "configs"  # an installed wheel: vgg_lightning/configs/
_CHECKOUT = Path(__file__).resolve().parents[2]  # a checkout (an editable install too): the repository
GROUPS = {"experiment": "experiments", "sweep": "sweeps"}  # Hydra group -> its folder beside conf/
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")


def config_root() -> Path:
    """The folder holding conf/, experiments/ and sweeps/."""
    return _PACKAGED if (_PACKAGED / "conf").is_dir() else _CHECKOUT


def primary_config_dir() -> str:
    return str(config_root() / "conf")


def _package(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        match = _PACKAGE.match(line)
        if match:
            return match.group(1)
        if line and not line.startswith("#"):
            return None
    return None


def register_groups(store: ConfigStore | None = None) -> None:
    """Every experiments/**/*.yaml and sweeps/**/*.yaml into the ConfigStore, under its group and sub-folder."""
    store = store or ConfigStore.instance()
    root = config_root()
    for group, folder in GROUPS.items():
        for path in sorted((root / folder).rglob("*.yaml")):
            relative = path.relative_to(root / folder)
            subgroup = "/".join((group, *relative.parent.parts))
            store.store(name=relative.stem, node=OmegaConf.load(path), group=subgroup, package=_package(path))


def choices(group: str) -> list[str]:
    """The public choices of a group (conf/<group>/ or experiments/, sweeps/), private `_*.yaml` partials left
    out: what --help lists."""
    folder = config_root() / (GROUPS.get(group) or f"conf/{group}")
    names = (p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split("/")))


def experiment_net(choice: str | None, folders: Sequence[Path] = ()) -> str | None:
    """The net an experiment file names: its `override /model: X` (or a `model.config`), following the
    experiments it includes (`- /experiment/table3/_jitter`); None when it names none, or when there is no
    experiment. `folders`: more experiment folders to look in after ours (a `--config-dir`'s experiment/)."""
    if not choice:
        return None
    for folder in (config_root() / GROUPS["experiment"], *folders):
        path = Path(folder) / f"{choice}.yaml"
        if path.is_file():
            break
    else:
        return None
    node = OmegaConf.load(path)
    named = OmegaConf.select(node, "model.config", default=None)
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) and entry.startswith("/experiment/"):
            named = experiment_net(entry.removeprefix("/experiment/"), folders) or named
        elif not isinstance(entry, str):
            for key, value in entry.items():
                if key.removeprefix("override ").strip() == "/model":
                    named = str(value)
    return named
