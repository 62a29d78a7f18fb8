"""Caffe's file format without Caffe: the few messages of `caffe.proto` that hold a net's layers and weights,
built in code with protobuf's descriptors (no protoc, no generated `caffe_pb2`, so any protobuf >= 4.25 reads
them), field numbers exactly as BVLC/caffe's `src/caffe/proto/caffe.proto` has them.

Three generations of Caffe wrote these files: `NetParameter.layer` (LayerParameter, 2015 on), the older
`NetParameter.layers` (V1LayerParameter, with an enum type: the released VGG nets of 2014), and inside a V1
layer the first format's `layer` (V0LayerParameter). A blob's shape is a `BlobShape`, or the legacy
num/channels/height/width of the first two.

Two twins of the same messages: `TYPED`, as Caffe declares them (text format, and the rare file whose floats are
not packed), and `RAW`, whose BlobProto declares the packed float and double fields (5 and 8) as `bytes`: the
same wire type as a packed repeated field, so a 500 MB blob parses to one bytes object that numpy reads as it is,
instead of a Python float per value (minutes and gigabytes for VGG-16's 138M).
"""

from __future__ import annotations

from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_Field = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "bool": _Field.TYPE_BOOL,
    "bytes": _Field.TYPE_BYTES,
    "double": _Field.TYPE_DOUBLE,
    "float": _Field.TYPE_FLOAT,
    "int32": _Field.TYPE_INT32,
    "int64": _Field.TYPE_INT64,
    "string": _Field.TYPE_STRING,
}

# V1LayerParameter.LayerType, every value (a deploy prototxt of 2014 names them: `type: CONVOLUTION`)
V1_LAYER_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
    "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
    "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11,
    "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
    "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33,
    "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}  # fmt: skip


def _messages(blob_values: str) -> dict[str, list[tuple]]:
    """message -> its fields as caffe.proto declares them: (label, type, name, number[, "packed"]).
    `blob_values` is the type of BlobProto's data and double_data: "float"/"double" as declared, or "bytes"."""
    data, double_data = ("bytes", "bytes") if blob_values == "bytes" else ("float", "double")
    packed = () if blob_values == "bytes" else ("packed",)
    return {
        "BlobShape": [("repeated", "int64", "dim", 1, "packed")],
        "BlobProto": [
            ("optional", "BlobShape", "shape", 7),
            ("repeated", data, "data", 5, *packed),
            ("repeated", double_data, "double_data", 8, *packed),
            ("optional", "int32", "num", 1),  # the legacy 4-D shape
            ("optional", "int32", "channels", 2),
            ("optional", "int32", "height", 3),
            ("optional", "int32", "width", 4),
        ],
        "InputParameter": [("repeated", "BlobShape", "shape", 1)],
        "LayerParameter": [
            ("optional", "string", "name", 1),
            ("optional", "string", "type", 2),
            ("repeated", "string", "bottom", 3),
            ("repeated", "string", "top", 4),
            ("repeated", "BlobProto", "blobs", 7),
            ("optional", "InputParameter", "input_param", 143),
        ],
        "V0LayerParameter": [
            ("optional", "string", "name", 1),
            ("optional", "string", "type", 2),
            ("repeated", "BlobProto", "blobs", 50),
        ],
        "V1LayerParameter": [
            ("repeated", "string", "bottom", 2),
            ("repeated", "string", "top", 3),
            ("optional", "string", "name", 4),
            ("optional", "LayerType", "type", 5),
            ("repeated", "BlobProto", "blobs", 6),
            ("optional", "V0LayerParameter", "layer", 1),
        ],
        "NetParameter": [
            ("optional", "string", "name", 1),
            ("repeated", "string", "input", 3),
            ("repeated", "BlobShape", "input_shape", 8),
            ("repeated", "int32", "input_dim", 4),
            ("repeated", "LayerParameter", "layer", 100),
            ("repeated", "V1LayerParameter", "layers", 2),
        ],
    }


def _field(package: str, label: str, kind: str, name: str, number: int, *options: str) -> _Field:
    field = _Field(name=name, number=number)
    field.label = _Field.LABEL_REPEATED if label == "repeated" else _Field.LABEL_OPTIONAL
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    else:
        field.type = _Field.TYPE_ENUM if kind == "LayerType" else _Field.TYPE_MESSAGE
        field.type_name = f".{package}.{'V1LayerParameter.' if kind == 'LayerType' else ''}{kind}"
    if "packed" in options:
        field.options.packed = True
    return field


def _build(package: str, blob_values: str) -> SimpleNamespace:
    """The message classes of one twin, in a pool of their own (never protobuf's default pool, where a user's
    own caffe_pb2 may live)."""
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto2")
    for name, fields in _messages(blob_values).items():
        message = file.message_type.add(name=name)
        message.field.extend(_field(package, *spec) for spec in fields)
        if name == "V1LayerParameter":
            enum = message.enum_type.add(name="LayerType")
            enum.value.extend(
                descriptor_pb2.EnumValueDescriptorProto(name=k, number=v) for k, v in V1_LAYER_TYPES.items()
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    classes = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in _messages(blob_values)
    }
    return SimpleNamespace(**classes)


TYPED = _build("caffe", "float")
RAW = _build("caffe_raw", "bytes")
