"""The data pipeline on generated files: the paper's augmentation against torchvision's, real-world files
(grayscale, CMYK, PNG named .JPEG, truncated), decoding on the device, the check command, the batch step, and a
CLI training run on an ImageFolder set with scale jittering."""

from __future__ import annotations

import csv
import io
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from helpers import FAST, encode, make_folder, read_results, run_cli, textured
from PIL import Image
from torchvision.transforms import RandomCrop

from vgg_lightning import paper
from vgg_lightning.data import CorruptImageError, ImageFolder, ImageNetDataModule, region_decode
from vgg_lightning.data.datasets import collate
from vgg_lightning.data.decode import decode_reduced, decode_rgb, image_size, reduction_for
from vgg_lightning.data.region_decode import decode_window
from vgg_lightning.data.transforms import (
    CROP,
    BatchNormalizer,
    CropParams,
    center_crop_params,
    cut_view,
    decode_view,
    parse_scale,
    random_crop,
    rescale,
    rescaled_size,
    sample_crop,
    source_window,
)

# -- the training scale S ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale, low, high, test_scale", [(256, 256, 256, 256), (384, 384, 384, 384), ("jitter", 256, 512, 384)]
)
def test_scale_settings(scale, low, high, test_scale, tmp_path):
    module = ImageNetDataModule(str(tmp_path), scale=scale)
    assert module.train_scale == (low, high) and module.test_scale == test_scale
    rng = np.random.default_rng(0)
    sides = np.array([sample_crop(375, 500, module.train_scale, rng).scale for _ in range(20000)])
    assert sides.min() == low and sides.max() == high
    if low < high:  # uniform over every integer of [256, 512]: each of the 257 values about 20000/257 times
        assert sides.mean() == pytest.approx(384, abs=1.5)
        counts = np.bincount(sides - low, minlength=high - low + 1)
        assert len(counts) == 257 and counts.min() > 40 and counts.max() < 120


def test_parse_scale_refuses_nonsense():
    assert parse_scale([300, 400]) == (300, 400)
    for bad in ("big", 200, [512, 256]):
        with pytest.raises(ValueError, match="data.scale"):
            parse_scale(bad)


def test_crop_and_flip_are_drawn_as_torchvision_draws_them():
    """Offsets uniform over every valid position of the image rescaled to S (RandomCrop's range), flips
    with probability 1/2, S uniform over [256, 512] when jittered: a chi-square test of each draw against the
    uniform distribution, and a two-sample Kolmogorov-Smirnov test against torchvision's own draws (a
    centre-biased or shifted draw fails both; p < 1e-3 fails, a 1-in-1000 false alarm at a fixed seed)."""
    from scipy.stats import chisquare, ks_2samp

    def uniform(values, low: int, high: int) -> float:  # chi-square p, one bin per integer of [low, high]
        return chisquare(np.bincount(np.asarray(values) - low, minlength=high - low + 1)).pvalue

    rng = np.random.default_rng(1)
    n = 4000
    for height, width, scale in ((375, 500, (256, 256)), (500, 333, (384, 384))):
        ours = [sample_crop(height, width, scale, rng) for _ in range(n)]
        rescaled = TF.resize(torch.zeros(1, height, width), scale[0]).shape[1:]  # torchvision's rounding
        with torch.random.fork_rng():
            torch.manual_seed(1)
            theirs = [RandomCrop.get_params(torch.zeros(1, *rescaled), (CROP, CROP))[:2] for _ in range(n)]
        for axis, name in enumerate(("top", "left")):
            mine, reference = np.array([getattr(p, name) for p in ours]), np.array(theirs)[:, axis]
            last = rescaled[axis] - CROP
            assert mine.min() == reference.min() == 0 and mine.max() == reference.max() == last
            assert uniform(mine, 0, last) > 1e-3 and uniform(reference, 0, last) > 1e-3
            assert ks_2samp(mine, reference).pvalue > 1e-3
        assert 0.45 < np.mean([p.flip for p in ours]) < 0.55
    # jitter: S uniform over the integers of [256, 512], each crop inside the image rescaled to its own S
    jittered = [sample_crop(375, 500, (256, 512), rng) for _ in range(n)]
    sides = np.array([p.scale for p in jittered])
    assert sides.min() == 256 and sides.max() == 512 and uniform(sides, 256, 512) > 1e-3
    rescaled = {s: TF.resize(torch.zeros(1, 375, 500), s).shape[1:] for s in set(sides.tolist())}  # torchvision's
    for p in jittered:
        h, w = rescaled[p.scale]
        assert 0 <= p.top <= h - CROP and 0 <= p.left <= w - CROP
    # the offset as a fraction of its range: uniform on [0, 1] whatever S was drawn
    fractions = [p.left / (rescaled[p.scale][1] - CROP) for p in jittered]
    assert chisquare(np.histogram(fractions, bins=5, range=(0, 1 + 1e-9))[0]).pvalue > 1e-3


# -- the fast path against torchvision's ---------------------------------------------------------------------


def torchvision_view(data: bytes, scale, rng) -> np.ndarray:
    """The plain way: PIL decode at full size, Resize(S), crop, flip, with the same draws as ours."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    params = sample_crop(image.height, image.width, scale, rng)
    view = TF.crop(TF.resize(image, params.scale), params.top, params.left, CROP, CROP)
    return np.asarray(TF.hflip(view) if params.flip else view)


@pytest.mark.parametrize("scale", [(256, 256), (384, 384), (256, 512)])
def test_fast_path_equals_torchvision(scale):
    diffs = []
    for seed, (height, width) in enumerate([(300, 400), (400, 300), (260, 600), (480, 360)]):
        data = encode(textured(height, width, seed), quality=90)
        for draw in range(3):
            ours = random_crop(data, scale, np.random.default_rng([seed, draw])).permute(1, 2, 0).numpy()
            reference = torchvision_view(data, scale, np.random.default_rng([seed, draw]))
            assert ours.shape == reference.shape == (CROP, CROP, 3)
            diff = np.abs(ours.astype(int) - reference.astype(int))
            assert diff.max() <= 2  # the same pixels, up to the two resamplers' rounding
            diffs.append(diff.mean())
    assert np.mean(diffs) < 0.05


def test_dct_reduced_decode_stays_close_to_the_full_resize():
    """An image more than twice S is decoded at 1/2 (or less) in the DCT domain, and still looks the same."""
    data = encode(textured(560, 760, seed=3), quality=90)
    assert reduction_for(560, 760, 256) == 2 and reduction_for(560, 760, 384) == 1
    image, k = decode_reduced(data, 256)
    assert (k, image.shape) == (2, (280, 380, 3))
    for draw in range(4):
        ours = random_crop(data, (256, 256), np.random.default_rng(draw)).permute(1, 2, 0).numpy().astype(int)
        reference = torchvision_view(data, (256, 256), np.random.default_rng(draw)).astype(int)
        assert np.abs(ours - reference).mean() < 1.0  # one pixel off it would be about 5


@pytest.fixture
def window_decoding(monkeypatch):
    """The window decoder (nvImageCodec, in `[dev]`), with a count of the windows it decoded."""
    if not region_decode.available():
        pytest.skip("window decoding needs nvImageCodec: pip install vgg-lightning[fastjpeg]")
    decoded = []

    def counted(data, window):
        canvas = decode_window(data, window)
        decoded.append(canvas is not None)
        return canvas

    monkeypatch.setattr(region_decode, "decode_window", counted)
    return decoded


def test_window_decoding_gives_the_whole_file_views(window_decoding, monkeypatch):
    """Decoding only the window a view reads changes no pixel, for any subsampling, grayscale, progressive
    files, S from 352 to 512 (windows under half the image) and the eval view; whatever lies outside the window
    is never read."""
    files = [
        encode(textured(300, 400, seed=1), quality=90),  # 4:2:0
        encode(textured(375, 500, seed=2), quality=95, subsampling=0),  # 4:4:4
        encode(textured(333, 500, seed=3), quality=85, subsampling=1),  # 4:2:2
        encode(textured(500, 333, seed=4), quality=90, progressive=True),
        encode(textured(290, 310, seed=5), mode="L", quality=90),
    ]
    rng = np.random.default_rng(0)
    for data in files:
        size = image_size(data)
        for params in [sample_crop(*size, (352, 512), rng) for _ in range(6)] + [center_crop_params(*size, 384)]:
            windowed = decode_view(data, size, params)
            monkeypatch.setattr(region_decode, "enabled", False)
            assert torch.equal(windowed, decode_view(data, size, params))
            monkeypatch.setattr(region_decode, "enabled", True)
    assert window_decoding == [True, False] * 35  # every window decoded when enabled, none when not
    # the window's canvas outside the window: 0 or 255, the view is the same
    data, size = files[0], (300, 400)
    params = CropParams(scale=384, top=70, left=90, flip=False)
    window = source_window(1, size, rescaled_size(*size, 384), (70, 90, CROP, CROP))
    assert window[0] > 0 and window[1] > 0  # a window that leaves some of the image out
    views = []
    for fill in (0, 255):
        canvas = np.full_like(decode_window(data, window), fill)
        top, left, bottom, right = window
        canvas[top:bottom, left:right] = decode_rgb(data)[top:bottom, left:right]
        views.append(cut_view(torch.from_numpy(canvas).permute(2, 0, 1), 1, size, params))
    assert torch.equal(views[0], views[1])


def test_window_decoding_leaves_damaged_and_other_files_to_the_whole_file_decode(window_decoding):
    """A truncated JPEG is an error whatever its crop (its damage may lie below the window); CMYK, PNG content,
    files reduced in the DCT domain and windows over half the image (an S=256 crop of 375x500) are decoded
    whole, as before."""
    whole = encode(textured(300, 400, seed=6), quality=90)
    truncated = whole[: int(len(whole) * 0.8)]
    params = CropParams(scale=512, top=0, left=0, flip=False)  # the window's rows lie above the damage
    window = source_window(1, (300, 400), rescaled_size(300, 400, 512), (0, 0, CROP, CROP))
    assert decode_window(truncated, window) is not None  # which nvImageCodec would decode
    with pytest.raises(CorruptImageError, match="cut.JPEG"):
        decode_view(truncated, (300, 400), params, path="cut.JPEG")
    cmyk, png = encode(textured(280, 300, seed=5), mode="CMYK"), encode(textured(260, 290, seed=6), fmt="PNG")
    large = encode(textured(560, 760, seed=3), quality=90)  # twice S=256: decoded at 1/2
    typical = encode(textured(375, 500, seed=7), quality=90)  # its S=256 crop reads about 60 % of it
    for data in (cmyk, png, large, typical):
        assert decode_view(data, image_size(data), CropParams(256, 10, 20, True)).shape == (3, CROP, CROP)
    assert window_decoding == []


def test_eval_view_equals_torchvision_resize_and_center_crop():
    data = encode(textured(333, 500, seed=5), quality=95)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    for side in (256, 384):
        full = np.asarray(TF.resize(image, side))
        ours = rescale(data, side).permute(1, 2, 0).numpy()
        assert ours.shape == full.shape and np.abs(ours.astype(int) - full).max() <= 2
        center = np.asarray(TF.center_crop(TF.resize(image, side), CROP))
        assert np.abs(rescale(data, side, CROP).permute(1, 2, 0).numpy().astype(int) - center).max() <= 2


# -- real files ----------------------------------------------------------------------------------------------


def test_grayscale_cmyk_and_png_named_jpeg_become_rgb():
    pixels = textured(64, 80, seed=7)
    gray = decode_rgb(encode(pixels, mode="L", quality=95))
    assert gray.shape == (64, 80, 3) and (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    cmyk = decode_rgb(encode(pixels, mode="CMYK", quality=95))
    assert cmyk.shape == (64, 80, 3) and np.abs(cmyk.astype(int) - pixels).mean() < 4
    png = decode_rgb(encode(pixels, fmt="PNG"))
    assert (png == pixels).all()  # decoded by its content, losslessly
    rgba = decode_rgb(encode(np.dstack([pixels, np.full((64, 80), 255, np.uint8)]), fmt="PNG"))
    assert (rgba == pixels).all()
    for data in (encode(pixels, mode="CMYK"), encode(pixels, fmt="PNG")):  # and they train
        assert random_crop(data, (256, 256), np.random.default_rng(0)).shape == (3, CROP, CROP)


def test_truncated_and_garbage_files_raise_naming_the_file():
    data = encode(textured(64, 80), quality=90)
    for broken in (data[: len(data) // 2], b"not an image", b""):
        with pytest.raises(CorruptImageError, match="broken.JPEG"):
            random_crop(broken, (256, 256), np.random.default_rng(0), path="broken.JPEG")


@pytest.fixture
def folder_with_a_truncated_file(tmp_path):
    root = make_folder(tmp_path, {"a": 3, "b": 3}, size=(60, 70))
    good = (tmp_path / "train" / "a" / "0.JPEG").read_bytes()
    (tmp_path / "train" / "b" / "broken.JPEG").write_bytes(good[: len(good) // 2])
    return root


def test_skip_finishes_the_epoch_counts_and_warns_once(folder_with_a_truncated_file, caplog):
    dataset = ImageFolder(folder_with_a_truncated_file, "train", train=True, on_corrupt="skip")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, collate_fn=collate, sampler=[(e, i) for e in range(2) for i in range(7)]
    )
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == 12 and sum(int(b["skipped"]) for b in batches) == 2  # 2 epochs
    warnings = [r.getMessage() for r in caplog.records if "broken.JPEG" in r.getMessage()]
    assert len(warnings) == 1 and "data.on_corrupt=error" in warnings[0]


def test_a_batch_of_only_unreadable_files_is_skipped_and_counted(folder_with_a_truncated_file):
    from vgg_lightning.training.module import VGGClassifier

    dataset = ImageFolder(folder_with_a_truncated_file, "train", train=True, on_corrupt="skip")
    broken = next(i for i, (path, _) in enumerate(dataset.samples) if path.endswith("broken.JPEG"))
    batch = collate([dataset[(0, broken)]])
    assert set(batch) == {"skipped"} and int(batch["skipped"]) == 1
    optim = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "factor": 0.1, "patience": 3, "max_decreases": 3}
    module = VGGClassifier({"config": "A", "width": 0.0625}, optim, num_classes=2)
    assert module.training_step(batch, 0) is None and module.validation_step(batch, 0) is None
    assert int(module.skipped_images.compute()) == 1


def test_error_stops_naming_the_file(folder_with_a_truncated_file):
    dataset = ImageFolder(folder_with_a_truncated_file, "train", train=True, on_corrupt="error")
    broken = next(i for i, (path, _) in enumerate(dataset.samples) if path.endswith("broken.JPEG"))
    with pytest.raises(CorruptImageError, match=r"cannot decode .*/train/b/broken.JPEG \(data.on_corrupt=error\)"):
        dataset[(0, broken)]
    with pytest.raises(ValueError, match="data.on_corrupt='maybe'"):
        ImageFolder(folder_with_a_truncated_file, "train", train=True, on_corrupt="maybe")


# -- decoding on the device (data.decode=device) ----------------------------------------------------------------


@pytest.fixture
def mixed_folder(tmp_path):
    """ImageNet-like JPEGs, one large enough for the CPU path's DCT reduction, and the files a GPU decoder is
    not given: CMYK, PNG content named .JPEG."""
    root = make_folder(tmp_path, {"a": 3, "b": 3}, splits=("train", "val"), size=(300, 400))
    for split in ("train", "val"):
        (tmp_path / split / "a" / "large.JPEG").write_bytes(encode(textured(640, 720, seed=3), quality=90))
        (tmp_path / split / "a" / "gray.JPEG").write_bytes(encode(textured(300, 260, seed=4), mode="L"))
        (tmp_path / split / "b" / "cmyk.JPEG").write_bytes(encode(textured(280, 300, seed=5), mode="CMYK"))
        (tmp_path / split / "b" / "png.JPEG").write_bytes(encode(textured(260, 290, seed=6), fmt="PNG"))
    return root


def by_index(batch: dict) -> dict:
    order = batch["index"].argsort()
    return {k: v[order] for k, v in batch.items() if torch.is_tensor(v) and v.ndim}


@pytest.mark.parametrize("split", ["train", "val"])
def test_device_decode_gives_the_views_the_workers_give(mixed_folder, split):
    from vgg_lightning.data.device_decode import decode_batch

    train = split == "train"
    kwargs = dict(train=train, scale=(256, 512), test_scale=256, seed=5)
    on_cpu, on_device = (ImageFolder(mixed_folder, split, decode=d, **kwargs) for d in ("cpu", "device"))
    keys = [(2, i) for i in range(len(on_cpu))]
    expected = by_index(collate([on_cpu[k] for k in keys]))
    encoded = collate([on_device[k] for k in keys])
    assert len(encoded["jpeg"]) == len(keys) - 2  # CMYK and PNG were decoded by the worker
    assert sorted(Path(p).name for p in encoded["jpeg_path"]) == ["0.JPEG"] * 2 + ["1.JPEG"] * 2 + ["2.JPEG"] * 2 + [
        "gray.JPEG",
        "large.JPEG",
    ]
    got = by_index(decode_batch(encoded, torch.device("cpu"), on_bad_file=None))
    assert got.keys() == expected.keys() and torch.equal(got["label"], expected["label"])
    if train:  # the same draws: crop, flip and colour shift
        assert torch.equal(got["pca_alpha"], expected["pca_alpha"])
    difference = (got["image"].int() - expected["image"].int()).abs()
    large = [i for i, (path, _) in enumerate(on_cpu.samples) if path.endswith("large.JPEG")][0]
    assert difference[torch.arange(len(keys)) != large].max() <= 1  # the same decoder, the same resampling
    assert difference[large].float().mean() < 2  # full decode here, a DCT-reduced one in the worker


@pytest.mark.parametrize("on_corrupt", ["skip", "error"])
def test_device_decode_skips_or_names_a_broken_file(folder_with_a_truncated_file, on_corrupt):
    from vgg_lightning.data.datasets import CorruptFiles
    from vgg_lightning.data.device_decode import decode_batch

    dataset = ImageFolder(folder_with_a_truncated_file, "train", train=True, decode="device")
    batch = collate([dataset[(0, i)] for i in range(len(dataset))])
    assert len(batch["jpeg"]) == 7  # the truncated file's header reads: it fails only on the device
    if on_corrupt == "error":
        with pytest.raises(CorruptImageError, match=r"cannot decode .*/train/b/broken.JPEG \(data.on_corrupt=error\)"):
            decode_batch(batch, torch.device("cpu"), CorruptFiles("error"))
        return
    batch = decode_batch(batch, torch.device("cpu"), CorruptFiles("skip"))
    assert int(batch["skipped"]) == 1 and len(batch["image"]) == len(batch["label"]) == len(batch["pca_alpha"]) == 6
    assert not any(dataset.samples[i][0].endswith("broken.JPEG") for i in batch["index"].tolist())


def test_unknown_decode_place_is_refused(folder_with_a_truncated_file):
    with pytest.raises(ValueError, match=r"data.decode='gpu': choose one of cpu, device"):
        ImageFolder(folder_with_a_truncated_file, "train", train=True, decode="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvjpeg)")
def test_nvjpeg_views_equal_the_cpu_views(mixed_folder):
    from vgg_lightning.data.device_decode import decode_batch

    dataset = ImageFolder(mixed_folder, "train", train=True, scale=(256, 512), decode="device")
    keys = [(0, i) for i in range(len(dataset))]
    on_cpu = decode_batch(collate([dataset[k] for k in keys]), torch.device("cpu"), None)
    on_gpu = decode_batch(collate([dataset[k] for k in keys]), torch.device("cuda"), None)
    assert on_gpu["image"].is_cuda
    difference = (on_gpu["image"].cpu().int() - on_cpu["image"].int()).abs().float()
    assert difference.mean() < 1 and difference.max() <= 8  # IDCT and float resampling round differently


def test_check_command_lists_every_bad_file_with_its_reason(tmp_path):
    root = make_folder(tmp_path, {"a": 2, "b": 2}, splits=("train",))
    good = (tmp_path / "train" / "a" / "0.JPEG").read_bytes()
    (tmp_path / "train" / "a" / "truncated.JPEG").write_bytes(good[:200])
    (tmp_path / "train" / "b" / "text.JPEG").write_text("hello")
    (tmp_path / "train" / "b" / "empty.JPEG").touch()
    (tmp_path / "train" / "b" / "png.JPEG").write_bytes(encode(textured(20, 20), fmt="PNG"))  # fine
    (tmp_path / "train" / "b" / "notes.txt").write_text("not an image: not scanned")
    command = [sys.executable, "-m", "vgg_lightning.data.check", root, "--workers", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    listed = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert sorted(listed) == sorted(
        str(tmp_path / "train" / p) for p in ("a/truncated.JPEG", "b/text.JPEG", "b/empty.JPEG")
    )
    assert listed[str(tmp_path / "train" / "b" / "empty.JPEG")] == "empty file"
    assert "truncated" in listed[str(tmp_path / "train" / "a" / "truncated.JPEG")].lower()
    assert "3 of 8 files could not be decoded" in result.stderr

    for path in ("a/truncated.JPEG", "b/text.JPEG", "b/empty.JPEG"):
        (tmp_path / "train" / path).unlink()
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0


# -- the batch step ------------------------------------------------------------------------------------------


def test_batch_normalizer_paper_mean_and_pca_shift():
    images = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    mean = torch.tensor(paper.MEAN_RGB).view(1, 3, 1, 1)
    assert torch.allclose(BatchNormalizer("paper")(images), 100 - mean)
    alpha = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.0, 0.0]])
    eigvec, eigval = torch.tensor(paper.PCA_EIGVEC), torch.tensor(paper.PCA_EIGVAL)
    shift = eigvec @ (alpha[0] * eigval * 255)  # AlexNet's lighting noise on the 0-255 scale
    out = BatchNormalizer("paper")(images, alpha)
    assert torch.allclose(out[0], (100 - mean[0] + shift.view(3, 1, 1)).expand(3, 4, 4), atol=1e-4)
    assert torch.allclose(out[1], 100 - mean[0])  # alpha 0: no shift
    assert images.dtype == torch.uint8 and int(images[0, 0, 0, 0]) == 100  # the input is left alone


def test_batch_normalizer_torchvision_matches_to_tensor_and_normalize():
    images = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    expected = TF.normalize(images.float() / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert torch.allclose(BatchNormalizer("torchvision")(images), expected, atol=1e-5)
    with pytest.raises(ValueError, match="data.normalize='caffe'"):
        BatchNormalizer("caffe")


# -- a training run ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("decode", ["cpu", "device"])
def test_cli_trains_on_an_imagefolder_set_with_scale_jitter(demo_root, tmp_path, cli_env, decode):
    root = tmp_path / "mine"
    shutil.copytree(demo_root, root)
    first_class = sorted(p for p in (root / "train").iterdir())[0]
    (first_class / "broken.JPEG").write_bytes((next(first_class.iterdir())).read_bytes()[:300])
    run_dir = tmp_path / "run"
    overrides = [o for o in FAST if not o.startswith("trainer.limit_train_batches")]  # the whole epoch: 33 images
    run_cli(
        "data=imagefolder", f"data.root={root}", "data.scale=jitter", f"data.decode={decode}", *overrides,
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={run_dir}", env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    results = read_results(run_dir)
    assert results["num_classes"] == 8 and results["dataset"] != "imagenet"  # the class count follows the folders
    assert results["train_scale"] == [256, 512] and results["test_scales"] == [384]
    with open(next(run_dir.glob("csv/*/metrics.csv"))) as f:
        skipped = [float(row["train/skipped_images"]) for row in csv.DictReader(f) if row.get("train/skipped_images")]
    assert skipped and skipped[-1] == 1.0  # the broken file, left out of its batch and counted
