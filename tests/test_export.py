"""python -m vgg_lightning.export: each format round-trips within its stated tolerance, and checks itself."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch
from helpers import run_cli, write_checkpoint

from vgg_lightning.checkpoints.nets import net_from_checkpoint
from vgg_lightning.checkpoints.read import read_vgg_checkpoint
from vgg_lightning.data.transforms import TORCHVISION_MEAN, TORCHVISION_STD
from vgg_lightning.export import ATOL, EXTRA_FILE, RTOL, ExportError, export
from vgg_lightning.models import from_torchvision
from vgg_lightning.training.module import VGGClassifier


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    """A vgg-lightning checkpoint of a narrow A (Glorot init: outputs far from zero, so the check means something)."""
    torch.manual_seed(0)
    module = VGGClassifier({"config": "A", "width": 0.0625, "init": "xavier"}, {}, num_classes=5, train_scale=256)
    path = tmp_path_factory.mktemp("ckpt") / "a.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return str(path)


def the_net(ckpt):
    return net_from_checkpoint(read_vgg_checkpoint(ckpt))[0].eval()


def close(found, expected):
    torch.testing.assert_close(found, expected, atol=ATOL, rtol=RTOL)


def test_onnx_with_a_dynamic_batch_and_a_dynamic_score_map(ckpt, tmp_path):
    import onnxruntime

    net = the_net(ckpt)
    for score_map, x in ((False, torch.randn(5, 3, 224, 224)), (True, torch.randn(1, 3, 288, 352))):
        out = tmp_path / f"a{int(score_map)}.onnx"
        assert "checked" in export(ckpt, "onnx", str(out), score_map=score_map)
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            expected = net.score_map(x) if score_map else net(x)
        close(torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), expected)


def test_torchscript_round_trips(ckpt, tmp_path):
    net, out = the_net(ckpt), tmp_path / "a.pt"
    export(ckpt, "torchscript", str(out))
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        close(torch.jit.load(str(out))(x), net(x))
    export(ckpt, "torchscript", str(tmp_path / "map.pt"), score_map=True)
    x = torch.randn(2, 3, 256, 320)
    with torch.no_grad():
        close(torch.jit.load(str(tmp_path / "map.pt"))(x), net.score_map(x))


def test_torchvision_state_dict_through_the_cli(ckpt, tmp_path, cli_env):
    out = tmp_path / "vgg11.pth"
    result = run_cli(ckpt, "--to", "torchvision", "--out", str(out), module="vgg_lightning.export", env=cli_env,
                     cwd=tmp_path)  # fmt: skip
    assert "checked" in result.stdout and f"{ATOL}" in result.stdout
    state = torch.load(out, weights_only=True)
    assert "features.0.weight" in state and state["classifier.6.weight"].shape[0] == 5
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        close(from_torchvision(state, "A").eval()(x), the_net(ckpt)(x))
    # never overwritten; a clear message, no traceback
    again = run_cli(ckpt, "--to", "torchvision", "--out", str(out), module="vgg_lightning.export", env=cli_env,
                    cwd=tmp_path, check=False)  # fmt: skip
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_a_failed_check_writes_nothing_and_onnx_without_its_packages_says_what_to_install(ckpt, tmp_path, monkeypatch):
    import vgg_lightning.export as exporter

    for wrong in (1.0, float("nan")):  # a NaN is neither within the tolerance nor beyond it: it fails too
        monkeypatch.setattr(exporter, "run_torchscript", lambda path, x, wrong=wrong: torch.jit.load(path)(x) + wrong)
        with pytest.raises(ExportError, match="disagrees with the checkpoint"):
            export(ckpt, "torchscript", str(tmp_path / "bad.pt"))
        assert list(tmp_path.iterdir()) == []

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(ExportError, match=r'pip install -e "\.\[export\]"'):
        export(ckpt, "onnx", str(tmp_path / "a.onnx"))


def test_every_export_carries_its_checkpoints_classes_scaling_and_layout(tmp_path, cli_env):
    """What a user outside this package needs to feed the net, read back as such a user reads it: ONNX's
    metadata_props (onnx), TorchScript's extra file (torch.jit.load), the JSON beside torchvision's file."""
    import onnx

    classes = ["ant", "bee", "cicada"]
    ckpt = write_checkpoint(tmp_path / "a.ckpt", classes, normalize="torchvision", test_scale=288, dataset="bugs")
    onnx_file, script_file, torchvision_file = tmp_path / "a.onnx", tmp_path / "a.pt", tmp_path / "vgg11.pth"
    result = run_cli(ckpt, "--to", "onnx", "--out", str(onnx_file), module="vgg_lightning.export", env=cli_env,
                     cwd=tmp_path)  # fmt: skip
    assert "metadata (inside it): 3 classes (ant, bee, cicada)" in result.stdout
    found = {"onnx": {p.key: json.loads(p.value) if p.value[:1] in "[0123456789" else p.value
                      for p in onnx.load(str(onnx_file)).metadata_props}}  # fmt: skip
    export(ckpt, "torchscript", str(script_file))
    extra = {EXTRA_FILE: ""}
    torch.jit.load(str(script_file), _extra_files=extra)
    found["torchscript"] = json.loads(extra[EXTRA_FILE])
    export(ckpt, "torchvision", str(torchvision_file))
    found["torchvision"] = json.loads(Path(f"{torchvision_file}.json").read_text())

    mean, std = [round(255 * m, 4) for m in TORCHVISION_MEAN], [round(255 * s, 4) for s in TORCHVISION_STD]
    hparams = read_vgg_checkpoint(ckpt)["hyper_parameters"]
    for where, props in found.items():
        assert props["classes"] == hparams["classes"] == classes, where
        assert (props["mean"], props["std"], props["normalize"]) == (mean, std, "torchvision"), where
        assert (props["input_layout"], props["channel_order"], props["test_scale"]) == ("NCHW", "RGB", 288), where
        assert (props["config"], props["num_classes"], props["dataset"]) == ("A", 3, "bugs"), where
    # the sidecar is never overwritten either
    with pytest.raises(ExportError, match="exists"):
        export(ckpt, "torchvision", str(torchvision_file))
