"""hparams_search=optuna: an Optuna TPE search over lr, weight decay and dropout, each trial a job of the sweep
folder, the best one named."""

from __future__ import annotations

import json

import pytest
from helpers import FAST, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vgg_lightning.app.config_files import primary_config_dir, register_groups
from vgg_lightning.app.resolvers import register_resolvers
from vgg_lightning.app.search import check_objective, objective


def test_optuna_search_runs_three_trials_and_names_the_best(cli_env, tmp_path, demo_root):
    sweep = tmp_path / "sweep"
    args = ["-m", "hparams_search=optuna", "experiment=demo", "hydra.sweeper.n_trials=3", *FAST]
    result = run_cli(*args, "print_config=false", f"data.root={demo_root}", f"hydra.sweep.dir={sweep}",
                     env=cli_env, cwd=tmp_path)  # fmt: skip
    trials = {job: json.loads((sweep / job / "results.json").read_text()) for job in ("0", "1", "2")}
    assert not (sweep / "3").exists()
    # every trial ran with its own sampled settings, inside the search's ranges
    tried = [OmegaConf.load(sweep / job / ".hydra" / "config.yaml") for job in trials]
    assert len({c.optim.lr for c in tried}) == 3
    assert all(1e-3 <= c.optim.lr <= 0.1 and 5e-5 <= c.optim.weight_decay <= 5e-3 for c in tried)
    assert all(0 <= c.model.dropout <= 0.7 for c in tried)
    # Optuna's own record, and ours: the best job, its error (the lowest), its overrides
    optuna = OmegaConf.load(sweep / "optimization_results.yaml")
    best = OmegaConf.load(sweep / "best_trial.yaml")
    assert optuna.best_value == best.top1_error == min(t["top1_error"] for t in trials.values())
    assert trials[str(best.job)]["top1_error"] == best.top1_error
    assert f"optim.lr={optuna.best_params['optim.lr']}" in best.overrides
    assert "hparams_search=optuna" not in best.command  # the rerun is one run, not another search
    assert f"best trial: job {best.job}" in result.stdout
    # the report reads the search as any sweep: one row per trial
    report = run_cli(str(sweep), "--out", str(tmp_path / "report"), module="vgg_lightning.report", env=cli_env,
                     cwd=tmp_path)  # fmt: skip
    assert all(f"| sweep/{job} |" in report.stdout for job in trials)


def test_the_objective_is_results_json_key():
    assert objective({"top1_error": 12.5, "top5_error": 3.0}, "top1_error") == 12.5
    assert objective(None, "top1_error") is None  # ranks > 0 write no results
    assert objective({"top1_error": 1.0}, None) == {"top1_error": 1.0}
    check_objective("top5_error")
    with pytest.raises(SystemExit, match="optimized_metric='val/acc'.*top1_error, top5_error"):
        check_objective("val/acc")
    check_objective("top1_error", multirun=False, launcher="torchrun")  # one run under torchrun: fine
    with pytest.raises(SystemExit, match="torchrun.*hydra/launcher=slurm"):
        check_objective("top1_error", multirun=True, launcher="torchrun")


def test_search_goes_through_the_slurm_launcher_too():
    register_resolvers()
    register_groups()
    with initialize_config_dir(primary_config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["hparams_search=optuna", "hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "minimize"
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler" and cfg.optimized_metric == "top1_error"
    assert set(cfg.hydra.sweeper.params) == {"optim.lr", "optim.weight_decay", "model.dropout"}
