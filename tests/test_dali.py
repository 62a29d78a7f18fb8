"""data.loader=dali on DALI's CPU backend (CI has no GPU): the same views as the CPU path (the same draws, pixels
within a level or two), every image once per epoch over two simulated ranks, an exact mid-epoch resume,
unreadable files skipped and counted, the settings refused in one line, and the demo trained through the CLI.
The mixed backend (nvJPEG) is compared with the CPU backend where a GPU is at hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAST, encode, make_folder, read_results, run_cli, textured

from vgg_lightning.data import dali_inputs
from vgg_lightning.data.dali_inputs import DaliCollate
from vgg_lightning.data.dali_loader import DaliViews
from vgg_lightning.data.datasets import CorruptFiles, ImageFolder, collate
from vgg_lightning.data.decode import CorruptImageError
from vgg_lightning.data.options import check_data_settings
from vgg_lightning.data.sampling import EpochSampler
from vgg_lightning.data.transforms import CROP, BatchNormalizer, rescaled_size, sample_crop

pytest.importorskip("nvidia.dali", reason="data.loader=dali needs NVIDIA DALI (the [dali] extra)")

SCALE, SEED = (256, 512), 5


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory) -> str:
    """ImageNet-like JPEGs, one large enough for the CPU path's DCT reduction, a grayscale and a CMYK JPEG, PNG
    content named .JPEG, and a truncated file."""
    tmp = tmp_path_factory.mktemp("dali")
    root = make_folder(tmp, {"a": 3, "b": 3}, splits=("train",), size=(300, 400))
    folder = tmp / "train"
    (folder / "a" / "large.JPEG").write_bytes(encode(textured(640, 720, seed=3), quality=90))
    (folder / "a" / "gray.JPEG").write_bytes(encode(textured(300, 260, seed=4), mode="L"))
    (folder / "b" / "cmyk.JPEG").write_bytes(encode(textured(280, 300, seed=5), mode="CMYK"))
    (folder / "b" / "png.JPEG").write_bytes(encode(textured(260, 290, seed=6), fmt="PNG"))
    good = (folder / "a" / "0.JPEG").read_bytes()
    (folder / "b" / "broken.JPEG").write_bytes(good[: len(good) // 2])
    return root


def folder(root: str, decode: str, train: bool = True) -> ImageFolder:
    return ImageFolder(root, "train", train=train, scale=SCALE, test_scale=256, seed=SEED, decode=decode)


def torch_loader(dataset, rank=0, world_size=1, progress=None, batch_size=3, collate_fn=collate):
    """The loader the datamodule builds for training (num_workers=0)."""
    sampler = EpochSampler(len(dataset), True, SEED, rank, world_size, True, batch_size, progress)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, drop_last=True
    )


def dali_views(dataset, on_corrupt="skip", **loader) -> DaliViews:
    """What the datamodule builds for data.loader=dali (num_workers=0, DALI's CPU backend, one thread)."""
    loader = torch_loader(dataset, collate_fn=DaliCollate(on_corrupt=on_corrupt), **loader)
    return DaliViews(loader, BatchNormalizer(), CorruptFiles(on_corrupt), threads=1)


def by_index(batch: dict) -> dict:
    order = batch["index"].argsort()
    return {k: v[order] for k, v in batch.items() if torch.is_tensor(v) and v.ndim}


def name(dataset, index: int) -> str:
    return Path(dataset.samples[index][0]).name


# -- what DALI is given --------------------------------------------------------------------------------------


def test_the_windows_are_the_crop_drawn_as_the_paper_says_in_the_original_pixels():
    rng = np.random.default_rng(0)
    sizes = [(375, 500), (500, 375), (333, 500), (3000, 257), (256, 256), (1200, 1600)]
    plans, drawn = [], []
    for height, width in sizes * 20:
        params = sample_crop(height, width, SCALE, rng)
        plans.append([height, width, params.scale, params.top, params.left, params.flip])
        drawn.append(params)
    windows = dali_inputs.crop_windows(np.array(plans))
    for row, params, anchor, shape, start, end in zip(plans, drawn, *windows.values()):
        height, width = row[:2]
        rescaled = rescaled_size(height, width, params.scale)  # S's rescale, as Resize(S) rounds it
        assert SCALE[0] <= params.scale <= SCALE[1] and min(rescaled) == params.scale
        assert 0 <= params.top <= rescaled[0] - CROP and 0 <= params.left <= rescaled[1] - CROP
        step = np.array([height / rescaled[0], width / rescaled[1]])
        assert np.allclose(anchor + start, np.array([params.top, params.left]) * step, atol=1e-3)
        assert np.allclose(end - start, CROP * step, atol=1e-3)  # 224 rescaled pixels, in original ones
        reach = np.maximum(step, 1)  # the antialiasing filter's: the window holds every pixel the crop reads
        assert (anchor >= 0).all() and (anchor + shape <= [height, width]).all()
        assert (start >= np.minimum(reach, anchor)).all() and (
            shape - end >= np.minimum(reach, [height, width] - anchor - shape)
        ).all()


# -- the views -----------------------------------------------------------------------------------------------


def test_dali_views_are_the_cpu_paths_with_labels_draws_and_skips_exact(odd_folder):
    """One epoch through DALI's CPU backend against the CPU path on the same keys: the same samples in the same
    batches, the same labels; pixels within one level (the colour shift included: the same draws), two on
    average where the CPU path decodes at a DCT-reduced size; the truncated file skipped and counted once."""
    on_cpu, on_dali = folder(odd_folder, "cpu"), folder(odd_folder, "device")
    expected = [by_index(b) for b in torch_loader(on_cpu)]
    views = dali_views(on_dali)
    got = [by_index(b) for b in views]
    assert len(got) == len(expected) == len(views) == len(on_cpu) // 3
    normalise = BatchNormalizer()
    skipped = 0
    for want, have in zip(expected, got):
        assert torch.equal(want["label"], have["label"]) and torch.equal(want["index"], have["index"])
        assert have["image"].dtype == torch.float32 and have["image"].shape[1:] == (3, CROP, CROP)
        difference = (normalise(want["image"], want["pca_alpha"]) - have["image"]).abs().flatten(1)
        for index, error in zip(have["index"].tolist(), difference):
            if name(on_cpu, index) == "large.JPEG":
                assert error.mean() < 2
            else:
                assert error.max() <= 1.0 + 1e-3, name(on_cpu, index)
    for batch in views:
        skipped += int(batch["skipped"])
        assert "broken.JPEG" not in [name(on_cpu, i) for i in batch["index"].tolist()]
    assert skipped == 1  # a second epoch: counted again, as on the CPU path


def test_the_plans_dali_gets_are_the_cpu_paths_draws(odd_folder):
    dataset = folder(odd_folder, "device")
    for index in range(len(dataset)):
        item = dataset[(3, index)]
        if item is None or "plan" not in item:
            continue
        height, width, side, top, left, flip = item["plan"].tolist()
        params = sample_crop(height, width, SCALE, dataset.rng(3, index))
        assert (side, top, left, bool(flip)) == (params.scale, params.top, params.left, params.flip)


def test_channels_last_and_float16_come_out_as_asked(odd_folder):
    views = dali_views(folder(odd_folder, "device"))
    views.channels_last, views.dtype = True, torch.float16
    reference = [b["image"] for b in dali_views(folder(odd_folder, "device"))]
    for batch, want in zip(views, reference):
        image = batch["image"]
        assert image.dtype == torch.float16 and image.is_contiguous(memory_format=torch.channels_last)
        assert (image.float() - want).abs().max() < 0.25  # float16's step near 128


def test_evaluation_views_at_every_q_are_the_cpu_paths_in_unpadded_shape_batches(tmp_path):
    """Dense evaluation's views through DALI: each image rescaled whole to every Q (a panorama to its centred
    4:1 part), batched by shape as the workers batch them, pixels within one level; the CMYK file decoded by the
    workers, the truncated one skipped and counted."""
    from vgg_lightning.data.dali_eval import DaliScaled
    from vgg_lightning.evaluation.loader import ScaledImages, collate_by_shape, collate_encoded, shape_loader

    root = make_folder(tmp_path, {"a": 2, "b": 2}, splits=("val",), size=(300, 400))
    (tmp_path / "val" / "a" / "gray.JPEG").write_bytes(encode(textured(300, 260, seed=4), mode="L"))
    (tmp_path / "val" / "b" / "cmyk.JPEG").write_bytes(encode(textured(280, 300, seed=5), mode="CMYK"))
    (tmp_path / "val" / "b" / "pano.JPEG").write_bytes(encode(textured(100, 600, seed=7), quality=90))
    good = (tmp_path / "val" / "a" / "0.JPEG").read_bytes()
    (tmp_path / "val" / "b" / "broken.JPEG").write_bytes(good[: len(good) // 2])
    scales = [256, 384]
    on_cpu = ScaledImages(root, scales, max_aspect=4)
    expected = {}
    for batch in shape_loader(on_cpu, 3):
        for group in batch["groups"]:
            for k, index in enumerate(group["index"].tolist()):
                expected[index] = [images[k] for images in group["images"]]
    on_dali = ScaledImages(root, scales, max_aspect=4, encoded=True)
    views = DaliScaled(shape_loader(on_dali, 3, collate_fn=collate_encoded), on_dali, collate_by_shape, threads=1)
    got, skipped = {}, 0
    for batch in views:
        skipped += int(batch["skipped"])
        for group in batch["groups"]:
            assert len({tuple(images.shape[1:]) for images in group["images"]}) == len(scales)  # one shape per Q
            for k, index in enumerate(group["index"].tolist()):
                got[index] = [images[k] for images in group["images"]]
    assert skipped == 1 and sorted(got) == sorted(expected) and len(got) == len(on_cpu) - 1
    for index, want in expected.items():
        for have, view in zip(got[index], want):
            assert have.dtype == torch.uint8 and have.shape == view.shape
            assert (have.int() - view.int()).abs().max() <= 1
    pano = next(i for i, (path, _) in enumerate(on_cpu.folder.samples) if path.endswith("pano.JPEG"))
    assert [tuple(view.shape[1:]) for view in got[pano]] == [(256, 1024), (384, 1536)]


# -- epochs, ranks, resume -----------------------------------------------------------------------------------


def test_two_ranks_see_every_image_once_and_a_resume_continues_exactly(odd_folder):
    """Each rank gets the current loader's samples in the current loader's batches; together every image once
    (the one image beyond 2 x 5 left out, as training's drop_last does), a new order each epoch."""
    on_cpu, on_dali = folder(odd_folder, "cpu"), folder(odd_folder, "device")
    ranks = [dali_views(on_dali, rank=r, world_size=2, batch_size=5) for r in range(2)]
    orders = []
    for epoch in range(2):
        seen = []
        for rank, views in enumerate(ranks):
            views.sampler.set_epoch(epoch)
            current = torch_loader(on_cpu, rank=rank, world_size=2, batch_size=5)
            current.sampler.set_epoch(epoch)
            batches = [sorted(b["index"].tolist()) for b in views]
            assert batches == [sorted(b["index"].tolist()) for b in current]
            seen += [i for b in batches for i in b]
        assert (
            len(seen)
            == len(set(seen))
            == 10 - ("broken.JPEG" in [name(on_cpu, i) for i in ranks[0].sampler.order(epoch)[:10]])
        )
        orders.append(seen)
    assert orders[0] != orders[1]
    # rank 1 stopped after one batch of epoch 1: the resumed run starts with the next one
    straight = [
        b["index"].tolist() for b in dali_views(on_dali, rank=1, world_size=2, batch_size=2, progress=lambda: (1, 0))
    ]
    resumed = dali_views(on_dali, rank=1, world_size=2, batch_size=2, progress=lambda: (1, 1))
    assert len(straight) == 2 and len(resumed) == len(straight)  # Lightning's length: the epoch's, done ones included
    assert [b["index"].tolist() for b in resumed] == straight[1:]


def test_an_epoch_left_unfinished_gives_the_next_one_whole(odd_folder):
    views = dali_views(folder(odd_folder, "device"))
    whole = [b["index"].tolist() for b in views]
    for _ in zip(range(1), views):  # limit_train_batches: Lightning stops asking after one batch
        pass
    assert [b["index"].tolist() for b in views] == whole


# -- unreadable files ----------------------------------------------------------------------------------------


def test_a_batch_dali_fails_on_is_decoded_on_the_cpu_path_and_the_bad_file_skipped(odd_folder, monkeypatch, caplog):
    """A file DALI cannot decode (here: garbage, let through to DALI) costs its batch DALI's views, not the run:
    the batch is decoded on the CPU path, the file skipped and counted, and DALI's pipeline rebuilt."""
    from vgg_lightning.data import datasets

    garbage = Path(odd_folder) / "train" / "a" / "0.JPEG"
    dataset = folder(odd_folder, "device")
    expected = [by_index(b) for b in dali_views(dataset)]
    original = garbage.read_bytes()
    try:
        garbage.write_bytes(b"\xff\xd8 not a JPEG \xff\xd9")
        real = datasets.device_decodable_size
        monkeypatch.setattr(
            datasets, "device_decodable_size", lambda data: (300, 400) if b"not a" in data else real(data)
        )
        got = [by_index(b) for b in dali_views(dataset)]
        readable = [(path, label) for path, label in dataset.samples if not path.endswith("broken.JPEG")]
        only_garbage = ImageFolder(odd_folder, "train", train=True, scale=SCALE, decode="device", samples=readable)
        with pytest.raises(CorruptImageError, match=r"cannot decode .*/train/a/0.JPEG \(data.on_corrupt=error\)"):
            list(dali_views(only_garbage, on_corrupt="error"))
    finally:
        garbage.write_bytes(original)
    assert "DALI failed on a batch" in caplog.text
    lost = [i for i in range(len(dataset)) if dataset.samples[i][0] == str(garbage)]
    for want, have in zip(expected, got):
        kept = ~torch.isin(want["index"], torch.tensor(lost))
        assert torch.equal(want["index"][kept], have["index"]) and torch.equal(want["label"][kept], have["label"])
        assert (want["image"][kept] - have["image"]).abs().max() <= 1.0 + 1e-3  # DALI's or the CPU path's view
    assert any(lost[0] in b["index"] for b in expected)  # the garbage was in this epoch's batches, and left out


# -- settings ------------------------------------------------------------------------------------------------


def test_a_bad_loader_or_dali_setting_is_refused_naming_the_choices(monkeypatch):
    with pytest.raises(ValueError, match=r"^data.loader='dalli': choose one of torch, dali$"):
        check_data_settings({"loader": "dalli"})
    with pytest.raises(ValueError, match=r"^data.dali.backend='gpu': expected one of auto, cpu, mixed$"):
        check_data_settings({"loader": "dali", "dali": {"backend": "gpu"}})
    check_data_settings({"loader": "dali", "dali": {"backend": "cpu", "threads": 1, "prefetch": 2}})
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # as without the [dali] extra
    with pytest.raises(
        ValueError, match=r'^data.loader=dali needs NVIDIA DALI.*: pip install "vgg-lightning\[dali\]"$'
    ):
        check_data_settings({"loader": "dali"})
    check_data_settings({"loader": "torch"})  # the default path never asks for DALI


def test_the_data_package_imports_no_dali(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, vgg_lightning.data, vgg_lightning.data.dali_loader, vgg_lightning.data.dali_eval; "
        "print('nvidia.dali' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


# -- through the CLI -----------------------------------------------------------------------------------------


def test_the_demo_trains_through_dali_in_the_current_loaders_error_band(demo_root, fast_run, cli_env, tmp_path):
    run_dir = tmp_path / "run"
    run_cli("experiment=demo", "data.loader=dali", "data.dali.threads=1", f"data.root={demo_root}", *FAST,
            f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path)  # fmt: skip
    results, current = read_results(run_dir), read_results(fast_run)
    assert results["images"] == current["images"]
    # the same crops, flips and colour shifts, pixels within a level: the same training, nearly to the bit
    assert abs(results["top1_error"] - current["top1_error"]) <= 6.25  # one of the 16 val images
    assert abs(results["nll"] - current["nll"]) < 0.01 * current["nll"]  # measured: 6.5675 against 6.5679


# -- the mixed backend (nvJPEG) ------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (DALI's mixed backend)")
def test_the_mixed_backend_gives_the_cpu_backends_views_on_the_gpu(odd_folder):
    """nvJPEG on the GPU against DALI's CPU backend: the training views, and the evaluation's at two Q."""
    from vgg_lightning.data.dali_eval import DaliScaled
    from vgg_lightning.evaluation.loader import ScaledImages, collate_by_shape, collate_encoded, shape_loader

    gpu = torch.device("cuda", torch.cuda.current_device())
    dataset = folder(odd_folder, "device")
    on_cpu = [by_index(b) for b in dali_views(dataset)]
    views = dali_views(dataset)
    views.backend, views.device = "mixed", gpu
    on_gpu = [by_index(b) for b in views]
    assert len(on_gpu) == len(on_cpu)
    for want, have in zip(on_cpu, on_gpu):
        assert have["image"].is_cuda and torch.equal(want["index"], have["index"])
        difference = (have["image"].cpu() - want["image"]).abs()
        assert difference.mean() < 1 and difference.max() <= 8  # nvJPEG's IDCT and GPU resampling round differently
    scaled = ScaledImages(odd_folder, [256, 384], split="train", max_aspect=4, encoded=True)
    evaluations = []
    for backend, device in (("cpu", torch.device("cpu")), ("mixed", gpu)):
        loader = shape_loader(scaled, 3, collate_fn=collate_encoded)
        batches = DaliScaled(loader, scaled, collate_by_shape, backend=backend, device=device, threads=1)
        evaluations.append(
            {
                int(i): [x[k].cpu() for x in g["images"]]
                for b in batches
                for g in b["groups"]
                for k, i in enumerate(g["index"])
            }
        )
    assert evaluations[0].keys() == evaluations[1].keys() and len(evaluations[0]) == len(dataset) - 1
    for index, want in evaluations[0].items():
        for have, view in zip(evaluations[1][index], want):
            difference = (have.int() - view.int()).abs().float()
            assert have.shape == view.shape and difference.mean() < 1 and difference.max() <= 8


def test_the_feed_benchmark_times_both_paths(tmp_path):
    """benchmarks/dali_feed.py's `feed_rates`, which benchmarks/gpu_check.py can call with backend=mixed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dali_feed", Path(__file__).parents[1] / "benchmarks" / "dali_feed.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = make_folder(tmp_path, {"a": 4, "b": 4}, splits=("train",), size=(300, 400))
    rates = bench.feed_rates(root, backend="cpu", batch=4, repeats=1)
    assert rates["torch"] > 0 and rates["dali"] > 0 and rates["dali / torch"] == rates["dali"] / rates["torch"]
    assert set(rates["per CPU-second"]) == {"torch", "dali"} and rates["settings"]["backend"] == "cpu"
