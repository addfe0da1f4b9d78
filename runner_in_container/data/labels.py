"""Labels files: which kind a file is, and what it says.

Kinds, told apart by their first non-blank line:

* index file (``val.txt``): ``<file name> <class index>`` per line, index in sorted-wnid order.
* Kaggle ``LOC_val_solution.csv``: header ``ImageId,PredictionString``; the first token of
  PredictionString is the wnid. The wnid order comes from ``LOC_synset_mapping.txt`` in the same
  folder when it is there, else from the sorted wnids of the CSV itself if they are exactly 1000.
* synset file (``synset_words.txt``, ``LOC_synset_mapping.txt``): first token per line is a wnid,
  1000 lines; class index = position in sorted order. Used by the imagefolder layout.
* the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per line) needs
  ``meta.mat`` to map IDs to classes and is rejected with a pointer to the supported files.

Per-image labels are keyed by file stem (name without folder and extension), so
``ILSVRC2012_val_00000001.JPEG`` in val.txt and ``ILSVRC2012_val_00000001`` in the CSV match alike.
"""

import csv
import os
import re
from typing import Dict, List, NamedTuple, Tuple

from .errors import DataError

WNID = re.compile(r"^n\d{8}$")
NUM_CLASSES = 1000
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"
CSV_HEADER = ["ImageId", "PredictionString"]


class ImageLabels(NamedTuple):
    """Per-image labels of a flat or tar dataset."""

    path: str
    by_stem: Dict[str, int]
    source: str  # how the labels were read, for the result


def stem(name: str) -> str:
    """File name without folders and extension: the key that labels are matched by."""
    return os.path.splitext(os.path.basename(name))[0]


def _lines(path: str) -> List[Tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: labels file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read labels file: {e}") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise DataError(f"{path}: labels file is empty")
    return lines


def _kind(path: str, first: str) -> str:
    tokens = first.replace(",", " ").split() or [""]
    if tokens[0] == CSV_HEADER[0]:
        return "csv"
    if len(tokens) == 1 and tokens[0].isdigit():
        raise DataError(
            f"{path}: looks like the devkit's ILSVRC2012_validation_ground_truth.txt (ILSVRC2012_IDs, "
            "which need meta.mat to map to classes); not supported: use val.txt ('<file name> <class index>' "
            "lines) or Kaggle's LOC_val_solution.csv"
        )
    if WNID.match(tokens[0]):
        return "synsets"
    return "index"


def read_synsets(path: str) -> List[str]:
    """The 1000 wnids of a synset file, sorted: position = class index."""
    lines = _lines(path)
    if _kind(path, lines[0][1]) != "synsets":
        raise DataError(
            f"{path}: not a synset file (a wnid like n01440764 first on each line), which is the labels file "
            "the imagefolder layout takes"
        )
    wnids = []
    for number, line in lines:
        wnid = line.split()[0]
        if not WNID.match(wnid):
            raise DataError(f"{path} line {number}: expected a wnid like n01440764 first, got {line!r}")
        wnids.append(wnid)
    if len(set(wnids)) != len(wnids):
        raise DataError(f"{path}: a wnid is listed twice")
    if len(wnids) != NUM_CLASSES:
        raise DataError(f"{path}: {len(wnids)} wnids, expected {NUM_CLASSES}")
    return sorted(wnids)


def _add(by_stem: Dict[str, int], key: str, label: int, path: str, number: int) -> None:
    if key in by_stem:
        raise DataError(f"{path} line {number}: {key} is labelled twice")
    by_stem[key] = label


def _read_index(path: str, lines: List[Tuple[int, str]]) -> ImageLabels:
    by_stem: Dict[str, int] = {}
    for number, line in lines:
        tokens = line.split()
        if len(tokens) != 2 or not tokens[1].isdigit():
            raise DataError(f"{path} line {number}: expected '<file name> <class index>', got {line!r}")
        _add(by_stem, stem(tokens[0]), int(tokens[1]), path, number)
    return ImageLabels(path, by_stem, f"index file {path}")


def _csv_class_order(path: str, wnids: Dict[str, int]) -> Tuple[List[str], str]:
    mapping = os.path.join(os.path.dirname(os.path.abspath(path)), KAGGLE_SYNSETS)
    if os.path.isfile(mapping):
        order = read_synsets(mapping)
        unknown = sorted(set(wnids) - set(order))
        if unknown:
            raise DataError(f"{path} line {wnids[unknown[0]]}: wnid {unknown[0]} is not in {mapping}")
        return order, f"wnid order from {mapping}"
    if len(wnids) != NUM_CLASSES:
        raise DataError(
            f"{path}: names {len(wnids)} wnids, not {NUM_CLASSES}, so their order is unknown: "
            f"put Kaggle's {KAGGLE_SYNSETS} next to it"
        )
    return sorted(wnids), f"wnid order = its {NUM_CLASSES} sorted wnids"


def _read_csv(path: str) -> ImageLabels:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [(n, row) for n, row in enumerate(csv.reader(f), 1) if row]
    if rows[0][1] != CSV_HEADER:
        raise DataError(f"{path} line 1: expected header {','.join(CSV_HEADER)}, got {rows[0][1]!r}")
    wnid_of: Dict[str, str] = {}
    first_line: Dict[str, int] = {}
    for number, row in rows[1:]:
        tokens = row[1].split() if len(row) == 2 else []
        if not tokens or not WNID.match(tokens[0]):
            raise DataError(f"{path} line {number}: expected 'ImageId,<wnid> ...', got {','.join(row)!r}")
        key = stem(row[0])
        if key in wnid_of:
            raise DataError(f"{path} line {number}: {key} is labelled twice")
        wnid_of[key] = tokens[0]
        first_line.setdefault(tokens[0], number)
    order, how = _csv_class_order(path, first_line)
    index = {wnid: i for i, wnid in enumerate(order)}
    return ImageLabels(path, {key: index[w] for key, w in wnid_of.items()}, f"csv {path}, {how}")


def read_image_labels(path: str) -> ImageLabels:
    """Per-image labels from a val.txt-style index file or a Kaggle LOC_val_solution.csv."""
    lines = _lines(path)
    kind = _kind(path, lines[0][1])
    if kind == "synsets":
        raise DataError(
            f"{path}: is a synset file (wnids only); flat and tar layouts need per-image labels: "
            "val.txt or LOC_val_solution.csv"
        )
    if kind == "csv":
        return _read_csv(path)
    return _read_index(path, lines)
