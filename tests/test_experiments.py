"""The experiment and sweep files: each row of Tables 3-6 has its file, which names its row and composes with
the paper's settings (the figures and the Q from paper.py, their one home); Sec. 4.1's pair and Table 11's
descriptors; the sweeps, Table 3's with the paper's warm starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import REPO, compose_cfg
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import setup_globals
from hydra.types import RunMode
from omegaconf import OmegaConf

from vgg_lightning import paper
from vgg_lightning.app.config_files import primary_config_dir, register_groups
from vgg_lightning.app.resolvers import register_resolvers
from vgg_lightning.app.results import paper_figures
from vgg_lightning.data.datamodule import ImageNetDataModule

register_groups()  # experiments/ and sweeps/ as the experiment and sweep groups, as the app does
EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("table*/*.yaml") if not p.name.startswith("_"))


def test_every_paper_row_has_an_experiment_file():
    names = {f"{p.parent.name}/{p.stem}" for p in EXPERIMENTS}
    assert names == {f"table{t}/{row.name}" for t, rows in paper.TABLES.items() for row in rows}


def test_the_papers_figures_have_one_home():
    """The experiment files name their row (`paper: table3/D_jitter`); its figures and Q come from paper.py."""
    assert paper.figures("table3/D_jitter") == {"top1_error": 25.6, "top5_error": 8.1}
    assert paper.figures("sec4/B_shallow_S256") == {"baseline": "B", "top1_error_above": 7.0, "protocol": "center"}
    with pytest.raises(ValueError, match=r"paper='table3/D_jiter': no row or finding of the paper; choose one of "):
        paper.figures("table3/D_jiter")
    assert paper.test_scales("table4/D_S384") == [352, 384, 416]
    assert paper_figures("table4/D_S256") == {"top1_error": 26.6, "top5_error": 8.6}
    assert paper_figures(OmegaConf.create({"top1_error": 30.0})) == {"top1_error": 30.0}  # a file of one's own
    assert paper_figures(None) is None
    for path in (REPO / "experiments").rglob("*.yaml"):
        text = path.read_text()
        assert "top1_error" not in text and "scales: [" not in text, f"{path} writes a figure of paper.py again"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_experiment_composes_with_its_paper_row(path: Path):
    name = f"{path.parent.name}/{path.stem}"
    row = paper.row(name)
    cfg = compose_cfg(f"experiment={name}")
    assert path.read_text().startswith("# @package _global_")
    assert cfg.paper == name  # the file names its row; the figures have one home, paper.py
    assert paper.figures(cfg.paper) == {"top1_error": row.top1_error, "top5_error": row.top5_error}
    assert cfg.eval.protocol == row.protocol
    assert cfg.task == ("train" if row.table == 3 else "eval")
    if "+" not in row.config:
        assert cfg.model.config == row.config
    if row.table == 3:
        jitter = isinstance(row.train_scale, tuple)
        assert cfg.data.scale == ("jitter" if jitter else row.train_scale) and cfg.eval.scales is None
        datamodule = ImageNetDataModule(cfg.data.root, cfg.data.scale)
        assert (datamodule.test_scale,) == row.test_scales  # Q = S, or 384 for jittered S
        assert cfg.optim.lr == (paper.RECIPE["lr"] if row.train_scale == 256 else paper.RECIPE["lr_finetune"])
    else:
        assert tuple(cfg.eval.scales) == row.test_scales


def test_the_sec4_experiments_and_the_report_put_b_beside_b_shallow(tmp_path):
    from vgg_lightning.report.findings import shallow_table
    from vgg_lightning.report.runs import Run

    cfg = compose_cfg("experiment=sec4/B_shallow_S256")
    assert (cfg.model.config, cfg.eval.protocol, cfg.data.scale, paper.figures(cfg.paper)["top1_error_above"]) == (
        "B-shallow",
        "center",
        256,
        7.0,
    )
    assert compose_cfg("experiment=sec4/B_S256").model.config == "B"
    common = {"dataset": "imagenet", "train_scale": 256, "test_scales": [256], "protocol": "center"}
    runs = [
        Run("sec4/B", tmp_path, {"config": "B", "top1_error": 30.0, **common}, None),
        Run("sec4/B_shallow", tmp_path, {"config": "B-shallow", "top1_error": 36.5, **common}, None),
        Run("other", tmp_path, {"config": "B", "top1_error": 20.0, **common, "protocol": "dense"}, None),
    ]
    table = shallow_table(runs)
    assert "| sec4/B | 30.00 | sec4/B_shallow | 36.50 | +6.50 | +7.0 |" in table and "other" not in table
    assert shallow_table(runs[:1]) is None
    assert "– (no B run)" in shallow_table(runs[1:2])


def test_table_11_cells_and_the_experiments_scales():
    assert paper.transfer_cell("E+D", "caltech101") == paper.TransferCell("mean_class_recall", 92.7, 0.5)
    assert paper.transfer_cell("D", "voc2007").value == 89.3 and paper.transfer_cell("A", "voc2007") is None
    for name, spec in paper.TRANSFER_SETS.items():
        cfg = compose_cfg(f"experiment=transfer/{name}")
        assert (cfg.features.dataset, tuple(cfg.features.scales), cfg.features.aggregate) == (
            name,
            spec["scales"],
            spec["aggregate"],
        )
    assert json.loads(json.dumps(paper.TABLE_12)) == {"image only": 79.2, "image and person box": 84.0}


def test_sweep_files_compose():
    register_resolvers()
    with initialize_config_dir(primary_config_dir(), version_base="1.3"):
        params = {
            name: compose("config", overrides=[f"+sweep={name}"], return_hydra_config=True).hydra
            for name in ("depth", "scale", "table3")
        }
    for name, hydra in params.items():  # one folder per sweep, the kind named
        assert hydra.mode == RunMode.MULTIRUN
        assert OmegaConf.to_container(hydra.sweep)["dir"].startswith(f"multirun/{name}/")
    assert params["depth"].sweeper.params == {"model": "A,B,C,D,E"}
    assert params["scale"].sweeper.params == {"data.scale": "256,384,jitter"}
    rows = [name.strip() for name in params["table3"].sweeper.params.experiment.split(",")]
    assert sorted(rows) == sorted(f"table3/{row.name}" for row in paper.TABLE_3)
    assert (
        rows.index("table3/A_S256")
        < rows.index("table3/D_S256")
        < rows.index("table3/D_S384")
        < rows.index("table3/D_jitter")
    )
    spec = yaml.safe_load((REPO / "sweeps" / "wandb_depth.yaml").read_text())  # W&B's macros are not OmegaConf's
    assert spec["parameters"]["model"]["values"] == ["A", "B", "C", "D", "E"]
    assert spec["command"] == ["${env}", "python", "-m", "vgg_lightning", "${args_no_hyphens}"]


def test_table3_sweep_wires_the_papers_warm_starts():
    """Each row starts from the last.ckpt of the row the paper initialises it from, in the same sweep."""
    register_resolvers()
    setup_globals()  # Hydra's own resolvers (`now`), which a job has and compose() alone does not register
    starts = {}
    with initialize_config_dir(primary_config_dir(), version_base="1.3"):
        for row in ("A_S256", "B_S256", "E_S384", "D_jitter"):
            cfg = compose("config", overrides=["+sweep=table3", f"experiment=table3/{row}"], return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)  # what `${hydra:...}` reads inside a job
            sweep = OmegaConf.to_container(cfg.hydra.sweep, resolve=True)
            assert sweep["subdir"] == f"table3/{row}"
            starts[row] = cfg.model.init_from and cfg.model.init_from.removeprefix(sweep["dir"] + "/")
    assert starts == {
        "A_S256": None,
        "B_S256": "table3/A_S256/checkpoints/last.ckpt",
        "E_S384": "table3/E_S256/checkpoints/last.ckpt",
        "D_jitter": "table3/D_S384/checkpoints/last.ckpt",
    }


def test_the_derived_settings_resolve_in_place_as_hydra_prints_them():
    """`--cfg job --resolve` resolves the config in place: the Q and descriptor settings derived from paper.py
    must come back as config nodes, not bare lists."""
    table4 = compose_cfg("experiment=table4/D_S384")
    OmegaConf.resolve(table4.eval)  # (the run dir's ${hydra:...} resolves inside a job only)
    assert list(table4.eval.scales) == [352, 384, 416]
    voc = compose_cfg("experiment=transfer/voc2012")
    OmegaConf.resolve(voc.features)
    assert list(voc.features.scales) == [256, 384, 512, 640, 768] and voc.features.aggregate == "average"
