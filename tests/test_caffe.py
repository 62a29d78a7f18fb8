"""Caffe models without Caffe: real files written by Caffe (its MNIST LeNet), VGG-shaped files in the layout of
every Caffe generation, the BGR fold of the released nets, and the files that are refused."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import CAFFE_BLOCKS as BLOCKS
from helpers import CAFFE_CLASSES as CLASSES
from helpers import CAFFE_HIDDEN as HIDDEN
from helpers import CAFFE_WIDTH as WIDTH
from helpers import caffe_vgg_blobs
from PIL import Image

from vgg_lightning import paper
from vgg_lightning.models import CaffeModelError, from_caffe, read_caffemodel, read_prototxt
from vgg_lightning.models.caffe import read_net, write_caffemodel

LENET = Path(__file__).parent / "data" / "caffe_lenet"
LENET_SCALE = 0.00390625  # the data layer's `scale` in Caffe's lenet_train_test.prototxt (1/256)


def test_reads_caffes_own_lenet_as_its_prototxt_describes_it():
    blobs = read_caffemodel(LENET / "lenet_iter_10000.caffemodel")
    shapes = {name: [b.shape for b in layer] for name, layer in blobs.items()}
    # conv1: 20 outputs, 5x5 over the 1-channel input; conv2: 50, 5x5; ip1: 500 over 50x4x4; ip2: 10
    assert shapes == {
        "conv1": [(20, 1, 5, 5), (20,)],
        "conv2": [(50, 20, 5, 5), (50,)],
        "ip1": [(500, 800), (500,)],
        "ip2": [(10, 500), (10,)],
    }
    assert all(b.dtype == np.float32 and np.isfinite(b).all() and b.std() > 0 for v in blobs.values() for b in v)

    deploy = read_prototxt(LENET / "lenet.prototxt")
    assert deploy.name == "LeNet" and deploy.inputs == {"data": (64, 1, 28, 28)}
    weighted = [(layer.name, layer.type) for layer in deploy.layers if layer.type in ("Convolution", "InnerProduct")]
    assert weighted == [
        ("conv1", "Convolution"),
        ("conv2", "Convolution"),
        ("ip1", "InnerProduct"),
        ("ip2", "InnerProduct"),
    ]
    # the training net Caffe saved holds its data and loss layers too, without weights
    types = {layer.name: layer.type for layer in read_net(LENET / "lenet_iter_10000.caffemodel").layers}
    assert types["mnist"] == "Data" and types["loss"] == "SoftmaxWithLoss" and types["relu1"] == "ReLU"


def test_caffes_lenet_reads_its_digits():
    blobs = {
        k: [torch.from_numpy(np.array(b)) for b in v]
        for k, v in read_caffemodel(LENET / "lenet_iter_10000.caffemodel").items()
    }
    paths = sorted((LENET / "digits").glob("*.png"))
    labels = [int(path.stem.split("_")[1]) for path in paths]
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("L"), dtype=np.float32)) for p in paths])
    x = x[:, None] * LENET_SCALE
    x = F.max_pool2d(F.conv2d(x, *blobs["conv1"]), 2)
    x = F.max_pool2d(F.conv2d(x, *blobs["conv2"]), 2)
    scores = F.linear(F.relu(F.linear(x.flatten(1), *blobs["ip1"])), *blobs["ip2"])
    assert len(paths) == 10 and scores.argmax(1).tolist() == labels
    assert scores.softmax(1).max(1).values.min() > 0.99


# ---- VGG-shaped files (helpers.caffe_vgg_blobs): config D at width 1/16 (conv widths 4 ... 32, FC 256), 10 classes


def caffe_forward(blobs: dict, bgr: torch.Tensor, config: str = "D") -> torch.Tensor:
    """The released net as Caffe runs it, on a BGR image minus the mean pixel: the reference for the fold."""
    t = {name: [torch.from_numpy(np.array(b)) for b in layer] for name, layer in blobs.items()}
    x = bgr
    for block, convs in enumerate(BLOCKS[config], start=1):
        for index in range(1, convs + 1):
            x = F.relu(F.conv2d(x, *t[f"conv{block}_{index}"], padding=1))
        x = F.max_pool2d(x, 2)
    x = x.flatten(1)  # pool5 as Caffe's InnerProduct reads it: (C, H, W) per image
    for name in ("fc6", "fc7"):
        weight, bias = t[name]
        x = F.relu(F.linear(x, weight.reshape(weight.shape[-2:]), bias.flatten()))
    weight, bias = t["fc8"]
    return F.linear(x, weight.reshape(weight.shape[-2:]), bias.flatten())


@pytest.mark.parametrize(
    "flavour, legacy_shapes",
    [("layer", False), ("layers", True), ("v0", True)],
    ids=["V2-layer-shape", "V1-layers-legacy-4d", "V0-legacy-4d"],
)
def test_vgg_files_of_every_caffe_generation_read_back(tmp_path, flavour, legacy_shapes):
    blobs = caffe_vgg_blobs()
    path = tmp_path / "vgg.caffemodel"
    write_caffemodel(path, blobs, flavour=flavour, legacy_shapes=legacy_shapes)
    net = read_net(path)
    assert [(layer.name, layer.type) for layer in net.layers][-4:] == [
        ("conv5_3", "Convolution"),
        ("fc6", "InnerProduct"),
        ("fc7", "InnerProduct"),
        ("fc8", "InnerProduct"),
    ]
    read = net.blobs()
    if legacy_shapes:  # Caffe's 2014 layout: 4-D, padded in front
        assert read["fc6"][0].shape == (1, 1, HIDDEN, 32 * 49) and read["fc6"][1].shape == (1, 1, 1, HIDDEN)
    else:
        assert read["fc6"][0].shape == (HIDDEN, 32 * 49) and read["fc6"][1].shape == (HIDDEN,)
    assert list(read) == list(blobs)
    assert all(np.array_equal(a.reshape(b.shape), b) for k in blobs for a, b in zip(read[k], blobs[k], strict=True))


def test_the_released_layout_folds_to_our_net_with_the_logits_of_caffes_bgr_net(tmp_path):
    """A D-shaped file as the authors released theirs (V1 `layers`, legacy 4-D shapes, fc6 an InnerProduct):
    our net on RGB minus paper.MEAN_RGB gives the logits of the Caffe net on BGR minus the mean pixel."""
    blobs = caffe_vgg_blobs()
    path = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    write_caffemodel(path, blobs, name="VGG_ILSVRC_16_layers", flavour="layers", legacy_shapes=True)
    net = from_caffe(path, "D").eval()
    assert (net.config, net.width, net.num_classes) == ("D", WIDTH, CLASSES)
    rgb = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, 3, 224, 224)).astype(np.float32))
    ours = rgb - torch.tensor(paper.MEAN_RGB).view(1, 3, 1, 1)  # what normalize=paper gives the net
    bgr = ours.flip(1)  # the same pixels as B, G, R minus the mean pixel (103.939, 116.779, 123.68)
    with torch.no_grad():
        logits, reference, unfolded = net(ours), caffe_forward(blobs, bgr), net(bgr)
        dense = net.head.score_map(net.features(ours))  # fc6 as dense evaluation's 7x7 conv: one position
    assert reference.abs().max() > 1  # the check sees real scores, not zeros
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dense[:, :, 0, 0], reference, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(unfolded, reference, atol=1e-2)  # without the fold, the channel order matters

    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert net.source == {
        "format": "caffe",
        "net": "VGG_ILSVRC_16_layers",
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha256,
        "config": "D",
        "folded": net.source["folded"],
    }
    assert "BGR -> RGB" in net.source["folded"]


def test_config_e_and_a_dict_of_blobs():
    blobs = caffe_vgg_blobs("E")
    net = from_caffe(blobs, "E")
    layers = net.conv_layers()
    assert list(layers) == list(blobs) and layers["conv5_4"].weight.shape == (32, 32, 3, 3)
    assert torch.equal(layers["conv1_1"].weight, torch.from_numpy(blobs["conv1_1"][0][:, ::-1].copy()))
    assert torch.equal(layers["fc6"].weight.flatten(1), torch.from_numpy(blobs["fc6"][0]))
    assert all(torch.equal(layers[k].bias, torch.from_numpy(b[1])) for k, b in blobs.items())
    assert net.source is None  # no file: nothing to say where it came from


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_weights_of_another_config_or_shape_are_refused_naming_the_layer():
    e_blobs = caffe_vgg_blobs("E")
    with pytest.raises(CaffeModelError) as error:
        from_caffe(e_blobs, "D")
    assert "extra conv3_4, conv4_4, conv5_4" in _one_line(error) and "config E's" in str(error.value)
    with pytest.raises(CaffeModelError, match="no conv3_4, conv4_4, conv5_4"):
        from_caffe(caffe_vgg_blobs("D"), "E")
    # C has D's names but 1x1 convs where D has its third 3x3s
    with pytest.raises(
        CaffeModelError,
        match=r"conv3_3: config C needs a weight of shape \(16, 16, 1, 1\), the file has \(16, 16, 3, 3\)",
    ):
        from_caffe(caffe_vgg_blobs("D"), "C")
    wrong = caffe_vgg_blobs("D")
    wrong["fc7"][0] = wrong["fc7"][0][:128]
    with pytest.raises(
        CaffeModelError, match=r"fc7: config D needs a weight of shape \(256, 256, 1, 1\), the file has \(128, 256\)"
    ):
        from_caffe(wrong, "D")
    wrong = caffe_vgg_blobs("D")
    wrong["conv2_1"] = wrong["conv2_1"][:1]
    with pytest.raises(CaffeModelError, match=r"the weights: conv2_1 has 1 blobs, config D needs 2"):
        from_caffe(wrong, "D")


def test_a_deploy_prototxt_of_2014_is_read_and_checked_against_the_config(tmp_path):
    """The released nets' deploys are V1 text: `input_dim`s and `layers { type: CONVOLUTION }`."""
    convs = "".join(
        f'layers {{ bottom: "x" top: "{n}" name: "{n}" type: CONVOLUTION convolution_param {{ num_output: 64 pad: 1 kernel_size: 3 }} }}\n'
        f'layers {{ bottom: "{n}" top: "{n}" name: "relu{n[4:]}" type: RELU }}\n'
        for n in caffe_vgg_blobs("E")
        if n.startswith("conv")
    )
    fcs = "".join(
        f'layers {{ name: "{n}" type: INNER_PRODUCT inner_product_param {{ num_output: 4096 }} }}\n'
        for n in ("fc6", "fc7", "fc8")
    )
    text = 'name: "VGG_ILSVRC_19_layers"\ninput: "data"\ninput_dim: 10\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n'
    path = tmp_path / "VGG_ILSVRC_19_layers_deploy.prototxt"
    path.write_text(text + convs + fcs + 'layers { name: "prob" type: SOFTMAX bottom: "fc8" top: "prob" }\n')
    deploy = read_prototxt(path)
    assert deploy.inputs == {"data": (10, 3, 224, 224)} and deploy.layers[0].type == "Convolution"
    assert [layer.name for layer in deploy.layers if layer.type == "InnerProduct"] == ["fc6", "fc7", "fc8"]
    assert from_caffe(caffe_vgg_blobs("E"), "E", prototxt=path).config == "E"
    with pytest.raises(CaffeModelError, match="extra conv3_4, conv4_4, conv5_4"):
        from_caffe(caffe_vgg_blobs("D"), "D", prototxt=path)
    with pytest.raises(CaffeModelError, match="not a prototxt: it is not text"):
        read_prototxt(LENET / "lenet_iter_10000.caffemodel")


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2), numbers below 16."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_a_hand_encoded_v1_file_with_unpacked_and_double_values(tmp_path):
    """Bytes written from caffe.proto's field numbers by hand (not by our writer): NetParameter.layers = 2,
    V1LayerParameter name = 4, type = 5 (INNER_PRODUCT = 14), blobs = 6; BlobProto num/channels/height/width
    = 1-4 (varints), data = 5 as single floats (unpacked: wire type 5), double_data = 8 (packed)."""
    values = [0.5, -1.25, 3.0, 2.0, -0.75, 8.0]
    dims = bytes([1 << 3, 1, 2 << 3, 1, 3 << 3, 2, 4 << 3, 3])  # legacy (1, 1, 2, 3)
    unpacked = b"".join(bytes([5 << 3 | 5]) + struct.pack("<f", v) for v in values)
    doubles = _field(8, struct.pack("<3d", 0.1, 0.2, 0.3))
    bias_dims = bytes([1 << 3, 1, 2 << 3, 1, 3 << 3, 1, 4 << 3, 3])
    layer = _field(4, b"fc") + bytes([5 << 3, 14]) + _field(6, dims + unpacked) + _field(6, bias_dims + doubles)
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(_field(1, b"old") + _field(2, layer))
    net = read_net(path)
    assert net.name == "old" and net.layers[0].type == "InnerProduct"
    weight, bias = net.layers[0].blobs
    assert weight.shape == (1, 1, 2, 3) and weight.ravel().tolist() == values
    assert bias.dtype == np.float32 and np.allclose(bias.ravel(), [0.1, 0.2, 0.3])


def _torch_checkpoint(path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)


@pytest.mark.parametrize(
    "make, what",
    [
        (
            lambda p: p.write_text('name: "LeNet"\nlayer { name: "conv1" type: "Convolution" }\n'),
            "a text file: a prototxt?",
        ),
        (lambda p: p.write_bytes((LENET / "digits" / "img_7_0.png").read_bytes()), "a PNG image"),
        (
            lambda p: p.write_bytes((LENET / "lenet_iter_10000.caffemodel").read_bytes()[:900_000]),
            "truncated or damaged",
        ),
        (_torch_checkpoint, "a zip archive (a PyTorch checkpoint?)"),
        (lambda p: p.write_bytes(b""), "0 bytes"),
    ],
    ids=["text", "png", "truncated", "torch-checkpoint", "empty"],
)
def test_what_is_not_a_caffe_model_is_refused_in_one_line(tmp_path, make, what):
    path = tmp_path / "model.caffemodel"
    make(path)
    with pytest.raises(CaffeModelError) as error:
        read_caffemodel(path)
    assert f"{path} is not a Caffe model" in _one_line(error) and what in str(error.value)
    with pytest.raises(CaffeModelError):
        from_caffe(path, "D")


def test_reading_caffe_files_needs_no_torch():
    """read_caffemodel and read_prototxt are numpy and protobuf only: a settings check may call them cheaply."""
    code = "import sys, vgg_lightning.models as m; m.read_caffemodel, m.read_prototxt; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_missing_file_says_where_the_released_weights_are(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match="never downloads.*VGG_ILSVRC_19_layers.caffemodel, linked from https://gist.github.com/ksimonyan/3785162f95cd2d5fee77",
    ):
        from_caffe(tmp_path / "VGG_ILSVRC_19_layers.caffemodel", "E")
