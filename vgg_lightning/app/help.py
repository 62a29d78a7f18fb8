"""What `--help` says: the tasks, every config group with its public choices, examples. (Hydra's own
`--hydra-help` stays as it is.)"""

from __future__ import annotations

from collections.abc import Mapping

from .config_files import choices, config_root

HIDDEN_GROUPS = {"hydra", "model_defaults", "paths", "local"}  # partials and plumbing, not choices a user makes
EXAMPLES = (
    ("python -m vgg_lightning experiment=demo", "a narrow VGG-A on a generated data set, on the CPU"),
    ("python -m vgg_lightning model=E data.scale=jitter trainer.devices=4", "config E, S ~ U[256, 512], 4 GPUs"),
    ("python -m vgg_lightning experiment=table3/D_jitter", "one row of Table 3 with the paper's settings"),
    ("python -m vgg_lightning -m model=A,B,C,D,E", "a depth sweep (or +sweep=depth)"),
    ("python -m vgg_lightning task=eval eval=dense ckpt_path=RUN/checkpoints/last.ckpt", "dense evaluation"),
    ("python -m vgg_lightning task=predict ckpt_path=RUN/checkpoints/last.ckpt inputs=photos/", "class names, top 5"),
    ("python -m vgg_lightning experiment=demo --cfg job", "print the composed config, run nothing"),
    ("python -m vgg_lightning experiment=demo debug=fdr", "one batch of training, validation and test"),
    ("python -m vgg_lightning -m hparams_search=optuna experiment=demo", "an Optuna search of lr, decay, dropout"),
    ("python -m vgg_lightning task=features experiment=transfer/caltech101 ckpt_path=D.ckpt", "Appendix B features"),
)


def groups() -> dict[str, list[str]]:
    conf = config_root() / "conf"
    names = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in HIDDEN_GROUPS)
    return {name: choices(name) for name in [*names, "experiment", "sweep"]}


def help_text(tasks: Mapping[str, str]) -> str:
    """`tasks`: task -> what it does (the task registry's summaries)."""
    lines = [
        "vgg-lightning: the VGG paper (Simonyan & Zisserman, ICLR 2015) reproduced with Lightning and Hydra.",
        "",
        "Usage: python -m vgg_lightning [task=TASK] [group=choice ...] [key=value ...]   (or: vgg-lightning ...)",
        "",
        "Tasks:",
        *(f"  task={name:<10} {what}" for name, what in tasks.items()),
        "",
        "Config groups (group=choice; experiment= and +sweep= take the files of experiments/ and sweeps/):",
    ]
    for group, names in groups().items():
        folders: dict[str, list[str]] = {}  # experiments by table: one line each
        for name in names:
            folder, _, file = name.rpartition("/")
            folders.setdefault(folder, []).append(file)
        for i, (folder, files) in enumerate(folders.items()):
            listed = f"{folder}/{{{', '.join(files)}}}" if folder else ", ".join(files)
            lines.append(f"  {group if i == 0 else '':<14} {listed}")
    lines += ["", "Examples:", *(f"  {cmd}\n      {what}" for cmd, what in EXAMPLES)]
    lines += [
        "",
        "Any key of the composed config can be overridden: see it with --cfg job. Hydra's own help: --hydra-help.",
    ]
    return "\n".join(lines)
