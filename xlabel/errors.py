"""One exception hierarchy for xlabel.

Every error raised on purpose by xlabel derives from :class:`XLabelError`, so a
notebook can catch them all with one ``except``. Messages name what they are
about: the file, the dataset inside it and, where it applies, the frame.
Each is also the built-in kind code outside xlabel catches: a scan that cannot be
read is an ``OSError``; bad features, clustering input and bad arguments are
``ValueError``; a missing optional dependency is an ``ImportError``.

>>> from xlabel.errors import ScanError, XLabelError
>>> try:
...     raise ScanError("cannot read chunk", path="scan.h5", dataset="/entry/data/data", frame=17)
... except XLabelError as err:
...     print(err)
scan.h5:/entry/data/data frame 17: cannot read chunk
"""

from __future__ import annotations

__all__ = [
    "XLabelError",
    "ScanError",
    "ScanArgumentError",
    "FeatureError",
    "ClusterError",
    "LabelError",
    "JournalError",
    "ModelError",
    "MissingDependencyError",
    "missing_file_message",
]


class XLabelError(Exception):
    """Base class of all xlabel errors.

    ``path``, ``dataset`` and ``frame`` are kept as attributes and prefixed to
    the message, so the user always sees where the problem is.
    """

    def __init__(self, message: str, *, path=None, dataset=None, frame=None):
        self.path = None if path is None else str(path)
        self.dataset = dataset
        self.frame = frame
        self.reason = message
        super().__init__(self._format(message))

    def _format(self, message: str) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.dataset is not None:
                where += f":{self.dataset}"
        elif self.dataset is not None:
            where = f"dataset {self.dataset}"
        if self.frame is not None:
            where = f"{where} frame {self.frame}" if where else f"frame {self.frame}"
        return f"{where}: {message}" if where else message

    def __reduce__(self):
        # pickled (e.g. back from a Dask worker) with its parts, not only the text
        return (_rebuild, (type(self), self.reason, self.path, self.dataset, self.frame))


def _rebuild(cls, reason, path, dataset, frame):
    return cls(reason, path=path, dataset=dataset, frame=frame)


class ScanError(XLabelError, OSError):
    """A scan cannot be opened or read (missing file, not HDF5, no frame stack, corrupt chunk...).

    Also an ``OSError``, like the errors of ``open()`` and h5py.
    """


class ScanArgumentError(ScanError, ValueError):
    """A bad argument to a scan reader (unknown option, mask of the wrong shape, frame index).

    Both a :class:`ScanError` and a ``ValueError``.
    """


class FeatureError(XLabelError, ValueError):
    """Per-frame features cannot be computed (empty scan, frames of no pixels, bad option...)."""


class ClusterError(XLabelError, ValueError):
    """Clustering input is degenerate (too few frames, NaN features, bad arguments...)."""


class LabelError(XLabelError):
    """A label operation is invalid (unknown class, index out of range, mismatched store...)."""


class JournalError(LabelError):
    """A LabelStore journal or sidecar file on disk is corrupt or belongs to another dataset."""


class ModelError(XLabelError):
    """A model cannot be trained, saved, loaded or applied (unsafe file, wrong columns, shape...)."""


class MissingDependencyError(XLabelError, ImportError):
    """An optional dependency is needed; the message says what to install."""


def missing_file_message(what: str, path) -> str:
    """``"<what> not found: <absolute path> (working directory <cwd>)"``: a relative path
    in a README or notebook resolves against the working directory, which is often not
    the one the user thinks (notebooks run in ``notebooks/``).

    >>> missing_file_message("scan", "/data/x.h5")[:26]
    'scan not found: /data/x.h5'
    """
    import os

    return (f"{what} not found: {os.path.abspath(os.fspath(path))} "
            f"(working directory {os.getcwd()})")
