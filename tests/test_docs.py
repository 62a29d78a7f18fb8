"""The docs name code that is there: every file, test, module and object that the README, BENCHMARKS.md, a
docs/ page, or a docstring or comment of the package or its configs names exists; and docs/layout.md's module
map lists every module of the package, each once."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = REPO / "vgg_lightning"
DOCS = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
CODE = [
    *sorted(PACKAGE.rglob("*.py")),
    *sorted((REPO / "hydra_plugins").rglob("*.py")),
    *sorted(p for folder in ("conf", "experiments", "sweeps", "examples") for p in (REPO / folder).rglob("*.*")),
]
# a file path of the repository, and a test of a test file: tests/test_x.py::test_y
FILE = re.compile(
    r"(?<![\w/.<-])((?:vgg_lightning|tests|benchmarks|conf|experiments|sweeps|examples|docs|hydra_plugins|\.ci)"
    r"/[\w/.-]*\w\.(?:py|yaml|md|sbatch|sh))(?:::(\w+))?"
)
NOT_IN_THE_REPOSITORY = {"conf/local/default.yaml"}  # a machine's own settings, git-ignored
MODULE = re.compile(r"(?<![\w.])vgg_lightning(?:\.\w+)+")
# `room.module.name` written without the package's name, as docstrings and comments do
ROOMS = sorted(
    ({p.stem for p in PACKAGE.glob("*.py")} | {p.parent.name for p in PACKAGE.glob("*/__init__.py")})
    - {"__init__", "__main__"}
)
RELATIVE = re.compile(rf"(?<![\w./-])(?:{'|'.join(ROOMS)})\.\w+(?:\.\w+)*")


def named_in(path: Path) -> str:
    return str(path.relative_to(REPO))


@cache
def top_level_names(module: Path) -> set[str]:
    """What a module defines or imports at its top level, and the names a lazy `__getattr__` hands out."""
    tree = ast.parse(module.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if "__getattr__" in names:
        names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return names


def resolves(dotted: str) -> bool:
    """`vgg_lightning.app.job.output_dir`: a module of the package, then a name defined in it (one level of
    attribute: a class's own names are checked as far as the class)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        folder = REPO.joinpath(*parts[:split])
        module = folder.with_suffix(".py") if folder.with_suffix(".py").is_file() else folder / "__init__.py"
        if module.is_file():
            rest = parts[split:]
            return not rest or rest[0] in top_level_names(module) or (folder / f"{rest[0]}.py").is_file()
    return False


def config_keys(group: str) -> set[str]:
    """The keys of conf/<group>/*.yaml: `data.scale` is a setting, not a module of the data room."""
    return {line.split(":")[0] for p in (REPO / "conf" / group).glob("*.yaml") for line in p.read_text().splitlines()}


def prose(path: Path) -> str:
    """What a reader reads as words: a module's docstrings and comments (its code's own names, say a variable
    `data`, are no room of the package); a doc or config file whole."""
    text = path.read_text()
    if path.suffix != ".py":
        return text
    tree = ast.parse(text)
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    docstrings = [ast.get_docstring(node) or "" for node in nodes]
    comments = [
        token.string for token in tokenize.generate_tokens(io.StringIO(text).readline) if token.type == tokenize.COMMENT
    ]
    return "\n".join(docstrings + comments)


def stale_names(path: Path) -> list[str]:
    text = path.read_text()
    stale = []
    for match in FILE.finditer(text):
        file, test = match.groups()
        if file in NOT_IN_THE_REPOSITORY:
            continue
        if not (REPO / file).is_file():
            stale.append(file)
        elif test and not re.search(rf"^def {test}\(", (REPO / file).read_text(), re.M):
            stale.append(f"{file}::{test}")
    stale += [name for name in MODULE.findall(text) if not resolves(name.rstrip("."))]
    settings = config_keys("data") | config_keys("features")
    for name in RELATIVE.findall(prose(path)):
        room, member = name.split(".")[:2]
        if (room == "data" and member in settings) or member in ("py", "yaml", "md", "json", "csv", "npz", "ckpt"):
            continue  # a setting (data.scale=...), or a file's name (paper.py)
        if not resolves(f"vgg_lightning.{name}"):
            stale.append(name)
    return stale


@pytest.mark.parametrize("path", DOCS + CODE, ids=named_in)
def test_what_the_docs_name_is_there(path):
    assert stale_names(path) == [], f"{named_in(path)} names code that is not there"


def test_the_checker_finds_a_stale_name(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "see vgg_lightning/runtime/compat.py, tests/test_package.py::test_no_such_test, `checkpoints.read.nowhere`, "
        "vgg_lightning.app.job.container, and (fine) vgg_lightning/compat.py, `app.job.output_dir`, data.scale=256"
    )
    assert stale_names(doc) == [
        "vgg_lightning/runtime/compat.py",
        "tests/test_package.py::test_no_such_test",
        "vgg_lightning.app.job.container",
        "checkpoints.read.nowhere",
    ]


# -- the pages: linked from the README, their links landing, the module map whole -----------------------------
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text, fence = [], False
    for line in page.read_text().splitlines():
        fence = fence != line.startswith("```")
        if not fence and line.startswith("#"):
            text.append(slug(line.lstrip("#")))
    return set(text)


def test_every_docs_page_is_linked_from_the_readme_and_every_link_lands():
    readme = (REPO / "README.md").read_text()
    pages = sorted((REPO / "docs").glob("*.md"))
    assert len(pages) >= 8 and all(f"(docs/{page.name}" in readme for page in pages), "a docs/ page is not linked"
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            landing = (doc.parent / file).resolve() if file else doc
            assert landing.is_file(), f"{named_in(doc)} links to {target}, which is not there"
            assert not anchor or anchor in anchors(landing), f"{named_in(doc)} links to {target}: no such heading"


def test_the_readme_is_read_in_a_minute_and_dated_timings_live_in_benchmarks():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        assert not re.search(r"20\d\d-\d\d-\d\d", doc.read_text()), f"{named_in(doc)} dates a measurement"


def test_the_module_map_lists_every_module_once():
    page = (REPO / "docs" / "layout.md").read_text()
    listed = re.findall(r"^(vgg_lightning/\S+\.py)\s", page, re.M)
    modules = sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py"))
    assert len(listed) == len(set(listed)), "a module is listed twice"
    assert sorted(listed) == modules


def test_the_readme_sets_up_as_ci_does_and_says_how_to_get_torchs_cpu_build():
    """`.ci/run` installs with the README's command, and the README's line for a machine without a GPU asks
    torch's CPU index for the torch and torchvision that pyproject.toml allows."""
    setup = (REPO / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    ci = (REPO / ".ci" / "run").read_text()
    install = re.search(r"^(pip install -e \S+)\s+# README: set-up$", ci, re.M).group(1)
    assert re.search(rf"^{re.escape(install)}$", setup, re.M), "the README's set-up is not what .ci/run installs"
    cpu = re.search(r'^pip install "torch<(\S+)" "torchvision<(\S+)" --index-url https://download.pytorch.org/whl/cpu$',
                    setup, re.M)  # fmt: skip
    assert cpu, "the README does not say how to install torch's CPU build"
    pyproject = (REPO / "pyproject.toml").read_text()
    for package, bound in zip(("torch", "torchvision"), cpu.groups()):
        assert re.search(rf'"{package}>=[\d.]+,<{re.escape(bound)}"', pyproject), (package, bound)
