"""Exact data parallelism: a 2-process DDP run (gloo, CPU) ends with the weights of a 1-process run with the
same global batch, as Sec. 3.3 of the paper says of its 4 GPUs, and its validation and test count each image of
a val set that does not divide over the ranks once, with the errors of one process."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import compose_cfg, read_results, run_cli

from vgg_lightning.report.runs import training_curve

# 32 demo images, global batch 8 (4 per process under DDP), 3 steps.
RUN = [
    "experiment=demo",
    "model.width=0.0625",
    # Dropout is off: its masks come from each process's own RNG stream, so 2 processes cannot draw the
    # masks that 1 process draws for the same samples. Augmentation needs no such switch: its randomness
    # is keyed by (seed, epoch, sample index), whichever process loads the sample.
    "model.dropout=0",
    "data.batch_size=8",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "logger=csv",
]


def state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def test_two_process_ddp_equals_one_process(cli_env, tmp_path, demo_root):
    # 15 val images: 2 ranks cannot split them evenly, so a padded sampler would count one twice
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    dropped = sorted((root / "val").glob("*/*.JPEG"))[0]
    dropped.unlink()
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_cli(*RUN, f"data.root={root}", f"hydra.run.dir={single}", env=cli_env, cwd=tmp_path)
    two = run_cli(
        *RUN,
        f"data.root={root}",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        f"hydra.run.dir={ddp}",
        env=cli_env,
        cwd=tmp_path,
    )
    # each rank's own record: Lightning's line as each process joins the group, and the batch split
    output = two.stdout + two.stderr
    for rank in (0, 1):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in output
    assert "global batch 8 = 2 process(es) x 4 images" in output

    one, two = state(single), state(ddp)
    worst = max((one[k] - two[k]).abs().max().item() for k in one if k.startswith("net."))
    assert worst < 1e-6, f"DDP and single-process weights differ by up to {worst}"
    assert read_results(ddp)["steps"] == read_results(single)["steps"] == 3
    # every val image counted once over the 2 ranks, with the errors of one process: the final test ...
    for key in ("images", "top1_error", "top5_error"):
        assert read_results(ddp)[key] == read_results(single)[key], key
    assert read_results(ddp)["images"] == 15
    assert read_results(ddp)["nll"] == pytest.approx(read_results(single)["nll"], abs=1e-5)
    # ... and the validation of the training loop (torchmetrics sums the ranks' counts)
    val = [[row for _, row in sorted(training_curve(d).items()) if "val/top1_error" in row][-1] for d in (single, ddp)]
    assert val[0]["val/top1_error"] == val[1]["val/top1_error"] and val[0]["val/top5_error"] == val[1]["val/top5_error"]
    assert val[1]["val/top1_error"] * 15 / 100 == pytest.approx(round(val[1]["val/top1_error"] * 15 / 100))
    # rank 1 re-ran the command into rank 0's run dir: one results file, no stray run folders
    assert not (tmp_path / "outputs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ddp", "single"]
    assert json.loads((ddp / "results.json").read_text())["task"] == "train"


def test_ddp_is_built_with_buckets_for_the_head_gradient_views_and_a_static_graph_unless_accumulating(tmp_path):
    """Every way of asking for DDP (trainer=ddp's `ddp`, `auto` on several devices) gets VGGDDPStrategy through
    the app's trainer; DDP's static graph is dropped when the trainer accumulates micro-batches."""
    import lightning as L

    from vgg_lightning.app.trainer import build_trainer
    from vgg_lightning.training.ddp import BUCKET_MB, VGGDDPStrategy
    from vgg_lightning.training.module import VGGClassifier

    run = [f"paths.output_dir={tmp_path}", "logger=csv", "trainer.accelerator=cpu", "trainer.devices=2"]
    for strategy in ("ddp", "auto"):
        trainer = build_trainer(compose_cfg(*run, f"trainer.strategy={strategy}"))
        assert type(trainer.strategy) is VGGDDPStrategy, strategy
    options = trainer.strategy._ddp_kwargs
    assert options == {"bucket_cap_mb": BUCKET_MB, "gradient_as_bucket_view": True}
    assert BUCKET_MB * 2**20 > 4096 * 4096 * 4 + 1000 * 4096 * 4  # fc7 + fc8 of VGG-16 (fp32) fit one bucket

    built = {}

    class Recorded(VGGDDPStrategy):  # records what DistributedDataParallel would get, builds nothing
        def _setup_model(self, model):
            built[self.lightning_module.trainer.accumulate_grad_batches] = dict(self._ddp_kwargs)
            return model

    for accumulate in (1, 2):
        strategy = Recorded()
        trainer = L.Trainer(strategy=strategy, accelerator="cpu", devices=1, accumulate_grad_batches=accumulate)
        module = VGGClassifier({"config": "A", "width": 0.0625}, {}, num_classes=2)
        module.trainer = trainer
        strategy.connect(module)
        strategy.configure_ddp()
    assert built[1]["static_graph"] is True and built[2]["static_graph"] is False
