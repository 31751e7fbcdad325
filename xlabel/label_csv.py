"""Strict reading of a ``frame,label`` CSV for training: every doubt is a one-line error.

A labels CSV decides what a model learns, so nothing in it is guessed: a frame number that
is not a whole number in range, a frame listed twice, a row with a missing field, a label
that is not one of the classes, or a CSV that labels only part of the scan (unless
``allow_partial``) raises :class:`~xlabel.errors.LabelError` naming the CSV and the row.
Extra columns (``source``, ``time``, ``note`` of a ``LabelStore`` export) are ignored; an
empty label means "unlabeled".

>>> import os, tempfile
>>> csv = os.path.join(tempfile.mkdtemp(), "labels.csv")
>>> _ = open(csv, "w").write("frame,label\\n0,good\\n1,bad\\n2,good\\n")
>>> read_label_csv(csv, 3, classes=("good", "bad")).tolist()
['good', 'bad', 'good']
>>> try:
...     read_label_csv(csv, 4, classes=("good", "bad"))
... except LabelError as err:
...     print(err.reason)
labels 3 of the scan's 4 frames (unlabeled: frame 3); label every frame, or pass --allow-partial to train on the labeled frames only
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from .errors import LabelError, missing_file_message

__all__ = ["read_label_csv"]

_WHOLE = re.compile(r"^-?[0-9]+$")


def read_label_csv(path, n_frames: int, classes=("good", "bad"),
                   allow_partial: bool = False) -> np.ndarray:
    """Per-frame label names (object array, ``""`` = unlabeled) from a ``frame,label`` CSV.

    ``n_frames``: frames of the scan the CSV belongs to; ``classes``: the allowed names.
    ``allow_partial``: accept a CSV that leaves frames unlabeled (else an error).
    Rows are numbered as in a spreadsheet: the header is row 1.
    """
    rows = _rows(path)
    header, body = rows[0], rows[1:]
    columns = {name.strip(): i for i, name in enumerate(header)}
    if not {"frame", "label"} <= set(columns):
        raise LabelError(f"row 1: the header {header} needs the columns frame,label", path=path)
    labels = np.full(n_frames, "", dtype=object)
    seen: dict[int, int] = {}
    for row_number, row in enumerate(body, start=2):
        frame, label = _parse_row(row, row_number, len(header), columns, n_frames, classes, path)
        if frame in seen:
            raise LabelError(f"row {row_number}: frame {frame} is listed twice "
                             f"(first in row {seen[frame]})", path=path)
        seen[frame] = row_number
        labels[frame] = label
    _check_coverage(labels, allow_partial, path)
    return labels


def _rows(path) -> list[list[str]]:
    if not os.path.exists(path):
        raise LabelError(missing_file_message("labels CSV", path))
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle, strict=True) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise LabelError(f"cannot read the labels CSV: {err}", path=path) from None
    if not rows:
        raise LabelError("the labels CSV is empty (expected a header frame,label)", path=path)
    return rows


def _parse_row(row, row_number, n_fields, columns, n_frames, classes, path):
    if len(row) != n_fields:
        raise LabelError(f"row {row_number} has {len(row)} field(s), the header {n_fields} "
                         f"(a truncated or hand-edited file?): {','.join(row)!r}", path=path)
    text, label = row[columns["frame"]].strip(), row[columns["label"]].strip()
    if not _WHOLE.match(text):
        raise LabelError(f"row {row_number}: frame {text!r} is not a whole number "
                         "(frames are numbered 0, 1, 2...)", path=path)
    frame = int(text)
    if not 0 <= frame < n_frames:
        raise LabelError(f"row {row_number}: frame {frame} is out of range 0..{n_frames - 1} "
                         f"(the scan has {n_frames} frames)", path=path)
    if label and label not in classes:
        raise LabelError(f"row {row_number}: label {label!r} is not one of the classes "
                         f"{list(classes)} (set them with --classes)", path=path)
    return frame, label


def _check_coverage(labels, allow_partial, path):
    unlabeled = np.flatnonzero(labels == "")
    if len(unlabeled) == 0 or allow_partial:
        return
    n = len(labels)
    shown = ", ".join(str(i) for i in unlabeled[:5]) + (", ..." if len(unlabeled) > 5 else "")
    raise LabelError(f"labels {n - len(unlabeled)} of the scan's {n} frames "
                     f"(unlabeled: frame{'s' if len(unlabeled) > 1 else ''} {shown}); "
                     "label every frame, or pass --allow-partial to train on the labeled "
                     "frames only", path=Path(path))
