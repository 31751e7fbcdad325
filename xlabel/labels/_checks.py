"""Argument and data checks shared by the label store's modules (nothing here keeps state)."""

from __future__ import annotations

import datetime
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import JournalError, LabelError

#: Colors given to classes in order when ``colors`` is not passed.
DEFAULT_COLORS = ("#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd",
                  "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
UNLABELED_COLOR = "#bbbbbb"


def check_n_frames(n_frames) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 0:
        raise LabelError(f"n_frames must be a non-negative integer, got {n_frames!r}")
    return int(n_frames)


def check_classes(classes) -> tuple:
    if isinstance(classes, str):
        raise LabelError(f"classes must be a sequence of names, not the string {classes!r}")
    classes = tuple(classes)
    if not classes:
        raise LabelError("a LabelStore needs at least one class")
    for name in classes:
        if not isinstance(name, str) or name in ("", "unlabeled"):
            raise LabelError(f"class names must be non-empty strings other than "
                             f"'unlabeled', got {name!r}")
    if len(set(classes)) != len(classes):
        raise LabelError(f"class names must be unique, got {classes}")
    if len(classes) > 2**31 - 2:
        raise LabelError("too many classes")
    return classes


def check_colors(colors, classes) -> tuple:
    if colors is None:
        return tuple(DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(classes)))
    if isinstance(colors, dict):
        colors = [colors.get(name, DEFAULT_COLORS[i % len(DEFAULT_COLORS)])
                  for i, name in enumerate(classes)]
    colors = tuple(str(c) for c in colors)
    if len(colors) != len(classes):
        raise LabelError(f"{len(colors)} colors given for {len(classes)} classes {classes}")
    return colors


def check_frames(frames, n_frames):
    if frames is None:
        return None
    if not isinstance(frames, pd.DataFrame) or not {"scan", "frame"} <= set(frames.columns):
        raise LabelError("frames must be a DataFrame with 'scan' and 'frame' columns")
    if len(frames) != n_frames:
        raise LabelError(f"frames has {len(frames)} rows but the store has {n_frames} frames")
    return pd.DataFrame({"scan": frames["scan"].astype(str).to_numpy(),
                         "frame": frames["frame"].to_numpy(dtype=np.int64)})


def frames_fingerprint(frames) -> str:
    crc = zlib.crc32("\0".join(frames["scan"]).encode())
    crc = zlib.crc32(frames["frame"].to_numpy(dtype="<i8").tobytes(), crc)
    return f"frames:{len(frames)}:{crc:08x}"


def check_same_dataset(path, expected, found):
    """Refuse a store on disk (``found`` metadata) that is not the ``expected`` dataset."""
    if expected["n_frames"] != found["n_frames"]:
        raise JournalError(f"this label store is for {found['n_frames']} frames, not "
                           f"{expected['n_frames']}: it belongs to another dataset", path=path)
    if list(expected["classes"]) != list(found["classes"]):
        raise JournalError(f"this label store has classes {list(found['classes'])}, not "
                           f"{list(expected['classes'])}", path=path)
    mine, theirs = expected.get("fingerprint"), found.get("fingerprint")
    if mine is not None and theirs is not None and mine != theirs:
        raise JournalError(f"this label store belongs to dataset {theirs!r}, not {mine!r}",
                           path=path)


def check_range(values, low, high, name, path):
    if len(values) and (values.min() < low or values.max() >= high):
        raise JournalError(f"{name} holds codes outside {low}..{high - 1}", path=path,
                           dataset=name)


def checked_array(arrays, name, shape, dtype, path):
    """``arrays[name]`` as ``dtype`` if it has ``shape`` and a numeric dtype, else JournalError."""
    values = np.asarray(arrays[name])
    if values.shape != tuple(shape) or values.dtype.kind not in "iuf" or not len(shape):
        raise JournalError(f"{name} has shape {values.shape} dtype {values.dtype}, "
                           f"expected {tuple(shape)}", path=path, dataset=name)
    return values.astype(dtype)


def not_found(path, what) -> str:
    """Message for a missing file: the absolute path and the directory it was resolved in.

    Notebooks run in ``notebooks/``, so a path written relative to the repository
    root silently points elsewhere; saying both makes that visible.
    """
    absolute = Path(os.path.abspath(path))
    return (f"{what} not found: {absolute} does not exist (relative paths are resolved "
            f"against the working directory {os.getcwd()})")


# ------------------------------------------------------------------ times

def iso_time(seconds) -> str | None:
    """Unix seconds as ISO-8601 local time with its UTC offset, to the microsecond; None for NaN.

    Rounded to whole microseconds, so a time read back from its text prints the same.

    >>> iso_time(float("nan")) is None
    True
    >>> import datetime
    >>> datetime.datetime.fromisoformat(iso_time(1.5e9)).timestamp()
    1500000000.0
    """
    if seconds is None or not np.isfinite(seconds):
        return None
    micros = int(np.rint(float(seconds) * 1e6))
    moment = _EPOCH + datetime.timedelta(microseconds=micros)
    return moment.astimezone().isoformat(timespec="microseconds")


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def iso_times(seconds) -> np.ndarray:
    """:func:`iso_time` of each value as an object array ("" for NaN); formats each distinct
    time once (a store has one time per step, not per frame)."""
    seconds = np.asarray(seconds, dtype=np.float64)
    if not seconds.size:
        return np.full(seconds.shape, "", dtype=object)
    unique, inverse = np.unique(seconds, return_inverse=True)
    texts = np.array([iso_time(value) or "" for value in unique], dtype=object)
    return texts[inverse.reshape(seconds.shape)]


def parse_times(values, csv_path):
    """CSV ``time`` cells (ISO-8601 text or Unix seconds; empty = never) as Unix seconds."""
    series = pd.Series(values)
    if series.dtype.kind in "iuf":
        return series.to_numpy(dtype=np.float64)
    text = series.astype(str).str.strip()
    values = {}
    for cell in pd.unique(text):   # times repeat (one per step): parse each text once
        try:
            values[cell] = _parse_time(cell)
        except ValueError:
            row = int(np.flatnonzero(text.to_numpy() == cell)[0]) + 2  # + header, 1-based
            raise LabelError(f"row {row}: time {cell!r} is neither ISO-8601 "
                             f"(e.g. 2026-01-31T14:05:00.000000+01:00) nor Unix seconds",
                             path=csv_path) from None
    return text.map(values).to_numpy(dtype=np.float64)


def _parse_time(cell) -> float:
    if cell in ("", "nan", "NaN"):
        return np.nan
    try:
        return float(cell)
    except ValueError:
        stamp = datetime.datetime.fromisoformat(cell)
    if stamp.tzinfo is None:
        stamp = stamp.astimezone()  # naive = local time, as written by people
    return stamp.timestamp()
