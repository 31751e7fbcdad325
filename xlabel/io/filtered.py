"""The filtered scan: an HDF5 file whose frame stack is a virtual dataset of the kept frames.

``write_filtered_scan(source, keep, path)`` writes no frame: the frame stack is an HDF5
virtual dataset (``h5py.VirtualLayout``) mapping each kept frame to its place in the
original data files, so any HDF5 reader (h5py, silx, DAWN, tomopy, ``xlabel.open_scan``)
reads the kept frames in place. The master's metadata comes along:

- groups and attributes (NeXus ``NX_class``, ``signal``...) are recreated;
- per-frame datasets (first axis = the scan's frames: ``image_key``, rotation angles,
  monitors) keep only the rows of the kept frames (copied when small, virtual when large);
- other small datasets are copied, large ones become external links to the master;
- soft links are kept; external links that do not resolve (a data file that was not
  copied, as in real life) are left out and listed in the ``xlabel_skipped_links``
  attribute of the root group.

The root group says where the frames come from: ``xlabel_source`` (the master's absolute
path), ``xlabel_dataset`` and ``/xlabel/kept_frames`` (the kept frames' indices in the
original scan). Source files are referenced by their path relative to the new file (HDF5
looks for them next to the virtual file first), so moving the output folder together with
the data keeps it readable.

Only HDF5 scans can be filtered this way; other sources raise ``ScanError``.

>>> import shutil, tempfile
>>> from xlabel import open_scan, samples
>>> src = open_scan(samples.path("scan_a"))
>>> keep = (samples.truth("scan_a")["label"] == "good").to_numpy()  # drop the bad frames
>>> tmp = tempfile.mkdtemp()
>>> path = write_filtered_scan(src, keep, os.path.join(tmp, "scan_a_filtered.h5"))
>>> filtered = open_scan(path)
>>> len(src), len(filtered)
(400, 381)
>>> bool((filtered[0] == src[int(np.flatnonzero(keep)[0])]).all())  # the first kept frame
True
>>> shutil.rmtree(tmp)
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import ScanError
from .hdf5 import _h5open  # same locking fallback as every reader of the scan

__all__ = ["write_filtered_scan", "COPY_BYTES"]

#: Datasets up to this size are copied into the filtered file; larger ones are linked.
COPY_BYTES = 1 << 20


def write_filtered_scan(source, keep, path) -> Path:
    """Write the kept frames of ``source`` as a virtual dataset at ``path``; return ``path``.

    ``source``: an :class:`~xlabel.io.HDF5Source` (``open_scan`` of an HDF5/NeXus file);
    ``keep``: one bool per frame. The virtual dataset sits where the frames sit in the
    master (``source.dataset``; ``.../data`` for an Eiger master split into
    ``data_000001``...), with the frames' dtype, shape and chunking of one frame.
    """
    segments = getattr(source, "segments", None)
    if not segments:
        raise ScanError("a filtered scan (HDF5 virtual dataset) can only be written for an "
                        "HDF5 scan", path=getattr(source, "path", None))
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(source),):
        raise ScanError(f"{keep.shape[0]} keep flags for a scan of {len(source)} frames",
                        path=source.path)
    path = Path(path)
    master = Path(segments[0][0])
    target = _stack_path(segments)
    kept = np.flatnonzero(keep)
    try:
        with _h5open(master) as src, h5py.File(path, "w") as out:
            _copy_group(src["/"], out["/"], _Context(src, out, path, len(source), kept,
                                                       {d for _, d, _ in segments}))
            _write_stack(out, target, segments, kept, source, path)
            out.attrs["xlabel_source"] = str(master.resolve())
            out.attrs["xlabel_dataset"] = target
            out.create_dataset("xlabel/kept_frames", data=kept.astype(np.int64))
    except OSError as err:  # output not writable or locked by a reader, master unreadable
        raise ScanError(f"cannot write the filtered scan: {err}", path=path) from None
    return path


class _Context:
    """What the recursive copy needs to know about the scan."""

    def __init__(self, src, out, out_path, n_frames, kept, frame_datasets):
        self.src, self.out, self.out_path = src, out, out_path
        self.n_frames, self.kept, self.frame_datasets = n_frames, kept, frame_datasets
        self.skipped: list[str] = []


def _stack_path(segments) -> str:
    """Where the frames live in the master; one ``data`` dataset for Eiger parts."""
    if len(segments) == 1:
        return segments[0][1]
    parent = segments[0][1].rpartition("/")[0]
    return f"{parent}/data"


def _copy_group(src: h5py.Group, dst: h5py.Group, ctx: _Context):
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name in src:
        link = src.get(name, getlink=True)
        full = f"{src.name.rstrip('/')}/{name}"
        if full in ctx.frame_datasets:
            continue
        if isinstance(link, h5py.SoftLink):
            dst[name] = h5py.SoftLink(link.path)
            continue
        try:
            obj = src[name]
        except (KeyError, OSError, RuntimeError):  # a dangling external link
            ctx.skipped.append(full)
            continue
        if isinstance(obj, h5py.Group):
            _copy_group(obj, dst.require_group(name), ctx)
        elif isinstance(obj, h5py.Dataset):
            _copy_dataset(obj, dst, name, ctx)
    if ctx.skipped and src.name == "/":
        dst.attrs["xlabel_skipped_links"] = np.array(ctx.skipped, dtype=h5py.string_dtype())


def _copy_dataset(obj: h5py.Dataset, dst: h5py.Group, name: str, ctx: _Context):
    per_frame = obj.ndim >= 1 and obj.shape[0] == ctx.n_frames and ctx.n_frames > 1
    small = obj.size * obj.dtype.itemsize <= COPY_BYTES
    if per_frame and small:
        copy = dst.create_dataset(name, data=obj[()][ctx.kept], dtype=obj.dtype)
    elif per_frame and obj.dtype.kind in "iufb":
        copy = _virtual_rows(dst, name, [(obj.file.filename, obj.name, obj.shape[0])],
                             ctx.kept, obj.shape[1:], obj.dtype, ctx.out_path)
    elif small or obj.shape == ():
        copy = dst.create_dataset(name, data=obj[()], dtype=obj.dtype)
    else:  # large, not per frame: link, do not copy
        dst[name] = h5py.ExternalLink(_relative(obj.file.filename, ctx.out_path), obj.name)
        return
    for key, value in obj.attrs.items():
        copy.attrs[key] = value


def _write_stack(out, target, segments, kept, source, out_path):
    parent = target.rpartition("/")[0]
    group = out.require_group(parent or "/")
    name = target.rpartition("/")[2]
    if name in group:
        del group[name]
    resolved = [_resolve(p, d, n) for p, d, n in segments]
    stack = _virtual_rows(group, name, resolved, kept, tuple(source.frame_shape),
                          source.dtype, out_path)
    stack.attrs["xlabel_kept_frames"] = len(kept)


def _resolve(path, dataset, n):
    """(real file, real dataset) behind a segment that may be an external link."""
    with _h5open(path) as f:
        obj = f[dataset]
        return obj.file.filename, obj.name, n


def _virtual_rows(group, name, segments, kept, row_shape, dtype, out_path):
    """A virtual dataset of the rows ``kept`` of the concatenated ``segments``."""
    if not len(kept):  # nothing kept: an empty stack of the right frame shape and dtype
        return group.create_dataset(name, shape=(0, *row_shape), dtype=dtype)
    layout = h5py.VirtualLayout(shape=(len(kept), *row_shape), dtype=dtype)
    offsets = np.cumsum([0] + [n for _, _, n in segments])
    for k, (file, dataset, n) in enumerate(segments):
        rows = kept[(kept >= offsets[k]) & (kept < offsets[k + 1])]
        if not len(rows):
            continue
        vsource = h5py.VirtualSource(_relative(file, out_path), dataset, shape=(n, *row_shape),
                                     dtype=dtype)
        first = int(np.searchsorted(kept, offsets[k]))
        for a, b in _runs(rows - offsets[k]):
            layout[first:first + (b - a)] = vsource[a:b]
            first += b - a
    return group.create_virtual_dataset(name, layout, fillvalue=0)


def _runs(rows: np.ndarray):
    """Consecutive runs ``[(a, b), ...]`` of sorted row numbers (one mapping per run)."""
    if not len(rows):
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1)
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks + 1, [len(rows)]])
    return [(int(rows[s]), int(rows[e - 1]) + 1) for s, e in zip(starts, stops)]


def _relative(file, out_path) -> str:
    """``file`` relative to the folder of ``out_path`` (HDF5 searches there first)."""
    try:
        return os.path.relpath(Path(file).resolve(), Path(out_path).resolve().parent)
    except ValueError:  # another drive (Windows)
        return str(Path(file).resolve())
