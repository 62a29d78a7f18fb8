"""What a task takes from the weights it uses, before any work: everything the net was trained with that changes
what it sees (its input scaling, its class order, its test scale Q as the default), the data set it was trained
on (for an eval told of no other), and for a training that starts from a checkpoint, the net itself (its config
and width). A value the command line gives that differs is refused in one line naming both.

The settings are read from the checkpoints' headers (`checkpoints.header`: no torch), or are those of
released weights (`checkpoints.weights`: torchvision's mean/std scaling, the Caffe nets'), and written into the
run's config, so that the run reads one config. Only the command line counts as given: an experiment's `data.normalize` (the
demo's torchvision scaling, say) gives way to the checkpoint's, which is what its net saw.
"""

# torch-free: part of every task's check

from __future__ import annotations

import os
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from ..app.job import asked_model_keys, command_line_keys, experiment_named_net, group_choice
from ..checkpoints.files import CheckpointError
from ..checkpoints.header import check_net, read_header
from ..checkpoints.weights import CHECKPOINT, KINDS, check_named_nets, run_nets
from ..models.choices import canonical_config, paper_warm_start, settings_spec


def _given() -> set[str] | None:
    """The keys this run's command line gave; None outside a Hydra app, where every value counts as given."""
    return command_line_keys()


def _is_given(key: str, given: set[str] | None) -> bool:
    return given is None or key in given


def take(cfg: DictConfig, key: str, value, source: str, given: set[str] | None) -> None:
    """`cfg.<key> = value`: what the net was trained with. A command-line value that differs is refused."""
    if value is None:  # a checkpoint of an older version, which did not keep it
        return
    current = OmegaConf.select(cfg, key)
    if not _is_given(key, given):
        OmegaConf.update(cfg, key, value)
    elif current != value:
        raise CheckpointError(
            f"{key}={current}, but {source} was trained with {key}={value}: drop {key}= to use the net as it was "
            f"trained (a net fed other inputs than it learnt on scores wrongly)"
        )


def take_default(cfg: DictConfig, key: str, value, given: set[str] | None) -> None:
    """`cfg.<key> = value` unless the command line gave one: a default, nothing to refuse."""
    if value is not None and not _is_given(key, given):
        OmegaConf.update(cfg, key, value)


def from_weights(cfg: DictConfig, ensemble: Sequence[str] | str | None, task: str) -> tuple[str, dict] | None:
    """The nets a task uses (`checkpoints.weights.run_nets`), checked before any work: the headers of our
    checkpoints are read (no torch); a single net is the one the command line names (if it names one); the nets
    of an ensemble saw the same inputs and classes, and the run's input scaling is theirs (released weights take
    theirs: `checkpoints.weights.check_named_nets`). Returns the first net's (path, header) when it is a
    checkpoint of ours, for an eval to take its data set from; None otherwise."""
    nets = run_nets(cfg, ensemble, task)
    headers = {net.path: read_header(net.path) for net in nets if net.kind == CHECKPOINT}
    ours = {path: header for path, header in headers.items() if header is not None}  # None: torchvision's file
    for key in ("normalize", "classes"):
        if len({repr(header.get(key)) for header in ours.values()}) > 1:
            raise CheckpointError(f"the nets of an ensemble must share their {key} ({', '.join(ours)} do not)")
    if ours:
        path, header = next(iter(ours.items()))
        if len(nets) == 1:
            check_net(path, header, cfg.model, asked_model_keys())
        take(cfg, "data.normalize", header.get("normalize"), path, _given())
    elif len(headers) == len(nets):  # torchvision's files alone, named as checkpoints: their scaling
        take(cfg, "data.normalize", KINDS["torchvision"].normalize, nets[0].path, _given())
    check_named_nets(nets, cfg.data.normalize)
    first = nets[0].path
    return (first, ours[first]) if first in ours else None


def take_data_set(cfg: DictConfig, path: str, header: dict) -> None:
    """An eval tests, unless its command line says otherwise, on the data set the net was trained on: its name
    (unless data= is given), its folder (unless data= or data.root= is) and its Q (the default test scale);
    its classes are the checkpoint's, by name (`check_classes`)."""
    given = _given()
    take_default(cfg, "data.test_scale", header.get("test_scale"), given)
    if header.get("classes") and not _is_given("data.num_classes", given):
        OmegaConf.update(cfg, "data.num_classes", None)  # the classes are checked by name (check_classes)
    if given is None or "data" in given:
        return
    name = header.get("dataset")
    take_default(cfg, "data.name", name, given)
    if cfg.data.get("demo") and name not in (None, "demo"):  # the demo's sizes generate its set: not into another's
        OmegaConf.update(cfg, "data.demo", None)
    root = header.get("data_root")
    if root is None or "data.root" in given:
        return
    if not os.path.isdir(root):
        raise CheckpointError(
            f"{path!r} was trained on the data set {name} in {root}, which is not there: pass data.root=<its "
            f"folder> (and data=imagefolder for a set of your own)"
        )
    OmegaConf.update(cfg, "data.root", root)


def check_classes(path: str, header: dict, folders: Sequence[str]) -> None:
    """The data's class folders are the checkpoint's classes, in its order (ImageNet's by their wnids): a label
    means the same class to the data and to the net."""
    trained = header.get("wnids") or header.get("classes")
    if trained is None or list(trained) == list(folders):
        return
    only_data = sorted(set(folders) - set(trained))
    only_net = sorted(set(trained) - set(folders))

    def few(names) -> str:
        return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "") or "none"

    raise CheckpointError(
        f"the data's {len(folders)} classes are not the {len(trained)} that {path!r} was trained on (only in the "
        f"data: {few(only_data)}; only in the net's: {few(only_net)}): pass the data set it was trained on"
    )


def take_start(cfg: DictConfig) -> None:
    """A training that starts from a checkpoint of ours
    (`model.init_from`), whose net it trains on, at its width, with its input scaling, unless the command line
    or the experiment names a net of its own: then it is the paper's warm start (Sec. 3.1: A into a deeper
    Table 1 net, or the same config), the layers that fit copied."""
    init_from = cfg.model.get("init_from")
    if not init_from:
        return
    header = read_header(init_from)
    if header is None:
        raise CheckpointError(
            f"model.init_from={init_from} is torchvision's file, not a checkpoint of ours: start from it with "
            f"weights=torchvision weights_path={init_from}"
        )
    given = _given()
    found = settings_spec(header["model"], header["num_classes"])
    asked = asked_model_keys(given)
    if "width" in asked:
        check_net(init_from, header, cfg.model, ["width"])
    OmegaConf.update(cfg, "model.width", found["width"])
    named = cfg.model.config if "config" in asked else experiment_named_net()
    if named is None:
        OmegaConf.update(cfg, "model.config", header["model"]["config"])
    elif not paper_warm_start(found["config"], canonical_config(named)):
        source = "the command line" if "config" in asked else f"experiment={group_choice('experiment')}"
        raise CheckpointError(
            f"model.init_from={init_from} holds config {found['config']}, this run asks for {named} ({source}): "
            f"the paper warm-starts only A into B, C, D or E, or a config from itself; drop model= to train the "
            f"checkpoint's own net"
        )
    take(cfg, "data.normalize", header.get("normalize"), init_from, given)
