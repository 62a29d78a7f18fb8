"""The paper's numbers as plain data (Simonyan & Zisserman, arXiv 1409.1556v6).

Errors are top-1 / top-5 classification error in percent on the ILSVRC-2012 validation set. A training scale
is an int (fixed S) or the tuple (256, 512) for scale jittering; test scales are a tuple of Q.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# Sec. 2.1: the only preprocessing is subtracting the training set's mean RGB, on the 0-255 scale.
MEAN_RGB = (123.68, 116.779, 103.939)
# Sec. 3.1 via AlexNet: PCA lighting noise, for pixels in [0, 1] (scale eigval by 255 on the 0-255 scale).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
PCA_ALPHA_STD = 0.1
JITTER = (256, 512)

# Table 2: parameters at 1000 classes (exact counts).
PARAMETERS = {
    "A": 132_863_336,
    "A-LRN": 132_863_336,
    "B": 133_047_848,
    "C": 133_638_952,
    "D": 138_357_544,
    "E": 143_667_240,
}

# Sec. 4.1: the shallow twin of B (each pair of 3x3 convs one 5x5 conv), exact count at 1000 classes.
SHALLOW_PARAMETERS = {"B-shallow": 134_503_528}


@dataclass(frozen=True)
class Finding:
    """A result the paper states relative to another net rather than as a table cell."""

    config: str
    baseline: str
    top1_error_above: float  # the config's top-1 error minus the baseline's, in percent points
    protocol: str
    train_scale: int
    text: str


# Sec. 4.1: "the top-1 error of the shallow net was measured to be 7% higher than that of B (on a center crop)".
SHALLOW_FINDING = Finding(
    "B-shallow", "B", 7.0, "center", 256, "top-1 error 7% higher than B's (centre crop), Sec. 4.1"
)

# the findings an experiment file may name under `paper:` (a row of Tables 3-6 is named by its key)
FINDINGS = {"sec4/B_shallow_S256": SHALLOW_FINDING}

# Sec. 3.1: the recipe.
RECIPE = {
    "batch_size": 256,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr": 1e-2,
    "lr_finetune": 1e-3,  # S=384 starts from S=256 with this lr
    "dropout": 0.5,
    "lr_decreases": 3,
    "epochs": 74,
    "iterations": 370_000,
}


@dataclass(frozen=True)
class Row:
    """One row of Tables 3-6: a config (or ensemble), its training scale, test scales, protocol and errors."""

    table: int
    name: str  # the experiment file's name, e.g. "D_jitter"
    config: str
    train_scale: int | tuple[int, int]
    test_scales: tuple[int, ...]
    protocol: str  # "dense", "multicrop" or "dense_multicrop"
    top1_error: float
    top5_error: float


def _row(table, name, config, s, q, top1, top5, protocol="dense") -> Row:
    return Row(table, name, config, s, tuple(q), protocol, top1, top5)


J = JITTER
TABLE_3 = (
    _row(3, "A_S256", "A", 256, [256], 29.6, 10.4),
    _row(3, "A-LRN_S256", "A-LRN", 256, [256], 29.7, 10.5),
    _row(3, "B_S256", "B", 256, [256], 28.7, 9.9),
    _row(3, "C_S256", "C", 256, [256], 28.1, 9.4),
    _row(3, "C_S384", "C", 384, [384], 28.1, 9.3),
    _row(3, "C_jitter", "C", J, [384], 27.3, 8.8),
    _row(3, "D_S256", "D", 256, [256], 27.0, 8.8),
    _row(3, "D_S384", "D", 384, [384], 26.8, 8.7),
    _row(3, "D_jitter", "D", J, [384], 25.6, 8.1),
    _row(3, "E_S256", "E", 256, [256], 27.3, 9.0),
    _row(3, "E_S384", "E", 384, [384], 26.9, 8.7),
    _row(3, "E_jitter", "E", J, [384], 25.5, 8.0),
)
TABLE_4 = (
    _row(4, "B_S256", "B", 256, [224, 256, 288], 28.2, 9.6),
    _row(4, "C_S256", "C", 256, [224, 256, 288], 27.7, 9.2),
    _row(4, "C_S384", "C", 384, [352, 384, 416], 27.8, 9.2),
    _row(4, "C_jitter", "C", J, [256, 384, 512], 26.3, 8.2),
    _row(4, "D_S256", "D", 256, [224, 256, 288], 26.6, 8.6),
    _row(4, "D_S384", "D", 384, [352, 384, 416], 26.5, 8.6),
    _row(4, "D_jitter", "D", J, [256, 384, 512], 24.8, 7.5),
    _row(4, "E_S256", "E", 256, [224, 256, 288], 26.9, 8.7),
    _row(4, "E_S384", "E", 384, [352, 384, 416], 26.7, 8.6),
    _row(4, "E_jitter", "E", J, [256, 384, 512], 24.8, 7.5),
)
TABLE_5 = (
    _row(5, "D_dense", "D", J, [256, 384, 512], 24.8, 7.5, "dense"),
    _row(5, "D_multicrop", "D", J, [256, 384, 512], 24.6, 7.5, "multicrop"),
    _row(5, "D_dense_multicrop", "D", J, [256, 384, 512], 24.4, 7.2, "dense_multicrop"),
    _row(5, "E_dense", "E", J, [256, 384, 512], 24.8, 7.5, "dense"),
    _row(5, "E_multicrop", "E", J, [256, 384, 512], 24.6, 7.4, "multicrop"),
    _row(5, "E_dense_multicrop", "E", J, [256, 384, 512], 24.4, 7.1, "dense_multicrop"),
)
# Table 6: ensembles of the jittered D and E (the 7-net submission is listed for reference only).
TABLE_6 = (
    _row(6, "DE_dense", "D+E", J, [256, 384, 512], 24.0, 7.1, "dense"),
    _row(6, "DE_multicrop", "D+E", J, [256, 384, 512], 23.9, 7.2, "multicrop"),
    _row(6, "DE_dense_multicrop", "D+E", J, [256, 384, 512], 23.7, 6.8, "dense_multicrop"),
)
SUBMISSION_7_NETS = (24.7, 7.5)

TABLES = {3: TABLE_3, 4: TABLE_4, 5: TABLE_5, 6: TABLE_6}


def row(experiment: str) -> Row:
    """'table3/D_jitter' -> its Row; a KeyError naming the choices otherwise."""
    table, _, name = experiment.partition("/")
    rows = TABLES.get(int(table.removeprefix("table"))) if table.startswith("table") else None
    for candidate in rows or ():
        if candidate.name == name:
            return candidate
    choices = ", ".join(f"table{t}/{r.name}" for t, rows in TABLES.items() for r in rows)
    raise KeyError(f"no paper row {experiment!r}; rows are: {choices}")


def test_scales(name: str) -> list[int]:
    """The Q of a row of Tables 3-6 ('table4/D_S256' -> [224, 256, 288]): what its experiment file tests at."""
    try:
        return list(row(name).test_scales)
    except (KeyError, ValueError) as error:
        raise ValueError(str(error).strip("'\"")) from None


ILSVRC_2012 = "imagenet"  # the data config (conf/data/imagenet.yaml) of the paper's data set
ILSVRC_2012_CLASSES = 1000


def on_ilsvrc2012(dataset: str | None, num_classes: int | None) -> bool:
    """Whether a run's figures can be set against the paper's: only a run on ILSVRC-2012 (data=imagenet, all
    1000 classes) reproduces a row; the demo set, a subset or another folder do not."""
    return (dataset or ILSVRC_2012) == ILSVRC_2012 and (num_classes or ILSVRC_2012_CLASSES) == ILSVRC_2012_CLASSES


def find_row(config: str, train_scale, test_scales, protocol: str = "dense") -> Row | None:
    """The paper's row with these settings, preferring Table 3 (single Q) then 4 and 5; None if there is none."""
    train_scale = tuple(train_scale) if isinstance(train_scale, (list, tuple)) else train_scale
    for rows in TABLES.values():
        for candidate in rows:
            if (candidate.config, candidate.train_scale, candidate.test_scales, candidate.protocol) == (
                config,
                train_scale,
                tuple(test_scales),
                protocol,
            ):
                return candidate
    return None


@dataclass(frozen=True)
class StateOfTheArt:
    """One row of Table 7: ILSVRC classification errors in percent, without outside training data. None where
    the paper gives no figure ("-" or an empty cell)."""

    method: str
    year: int  # the ILSVRC edition of the entry (VGG's post-submission rows: 2014)
    nets: int | None  # the ensemble's size; None for Clarifai's "multiple nets"
    top1_val: float | None
    top5_val: float | None
    top5_test: float | None
    note: str = ""


# Table 7 (Sec. 4.5), "Comparison with the state of the art in ILSVRC classification". paper.md does not list
# it: the figures are from two independent transcriptions of the arXiv v6 table in public GitHub notes (one with
# all three columns, one with the top-5 test column, which agree on all 13 figures it has), and Sec. 4.5's text
# (7.3% with 7 nets, 6.8% with 2, GoogLeNet 6.7%, Clarifai 11.7% without outside data, the single net 0.9% better
# than one GoogLeNet); the VGG rows equal TABLE_5's E, TABLE_6's D+E and SUBMISSION_7_NETS.
_GOOGLENET = "the paper prints one top-5 figure across its val and test columns"
TABLE_7 = (
    StateOfTheArt("VGG", 2014, 2, 23.7, 6.8, 6.8, "post-submission, D+E, multi-crop & dense eval."),
    StateOfTheArt("VGG", 2014, 1, 24.4, 7.1, 7.0, "post-submission, E, multi-crop & dense eval."),
    StateOfTheArt("VGG", 2014, 7, 24.7, 7.5, 7.3, "ILSVRC submission, dense eval."),
    StateOfTheArt("GoogLeNet", 2014, 1, None, 7.9, 7.9, _GOOGLENET),
    StateOfTheArt("GoogLeNet", 2014, 7, None, 6.7, 6.7, _GOOGLENET),
    StateOfTheArt("MSRA", 2014, 11, None, None, 8.1),
    StateOfTheArt("MSRA", 2014, 1, 27.9, 9.1, 9.1),
    StateOfTheArt("Clarifai", 2013, None, None, None, 11.7, "multiple nets"),
    StateOfTheArt("Clarifai", 2013, 1, None, None, 12.5),
    StateOfTheArt("Zeiler & Fergus", 2013, 6, 36.0, 14.7, 14.8),
    StateOfTheArt("Zeiler & Fergus", 2013, 1, 37.5, 16.0, 16.1),
    StateOfTheArt("OverFeat", 2013, 7, 34.0, 13.2, 13.6),
    StateOfTheArt("OverFeat", 2013, 1, 35.7, 14.2, None),
    StateOfTheArt("Krizhevsky et al.", 2012, 5, 38.1, 16.4, 16.4),
    StateOfTheArt("Krizhevsky et al.", 2012, 1, 40.7, 18.2, None),
)


def format_scale(scale) -> str:
    """A training scale as the paper writes it: 256 -> '256', (256, 512) -> '[256;512]' (jittered S); None -> '–'."""
    if isinstance(scale, (list, tuple)):
        return f"[{scale[0]};{scale[1]}]"
    return "–" if scale is None else str(scale)


def format_test_scales(scales) -> str:
    """Q as the paper's tables list them: (224, 256, 288) -> '224,256,288'."""
    return ",".join(str(q) for q in scales) if isinstance(scales, (list, tuple)) else str(scales)


# -- the warm-start lineage of Sec. 3.1: which row's net each row starts from (or tests) ---------------------
def key(row: Row) -> str:
    """'table3/D_jitter': the row's experiment name."""
    return f"table{row.table}/{row.name}"


def figures(name: str) -> dict:
    """What results.json sets a run against (its `paper`), for the row or finding an experiment file names under
    `paper:`: a row of Tables 3-6 ('table3/D_jitter') gives its top-1 / top-5 errors, a finding
    ('sec4/B_shallow_S256') its gap to its baseline; any other name is a ValueError listing the choices."""
    if name in FINDINGS:
        finding = FINDINGS[name]
        return {
            "baseline": finding.baseline,
            "top1_error_above": finding.top1_error_above,
            "protocol": finding.protocol,
        }
    try:
        found = row(name)
    except (KeyError, ValueError):
        rows = [key(r) for rows in TABLES.values() for r in rows]
        raise ValueError(
            f"paper={name!r}: no row or finding of the paper; choose one of {', '.join([*rows, *FINDINGS])}"
        ) from None
    return {"top1_error": found.top1_error, "top5_error": found.top5_error}


def _table3(config: str, train_scale) -> Row:
    return next(r for r in TABLE_3 if (r.config, r.train_scale) == (config, train_scale))


def sources(row: Row) -> tuple[Row, ...]:
    """The Table 3 rows whose nets `row` starts from (a training) or tests (an evaluation): A_S256 from random
    weights; B-E at S=256 from A_S256; each S=384 net from the S=256 net of its config; each jittered net from
    the S=384 one; Tables 4-6 test Table 3's nets."""
    if row.table != 3:
        return tuple(_table3(config, row.train_scale) for config in row.config.split("+"))
    if row.train_scale == 256:
        return () if row.config in ("A", "A-LRN") else (_table3("A", 256),)
    previous = 256 if row.train_scale == 384 else 384
    return (_table3(row.config, previous),)


@cache
def depth(row: Row) -> int:
    """How many trainings stand between `row` and random weights."""
    return 1 + max(map(depth, sources(row))) if sources(row) else 0


def parent(experiment: str | None) -> Row | None:
    """The Table 3 row whose net a Table 3 experiment starts from; None for A and A-LRN, for the other tables
    (they train nothing) and for experiments that are no paper row (the demo, files of one's own)."""
    try:
        found = row(experiment or "")
    except (KeyError, ValueError):
        return None
    parents = sources(found) if found.table == 3 else ()
    return parents[0] if parents else None


# -- Appendix B: the ILSVRC-trained nets' fc7 features on other data sets ------------------------------------
@dataclass(frozen=True)
class TransferCell:
    """One cell of Table 11: mean AP (VOC) or mean class recall (Caltech), in percent, with the standard
    deviation over the random splits where the paper gives one."""

    metric: str  # "mean_ap" or "mean_class_recall"
    value: float
    std: float | None = None


# The data sets of Table 11, their metric and the descriptor's aggregation over Q in the paper.
TRANSFER_SETS = {
    "voc2007": {"metric": "mean_ap", "scales": (256, 384, 512, 640, 768), "aggregate": "average"},
    "voc2012": {"metric": "mean_ap", "scales": (256, 384, 512, 640, 768), "aggregate": "average"},
    "caltech101": {"metric": "mean_class_recall", "scales": (256, 384, 512), "aggregate": "stack"},
    "caltech256": {"metric": "mean_class_recall", "scales": (256, 384, 512), "aggregate": "stack"},
}


def transfer_setting(dataset: str, key: str):
    """Table 11's descriptor on `dataset`: its Q (`scales`, a list) or their aggregation (`aggregate`), what the
    experiment files of Appendix B take."""
    if dataset not in TRANSFER_SETS:
        raise ValueError(f"features.dataset={dataset!r}: Table 11 has {', '.join(TRANSFER_SETS)}")
    value = TRANSFER_SETS[dataset][key]
    return list(value) if isinstance(value, tuple) else value


def _cells(voc2007, voc2012, caltech101, caltech256) -> dict[str, TransferCell]:
    cells = {}
    for name, figure in zip(TRANSFER_SETS, (voc2007, voc2012, caltech101, caltech256)):
        if figure is not None:
            value, std = figure if isinstance(figure, tuple) else (figure, None)
            cells[name] = TransferCell(TRANSFER_SETS[name]["metric"], value, std)
    return cells


# Table 11 (VOC-2012: the test set, scored by the official server). Rows keyed by the nets as results.json names
# them ("D+E": both descriptors stacked), the other methods by their citation.
TABLE_11: dict[str, dict[str, TransferCell]] = {
    "D": _cells(89.3, 89.0, (91.8, 1.0), (85.0, 0.2)),
    "E": _cells(89.3, 89.0, (92.3, 0.5), (85.1, 0.3)),
    "D+E": _cells(89.7, 89.3, (92.7, 0.5), (86.2, 0.3)),
    "Chatfield et al. 2014": _cells(82.4, 83.2, (88.4, 0.6), (77.6, 0.1)),
    "Zeiler & Fergus 2013": _cells(None, 79.0, (86.5, 0.5), (74.2, 0.3)),
    "He et al. 2014": _cells(82.4, None, (93.4, 0.5), None),
}
# Table 12: VOC-2012 action classification, mean AP, Net-D & Net-E.
TABLE_12 = {"image only": 79.2, "image and person box": 84.0}


def transfer_cell(nets: str, dataset: str) -> TransferCell | None:
    """Table 11's figure for features of `nets` ('D', 'E' or 'D+E'; 'E+D' too) on `dataset` ('voc2007', ...)."""
    key = "+".join(sorted(nets.split("+")))
    return TABLE_11.get(key, {}).get(dataset) if key in ("D", "E", "D+E") else None
