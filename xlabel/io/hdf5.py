"""HDF5 / NeXus scans: find the frame stack, read it lazily, report bad files clearly.

A scan is a list of *segments* ``(file, dataset)`` read one after the other:
one segment for a plain file, one per data file for an Eiger master
(``/entry/data/data_000001``, ``data_000002``, ... external links), and the
segments of every part for multi-part scans (``..._part00000.nxs``, ...).

How the frame stack is chosen when ``dataset`` is not given (first rule that
gives an answer wins):

1. the NeXus ``@default`` chain: root ``@default`` -> NXentry, its ``@default``
   -> NXdata group, that group's ``@signal`` (entries tried in order when the
   root has no ``@default``);
2. ``/entry/data/data``, or Eiger data files ``/entry/data/data_NNNNNN``
   (concatenated in numeric order);
3. ``/exchange/data`` (Data Exchange, APS: the standard's projections; its
   ``data_dark``/``data_white`` siblings are not the scan);
4. the ``@signal`` of the one NXdata group in the file whose signal is a
   readable 3-D dataset;
5. the ``data`` of the one NXdetector group holding a 3-D ``data``;
6. the one 3-D dataset in the file, or the largest one when it holds more than
   twice as many values as any other.

Otherwise :class:`~xlabel.errors.ScanError` lists the candidates and says to pass
``dataset=``. Links that point to missing files (common in real NeXus masters)
are skipped while searching, and named when nothing else is found. A signal named
``data_NNNNNN`` always brings its numbered siblings with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import numpy as np

try:  # registers bitshuffle/LZ4, Blosc, Zstd, ... filters with HDF5
    import hdf5plugin  # noqa: F401
except ImportError:  # pragma: no cover - hdf5plugin is a hard dependency
    hdf5plugin = None
import h5py

from ..errors import ScanArgumentError, ScanError, missing_file_message
from .base import ConcatenatedSource, FrameSource, check_frame_shape

__all__ = ["HDF5Source", "find_segments", "find_pixel_mask", "find_masks", "FrameMasks",
           "open_hdf5"]

EIGER_PART = re.compile(r"^data_(\d+)$")
MASK_LOCATIONS = (
    "/entry/instrument/detector/detectorSpecific/pixel_mask",
    "/entry/instrument/detector/pixel_mask",
)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _nx_class(obj) -> str:
    return _text(obj.attrs.get("NX_class", ""))


def _h5open(path) -> h5py.File:
    """Open an HDF5 file read-only, turning h5py's OSErrors into ScanErrors."""
    path = Path(path)
    if not path.exists():
        raise ScanError(missing_file_message("file", path), path=path)
    if path.is_dir():
        raise ScanError("is a folder, not an HDF5 file", path=path)
    try:
        return h5py.File(path, "r")
    except OSError as err:
        msg = str(err)
        if "locking" in msg:  # the user holds it open with locking=False: match that
            try:
                return h5py.File(path, "r", locking=False)
            except OSError:
                pass
        if "truncated" in msg or "eof" in msg.lower():
            reason = "truncated HDF5 file (the writer probably did not finish)"
        elif "signature" in msg:
            reason = "not an HDF5 file"
        else:
            reason = "cannot open as HDF5"
        raise ScanError(f"{reason} ({msg})", path=path) from None


# -- links -----------------------------------------------------------------
def _external_target(f: h5py.File, name: str):
    """(link path, target file, target dataset) of the first external link on ``name``."""
    parts = [p for p in name.split("/") if p]
    group = f["/"]
    for i, part in enumerate(parts):
        here = "/" + "/".join(parts[: i + 1])
        try:
            link = group.get(part, getlink=True)
        except (KeyError, OSError, RuntimeError):
            return None
        if isinstance(link, h5py.ExternalLink):
            return here, link.filename, link.path
        try:
            group = group[part]
        except (KeyError, OSError, RuntimeError):
            return None
        if not isinstance(group, h5py.Group):
            return None
    return None


def _broken_link_error(f: h5py.File, name: str) -> ScanError | None:
    target = _external_target(f, name)
    if target is None:
        return None
    link, filename, inner = target
    full = Path(f.filename).parent / filename
    what = "is missing" if not full.exists() and not Path(filename).exists() else \
        f"has no dataset {inner} or cannot be read"
    return ScanError(f"broken external link {link} -> {filename}:{inner}: "
                     f"target file {full} {what}", path=f.filename, dataset=name)


class _Unreadable(ScanError):
    """An object that exists in the file but HDF5 cannot read (corrupt or cut metadata)."""


def _is_link_to_elsewhere(group: h5py.Group, name: str) -> bool:
    """True if ``name`` in ``group`` is a soft or external link (which may dangle)."""
    try:
        link = group.get(name, getlink=True)
    except (KeyError, OSError, RuntimeError, ValueError):
        return False
    return isinstance(link, (h5py.SoftLink, h5py.ExternalLink))


def _exists(f: h5py.File, name: str) -> bool:
    """True if the last link of ``name`` is present (readable or not)."""
    parent, _, leaf = name.rstrip("/").rpartition("/")
    try:
        return f[parent or "/"].get(leaf, getlink=True) is not None
    except (KeyError, OSError, RuntimeError, ValueError):
        return False


def _get_dataset(f: h5py.File, name: str) -> h5py.Dataset:
    """``f[name]`` as a 3-D, non-empty dataset, or a ScanError saying why not.

    HDF5's own reason is kept when an object that exists cannot be read
    (``_Unreadable``: e.g. "invalid dataset size, likely file corruption").
    """
    try:
        obj = f[name]
    except (KeyError, OSError, RuntimeError, ValueError) as err:
        broken = _broken_link_error(f, name)
        if broken is not None:
            raise broken from None
        if _exists(f, name):
            raise _Unreadable(f"cannot be read: {err}", path=f.filename, dataset=name) from None
        raise ScanError("no such dataset in the file", path=f.filename, dataset=name) from None
    if isinstance(obj, h5py.Group):
        signal = obj.attrs.get("signal")
        if signal is None:
            raise ScanError("is a group, not a dataset (and has no @signal)",
                            path=f.filename, dataset=name)
        return _get_dataset(f, f"{obj.name.rstrip('/')}/{_text(signal)}")
    if obj.ndim != 3:
        raise ScanError(f"is a {obj.ndim}-D dataset of shape {obj.shape}; a scan needs a "
                        "3-D frame stack (n_frames, height, width)", path=f.filename, dataset=name)
    if obj.is_virtual:
        _check_virtual_sources(obj, f.filename, name)
    return obj


# -- virtual datasets --------------------------------------------------------------
def _virtual_source_problem(master: str, filename: str, dset: str, checked: dict) -> str | None:
    """Why one VDS source cannot give its data (None when it can).

    Relative names are looked up as HDF5 does: ``$HDF5_VDS_PREFIX``, the folder of
    the file holding the virtual dataset, the working directory. ``checked`` caches
    answers per (file, dataset): a VDS often maps many pieces of one source.
    """
    if "%b" in filename:  # printf-style source names of unlimited mappings: not checked
        return None
    if filename == ".":
        candidates = [master]
    elif os.path.isabs(filename):
        candidates = [filename]
    else:
        prefix = os.environ.get("HDF5_VDS_PREFIX", "")
        candidates = ([os.path.join(prefix, filename)] if prefix else []) + [
            os.path.join(os.path.dirname(os.path.abspath(master)), filename), filename]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
        return "is missing"
    if (found, dset) not in checked:
        try:
            with h5py.File(found, "r") as g:
                ok = isinstance(g.get(dset), h5py.Dataset)
            checked[found, dset] = None if ok else f"has no dataset {dset}"
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            checked[found, dset] = f"cannot be opened ({err})"
    return checked[found, dset]


def _check_virtual_sources(ds: h5py.Dataset, master: str, name: str):
    """ScanError naming every source of a virtual dataset that is missing or unreadable.

    HDF5 reads a missing source as the fill value without a word (Diamond writes VDS
    masters; copying only the master is common): all-zero frames would be clustered
    and trained on as if real.
    """
    dcpl = ds.id.get_create_plist()
    problems, checked = {}, {}
    for j in range(dcpl.get_virtual_count()):
        filename, dset = dcpl.get_virtual_filename(j), dcpl.get_virtual_dsetname(j)
        problem = _virtual_source_problem(master, filename, dset, checked)
        if problem is None:
            continue
        try:
            (first, *_), (last, *_) = dcpl.get_virtual_vspace(j).get_select_bounds()
            frames = f"frames {first}-{last}"
        except (ValueError, RuntimeError):
            frames = "some frames"
        problems.setdefault(f"{filename}:{dset} {problem}", []).append(frames)
    if problems:
        listed = "; ".join(f"{k} ({', '.join(v)})" for k, v in problems.items())
        raise _Unreadable(
            f"virtual dataset with {len(problems)} of {dcpl.get_virtual_count()} source(s) "
            f"unavailable, which HDF5 would read as the fill value: {listed}. Copy the "
            "source files next to the master file", path=master, dataset=name)


def _signal_path(f: h5py.File, name: str) -> str:
    """``name`` itself, or the path of the ``@signal`` dataset when ``name`` is an NXdata group."""
    obj = f[name]
    while isinstance(obj, h5py.Group):
        name = f"{name.rstrip('/')}/{_text(obj.attrs['signal'])}"
        obj = f[name]
    return name


# -- discovery --------------------------------------------------------------
def _try_3d(f: h5py.File, name: str, broken: list) -> h5py.Dataset | None:
    """The 3-D dataset at ``name``, or None; an object there that HDF5 cannot read raises."""
    try:
        return _get_dataset(f, name)
    except _Unreadable:
        raise  # the scan is probably right there: never fall back to another dataset
    except ScanError as err:
        if "broken external link" in err.reason or "-D dataset" in err.reason:
            broken.append(f"{name} {err.reason}")
        return None


def _get(group, name):
    """``group[name]``, or None when it is missing or HDF5 cannot open it."""
    try:
        return group[name]
    except (KeyError, OSError, RuntimeError, ValueError):
        return None


def _default_chain(f: h5py.File, broken: list) -> str | None:
    root_default = f.attrs.get("default")
    entries = [_text(root_default)] if root_default is not None else [
        k for k in f if isinstance(f.get(k, getlink=True), h5py.HardLink)
        and isinstance(_get(f, k), h5py.Group) and _nx_class(f[k]) == "NXentry"]
    for entry in entries:
        if not isinstance(_get(f, entry), h5py.Group):
            continue
        nxdata = f[entry].attrs.get("default")
        if nxdata is None:
            continue
        group = f"/{entry}/{_text(nxdata)}"
        if isinstance(_get(f, group), h5py.Group) and "signal" in f[group].attrs:
            name = f"{group}/{_text(f[group].attrs['signal'])}"
            if _try_3d(f, name, broken) is not None:
                return name
    return None


def _identity(obj) -> tuple:
    """What makes an HDF5 object itself, whatever path reached it: (file number, address).

    Paths do not: a soft or hard link from a group to one of its parents gives every
    object endlessly many paths (``/scan/loop/loop/...``).
    """
    info = h5py.h5o.get_info(obj.id)
    return info.fileno, info.addr


def _walk(f: h5py.File, unreadable: list):
    """Yield ``(path, object)`` for every readable object, each group entered once.

    External links are followed; links back to a group already seen (loops) are not.
    Dangling soft/external links are skipped; objects HDF5 cannot read are added to
    ``unreadable`` as ``"path (HDF5's reason)"``.
    """
    seen = set()
    stack = [("/", f["/"])]
    while stack:
        prefix, group = stack.pop()
        key = _identity(group)
        if key in seen:
            continue
        seen.add(key)
        for name in sorted(group):
            path = f"{prefix.rstrip('/')}/{name}"
            try:
                obj = group[name]
            except (KeyError, OSError, RuntimeError, ValueError) as err:
                if not _is_link_to_elsewhere(group, name):  # dangling links are common
                    unreadable.append(f"{path} ({err})")
                continue
            yield path, obj
            if isinstance(obj, h5py.Group):
                stack.append((path, obj))


def _unique_by_target(items):
    """Keep the first path for each distinct dataset (links alias datasets)."""
    out, seen = [], set()
    for path, obj in items:
        key = _identity(obj)
        if key not in seen:
            seen.add(key)
            out.append((path, obj))
    return out


def _scan_candidates(f: h5py.File, unreadable: list):
    signals, detectors, stacks = [], [], []
    for path, obj in _walk(f, unreadable):
        if isinstance(obj, h5py.Dataset):
            if obj.ndim == 3:
                stacks.append((path, obj))
            continue
        cls = _nx_class(obj)
        if cls == "NXdata" and "signal" in obj.attrs:
            name = f"{path}/{_text(obj.attrs['signal'])}"
            ds = obj.get(_text(obj.attrs["signal"]))
            if isinstance(ds, h5py.Dataset) and ds.ndim == 3:
                signals.append((name, ds))
        elif cls == "NXdetector" and isinstance(obj.get("data"), h5py.Dataset) \
                and obj["data"].ndim == 3:
            detectors.append((f"{path}/data", obj["data"]))
    return [_unique_by_target(sorted(x, key=lambda item: item[0]))
            for x in (signals, detectors, stacks)]


def _describe(items) -> str:
    return "; ".join(f"{p} {o.shape} {o.dtype}" for p, o in items)


def _choose_dataset(f: h5py.File) -> str:
    broken: list[str] = []
    name = _default_chain(f, broken)
    if name:
        return name
    for fixed in ("/entry/data/data", "/exchange/data"):
        if _try_3d(f, fixed, broken) is not None:
            return fixed
    if isinstance(_get(f, "/entry/data"), h5py.Group) and any(
            EIGER_PART.match(k) for k in f["/entry/data"]):
        first = sorted(k for k in f["/entry/data"] if EIGER_PART.match(k))[0]
        return f"/entry/data/{first}"
    unreadable: list[str] = []
    name = _search_choice(f, broken, unreadable)
    if unreadable:  # the frame stack may be what HDF5 cannot read: never guess past it
        found = f"the only readable candidate is {name}; " if name else ""
        raise ScanError(
            f"HDF5 cannot read {'; '.join(unreadable)}: the file is probably corrupt or cut "
            f"short. {found}pass dataset= to read a dataset anyway", path=f.filename)
    if name:
        return name
    hint = f"; skipped: {'; '.join(dict.fromkeys(broken))}" if broken else ""
    raise ScanError("no frame stack found: the file holds no 3-D dataset (n_frames, height, "
                    f"width){hint}. Pass dataset= if the frames are elsewhere", path=f.filename)


def _search_choice(f: h5py.File, broken: list, unreadable: list) -> str | None:
    """Rules 4-6 of the module docstring over every object of the file, or None."""
    signals, detectors, stacks = _scan_candidates(f, unreadable)
    for group in (signals, detectors):
        if len(group) == 1:
            return group[0][0]
    if len(stacks) == 1:
        return stacks[0][0]
    if len(stacks) > 1:
        sizes = sorted(((o.size, p) for p, o in stacks), reverse=True)
        if sizes[0][0] > 2 * sizes[1][0]:
            return sizes[0][1]
        raise ScanError(
            f"several 3-D datasets could be the frame stack and none is marked (NeXus "
            f"@default/@signal): {_describe(stacks)}. Pass dataset=, e.g. "
            f"open_scan({Path(f.filename).name!r}, dataset={stacks[0][0]!r})", path=f.filename)
    return None


def _eiger_siblings(f: h5py.File, name: str) -> list[str]:
    """All ``data_NNNNNN`` datasets next to ``name`` (in numeric order), or ``[name]``."""
    parent, _, leaf = name.rpartition("/")
    if not EIGER_PART.match(leaf):
        return [name]
    group = f[parent or "/"]
    numbered = sorted((int(EIGER_PART.match(k).group(1)), k) for k in group if EIGER_PART.match(k))
    return [f"{parent}/{k}" for _, k in numbered]


def find_segments(path, dataset: str | None = None) -> list[tuple[str, str, int]]:
    """The frame stack(s) of one HDF5/NeXus file: ``[(file, dataset, n_frames), ...]``.

    Several segments for an Eiger master whose frames are split over external
    data files (``/entry/data/data_000001``, ...). See the module docstring for
    how the dataset is chosen when ``dataset`` is ``None``.

    >>> from xlabel import samples
    >>> segments = find_segments(samples.path("scan_a"))  # an Eiger master, 4 data files
    >>> [(Path(file).name, name, n) for file, name, n in segments[:2]]
    [('scan_a_master.h5', '/entry/data/data_000001', 100), ('scan_a_master.h5', '/entry/data/data_000002', 100)]
    >>> len(segments)
    4
    """
    with _h5open(path) as f:
        name = dataset if dataset is not None else _choose_dataset(f)
        if not name.startswith("/"):
            name = "/" + name
        _get_dataset(f, name)  # raises a clear error for anything but a 3-D stack
        name = _signal_path(f, name)
        segments = []
        for part in _eiger_siblings(f, name):
            ds = _get_dataset(f, part)
            segments.append((str(path), part, int(ds.shape[0])))
        return segments


def _mask_names(f: h5py.File, dataset: str | None) -> list[str]:
    """Where a detector pixel mask may be, in the order they are OR-ed."""
    names = list(MASK_LOCATIONS)
    if dataset:
        names.append(f"{dataset.rpartition('/')[0]}/pixel_mask")
    instrument = _get(f, "/entry/instrument")
    if isinstance(instrument, h5py.Group):
        for key in instrument:
            obj = _get(instrument, key)
            if isinstance(obj, h5py.Group) and _nx_class(obj) == "NXdetector":
                names += [f"{obj.name}/pixel_mask", f"{obj.name}/detectorSpecific/pixel_mask"]
    return list(dict.fromkeys(names))


class DetectorMasks:
    """The detector masks of one HDF5 file (True = invalid pixel).

    ``static``: 2-D mask for every frame (or None); ``per_frame``: ``(file, dataset)``
    of a ``(n_frames, H, W)`` mask whose frames differ (or None); ``applied``: the
    NXdetector ``pixel_mask_applied`` flag (None when absent).
    """

    def __init__(self, static=None, per_frame=None, applied=None):
        self.static, self.per_frame, self.applied = static, per_frame, applied


def _or(a, b):
    return b if a is None else a if b is None or a.shape != b.shape else a | b


def _stacked_mask(obj: h5py.Dataset, n_frames, masks: DetectorMasks):
    """A ``(1, H, W)`` or ``(n, H, W)`` mask: static when every frame's mask is the same."""
    if obj.shape[0] == 1:
        masks.static = _or(masks.static, obj[0] != 0)
        return
    if n_frames is None or obj.shape[0] != n_frames:
        warnings.warn(f"{obj.file.filename}: {obj.name} of shape {obj.shape} has one mask per "
                      f"frame but the scan has {n_frames} frames; ignored", stacklevel=4)
        return
    first, same = obj[0] != 0, True
    step = max(1, (16 << 20) // max(1, first.size))  # ~16 MB of mask per read
    for a in range(0, n_frames, step):
        same = bool(((obj[a:a + step] != 0) == first).all())
        if not same:
            break
    if same:
        masks.static = _or(masks.static, first)
    else:
        masks.per_frame = (obj.file.filename, obj.name)


def find_masks(path, dataset: str | None = None, n_frames: int | None = None) -> DetectorMasks:
    """The detector masks of an HDF5/NeXus file: static, per frame, and whether applied.

    Looked up at the Eiger location ``/entry/instrument/detector/detectorSpecific/pixel_mask``,
    the NXdetector ``pixel_mask`` (``/entry/instrument/detector/pixel_mask`` or the
    NXdetector group holding ``dataset``) and in every NXdetector of
    ``/entry/instrument``. Any non-zero bit marks a pixel invalid (gap, dead, hot,
    ...); several masks are OR-ed. A mask with a leading frame axis is honoured:
    ``(1, H, W)`` (PETRA-III Lambda files) is one static mask; ``(n_frames, H, W)``
    is one mask per frame (static if all are equal). ``pixel_mask_applied`` is
    reported, and the masked pixels are excluded either way: an applied mask only
    means the detector already overwrote their values (with 0 or a flag value),
    which are no measurement either.
    """
    masks = DetectorMasks()
    with _h5open(path) as f:
        for name in _mask_names(f, dataset):
            obj = _get(f, name)
            if not isinstance(obj, h5py.Dataset):
                continue
            applied = _get(obj.parent, "pixel_mask_applied")
            if isinstance(applied, h5py.Dataset) and applied.shape in ((), (1,)):
                masks.applied = bool(np.asarray(applied[()]).reshape(-1)[0])
            if obj.ndim == 2:
                masks.static = _or(masks.static, obj[()] != 0)
            elif obj.ndim == 3 and obj.shape[0] >= 1:
                _stacked_mask(obj, n_frames, masks)
    return masks


def find_pixel_mask(path, dataset: str | None = None) -> np.ndarray | None:
    """The detector's static pixel mask in an HDF5/NeXus file (``True`` = invalid), or None.

    See :func:`find_masks` for where masks are looked up; a per-frame mask counts here
    as the union of its frames.

    >>> from xlabel import samples
    >>> mask = find_pixel_mask(samples.path("scan_a"))
    >>> mask.shape, int(mask.sum())
    ((64, 64), 253)
    """
    masks = find_masks(path, dataset)
    if masks.per_frame is not None:
        with _h5open(masks.per_frame[0]) as f:
            union = FrameMasks._union(f[masks.per_frame[1]])
        return _or(masks.static, union)
    return masks.static


class FrameMasks:
    """One pixel mask per frame (True = invalid), read from HDF5 when asked for.

    ``parts``: ``[(file, dataset, first frame, n_frames)]`` (a multi-file scan may have
    per-frame masks in some files only; frames outside every part have no mask of
    their own). ``union``: every pixel masked in any frame. Pickles as names.
    """

    def __init__(self, parts, frame_shape):
        self.parts = [(str(p), d, int(a), int(n)) for p, d, a, n in parts]
        self.frame_shape = tuple(frame_shape)
        union = np.zeros(self.frame_shape, bool)
        for path, name, _, _ in self.parts:
            with _h5open(path) as f:
                union |= self._union(f[name])
        self.union = union

    @staticmethod
    def _union(ds: h5py.Dataset) -> np.ndarray:
        union = np.zeros(ds.shape[1:], bool)
        step = max(1, (16 << 20) // max(1, union.size))
        for a in range(0, ds.shape[0], step):
            union |= (ds[a:a + step] != 0).any(axis=0)
        return union

    def read(self, start: int, stop: int) -> np.ndarray:
        """Masks of frames ``start:stop``: bool ``(stop - start, H, W)``."""
        out = np.zeros((stop - start, *self.frame_shape), bool)
        for path, name, first, n in self.parts:
            a, b = max(start, first), min(stop, first + n)
            if a < b:
                with _h5open(path) as f:
                    out[a - start:b - start] = f[name][a - first:b - first] != 0
        return out


# -- the source ---------------------------------------------------------------
class HDF5Source(ConcatenatedSource):
    """Frames of one or several HDF5 datasets, read lazily and in order.

    Normally made by :func:`xlabel.open_scan`. Holds only file names and
    dataset paths; files are opened on first read in each process, so the
    source pickles cheaply and reopens in worker processes.

    >>> from xlabel import samples
    >>> master = str(samples.path("scan_a"))
    >>> src = HDF5Source([(master, "/entry/data/data_000001", 100),
    ...                   (master, "/entry/data/data_000002", 100)])
    >>> len(src), src[0].shape
    (200, (64, 64))
    """

    def __init__(self, segments, name=None, pixel_mask=None, invalid_values="auto"):
        self.segments = [(str(p), d, int(n)) for p, d, n in segments]
        if not self.segments:
            raise ScanError("no data files given")
        first_path, first_ds = self.segments[0][:2]
        self.path = first_path
        self.dataset = first_ds
        self.name = name or Path(first_path).stem
        self.pixel_mask = pixel_mask
        self.invalid_values = invalid_values
        counts = np.array([n for _, _, n in self.segments], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.part_starts = tuple(int(x) for x in self._offsets[:-1])
        self._handles: dict = {}
        self._pid = os.getpid()
        self._check_layout()
        self.close()  # nothing stays open until frames are read
        if len(self) == 0:
            raise ScanError("the scan has zero frames", path=first_path, dataset=first_ds)

    def _check_layout(self):
        """Frame shape, dtype and chunking from the first segment; every part must agree."""
        shape = dtype = None
        for i, (path, ds_name, n) in enumerate(self.segments):
            ds = self._dataset(i)
            if ds.shape[0] != n:
                raise ScanError(f"holds {ds.shape[0]} frames, expected {n}", path=path,
                                dataset=ds_name)
            if shape is None:
                shape, dtype = check_frame_shape(ds.shape[1:], path=path, dataset=ds_name), ds.dtype
                self.chunk_frames = int(ds.chunks[0]) if ds.chunks else 1
            elif tuple(ds.shape[1:]) != shape or ds.dtype != dtype:
                raise ScanError(
                    f"part {i} has frames {tuple(ds.shape[1:])} {ds.dtype} but the scan's first "
                    f"part has {shape} {dtype}; parts of one scan must match",
                    path=path, dataset=ds_name)
        self._frame_shape, self._dtype = shape, dtype

    # pickling: names only, never open handles
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def close(self):
        """Close the files this process opened (they reopen on the next read)."""
        for f in self._handles.get("files", {}).values():
            with contextlib.suppress(Exception):  # closing a dead handle must never raise
                f.close()
        self._handles = {}

    def iter_chunks(self, chunk_frames=None, start=0, stop=None):
        # Files are closed after a full pass, so the user's own h5py.File calls on the
        # same file (with other locking flags) work between passes.
        try:
            yield from super().iter_chunks(chunk_frames, start=start, stop=stop)
        finally:
            self.close()

    iter_chunks.__doc__ = FrameSource.iter_chunks.__doc__

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def chunk_plans(self, start=0, stop=None):
        from .direct import plan_dataset

        stop = len(self) if stop is None else stop
        plans = []
        try:
            for i, (path, name, n) in enumerate(self.segments):
                first = int(self._offsets[i])
                if first >= stop or first + n <= start:
                    continue
                plan = plan_dataset(self._dataset(i), name=path, dataset=name,
                                    frame_offset=first)
                if plan is None:
                    return None
                plans.append(plan)
        finally:
            self.close()  # the plans read the files themselves
        return plans

    chunk_plans.__doc__ = FrameSource.chunk_plans.__doc__

    def _dataset(self, i: int) -> h5py.Dataset:
        if self._pid != os.getpid():  # forked child: never reuse the parent's HDF5 handles
            self._handles, self._pid = {}, os.getpid()
        files = self._handles.setdefault("files", {})
        datasets = self._handles.setdefault("datasets", {})
        if i not in datasets or not datasets[i].id.valid:
            path, ds_name, _ = self.segments[i]
            if path not in files or not files[path].id.valid:
                files[path] = _h5open(path)
            datasets[i] = _get_dataset(files[path], ds_name)
        return datasets[i]

    def _read(self, start, stop):
        out = np.empty((stop - start, *self._frame_shape), dtype=self._dtype)
        if stop <= start:
            return out
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        pos = start
        for i in range(first, len(self.segments)):
            if pos >= stop:
                break
            seg_start, seg_stop = int(self._offsets[i]), int(self._offsets[i + 1])
            end = min(stop, seg_stop)
            self._read_segment(i, pos - seg_start, end - seg_start, out[pos - start:end - start])
            pos = end
        return out

    def _read_segment(self, i: int, a: int, b: int, dest: np.ndarray):
        ds = self._dataset(i)
        try:
            ds.read_direct(dest, source_sel=np.s_[a:b])
        except (OSError, RuntimeError, ValueError) as err:
            raise self._read_error(i, a, b, err) from None

    def _read_error(self, i: int, a: int, b: int, err: Exception) -> ScanError:
        """Find the first unreadable frame of a failed block (slow path, errors only)."""
        path, ds_name, _ = self.segments[i]
        offset = int(self._offsets[i])
        ds = self._dataset(i)
        bad = a
        for j in range(a, b):
            try:
                ds[j]
            except (OSError, RuntimeError, ValueError):
                bad = j
                break
        where = ds.file.filename
        note = f" (stored in {where})" if os.path.realpath(where) != os.path.realpath(path) else ""
        return ScanError(
            f"cannot read frames {offset + a}-{offset + b - 1}: frame {offset + bad} is "
            f"unreadable (corrupt or truncated chunk{note}): {err}",
            path=path, dataset=ds_name, frame=offset + bad)


def open_hdf5(paths, dataset=None, pixel_mask=None, invalid_values="auto", name=None,
              file_mask=True) -> HDF5Source:
    """One scan from one HDF5/NeXus file or several part files (in the given order).

    ``pixel_mask`` (user mask, True = invalid) is OR-ed with the file's detector
    mask unless ``file_mask=False``. Per-frame detector masks become
    ``src.frame_masks`` (a :class:`FrameMasks`).

    >>> import shutil, tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> for i in range(2):  # two part files of 3 frames each
    ...     with h5py.File(tmp / f"scan_part{i:05d}.nxs", "w") as f:
    ...         _ = f.create_dataset("/entry/data/data", data=np.full((3, 8, 8), i, np.uint16))
    >>> src = open_hdf5([tmp / "scan_part00000.nxs", tmp / "scan_part00001.nxs"])
    >>> len(src), src.frame_shape, int(src[3].max())  # frame 3 is the first of part 1
    (6, (8, 8), 1)
    >>> shutil.rmtree(tmp)
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    segments, mask, per_frame, applied = [], None, [], None
    for path in paths:
        segs = find_segments(path, dataset)
        if file_mask:
            found = find_masks(path, segs[0][1], n_frames=sum(n for _, _, n in segs))
            mask = _or(mask, found.static)
            if found.per_frame is not None:
                per_frame.append((*found.per_frame, sum(n for _, _, n in segments),
                                  sum(n for _, _, n in segs)))
            applied = found.applied if applied is None else applied
        segments += segs
    src = HDF5Source(segments, name=name, invalid_values=invalid_values)
    src.pixel_mask = combine_masks(mask, pixel_mask, src)
    src.pixel_mask_applied = applied
    if per_frame:
        src.frame_masks = FrameMasks(per_frame, src.frame_shape)
    return src


def combine_masks(file_mask, user_mask, src: FrameSource):
    """OR of the file's detector mask and the user's mask, checked against the frame shape."""
    shape = tuple(src.frame_shape)
    result = None
    if file_mask is not None:
        if tuple(file_mask.shape) != shape:
            warnings.warn(f"{src.path}: detector pixel_mask of shape {file_mask.shape} does not "
                          f"match frames {shape}; ignored", stacklevel=3)
        else:
            result = np.asarray(file_mask, dtype=bool)
    if user_mask is not None:
        user = np.asarray(user_mask).astype(bool)
        if user.shape != shape:
            raise ScanArgumentError(f"mask of shape {user.shape} does not match the frame "
                                    f"shape {shape}", path=src.path, dataset=src.dataset)
        result = user.copy() if result is None else result | user
    return result
