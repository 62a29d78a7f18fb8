"""One call that measures the GPU path on a machine with one NVIDIA GPU, within a budget it keeps:

    python benchmarks/gpu_check.py --out DIR                 # on the GPU machine (--budget 420 s by default)
    python benchmarks/gpu_check.py --out DIR --dry-run       # every step at toy sizes, on a CPU (tests/ runs it)

Steps, most valuable first (benchmarks/gpu_check_steps.py), each in a process group of its own that is killed
whole (loader and compile workers included) when it overruns its limit; a step whose limit no longer fits in
what is left of --budget is skipped and recorded as such:

1. install: what the machine lacks, from the wheels in `.whl/` (benchmarks/prepare_gpu_wheels.sh), with the
   machine's torch, torchvision, lightning, torchmetrics and numpy pinned as they are;
2. train_vgg16: VGG-16 on synthetic batches, bf16, channels_last, batch 256: eager, then compiled (compile
   time apart), each with images/s and MFU; then the compiled net fed by our loader (decode cpu, device);
3. loader: images/s each data path (cpu, device, dali when importable) delivers to the GPU through Lightning's
   loop, on an epoch of 5 batches per worker;
4. syncs: host-device syncs per training step between logging intervals (sync_count.py; torch's sync debug
   mode "error" on the GPU);
5. gpu_tests, dense_eval (decoding in workers), lightning_overhead (pinned uint8 batches), demo_cli.

DIR gets three files: gpu_check.json (every figure, every step's status, seconds and limit), rewritten after
every figure a step reports and when a step ends or is killed; gpu_check.md (the rows for BENCHMARKS.md, then
the steps); train_vgg16.log. Generated JPEGs and other scratch go to a temporary folder outside DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [p for p in (str(HERE), str(REPO)) if p not in sys.path]
import gpu_check_steps as steps  # noqa: E402

STEPS = ("install", "train_vgg16", "loader", "syncs", "gpu_tests", "dense_eval", "lightning_overhead", "demo_cli")
# seconds each step may take on the GPU machine (the first compile of VGG-16 included)
LIMITS = {"install": 45, "train_vgg16": 150, "loader": 75, "syncs": 45, "gpu_tests": 60, "dense_eval": 50,
          "lightning_overhead": 45, "demo_cli": 60}  # fmt: skip
DRY_LIMIT = 60  # each step at toy sizes on a CPU (a few seconds each on a quiet one)
KEPT_LOG = "train_vgg16"  # the step whose log comes back in DIR (its tail)
LOG_BYTES = 64 * 1024


class Step:
    """One step's process: a fresh Python (or, for --dry-run, a fork of this one, which has imported torch and
    Lightning already), the leader of its own session, so that killing its group kills its workers too."""

    def __init__(self, name: str, args, scratch: Path) -> None:
        self.name, self.log = name, scratch / f"{name}.log"
        self.figures = scratch / f"{name}.figures.jsonl"
        env = {steps.FIGURES_ENV: str(self.figures), "GPU_CHECK_STEP": name}
        if args.hang:
            env[steps.HANG_ENV] = args.hang
        self.process = None
        with open(self.log, "wb") as log:
            if args.dry_run:
                self.pid = os.fork()
                if self.pid == 0:
                    _child(name, scratch, env, log.fileno())
            else:
                command = [sys.executable, __file__, "--step", name, "--scratch", str(scratch), "--out", args.out]
                self.process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env}, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
                self.pid = self.process.pid
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            if self.process is not None:
                self.code = self.process.poll()
            elif (found := os.waitpid(self.pid, os.WNOHANG))[0]:
                self.code = os.waitstatus_to_exitcode(found[1])
        return self.code

    def kill(self) -> None:
        """Kill the step's process group (also after a clean exit: workers it left behind) and reap the step."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.code is None:
            self.code = self.process.wait() if self.process else os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    def result(self) -> dict:
        figures = {}
        if self.figures.exists():
            for line in self.figures.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    figures[entry["key"]] = entry["value"]
        return figures


def _child(name: str, scratch: Path, env: dict, log: int) -> None:
    """A forked step (--dry-run): its own session, its output to its log, its exit code from the step."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.update(env)
        run_step(name, scratch, dry=True)
        code = 0
    except SystemExit as exit:
        code = 0 if exit.code in (0, None) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _preload() -> None:
    """What the forked steps of --dry-run import, once here (a Python start with it costs 5-10 s a step)."""
    import dense_eval  # noqa: F401
    import lightning_overhead  # noqa: F401
    import train_vgg16  # noqa: F401

    import vgg_lightning.__main__  # noqa: F401
    import vgg_lightning.training.module  # noqa: F401


def run_step(name: str, scratch: Path, dry: bool) -> None:
    getattr(steps, f"step_{name}")(scratch, dry)


def run(args, report: dict, write, scratch: Path) -> None:
    """Each wanted step in turn, within the budget; `write()` after every change of `report`."""
    started = time.monotonic()
    for name in args.steps:
        limit = args.limits.get(name, DRY_LIMIT if args.dry_run else LIMITS[name])
        left = args.budget - (time.monotonic() - started)
        if left < limit:
            report["steps"][name] = {"status": "skipped", "limit_s": limit, "seconds": 0,
                                     "note": f"its limit ({limit} s) exceeds what is left of the budget ({left:.0f} s)"}  # fmt: skip
            write()
            continue
        print(f"gpu_check: {name} (limit {limit} s, {left:.0f} s of the budget left) ...", flush=True)
        if args.dry_run and name != "install":
            _preload()
        entry = report["steps"][name] = {"status": "running", "limit_s": limit, "result": {}}
        step, begun, shown, interrupted = Step(name, args, scratch), time.monotonic(), 0, False
        try:
            while step.poll() is None and time.monotonic() - begun < limit:
                time.sleep(0.2)
                if step.figures.exists() and step.figures.stat().st_size != shown:  # a new figure: keep it now
                    shown, entry["result"], entry["seconds"] = step.figures.stat().st_size, step.result(), 0
                    write()
        except KeyboardInterrupt:  # SIGTERM or Ctrl-C to gpu_check: the step goes with it, the report stays
            interrupted = True
            raise
        finally:
            running = step.poll() is None
            step.kill()  # also after a clean exit: workers the step left behind
            entry.update(result=step.result(), seconds=round(time.monotonic() - begun, 1))
            if interrupted or running:
                entry.update(status="interrupted" if interrupted else "timed out",
                             error=f"killed with its process group after {time.monotonic() - begun:.0f} s")  # fmt: skip
            else:
                entry.update(status="ok" if step.code == 0 else "failed")
            if entry["status"] != "ok":
                entry["log_tail"] = _tail(step.log, lines=15)
            if name == KEPT_LOG:
                (Path(args.out) / step.log.name).write_text(_tail(step.log, size=LOG_BYTES))
            report["elapsed_s"] = round(time.monotonic() - started, 1)
            write()
        print(f"gpu_check: {name} {entry['status']} ({entry['seconds']:.0f} s) {entry.get('error', '')}", flush=True)


def _tail(path: Path, lines: int | None = None, size: int = LOG_BYTES) -> str:
    text = path.read_bytes()[-size:].decode(errors="replace") if path.exists() else ""
    return "\n".join(line[:300] for line in text.splitlines()[-lines:]) if lines else text


# ---- the report ----


def markdown(report: dict) -> str:
    """The rows of BENCHMARKS.md's summary table that this run measured, then every step's status."""
    found = {name: step.get("result") or {} for name, step in report["steps"].items()}
    device, today, command = report["device"], report["date"], "`python benchmarks/gpu_check.py --out DIR`"
    rows = [*_train_rows(found.get("train_vgg16", {}), found.get("loader", {}))]
    dense = {k: v for k, v in found.get("dense_eval", {}).items() if isinstance(v, (int, float))}
    if any(k.endswith("_batch_1") for k in dense):
        keys = sorted(k for k in dense if not k.endswith("_batch_1") and f"{k.split('_')[0]}_batch_1" in dense)
        ratios = ", ".join(f"{k.replace('_batch_', ' <= ')}: {dense[k] / dense[k.split('_')[0] + '_batch_1']:.2f}x"
                           for k in keys)  # fmt: skip
        best = max((k for k in keys if k.startswith("nhwc")), default=None)
        value = f"{dense[best]:.0f} img/s in buckets of <= {best.split('_')[-1]} (NHWC)" if best else "see ratios"
        rows.append(f"| dense eval bucketing | {value}, decoding in workers | {ratios} (vs one at a time) |")
    overhead = found.get("lightning_overhead", {})
    if "ratio" in overhead:
        rows.append(f"| lightning overhead | {overhead['lightning_images_per_s']:.0f} img/s through Lightning vs "
                    f"{overhead['plain_images_per_s']:.0f} plain (pinned uint8 batches) | {overhead['ratio']:.3f}x the "
                    "plain loop's time per step |")  # fmt: skip
    syncs = found.get("syncs", {})
    if "host_syncs" in syncs:
        counted = [f"{syncs['cuda_syncs']['max_between_logging']} CUDA syncs"] if "cuda_syncs" in syncs else []
        counted.append(f"{syncs['host_syncs']['max_between_logging']} host syncs (audit)")
        rows.append(f"| syncs per training step | {', '.join(counted)} between logging intervals (every "
                    f"{syncs['interval']} steps) | |")  # fmt: skip
    lines = ["| figure | value | ratio | device | date | command |", "|---|---|---|---|---|---|"]
    lines += [f"{row} {device} | {today} | {command} |" for row in rows]
    lines += ["", f"budget {report['budget_s']:.0f} s, used {report.get('elapsed_s', 0):.0f} s", ""]
    lines += ["| step | status | seconds | limit (s) | note |", "|---|---|---|---|---|"]
    for name in report["wanted"]:
        step = report["steps"].get(name, {"status": "not run"})
        note = step.get("error") or step.get("note") or _short(step.get("result"))
        lines.append(
            f"| {name} | {step['status']} | {step.get('seconds', 0):.0f} | {step.get('limit_s', '')} | {note} |"
        )
    return "\n".join(lines) + "\n"


def _train_rows(train: dict, loader: dict):
    best = "compiled" if "compiled_images_per_s" in train else "eager"
    synthetic = train.get(f"{best}_images_per_s")
    if synthetic:
        value = [f"{synthetic:,.0f} img/s {best}"]
        if best == "compiled":
            value.append(f"eager {train.get('eager_images_per_s', 0):,.0f}, compile {train.get('compile_s', 0):.0f} s")
        value += [
            f"{train[k]:,.0f} fed by data.decode={k.split('_')[1]}" for k in sorted(train) if k.startswith("fed_")
        ]
        mfu = [f"MFU {100 * train[f'{m}_mfu']:.0f}%{'' if m == best else ' eager'}"
               for m in (best, "eager") if train.get(f"{m}_mfu") and (m == best or best == "compiled")]  # fmt: skip
        yield f"| train VGG-16 | {'; '.join(value)} | {', '.join(mfu) or 'MFU unknown'} |"
    paths = {k.split("_")[0]: v for k, v in loader.items() if k.endswith("_images_per_s") and isinstance(v, float)}
    if paths:
        value = "; ".join(f"{path}: {rate:,.0f} img/s" for path, rate in paths.items())
        if isinstance(side := loader.get("dali_feed"), dict):  # dali_feed.py, outside Lightning
            value += f"; dali_feed.py: DALI {side['dali']:,.0f} vs ours {side['torch']:,.0f}"
        ratio = ", ".join(f"{path} {rate / synthetic:.2f}x" for path, rate in paths.items()) if synthetic else ""
        yield (f"| data pipeline | fed to the GPU, {loader.get('workers')} workers: {value} | {ratio}"
               f"{' the training rate (synthetic, ' + best + ')' if ratio else ''} |")  # fmt: skip


def _short(result) -> str:
    return json.dumps(result)[:160].replace("|", "/") if result else ""


def _device_name(dry: bool) -> str:
    """The GPU's kind, asked of nvidia-smi (this process never touches CUDA: its forks and children do)."""
    if dry:
        return "CPU"
    try:
        name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip().splitlines()[0]  # fmt: skip
    except (OSError, IndexError, subprocess.SubprocessError):
        return "GPU"
    return next((kind for kind in ("H200", "H100", "A100", "L40S") if kind in name), name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the folder gpu_check.json, gpu_check.md and a log go to")
    parser.add_argument("--dry-run", action="store_true", help="every step at toy sizes, on a CPU")
    parser.add_argument("--steps", default=",".join(STEPS), help="a comma-separated subset of: " + ", ".join(STEPS))
    parser.add_argument("--budget", type=float, default=420, help="seconds for all steps (default: 7 minutes)")
    parser.add_argument("--scratch", help="where the steps write (default: a new temporary folder, then removed)")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    parser.add_argument("--limit", action="append", default=[], help=argparse.SUPPRESS)  # test: STEP=SECONDS
    parser.add_argument("--hang", help=argparse.SUPPRESS)  # test: this step hangs after its first figure
    args = parser.parse_args(argv)
    if args.step:
        run_step(args.step, Path(args.scratch), args.dry_run)
        return 0
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    args.limits = {name: float(seconds) for name, seconds in (item.split("=") for item in args.limit)}
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="gpu_check-")).resolve()
    if scratch == out or out in scratch.parents:
        parser.error(f"--scratch {scratch} is inside --out {out}: what comes back must stay small")
    scratch.mkdir(parents=True, exist_ok=True)
    report = {"date": str(date.today()), "dry_run": args.dry_run, "device": _device_name(args.dry_run),
              "budget_s": args.budget, "wanted": args.steps, "steps": {}}  # fmt: skip

    def write() -> None:
        for name, text in (
            ("gpu_check.json", json.dumps(report, indent=1, default=str)),
            ("gpu_check.md", markdown(report)),
        ):
            (out / f".{name}").write_text(text)
            os.replace(out / f".{name}", out / name)  # a reader never sees half a file

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(args, report, write, scratch)
    except KeyboardInterrupt:
        report["interrupted"] = True
        write()
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print((out / "gpu_check.md").read_text())
    return 0 if all(step["status"] in ("ok", "skipped") for step in report["steps"].values()) else 1


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # the running step is killed with its group, the report written


if __name__ == "__main__":
    sys.exit(main())
