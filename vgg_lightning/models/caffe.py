"""Caffe models without Caffe: read a `.caffemodel` (weights) or a deploy `.prototxt` (the net as text) of any
Caffe generation with the protobuf package alone, and write one (tests, and D-shaped stand-ins of the released
files). The message definitions are in `caffe_proto`; the released VGG nets as our `VGG` in `caffe_vgg`.

    >>> blobs = read_caffemodel("VGG_ILSVRC_16_layers.caffemodel")
    >>> blobs["conv1_1"][0].shape, blobs["fc6"][0].shape      # weight (BGR input channels), as Caffe wrote it
    ((64, 3, 3, 3), (4096, 25088))

The arrays are read-only views of the bytes protobuf gives for each blob (numpy copies nothing): copy one to
change it. Reading takes about twice the file's size in memory (the file, then the arrays), and no Python
object per value.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from .caffe_proto import RAW, TYPED, V1_LAYER_TYPES


class CaffeModelError(ValueError):
    """A file that is not a Caffe model, or weights that do not fit the net asked for; the message names the
    file or the layer, and the shapes."""


@dataclass(frozen=True)
class CaffeLayer:
    name: str
    type: str  # in the spelling of today's Caffe ("Convolution", "InnerProduct"), whichever generation wrote it
    blobs: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class CaffeNet:
    name: str
    layers: tuple[CaffeLayer, ...]
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # a deploy prototxt's input blobs and dims
    source: dict = field(default_factory=dict)  # the file read: name, bytes, sha256

    def blobs(self) -> dict[str, list[np.ndarray]]:
        """Each layer that has weights -> its blobs, in order (weight, bias), as pycaffe's `net.params`."""
        return {layer.name: list(layer.blobs) for layer in self.layers if layer.blobs}


# V1's enum names and V0's strings, in today's spelling (Caffe's own upgrade_proto.cpp maps them the same way)
_V1_NAMES = {
    "ABSVAL": "AbsVal",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "IM2COL": "Im2col",
    "LRN": "LRN",
    "MVN": "MVN",
    "RELU": "ReLU",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "TANH": "TanH",
}
_V1_TYPES = {number: _V1_NAMES.get(name, name.title().replace("_", "")) for name, number in V1_LAYER_TYPES.items()}
_V1_NUMBERS = {name: number for number, name in _V1_TYPES.items()}
_V0_TYPES = {
    "conv": "Convolution",
    "innerproduct": "InnerProduct",
    "pool": "Pooling",
    "relu": "ReLU",
    "lrn": "LRN",
    "dropout": "Dropout",
    "softmax": "Softmax",
    "softmax_loss": "SoftmaxWithLoss",
    "data": "Data",
}
_V0_NAMES = {name: v0 for v0, name in _V0_TYPES.items()}
FLAVOURS = ("layer", "layers", "v0")  # NetParameter.layer (2015 on), .layers (V1, 2014), V1's nested V0 layer
_LEGACY_DIMS = ("num", "channels", "height", "width")


def _layers(net) -> Iterator[tuple[str, str, Sequence]]:
    """(name, type, blobs) of every layer of a parsed NetParameter (typed or raw), whichever field holds them."""
    for layer in net.layer:
        yield layer.name, layer.type, layer.blobs
    for layer in net.layers:
        if layer.HasField("layer"):  # the first format, wrapped in a V1 layer
            yield layer.layer.name, _V0_TYPES.get(layer.layer.type, layer.layer.type), layer.layer.blobs
        else:
            yield layer.name, _V1_TYPES.get(layer.type, str(layer.type)), layer.blobs


def _array(blob, where: str) -> np.ndarray:
    """A raw BlobProto's values in its shape. Caffe's rule: the legacy num/channels/height/width, when any is
    set, else `shape`."""
    legacy = any(blob.HasField(dim) for dim in _LEGACY_DIMS)
    shape = tuple(getattr(blob, dim) for dim in _LEGACY_DIMS) if legacy else tuple(blob.shape.dim)
    count = math.prod(shape)
    values = np.frombuffer(b"".join(blob.data), "<f4")
    if values.size != count:
        # doubles (a Blob<double>), or floats written one by one, not packed (no Caffe does, but protobuf allows
        # it: the raw twin keeps them as unknown fields): the typed twin reads them, a Python float each
        typed = TYPED.BlobProto.FromString(blob.SerializeToString())
        values = np.array(typed.data or typed.double_data, dtype=np.float32)
    if values.size != count:
        raise CaffeModelError(f"{where}: shape {shape} needs {count} values, the file holds {values.size} (damaged?)")
    return values.reshape(shape)


def _what_it_is(head: bytes) -> str:
    """What a file that protobuf cannot read as a net looks like, from its first bytes."""
    signatures = {
        b"\x89PNG": "a PNG image",
        b"\xff\xd8\xff": "a JPEG image",
        b"PK\x03\x04": "a zip archive (a PyTorch checkpoint?)",
        b"\x80\x02": "a pickle (an old PyTorch checkpoint?)",
        b"\x93NUMPY": "a numpy array file",
        b"\x89HDF": "an HDF5 file (Caffe's HDF5 snapshots are not read)",
    }
    for magic, what in signatures.items():
        if head.startswith(magic):
            return what
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head)
    if head and all(c.isprintable() or c in "\n\r\t" for c in text):
        return "a text file" + (": a prototxt? the weights are in the .caffemodel" if "layer" in text else "")
    return "protobuf cannot parse it as a caffe.NetParameter: truncated or damaged?"


def read_net(path: str | os.PathLike) -> CaffeNet:
    """Every layer of a `.caffemodel` with its blobs (float32 arrays in their shapes), and where it came from."""
    data = Path(path).read_bytes()
    try:
        net = RAW.NetParameter.FromString(data)
    except DecodeError:
        net = None
    if net is None or not any(len(blobs) for _, _, blobs in _layers(net)):
        raise CaffeModelError(f"{path} is not a Caffe model ({len(data)} bytes): {_what_it_is(data[:512])}")
    source = {"file": os.path.basename(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    del data  # the parsed message holds its own copy
    layers = tuple(
        CaffeLayer(name, kind, tuple(_array(blob, f"{path}: layer {name!r} blob {i}") for i, blob in enumerate(blobs)))
        for name, kind, blobs in _layers(net)
    )
    names = [layer.name for layer in layers if layer.blobs]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise CaffeModelError(f"{path}: more than one layer with weights is named {', '.join(twice)}")
    return CaffeNet(net.name, layers, _input_dims(net), source)


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Each layer of a `.caffemodel` that has weights -> its blobs (weight, bias), float32 arrays in the shapes
    the file gives (a legacy file's 4-D shapes as they are: (1, 1, 1, 4096) for a bias)."""
    return read_net(path).blobs()


def _input_dims(net) -> dict[str, tuple[int, ...]]:
    """A net's input blobs and their dims, in any of the three ways a deploy prototxt declares them."""
    shapes = [tuple(shape.dim) for shape in net.input_shape]
    dims = list(net.input_dim)
    legacy = [tuple(dims[i : i + 4]) for i in range(0, len(dims), 4)]
    inputs = dict(zip(net.input, shapes or legacy))
    for layer in net.layer:
        if layer.type == "Input":
            inputs.update(zip(layer.top, (tuple(shape.dim) for shape in layer.input_param.shape)))
    return inputs


def read_prototxt(path: str | os.PathLike) -> CaffeNet:
    """A deploy prototxt (text): its layers' names and types, and its inputs' dims. The fields that only Caffe
    needs (convolution_param, ...) are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        net = text_format.Parse(text, TYPED.NetParameter(), allow_unknown_field=True)
    except UnicodeDecodeError:
        raise CaffeModelError(
            f"{path} is not a prototxt: it is not text (a .caffemodel? read it with read_caffemodel)"
        ) from None
    except text_format.ParseError as error:
        raise CaffeModelError(f"{path} is not a Caffe prototxt: {error}") from None
    layers = tuple(CaffeLayer(name, kind) for name, kind, _ in _layers(net))
    return CaffeNet(net.name, layers, _input_dims(net), {"file": os.path.basename(path)})


def _put(blob, array: np.ndarray, legacy_shapes: bool) -> None:
    values = np.ascontiguousarray(array, dtype="<f4")
    if legacy_shapes:  # padded to 4-D in front, as Caffe wrote them: a bias (1, 1, 1, n), an FC weight (1, 1, o, i)
        if values.ndim > 4:
            raise ValueError(f"a legacy blob has 4 dims at most, not {values.shape}")
        blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - values.ndim) + values.shape
    else:
        blob.shape.dim.extend(values.shape)
    blob.data.append(values.tobytes())  # the packed field's bytes: one copy, no Python float per value


def write_caffemodel(
    path: str | os.PathLike,
    layers: Mapping[str, Sequence[np.ndarray]],
    *,
    name: str = "",
    types: Mapping[str, str] | None = None,
    flavour: str = "layer",
    legacy_shapes: bool = False,
) -> None:
    """Write `layers` (name -> blobs, as `read_caffemodel` gives them) as a `.caffemodel` in the field layout of
    one Caffe generation (`flavour`: "layer", "layers" for V1, "v0"). A layer's type defaults to Convolution for
    a 4-D first blob, InnerProduct otherwise."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour={flavour!r}: choose one of {', '.join(FLAVOURS)}")
    net = RAW.NetParameter(name=name)
    for layer_name, blobs in layers.items():
        kind = (types or {}).get(layer_name) or ("Convolution" if np.ndim(blobs[0]) == 4 else "InnerProduct")
        if flavour == "layer":
            layer = net.layer.add(name=layer_name, type=kind)
        elif flavour == "layers":
            layer = net.layers.add(name=layer_name, type=_V1_NUMBERS[kind])
        else:
            layer = net.layers.add().layer
            layer.name, layer.type = layer_name, _V0_NAMES.get(kind, kind.lower())
        for array in blobs:
            _put(layer.blobs.add(), array, legacy_shapes)
    Path(path).write_bytes(net.SerializeToString())
