"""One call that verifies the GPU path on a machine with one NVIDIA GPU, in under 8 minutes:

    python benchmarks/gpu_check.py --out DIR            # on the GPU machine
    python benchmarks/gpu_check.py --out DIR --dry-run  # every step at toy sizes, on a CPU (tests/ runs it)

Steps, each in its own process (a crash or a hang costs one step, not the run; --dry-run runs them in one), in
this order:

1. install: what the machine lacks (hydra-core, omegaconf, simplejpeg, rich, ...) from the wheels in `.whl/`
   (`benchmarks/prepare_gpu_wheels.sh` fills it), with the machine's torch, torchvision, lightning,
   torchmetrics and numpy pinned as they are: pip may add packages, never replace those;
2. gpu_tests: the tests that skip without CUDA (`pytest -p gpu_tests_only`);
3. jpegs: generated ImageNet-shaped JPEGs (`imagenet_like.py`) for the loader steps;
4. train_vgg16: VGG-16 on synthetic batches (bf16, channels_last, compile, batch 256, after warm-up): images/s
   and MFU; then the same net fed by our loader with data.decode=cpu (16 workers) and data.decode=device;
5. dense_eval: dense evaluation in shape buckets against one image at a time (`dense_eval.py`);
6. lightning_overhead: Lightning against the plain loop (`lightning_overhead.py`);
7. demo_cli: `python -m vgg_lightning experiment=demo` for one short epoch on the GPU;
8. syncs: host-device synchronisations per training step in steady state, through Lightning with our module,
   callbacks and progress bar (torch's sync debug mode; on a CPU, the host reads of `sync_count.HostReads`).

It writes DIR/gpu_check.json (every figure, every step's status and seconds) and DIR/gpu_check.md (the rows
for BENCHMARKS.md), after every step, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WHEELS = REPO / ".whl"
# what a bare GPU machine may lack, as import name: distribution
NEEDED = {
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "simplejpeg": "simplejpeg",
    "rich": "rich",
    "pytest": "pytest",
}
KEEP = ("torch", "torchvision", "lightning", "torchmetrics", "numpy")  # the machine's own: never replaced
STEPS = ("install", "gpu_tests", "jpegs", "train_vgg16", "dense_eval", "lightning_overhead", "demo_cli", "syncs")
# seconds each step may take on the GPU machine (8 minutes in all, the first start of compile included)
TIMEOUTS = {"install": 40, "gpu_tests": 60, "jpegs": 30, "train_vgg16": 150, "dense_eval": 50,
            "lightning_overhead": 45, "demo_cli": 60, "syncs": 40}  # fmt: skip


def sizes(dry: bool) -> dict:
    """The arguments of each step: the real figures on a GPU, toys for --dry-run on a CPU."""
    if dry:
        return {
            "jpegs": 16,
            "train": ["--width", "0.0625", "--batch", "4", "--steps", "2", "--warmup", "1", "--workers", "0"],
            "dense": ["--images", "6", "--width", "0.0625", "--repeats", "1", "--batches", "4"],
            "overhead": ["--width", "0.0625", "--batch", "2", "--steps", "2", "--warmup", "1", "--repeats", "1",
                         "--device", "cpu"],
            "demo": ["model.width=0.0625", "data.batch_size=8", "data.num_workers=0", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"],
            "syncs": {"width": 0.0625, "batch": 2, "steps": 7, "interval": 3},
        }  # fmt: skip
    return {
        "jpegs": 2048,
        "train": ["--batch", "256", "--steps", "30", "--warmup", "10", "--workers", "16"],
        "dense": ["--accelerator", "gpu", "--width", "1", "--images", "128", "--repeats", "2"],
        "overhead": ["--width", "1", "--batch", "128", "--steps", "20", "--device", "cuda"],
        "demo": ["trainer.max_epochs=1", "data.num_workers=8"],
        "syncs": {"width": 0.25, "batch": 64, "steps": 40, "interval": 10},
    }


# ---- the steps: each runs in a child process and returns a dict of figures ----


def step_install(out: Path, dry: bool) -> dict:
    import importlib.metadata as metadata
    import importlib.util

    missing = [dist for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None]
    kept = {name: metadata.version(name) for name in KEEP if importlib.util.find_spec(name) is not None}
    if not missing:
        return {"missing": [], "kept": kept}
    if dry:
        return {"missing": missing, "kept": kept, "note": "dry run: nothing installed"}
    if not WHEELS.is_dir():
        raise RuntimeError(f"{missing} missing and no {WHEELS}: run benchmarks/prepare_gpu_wheels.sh where pip works")
    constraints = out / "keep-constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in kept.items()))
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(WHEELS), "-c",
               str(constraints), *missing]  # fmt: skip
    subprocess.run(command, check=True)
    after = {name: metadata.version(name) for name in kept}
    if after != kept:
        raise RuntimeError(f"pip changed the machine's own packages: {kept} -> {after}")
    return {"missing": missing, "installed": True, "kept": kept}


def step_gpu_tests(out: Path, dry: bool) -> dict:
    files = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "tests").glob("test_*.py")
        if "cuda.is_available()" in path.read_text()
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "WANDB_MODE": "offline"}
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "gpu_tests_only", "-q", "-rs",
               "--junitxml", str(out / "gpu_tests.xml"), *files]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    (out / "gpu_tests.log").write_text(result.stdout + result.stderr)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    if result.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"GPU tests failed: {summary} (see gpu_tests.log)")
    return {"files": files, "summary": summary}


def step_jpegs(out: Path, dry: bool) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    from imagenet_like import describe, make_set

    root, count = out / "jpegs", sizes(dry)["jpegs"]
    parts = min(16, os.cpu_count() or 1) if not dry else 1
    with ProcessPoolExecutor(parts) as pool:  # one seed per part: the same files every run
        shapes = [
            s for part in pool.map(_make_part, [(root, count // parts, seed) for seed in range(parts)]) for s in part
        ]
    make_set(root, max(8, count // 64), seed=99, split="val")
    return {"root": str(root), "files": len(shapes), "described": describe(shapes)}


def _make_part(args) -> list:
    from imagenet_like import make_set

    root, count, seed = args
    return make_set(root, count, seed=seed, prefix=f"p{seed}_")


def step_train_vgg16(out: Path, dry: bool) -> dict:
    import train_vgg16

    root = json.loads((out / "steps" / "jpegs.json").read_text())["root"]
    return train_vgg16.main([*sizes(dry)["train"], "--data", root, "--decode", "cpu,device"])


def step_dense_eval(out: Path, dry: bool) -> dict:
    import dense_eval

    return dense_eval.main(sizes(dry)["dense"])


def step_lightning_overhead(out: Path, dry: bool) -> dict:
    import lightning_overhead

    return lightning_overhead.main(sizes(dry)["overhead"])


def step_demo_cli(out: Path, dry: bool) -> dict:
    run_dir = out / "demo_run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "VGG_LIGHTNING_CACHE": str(out / "cache")}
    command = [sys.executable, "-m", "vgg_lightning", "experiment=demo", "logger=csv", *sizes(dry)["demo"],
               f"hydra.run.dir={run_dir}"]  # fmt: skip
    if dry:  # a CPU: 48 images, not the demo's 960 (its generation and its test pass are most of the time)
        from vgg_lightning.data.demo import make_demo_dataset

        command.append(f"data.root={make_demo_dataset(str(out / 'demo_data'), train_per_class=4, val_per_class=2)}")
    started = time.perf_counter()
    result = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True)
    (out / "demo_cli.log").write_text(result.stdout + result.stderr)
    if result.returncode:
        raise RuntimeError(f"demo training exited {result.returncode} (see demo_cli.log)")
    results = json.loads((run_dir / "results.json").read_text())
    return {
        "seconds": time.perf_counter() - started,
        "top1_error": results.get("top1_error"),
        "steps": results.get("steps"),
    }


def step_syncs(out: Path, dry: bool) -> dict:
    import lightning as L
    import torch
    from sync_count import CudaSyncs, HostReads, quiet_steps

    from vgg_lightning.training.callbacks import ImagesPerSecond, ProgressBar
    from vgg_lightning.training.module import VGGClassifier

    toy = sizes(dry)["syncs"]
    cuda = torch.cuda.is_available()
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"image": torch.randn(toy["batch"], 3, 224, 224, generator=generator),
         "label": torch.randint(0, 1000, (toy["batch"],), generator=generator), "skipped": torch.tensor(0)}
        for _ in range(toy["steps"])
    ]  # fmt: skip

    class NoSchedule(VGGClassifier):
        def configure_optimizers(self):  # no validation here: the plateau schedule would want its metric
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    module = NoSchedule({"config": "D", "width": toy["width"], "init": "xavier"}, {}, num_classes=1000)
    counters = {"host_reads": HostReads(), **({"cuda_syncs": CudaSyncs()} if cuda else {})}
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision="bf16-mixed" if cuda else "32-true",
        max_steps=toy["steps"], log_every_n_steps=toy["interval"], limit_val_batches=0, enable_checkpointing=False,
        enable_model_summary=False, logger=L.pytorch.loggers.CSVLogger(out / "syncs_logs"),
        callbacks=[ProgressBar(), ImagesPerSecond(window=toy["interval"]), *counters.values()],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(batches, batch_size=None, pin_memory=cuda)
    with counters["host_reads"], counters.get("cuda_syncs") or _Nothing():
        trainer.fit(module, loader)
    result = {"interval": toy["interval"], "steps": toy["steps"]}
    for name, counter in counters.items():
        quiet = quiet_steps(counter.per_step, toy["interval"])
        result[name] = {"per_step": counter.per_step, "max_between_logging": max(quiet, default=0)}
    return result


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


# ---- the report ----


def markdown(report: dict) -> str:
    """The rows of BENCHMARKS.md's summary table that this run measured, then every step's status."""
    steps, today = report["steps"], report["date"]
    device = report.get("device", "?")
    command = "`python benchmarks/gpu_check.py --out DIR`"
    rows = []
    train = steps.get("train_vgg16", {}).get("result")
    if train:
        mfu = f"MFU {100 * train['mfu']:.0f}%" if train.get("mfu") else "MFU unknown"
        real = ", ".join(f"{rate:.0f} with data.decode={decode}" for decode, rate in train["real"].items())
        rows.append(f"| train VGG-16 ({device}) | {train['images_per_s']:.0f} img/s synthetic; {real} "
                    f"| {mfu} | {device} | {today} | {command} |")  # fmt: skip
    dense = steps.get("dense_eval", {}).get("result")
    if dense:
        keys = sorted(k for k in dense if not k.endswith("_batch_1"))
        ratios = ", ".join(f"{k.replace('_batch_', ' <= ')}: {dense[k] / dense[k.split('_')[0] + '_batch_1']:.2f}x"
                           for k in keys)  # fmt: skip
        rows.append(f"| dense eval bucketing | {dense.get('nhwc_batch_16', 0):.0f} img/s in buckets of <= 16 (NHWC) "
                    f"| {ratios} (vs one at a time) | {device} | {today} | {command} |")  # fmt: skip
    overhead = steps.get("lightning_overhead", {}).get("result")
    if overhead:
        rows.append(f"| lightning overhead | {overhead['lightning_images_per_s']:.0f} img/s through Lightning vs "
                    f"{overhead['plain_images_per_s']:.0f} plain | {overhead['ratio']:.3f}x the plain loop's time "
                    f"per step | {device} | {today} | {command} |")  # fmt: skip
    syncs = steps.get("syncs", {}).get("result")
    if syncs:
        counted = syncs.get("cuda_syncs") or syncs["host_reads"]
        what = "CUDA syncs" if "cuda_syncs" in syncs else "host reads (CPU)"
        rows.append(f"| syncs per training step | {counted['max_between_logging']} {what} between logging "
                    f"intervals (every {syncs['interval']} steps) | | {device} | {today} | {command} |")  # fmt: skip
    lines = ["| figure | value | ratio | device | date | command |", "|---|---|---|---|---|---|", *rows, ""]
    lines += ["| step | status | seconds | note |", "|---|---|---|---|"]
    for name in STEPS:
        step = steps.get(name, {"status": "not run"})
        note = step.get("error", "") or _short(step.get("result"))
        lines.append(f"| {name} | {step['status']} | {step.get('seconds', 0):.0f} | {note} |")
    return "\n".join(lines) + "\n"


def _short(result) -> str:
    text = json.dumps(result)[:160] if result is not None else ""
    return text.replace("|", "/")


def run_step(name: str, out: Path, dry: bool) -> None:
    """The step's figures into out/steps/<name>.json (in a child process, or in this one for --dry-run)."""
    sys.path[:0] = [p for p in (str(HERE), str(REPO)) if p not in sys.path]
    result = globals()[f"step_{name}"](out, dry)
    (out / "steps" / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where gpu_check.json and gpu_check.md go")
    parser.add_argument("--dry-run", action="store_true", help="every step at toy sizes, on a CPU")
    parser.add_argument("--steps", default=",".join(STEPS), help="a comma-separated subset of: " + ", ".join(STEPS))
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    (out / "steps").mkdir(parents=True, exist_ok=True)
    if args.step:
        run_step(args.step, out, args.dry_run)
        return 0
    wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STEPS]
    if unknown:
        parser.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    report = {"date": str(date.today()), "dry_run": args.dry_run, "device": _device_name(), "steps": {}}
    for name in wanted:
        started = time.perf_counter()
        command = [
            sys.executable,
            __file__,
            "--out",
            str(out),
            "--step",
            name,
            *(["--dry-run"] if args.dry_run else []),
        ]
        print(f"gpu_check: {name} ...", flush=True)
        try:
            if args.dry_run:  # one process for all: a toy step costs less than a Python start with torch
                run_step(name, out, dry=True)
                child = subprocess.CompletedProcess(command, 0)
            else:
                child = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUTS[name])
                (out / f"{name}.log").write_text(child.stdout + child.stderr)
            if child.returncode:
                tail = (child.stderr.strip().splitlines() or ["?"])[-1]
                step = {"status": "failed", "error": f"exit {child.returncode}: {tail[:200]}"}
            else:
                step = {"status": "ok", "result": json.loads((out / "steps" / f"{name}.json").read_text())}
        except subprocess.TimeoutExpired:
            step = {"status": "failed", "error": f"timed out after {TIMEOUTS[name]} s"}
        except Exception as error:  # the report must still be written
            step = {"status": "failed", "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
        step["seconds"] = time.perf_counter() - started
        report["steps"][name] = step
        print(f"gpu_check: {name} {step['status']} ({step['seconds']:.0f} s) {step.get('error', '')}", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
        (out / "gpu_check.md").write_text(markdown(report))
    print((out / "gpu_check.md").read_text())
    return 0 if all(step["status"] == "ok" for step in report["steps"].values()) else 1


def _device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name()
            return next((kind for kind in ("H200", "H100", "A100", "L40S") if kind in name), name)
    except ImportError:
        pass
    return "CPU"


if __name__ == "__main__":
    sys.exit(main())
