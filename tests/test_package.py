"""The package as a user installs it: no import circles, the configs inside a non-editable install, both entry
points working from a directory outside the repository, and the internals we lean on still there."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "vgg_lightning"


def module_imports() -> dict[str, set[str]]:
    """module -> the modules of ours it imports, lazy (in-function) imports included."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = name.split(".") if is_package else name.split(".")[:-1]
                if node.level:
                    base = base[: len(base) - (node.level - 1)]
                    head = ".".join(base + ([node.module] if node.module else []))
                else:
                    head = node.module or ""
                targets = [head] + [f"{head}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a package's __init__ re-exporting its own modules is not a circle
                if target and target != name and not (is_package and target.startswith(name + ".")):
                    if not (modules[target][1] and name.startswith(target + ".")):
                        edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_the_package():
    edges = module_imports()
    assert len(edges) > 30  # the walk found the package
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_the_cycle_finder_finds_a_planted_circle():
    edges = module_imports()
    edges["vgg_lightning.paper"].add("vgg_lightning.report.cli")  # paper -> report -> ... -> paper
    assert find_cycle(edges) is not None


# The floors of the house: what each room may import of ours, nothing above it (`vgg_lightning`, the package
# itself, is no room). paper, compat, rules, errors and signals know nothing of ours, the model zoo only the paper
# (and how a setting is checked); tasks is the top floor, under __main__ alone.
GROUND = {"paper", "compat", "rules", "errors", "signals"}
BELOW_TRAINING = GROUND | {"models", "data", "speed", "checkpoints"}
LAYERS = {
    "paper": set(),
    "compat": set(),
    "rules": set(),
    "errors": set(),
    "signals": set(),
    "models": {"paper", "rules"},
    "data": GROUND,
    "speed": {"models"},
    "checkpoints": {"models", "compat", "errors", "signals"},
    "tracking": {"paper", "compat"},
    "evaluation": BELOW_TRAINING,
    "training": BELOW_TRAINING | {"evaluation"},
    "app": {"paper", "checkpoints", "speed", "tracking", "training", "errors", "signals"},  # the Trainer gets DDP
    "report": {"paper", "models", "tracking", "errors"},
    "tasks": BELOW_TRAINING | {"evaluation", "training", "app", "tracking"},
    "reproduce": {"paper", "app", "checkpoints", "signals"},
    "export": {"models", "checkpoints", "data", "errors"},  # data: the input scaling the exports' metadata state
    "__main__": {"app", "tasks", "tracking", "errors", "signals"},
}


def room(module: str) -> str:
    """vgg_lightning.app.job -> 'app'; the package itself -> ''."""
    return module.split(".")[1] if "." in module else ""


def test_every_room_has_its_floor():
    assert {room(module) for module in module_imports()} - {""} == set(LAYERS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_lower_rooms_import_nothing_above_them(name):
    edges = module_imports()
    for module, targets in edges.items():
        if room(module) == name:
            outside = {room(t) for t in targets} - {name, ""}
            assert outside <= LAYERS[name], f"{module} imports {sorted(outside - LAYERS[name])}"


def test_the_tasks_are_the_top_floor():
    """Only the app's entry point dispatches to the tasks; no room below them reaches up into one."""
    importers = {module for module, targets in module_imports().items() if any(room(t) == "tasks" for t in targets)}
    assert {room(module) for module in importers} - {"tasks"} == {"__main__"}


def test_the_tests_share_code_only_through_the_helpers_module():
    """A test file imports no other test file, nor conftest (whose fixtures pytest hands out itself)."""
    for path in (REPO / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n == "conftest" or n.startswith("test_") for n in names), f"{path.name} imports {names}"


def test_the_model_zoo_knows_no_lightning_hydra_or_data():
    for path in (PACKAGE / "models").rglob("*.py"):
        text = path.read_text()
        for name in ("lightning", "hydra", "omegaconf", ".data"):
            assert f"import {name}" not in text and f"from {name}" not in text, f"{path.name} imports {name}"


def test_the_internals_we_lean_on_are_still_there():
    from vgg_lightning.compat import INTERNALS, check_internals

    assert check_internals() == [], "a library release changed these internals: see vgg_lightning/compat.py"
    assert len(INTERNALS) >= 5


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project installed non-editable (`pip install --target`, no dependencies: they are this venv's)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        cwd=tmp_path_factory.mktemp("build"),
    )
    assert (target / "vgg_lightning" / "configs" / "conf" / "config.yaml").is_file()
    assert not (target / "vgg_lightning" / "configs" / "conf" / "experiment").exists()
    return target


def run_installed(installed: Path, cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        "WANDB_MODE": "offline",
        "VGG_LIGHTNING_CACHE": str(cwd / "cache"),
    }
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_non_editable_install_composes_and_trains_from_outside_the_repository(installed, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    module = [sys.executable, "-m", "vgg_lightning"]
    script = [str(installed / "bin" / "vgg-lightning")]  # the console script pip wrote for the installed package
    for entry in (module, script):
        composed = run_installed(installed, outside, *entry, "experiment=table3/D_jitter", "--cfg", "job")
        assert composed.returncode == 0, composed.stderr[-2000:]
        assert "scale: jitter" in composed.stdout and "paper: table3/D_jitter" in composed.stdout
        helped = run_installed(installed, outside, *entry, "--help")
        assert helped.returncode == 0 and "experiment" in helped.stdout and "model_defaults" not in helped.stdout
        assert "table3/{" in helped.stdout and " D_jitter" in helped.stdout
        assert "{_" not in helped.stdout and ", _" not in helped.stdout  # the _*.yaml partials are no choices
    fast = [
        "model.width=0.0625",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "data.num_workers=0",
        "logger=csv",
    ]
    # one training, by the console script (both entries run the same app, composed above): the demo as a new
    # user runs it, its data set generated into the cache
    run_dir = outside / "script"
    trained = run_installed(installed, outside, *script, "experiment=demo", *fast, f"hydra.run.dir={run_dir}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (run_dir / "results.json").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    loaded = run_installed(
        installed, outside, sys.executable, "-c", "import vgg_lightning; print(vgg_lightning.__file__)"
    )
    assert loaded.stdout.strip().startswith(str(installed))  # the installed copy ran, not the checkout


def test_a_users_own_experiment_joins_the_group_through_config_dir(tmp_path):
    mine = tmp_path / "mine" / "experiment"
    mine.mkdir(parents=True)
    (mine / "my_run.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /experiment/demo\n  - override /model: B\noptim:\n  lr: 0.123\n"
    )
    env = {**os.environ, "WANDB_MODE": "offline"}
    args = [
        sys.executable,
        "-m",
        "vgg_lightning",
        "--config-dir",
        str(tmp_path / "mine"),
        "experiment=my_run",
        "--cfg",
        "job",
    ]
    composed = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert composed.returncode == 0, composed.stderr[-2000:]
    assert "config: B" in composed.stdout and "lr: 0.123" in composed.stdout
    assert "width: 0.125" in composed.stdout  # the demo's, which it builds on
