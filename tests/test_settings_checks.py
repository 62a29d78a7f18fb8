"""A mistyped value is refused before any long work: the app's settings checks import no torch, Lightning or
torchvision, so the one-line error comes in the time it takes to compose the config, not to import torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import REPO

HEAVY = ("torch", "lightning", "torchvision")

# In a fresh interpreter: compose the package's config with each case's overrides, run the app's checks on it,
# and say what each raised and which of HEAVY were imported by the end.
CHECK_CASES = """
import json, sys
from hydra import compose, initialize_config_dir
from vgg_lightning.__main__ import check_settings
from vgg_lightning.runtime.config_files import primary_config_dir

raised = []
for overrides in json.loads(sys.argv[1]):
    with initialize_config_dir(primary_config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    try:
        check_settings(cfg)
        raised.append(None)
    except ValueError as error:
        raised.append(str(error))
print(json.dumps({"raised": raised, "imported": [name for name in json.loads(sys.argv[2]) if name in sys.modules]}))
"""

# one mistyped value per room (models, data, evaluation, training), and a valid config that passes every check
CASES = {
    "model.width=0": "model.width=0: expected a positive multiplier",
    "model.config=Z": "unknown VGG config 'Z'",
    "data.batch_size=0": "data.batch_size=0: expected the global batch",
    "data.scale=100": "data.scale=100: S must be at least the crop size 224",
    "eval.scales=[100]": "eval.scales=[100]: expected a list of ints Q >= 224",
    "optim.lr=-1": "optim.lr=-1: expected a learning rate >= 0",
}


def this_checkout(env: dict) -> dict:
    """The subprocess imports the package of this checkout, whatever else is installed."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}


def test_the_settings_checks_refuse_bad_values_without_importing_torch(tmp_path):
    overrides = [[override, "logger=none"] for override in CASES] + [["logger=none"]]
    result = subprocess.run(
        [sys.executable, "-c", CHECK_CASES, json.dumps(overrides), json.dumps(HEAVY)],
        cwd=tmp_path, env=this_checkout(dict(os.environ)), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    *refusals, valid = report["raised"]
    for (override, expected), message in zip(CASES.items(), refusals):
        assert message is not None and expected in message, (override, message)
    assert valid is None  # the default config passes every check, so every room's check ran to its end
    assert report["imported"] == [], f"the settings checks imported {report['imported']}"


def test_the_cli_refuses_a_bad_value_in_one_line_before_importing_torch(cli_env, tmp_path):
    args = ["experiment=demo", "model.width=0", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vgg_lightning", *args],
        cwd=tmp_path, env=this_checkout(cli_env), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    imports = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    said = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("import time:")]
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(said) <= 2, said  # Hydra's "Error executing job" and ours
    (error,) = [line for line in said if line.startswith("error:")]
    assert error.startswith("error: model.width=0: expected a positive multiplier"), error
    assert any(re.search(r"\| +vgg_lightning\.runtime\.config_files$", line) for line in imports)  # the log is real
    heavy = [line for line in imports if re.search(rf"\| +({'|'.join(HEAVY)})$", line)]
    assert heavy == [], heavy
