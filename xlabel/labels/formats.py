"""Label files other than the store's own: CSV (``frame,label,...``) and the HDF5 sidecar.

Readers check everything and name the file, row, frame or dataset in their errors;
writers replace files atomically. Times are written as ISO-8601 text with the UTC
offset; CSVs holding Unix seconds (older xlabel) are read too.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..errors import JournalError, LabelError
from ._checks import not_found, parse_times
from .disk import atomic_write, check_meta

H5_GROUP = "xlabel_labels"
_H5_ARRAYS = ("labels", "origins", "prov_source", "prov_time", "prov_note")
_H5_STRINGS = ("notes", "source_names")
_H5_TAG_ARRAYS = ("tag_values", "tag_origins")
#: CSV columns that are not tags.
KNOWN_COLUMNS = ("scan", "frame", "label", "source", "time", "note")


# ------------------------------------------------------------------ CSV

def read_label_csv(csv_path, tags=None) -> pd.DataFrame:
    """The rows of a ``frame,label[,scan,source,time,note]`` CSV, checked.

    ``time`` comes back in Unix seconds. ``label`` may be missing when the CSV has tag
    columns (``tags`` names them, else 0/1 columns are looked for)."""
    try:
        table = pd.read_csv(csv_path, dtype={"label": str, "scan": str, "source": str,
                                             "note": str, "time": str},
                            keep_default_na=False)
    except FileNotFoundError:
        raise LabelError(f"cannot read labels CSV: {not_found(csv_path, 'file')}",
                         path=csv_path) from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise LabelError(f"cannot read labels CSV: {err}", path=csv_path) from err
    named = tags is not None and len(tags) and set(tags) <= set(table.columns)
    if "label" not in table.columns and "frame" in table.columns and (named or tag_columns(table)):
        table["label"] = ""   # a tags-only CSV (frame + one 0/1 column per tag)
    missing = {"frame", "label"} - set(table.columns)
    if missing:
        raise LabelError(f"labels CSV needs columns frame,label; missing {sorted(missing)} "
                         f"(found {list(table.columns)})", path=csv_path)
    if table["frame"].dtype.kind not in "iu":
        raise LabelError("column 'frame' must hold integers", path=csv_path)
    if "time" in table:
        table["time"] = parse_times(table["time"], csv_path)
    keys = ["scan", "frame"] if "scan" in table else ["frame"]
    duplicated = table.duplicated(keys)
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise LabelError("frame listed twice", path=csv_path, frame=int(row["frame"]))
    return table


def tag_columns(table) -> list:
    """Columns of a label CSV that hold tags: every column not in :data:`KNOWN_COLUMNS`
    (nor ``p_<tag>`` probabilities) whose values are all 0 or 1."""
    found = []
    for name in table.columns:
        if name in KNOWN_COLUMNS or str(name).startswith("p_") or str(name).startswith("Unnamed"):
            continue
        values = pd.to_numeric(table[name], errors="coerce")
        if len(values) and values.isin((0, 1)).all():
            found.append(str(name))
    return found


def csv_tags(table, tags, csv_path):
    """``(names, bool matrix)`` of the CSV's tag columns: ``tags`` names them (each must be
    a 0/1 column), None finds them (:func:`tag_columns`), ``()`` reads none."""
    names = tag_columns(table) if tags is None else [str(t) for t in tags]
    for name in names:
        if name not in table.columns:
            raise LabelError(f"labels CSV has no column for tag {name!r} (found "
                             f"{list(table.columns)})", path=csv_path)
        values = pd.to_numeric(table[name], errors="coerce")
        bad = np.flatnonzero(~values.isin((0, 1)).to_numpy())
        if len(bad):
            raise LabelError(f"tag column {name!r} must hold 0 or 1, found "
                             f"{table[name].iloc[bad[0]]!r}", path=csv_path,
                             frame=int(table["frame"].iloc[bad[0]]))
    matrix = np.zeros((len(table), len(names)), dtype=bool)
    for j, name in enumerate(names):
        matrix[:, j] = pd.to_numeric(table[name]).to_numpy() == 1
    return names, matrix


def classes_in(table, classes):
    """``classes`` if given, else those the CSV uses (good/bad in that order if only those)."""
    if classes is not None:
        return classes
    names = [name for name in pd.unique(table["label"]) if name != ""]
    return ("good", "bad") if set(names) <= {"good", "bad"} else tuple(sorted(names))


def csv_positions(state, table, csv_path) -> np.ndarray:
    """Store rows of CSV rows: by (scan, frame) when both sides have scans, else by frame."""
    if state.frames is not None and "scan" in table:
        lookup = pd.Series(np.arange(state.n_frames), index=pd.MultiIndex.from_frame(state.frames))
        keys = pd.MultiIndex.from_frame(table[["scan", "frame"]])
        positions = lookup.reindex(keys).to_numpy()
        unknown = np.flatnonzero(np.isnan(positions))
        if len(unknown):
            row = table.iloc[unknown[0]]
            raise LabelError(f"scan {row['scan']!r} frame {row['frame']} is not in this store "
                             f"({len(unknown)} such rows)", path=csv_path)
        return positions.astype(np.int64)
    positions = table["frame"].to_numpy(dtype=np.int64)
    bad = positions[(positions < 0) | (positions >= state.n_frames)]
    if len(bad):
        raise LabelError(f"frame out of range: store has {state.n_frames} frames",
                         path=csv_path, frame=int(bad[0]))
    return positions


def csv_labels(state, table, csv_path) -> np.ndarray:
    """Class index per CSV row (-1 for an empty label); unknown names name the frame."""
    names = table["label"].to_numpy(dtype=object)
    lookup = dict(state.class_lookup, **{"": -1})
    labels = np.array([lookup.get(name, -2) for name in names], dtype=np.int32)
    unknown = np.flatnonzero(labels == -2)
    if len(unknown):
        raise LabelError(state.unknown_class(names[unknown[0]]), path=csv_path,
                         frame=int(table["frame"].iloc[unknown[0]]))
    return labels


def csv_provenance(table, labels, now):
    """``(sources, times, notes)`` per CSV row; missing columns: source "import", time ``now``."""
    sources = (table["source"] if "source" in table
               else np.where(labels >= 0, "import", "")).astype(str)
    times = table["time"].to_numpy(float) if "time" in table else np.where(
        labels >= 0, now, np.nan)
    notes = table["note"].astype(str) if "note" in table else np.full(len(table), "")
    return np.asarray(sources), times, np.asarray(notes)


def write_csv(table, csv_path):
    text = table.to_csv(index=False)
    try:
        atomic_write(csv_path, lambda f: f.write(text.encode()))
    except OSError as err:
        raise LabelError(f"cannot write labels CSV: {err}", path=csv_path) from err


# ------------------------------------------------------------------ HDF5

def write_hdf5(h5_path, meta, history, arrays, frames):
    """Write the store's ``meta``, ``history`` rows, state ``arrays`` and ``frames`` table."""
    import h5py

    def write(handle):
        with h5py.File(handle, "w") as h5:
            group = h5.create_group(H5_GROUP)
            group.attrs["meta"] = json.dumps(meta)
            group.attrs["history"] = json.dumps(history)
            for name, values in arrays.items():
                if values.dtype.kind == "U":
                    group.create_dataset(name, data=values.astype(object),
                                         dtype=h5py.string_dtype("utf-8"))
                else:
                    group.create_dataset(name, data=values, compression="gzip")
            if frames is not None:
                group.create_dataset("frames/scan", data=frames["scan"].to_numpy(object),
                                     dtype=h5py.string_dtype("utf-8"))
                group.create_dataset("frames/frame", data=frames["frame"].to_numpy())

    try:
        atomic_write(h5_path, write)
    except OSError as err:
        raise LabelError(f"cannot write the HDF5 label file: {err}", path=h5_path) from err


def read_hdf5(h5_path):
    """``(meta, history, arrays, frames)`` from a file written by :func:`write_hdf5`."""
    import h5py

    dataset = None
    try:
        with h5py.File(h5_path, "r") as h5:
            dataset = H5_GROUP
            group = h5[dataset]
            meta = check_meta(json.loads(group.attrs["meta"]), h5_path)
            history = json.loads(group.attrs["history"])
            arrays = {}
            for name in _H5_ARRAYS + _H5_STRINGS:
                dataset = f"{H5_GROUP}/{name}"
                item = group[name]
                arrays[name] = item.asstr()[()] if name in _H5_STRINGS else item[()]
            if "tag_names" in group:   # stores with tags (format version 2)
                dataset = f"{H5_GROUP}/tag_names"
                arrays["tag_names"] = group["tag_names"].asstr()[()]
                for name in _H5_TAG_ARRAYS:
                    dataset = f"{H5_GROUP}/{name}"
                    arrays[name] = group[name][()]
            frames = None
            if "frames" in group:
                dataset = f"{H5_GROUP}/frames"
                frames = pd.DataFrame({"scan": group["frames/scan"].asstr()[()],
                                       "frame": group["frames/frame"][()]})
    except JournalError:
        raise
    except FileNotFoundError:
        raise JournalError(not_found(h5_path, "HDF5 label file"), path=h5_path) from None
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
        raise JournalError(f"not a readable xlabel label file ({err})", path=h5_path,
                           dataset=dataset) from err
    return meta, history, arrays, frames
