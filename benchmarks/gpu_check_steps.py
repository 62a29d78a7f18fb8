"""The steps of benchmarks/gpu_check.py. Each runs in a process of its own (a process group that gpu_check kills
whole when the step overruns its limit) and hands over its figures one by one through `report`, so that a step
cut short keeps what it had measured. Everything a step writes goes under `scratch` (outside the report folder).
`sizes(dry)`: the real sizes on a GPU machine, toys for --dry-run on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WHEELS = REPO / ".whl"
DALI_WHEELS = REPO / ".whl-dali"  # apart: DALI's wheel (~425 MB) is over the device tool's 64 MiB carry
FIGURES_ENV = "GPU_CHECK_FIGURES"  # the file a step appends its figures to, one JSON line each
HANG_ENV = "GPU_CHECK_HANG"  # for the dry run's test: the step that hangs after its first figure
# what a bare GPU machine may lack, as import name: distribution
NEEDED = {"hydra": "hydra-core", "omegaconf": "omegaconf", "simplejpeg": "simplejpeg", "rich": "rich",
          "pytest": "pytest"}  # fmt: skip
KEEP = ("torch", "torchvision", "lightning", "torchmetrics", "numpy")  # the machine's own: never replaced


def importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def sizes(dry: bool) -> dict:
    """The arguments of each step: the real figures on a GPU, toys for --dry-run on a CPU."""
    if dry:
        return {
            "jpegs": (16, 4 * 4),  # distinct files, files in the train set (hard links of those)
            "train": ["--width", "0.0625", "--batch", "2", "--steps", "1", "--warmup", "0", "--workers", "0",
                      "--compile", "both", "--backend", "eager"],
            "loader": {"batch": 4, "workers": 0},
            "syncs": {"width": 0.0625, "batch": 2, "steps": 7, "interval": 3},
            "dense": ["--images", "6", "--width", "0.0625", "--repeats", "1", "--batches", "4", "--workers", "0"],
            "overhead": ["--width", "0.0625", "--batch", "2", "--steps", "2", "--warmup", "1", "--repeats", "1",
                         "--device", "cpu"],
            "demo": ["model.width=0.0625", "data.batch_size=8", "data.num_workers=0", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"],
        }  # fmt: skip
    workers = max(1, cores() - 1)  # the training process keeps one core (data.num_workers' rule, one GPU)
    return {
        # an epoch of 5 batches of 256 per worker: after the first batch of each, every worker stays busy
        "jpegs": (1024, 256 * 5 * workers),
        "train": ["--batch", "256", "--steps", "30", "--warmup", "10", "--workers", str(workers), "--compile", "both"],
        "loader": {"batch": 256, "workers": workers},
        "syncs": {"width": 0.25, "batch": 64, "steps": 40, "interval": 10},
        "dense": ["--accelerator", "gpu", "--width", "1", "--images", "128", "--repeats", "2", "--workers",
                  str(workers)],
        "overhead": ["--width", "1", "--batch", "128", "--steps", "20", "--device", "cuda"],
        "demo": ["trainer.max_epochs=1", f"data.num_workers={workers}"],
    }  # fmt: skip


def report(key: str, value) -> None:
    """Hand one figure to gpu_check (which rewrites its JSON with it at once)."""
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"key": key, "value": value}, default=str) + "\n")
    if os.environ.get(HANG_ENV) and os.environ[HANG_ENV] == os.environ.get("GPU_CHECK_STEP"):
        os.environ.pop(HANG_ENV)
        sleeper = subprocess.Popen(["sleep", "600"])  # a worker of the step's, as a loader's or a compiler's
        report("hang_pid", sleeper.pid)
        time.sleep(600)


# ---- the steps ----


def step_install(scratch: Path, dry: bool) -> None:
    import importlib.metadata as metadata

    missing = [dist for module, dist in NEEDED.items() if not importable(module)]
    if DALI_WHEELS.is_dir() and not importable("nvidia.dali"):
        missing.append("nvidia-dali-cuda120")  # the loader step's dali path (CUDA 12 builds run on CUDA 13 drivers)
    kept = {name: metadata.version(name) for name in KEEP if importable(name)}
    report("kept", kept)
    report("missing", missing)
    if not missing or dry:
        return
    if not WHEELS.is_dir():
        raise RuntimeError(f"{missing} missing and no {WHEELS}: run benchmarks/prepare_gpu_wheels.sh where pip works")
    constraints = scratch / "keep-constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in kept.items()))
    links = [arg for folder in (WHEELS, DALI_WHEELS) if folder.is_dir() for arg in ("--find-links", str(folder))]
    command = [sys.executable, "-m", "pip", "install", "--no-index", *links, "-c", str(constraints), *missing]
    subprocess.run(command, check=True)
    after = {name: metadata.version(name) for name in kept}
    if after != kept:
        raise RuntimeError(f"pip changed the machine's own packages: {kept} -> {after}")
    report("installed", True)


def jpeg_set(scratch: Path, dry: bool) -> str:
    """ImageNet-shaped JPEGs (imagenet_like.py) in the ImageNet layout: distinct files made in parallel, then
    hard links of them up to the train set's size (decoding costs the same; making 20,000 files would not)."""
    from imagenet_like import make_set

    root, (distinct, total) = scratch / "jpegs", sizes(dry)["jpegs"]
    done = root / "complete"
    if done.exists():
        return str(root)
    parts = 1 if dry else min(16, cores())
    if parts == 1:
        made = [make_set(root, distinct, seed=0, prefix="p0_")]
    else:  # spawned: the train step has started CUDA (and threads) by the time it asks for the files
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("spawn")) as pool:  # a seed a part
            made = list(pool.map(_make_part, [(root, distinct // parts, seed) for seed in range(parts)]))
    make_set(root, max(8, distinct // 64), seed=99, split="val")
    files = sorted((root / "train").glob("*/*.JPEG"))
    for copy in range(1, -(-total // len(files))):
        for path in files[: total - copy * len(files)]:
            _link(path, path.with_name(f"c{copy}_{path.name}"))
    done.write_text(str(sum(len(part) for part in made)))
    return str(root)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        import shutil

        shutil.copyfile(source, target)


def _make_part(args) -> list:
    from imagenet_like import make_set

    root, count, seed = args
    return make_set(root, count, seed=seed, prefix=f"p{seed}_")


def step_train_vgg16(scratch: Path, dry: bool) -> None:
    import train_vgg16

    # synthetic eager, then compiled (the figures that matter most), then the compiled net fed by our loader
    train_vgg16.main(
        [*sizes(dry)["train"], "--decode", "cpu,device"], report=report, data=lambda: jpeg_set(scratch, dry)
    )


def step_loader(scratch: Path, dry: bool) -> None:
    """Images/s each data path delivers to the device, normalised, through Lightning's loop, no training; then
    dali_feed.py's side-by-side figures (DALI's mixed backend against our loader, and their CPU-seconds)."""
    import train_vgg16

    root, size = jpeg_set(scratch, dry), sizes(dry)["loader"]
    report("workers", size["workers"])
    for path in ("cpu", "device", "dali"):
        if path == "dali" and not importable("nvidia.dali"):
            report("dali_images_per_s", "skipped: nvidia.dali is not installed")
            continue
        options = {"loader": "dali"} if path == "dali" else {"decode": path}
        data = train_vgg16.datamodule(root, size["batch"], size["workers"], **options)
        report(f"{path}_images_per_s", train_vgg16.feed_rate(data, warmup=max(size["workers"], 1)))
    if importable("nvidia.dali"):  # DALI against our loader side by side, outside Lightning (dali_feed.py's table)
        import dali_feed

        backend = "mixed" if not dry else "cpu"
        report("dali_feed", dali_feed.feed_rates(root, backend, size["batch"], size["workers"], threads=4, repeats=1))


def step_syncs(scratch: Path, dry: bool) -> None:
    """Training steps of VGG-D through Lightning with our module, callbacks, progress bar and the training
    batches' hooks (pinned uint8 images, normalised on the device): the host syncs the audit counts per step
    (sync_count.HostSyncs: reads, and tensors made from Python numbers on the device) and, on a GPU, the CUDA
    syncs themselves, in torch's sync debug mode "error" between logging intervals (the first one there stops
    the run at its line)."""
    import lightning as L
    import torch
    from lightning_overhead import Batches
    from sync_count import CudaSyncs, HostSyncs, quiet_steps

    from vgg_lightning.training.callbacks import GPUSpeedups, ImagesPerSecond, ProgressBar
    from vgg_lightning.training.module import VGGClassifier

    toy, cuda = sizes(dry)["syncs"], torch.cuda.is_available()
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"image": torch.randint(0, 256, (toy["batch"], 3, 224, 224), dtype=torch.uint8, generator=generator),
         "label": torch.randint(0, 1000, (toy["batch"],), generator=generator),
         "pca_alpha": torch.randn(toy["batch"], 3, generator=generator) * 0.1, "skipped": torch.tensor(0)}
        for _ in range(toy["steps"])
    ]  # fmt: skip

    class NoSchedule(VGGClassifier):
        def configure_optimizers(self):  # no validation here: the plateau schedule would want its metric
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9, fused=cuda or None)

    module = NoSchedule({"config": "D", "width": toy["width"], "init": "xavier"}, {}, num_classes=1000)
    host = HostSyncs()
    counters = {
        "host_syncs": host,
        **({"cuda_syncs": CudaSyncs(strict=True, interval=toy["interval"])} if cuda else {}),
    }
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision="bf16-mixed" if cuda else "32-true",
        max_steps=toy["steps"], log_every_n_steps=toy["interval"], limit_val_batches=0, enable_checkpointing=False,
        enable_model_summary=False, logger=L.pytorch.loggers.CSVLogger(scratch / "syncs_logs"),
        callbacks=[*counters.values(), ProgressBar(), ImagesPerSecond(), GPUSpeedups(channels_last=cuda, compile=False)],
    )  # fmt: skip
    report("interval", toy["interval"])
    try:
        with host, counters.get("cuda_syncs") or _Nothing():
            trainer.fit(module, datamodule=Batches(batches, "cuda" if cuda else "cpu"))
    finally:  # what was counted, also when "error" mode stopped the run
        for name, counter in counters.items():
            quiet = quiet_steps(counter.per_step, toy["interval"])
            report(name, {"per_step": counter.per_step, "max_between_logging": max(quiet, default=0)})
        found = [events for step, events in enumerate(host.events) if step and (step + 1) % toy["interval"] and events]
        report("host_sync_events_between_logging", found[:2])


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def step_gpu_tests(scratch: Path, dry: bool) -> None:
    """The tests that skip without CUDA (`-p gpu_tests_only`), run by pytest in this process."""
    import pytest

    files = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "tests").glob("test_*.py")
        if "cuda.is_available()" in path.read_text()
    )

    class Outcomes:
        def pytest_terminal_summary(self, terminalreporter) -> None:
            counts = {
                k: len(v) for k, v in terminalreporter.stats.items() if k in ("passed", "failed", "error", "skipped")
            }
            report("outcomes", counts)
            report("failed", [r.nodeid for r in terminalreporter.stats.get("failed", [])])

    os.chdir(REPO)
    sys.path[:0] = [str(HERE), str(REPO / "tests")]
    os.environ.update(WANDB_MODE="offline")
    code = pytest.main(["-o", "addopts=", "-p", "gpu_tests_only", "-q", "-rs", "-p", "no:cacheprovider", *files],
                       plugins=[Outcomes()])  # fmt: skip
    if code not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"GPU tests failed (pytest exit {code})")


def step_dense_eval(scratch: Path, dry: bool) -> None:
    import dense_eval

    dense_eval.main(sizes(dry)["dense"], report=report)


def step_lightning_overhead(scratch: Path, dry: bool) -> None:
    import lightning_overhead

    result = lightning_overhead.main(sizes(dry)["overhead"], report=report)
    for key, value in result.items():
        report(key, value)


def step_demo_cli(scratch: Path, dry: bool) -> None:
    """`python -m vgg_lightning experiment=demo` for one short epoch, through the CLI's own entry point."""
    from vgg_lightning.__main__ import cli

    run_dir = scratch / "demo_run"
    os.environ.update(WANDB_MODE="offline", VGG_LIGHTNING_CACHE=str(scratch / "cache"))
    argv = ["experiment=demo", "logger=csv", *sizes(dry)["demo"], f"hydra.run.dir={run_dir}"]
    if dry:  # a CPU: 48 images, not the demo's 960 (its generation and its test pass are most of the time)
        from vgg_lightning.data.demo import make_demo_dataset

        argv.append(f"data.root={make_demo_dataset(str(scratch / 'demo_data'), train_per_class=4, val_per_class=2)}")
    os.chdir(scratch)
    started = time.perf_counter()
    sys.argv = ["vgg_lightning", *argv]
    cli()
    results = json.loads((run_dir / "results.json").read_text())
    report("seconds", time.perf_counter() - started)
    report("top1_error", results.get("top1_error"))
    report("steps", results.get("steps"))
