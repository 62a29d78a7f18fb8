"""What the tests share, in one module (the fixtures are conftest.py's; no test imports another test module):

- the repository and the real CLI in a subprocess, as a user types it (`run_cli`, `FAST`, `STEPS`), a refusal
  as a user sees it (`assert_one_line_error`), and the environment of a CLI run (`with_callbacks`,
  `this_checkout`);
- the package's config composed in-process (`compose_cfg`);
- generated images and folders of them, and narrow nets;
- the one real two-job W&B sweep that test_tracking and test_report read (`demo_sweep`).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CALLBACKS = str(Path(__file__).resolve().parent / "callbacks")  # test-only Lightning callbacks, by `_target_`


# -- the CLI in a subprocess ----------------------------------------------------------------------------------
# Overrides that make a CLI training run take seconds: a tiny net, a few steps, no worker processes.
FAST = [
    "model.width=0.0625",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "logger=csv",
]
# FAST for runs that stop at trainer.max_steps, with a short test and no config tree
STEPS = [
    *(a for a in FAST if not a.startswith("trainer.max_epochs")),
    "trainer.limit_test_batches=2",
    "print_config=false",
]


def run_cli(*args: str, env: dict, cwd: Path, check: bool = True, module: str = "vgg_lightning", **popen):
    """`python -m vgg_lightning ARGS` as a user types it."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **popen
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-5000:]}"
        )
    return result


# Several invocations of the CLI in one Python process, each as its own command would end (exit code, stderr)
_CALLS = """
import contextlib, io, json, os, runpy, sys
from hydra.core.global_hydra import GlobalHydra
ended, environ = [], dict(os.environ)
for module, args in json.loads(sys.argv[1]):
    os.environ.clear()
    os.environ.update(environ)  # as a new process would find it (the app sets HYDRA_FULL_ERROR for its ranks)
    sys.argv, err, code = [module, *args], io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            code = exit.code
            if not isinstance(code, int) and code is not None:  # as the interpreter ends: the message, exit 1
                print(code, file=sys.stderr)
                code = 1
    GlobalHydra.instance().clear()
    ended.append({"returncode": code or 0, "stderr": err.getvalue()})
print(json.dumps(ended))
"""


def run_cli_calls(*calls: list[str], env: dict, cwd: Path, module: str = "vgg_lightning") -> list:
    """`python -m vgg_lightning ARGS` for each ARGS in `calls` (or `[MODULE, *ARGS]` when a call starts with
    `-m`: `["-m", "vgg_lightning.export", ...]`), run one after the other in one Python process: for short commands
    (refusals, stops before a run's work), where a process each would cost a start with torch each. Each result has the
    `returncode` and `stderr` its own command would have (stdout is not kept)."""
    calls_json = json.dumps([(c[1], list(c[2:])) if c[:1] == ["-m"] else (module, list(c)) for c in calls])
    done = subprocess.run([sys.executable, "-c", _CALLS, calls_json], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    return [
        subprocess.CompletedProcess(c, r["returncode"], "", r["stderr"])
        for c, r in zip(calls, json.loads(done.stdout.splitlines()[-1]))
    ]


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_error(result, *expected: str) -> None:
    """A refusal: non-zero exit, no traceback, at most two lines on stderr, naming what the user must change."""
    assert result.returncode != 0, result.stdout[-2000:]
    lines = errors(result)
    assert "Traceback" not in result.stderr and 1 <= len(lines) <= 2, result.stderr[-3000:]
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]


def with_callbacks(env: dict) -> dict:
    """`env` with tests/callbacks/ on the path: a CLI run can then add `+callbacks.x._target_=<module>.<class>`."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [CALLBACKS, env.get("PYTHONPATH")]))}


def this_checkout(env: dict) -> dict:
    """The subprocess imports the package of this checkout, whatever else is installed."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}


def shared_dir(tmp_path_factory) -> Path:
    """One folder for the whole pytest run, whichever xdist worker asks (each worker's basetemp is its child)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


# -- the config, composed in-process ---------------------------------------------------------------------------
def compose_cfg(*overrides: str):
    """The package's config composed with `overrides`, as the app composes it."""
    from hydra import compose, initialize_config_dir

    from vgg_lightning.app.config_files import primary_config_dir, register_groups
    from vgg_lightning.app.resolvers import register_resolvers

    register_groups()  # experiments/ and sweeps/ as the experiment and sweep groups, as the app does
    register_resolvers()
    with initialize_config_dir(primary_config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=False)


# -- generated images, folders of them, narrow nets ------------------------------------------------------------
def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Detail at several scales, so that a crop half a pixel off, or a blurrier resample, shows."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), np.float32) + 128
    for cells in (4, 16, 64):
        field = rng.integers(0, 256, (cells * height // width + 1, cells, 3), dtype=np.uint8)
        pixels += (np.asarray(Image.fromarray(field).resize((width, height), Image.BICUBIC), np.float32) - 128) / 3
    return np.clip(pixels, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **kw) -> bytes:
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert(mode) if mode else image).save(buffer, fmt, **kw)
    return buffer.getvalue()


def make_folder(root, classes: dict[str, int], splits=("train", "val"), size=(40, 48)) -> str:
    """root/<split>/<class>/<i>.JPEG with `classes[name]` images each (0: an empty class folder)."""
    for split in splits:
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.JPEG").write_bytes(encode(textured(*size, seed=i)))
    return str(root)


def write_jpeg(path: Path, height: int = 40, width: int = 48, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG")


def image_folder(root: Path, train=("a", "b"), val=("a", "b"), per_class: int = 3) -> Path:
    """root/<split>/<class>/*.JPEG: `per_class` noise images a training class, 2 a validation class."""
    for split, classes in (("train", train), ("val", val)):
        for c in classes:
            for i in range(per_class if split == "train" else 2):
                write_jpeg(root / split / c / f"{c}{i}.JPEG", seed=i)
    return root


CLASSES = 5  # the narrow nets' classes


def write_checkpoint(path: Path, classes=("a", "b"), config: str = "A", **run) -> str:
    """A checkpoint file as a training writes one (its hyper-parameters and weights), of a narrow net trained on
    `classes`; `run`: more of what the run knew (normalize, test_scale, dataset, data_root, ...)."""
    import torch

    from vgg_lightning.training.module import VGGClassifier

    torch.manual_seed(0)
    module = VGGClassifier({"config": config, "width": 0.0625, "init": "xavier"}, {}, num_classes=len(classes),
                           classes=list(classes), train_scale=256, **run)  # fmt: skip
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return str(path)


def narrow(config: str = "A", seed: int = 0, classes: int = CLASSES):
    """A VGG at width 1/16 from Glorot's init (seeded), in eval mode."""
    import torch

    from vgg_lightning.models import build_vgg

    torch.manual_seed(seed)
    return build_vgg(config, num_classes=classes, width=0.0625, init="xavier").eval()


# -- the authors' released nets' layout, narrow: VGG-shaped Caffe weights (models.caffe.write_caffemodel writes them)
CAFFE_BLOCKS = {"D": (2, 2, 3, 3, 3), "E": (2, 2, 4, 4, 4)}
CAFFE_WIDTH, CAFFE_HIDDEN, CAFFE_CLASSES = 0.0625, 256, 10


def caffe_vgg_blobs(config: str = "D", seed: int = 0, classes: int = CAFFE_CLASSES) -> dict[str, list[np.ndarray]]:
    """Weights in the released files' layout, at width 1/16: convs (out, in, 3, 3) over BGR input, fc6 an
    InnerProduct (256, 32*7*7). Scaled so that activations neither vanish nor explode."""
    rng = np.random.default_rng(seed)
    blobs, cin = {}, 3
    for block, (convs, width) in enumerate(zip(CAFFE_BLOCKS[config], (64, 128, 256, 512, 512)), start=1):
        cout = round(width * CAFFE_WIDTH)
        for index in range(1, convs + 1):
            weight = rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3))
            blobs[f"conv{block}_{index}"] = [weight, rng.normal(0, 0.1, cout)]
            cin = cout
    hidden = CAFFE_HIDDEN
    for name, out, fan_in in (("fc6", hidden, cin * 49), ("fc7", hidden, hidden), ("fc8", classes, hidden)):
        blobs[name] = [rng.normal(0, (2 / fan_in) ** 0.5, (out, fan_in)), rng.normal(0, 0.1, out)]
    return {name: [b.astype(np.float32) for b in layer] for name, layer in blobs.items()}


def write_released(path: Path, config: str = "D", classes: int = CAFFE_CLASSES, seed: int = 0) -> Path:
    """A narrow stand-in of the authors' released file, in their 2014 layout (V1 `layers`, legacy 4-D shapes).
    fc8 is scaled down: on images of the 0-255 scale a random net's class scores are tens apart, its
    posteriors one-hot, and a mean NLL compared with them would say nothing."""
    from vgg_lightning.models.caffe import write_caffemodel

    blobs = caffe_vgg_blobs(config, seed, classes)
    blobs["fc8"] = [blob * 0.05 for blob in blobs["fc8"]]
    write_caffemodel(path, blobs, name=Path(path).stem, flavour="layers", legacy_shapes=True)
    return Path(path)


# -- one real two-job multirun on the demo set, logged to W&B offline, shared by test_tracking and test_report: a
# job costs seconds of imports and training on a 2-core machine, so it runs once per pytest run
# what the sweep's jobs log at every step (FAST trains 2 batches: the throughput window and the logging
# interval must be shorter than that for images/s and the step loss to reach W&B)
LOG_EVERY_STEP = ["trainer.log_every_n_steps=1"]
FAST_WANDB = [o for o in FAST if not o.startswith("logger=")] + ["logger=wandb", *LOG_EVERY_STEP]


def wandb_env(cache: Path) -> dict:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", VGG_LIGHTNING_CACHE=str(cache), PYTHONWARNINGS="ignore")
    env.pop("WANDB_API_KEY", None)
    return env


def demo_sweep(tmp_path_factory, demo_root: str) -> Path:
    """`python -m vgg_lightning +sweep=depth experiment=demo model=A,B ... logger=wandb` (the depth sweep
    file, narrowed to A and B): its sweep dir, with jobs 0 (A) and 1 (B). Run once for all xdist workers."""
    root = shared_dir(tmp_path_factory) / "sweep"
    sweep_dir = root / "depth-sweep"
    root.mkdir(exist_ok=True)
    with FileLock(str(root / "sweep.lock")):
        if not all((sweep_dir / job / "results.json").exists() for job in ("0", "1")):
            run_cli(
                "+sweep=depth", "experiment=demo", "model=A,B", f"data.root={demo_root}", *FAST_WANDB,
                f"hydra.sweep.dir={sweep_dir}", env=wandb_env(root / "cache"), cwd=root,
            )  # fmt: skip
    return sweep_dir
