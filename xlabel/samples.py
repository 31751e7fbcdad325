"""The small synthetic scans bundled in ``data_samples/`` (with ground-truth labels).

Each sample lives in ``data_samples/<name>/``: an Eiger-like master file
``<name>_master.h5`` with its external-link data files, and ``<name>_labels.csv``
(``frame,label,reason``). They are made by :mod:`xlabel.synth` (see
``xlabel.synth.SAMPLES``) and regenerated with ``python -m xlabel.synth --samples data_samples``.

>>> from xlabel import samples
>>> samples.names()
['scan_a', 'scan_b', 'scan_c', 'scan_d']
>>> samples.path("scan_a").name
'scan_a_master.h5'
>>> samples.truth("scan_a")["label"].value_counts().to_dict()
{'good': 381, 'bad': 19}
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import ScanError

__all__ = ["folder", "names", "path", "truth", "source"]

REGENERATE = "python -m xlabel.synth --samples data_samples"


def folder() -> Path:
    """The ``data_samples/`` folder of the repository (a clear error if it is absent)."""
    root = Path(__file__).resolve().parents[1] / "data_samples"
    if not root.is_dir():
        raise ScanError(f"the bundled samples folder is missing; it comes with the xlabel repository "
                        f"(a pip-installed wheel does not ship it). Recreate it with `{REGENERATE}` "
                        f"run from the repository root", path=root)
    return root


def names() -> list[str]:
    """Names of the bundled samples, sorted."""
    return sorted(p.parent.name for p in folder().glob("*/*_master.h5") if p.name == f"{p.parent.name}_master.h5")


def _sample_file(name: str, suffix: str) -> Path:
    target = folder() / name / f"{name}{suffix}"
    if not target.is_file():
        known = ", ".join(names()) or "none"
        raise ScanError(f"no bundled sample {name!r} (known: {known}); regenerate with `{REGENERATE}`",
                        path=target)
    return target


def path(name: str) -> Path:
    """Path of the master file of sample ``name``.

    >>> path("scan_b").relative_to(folder()).as_posix()
    'scan_b/scan_b_master.h5'
    """
    return _sample_file(name, "_master.h5")


def truth(name: str) -> pd.DataFrame:
    """Ground-truth labels of sample ``name``: columns ``frame`` (int), ``label``
    ("good"/"bad") and ``reason`` ("" for good frames, else "shutter", "beam_loss", "saturated").

    >>> sorted(truth("scan_c").query("label == 'bad'")["reason"].unique())
    ['beam_loss', 'saturated', 'shutter']
    """
    csv = _sample_file(name, "_labels.csv")
    table = pd.read_csv(csv, dtype={"frame": "int64", "label": str, "reason": str}, keep_default_na=False)
    missing = {"frame", "label", "reason"} - set(table.columns)
    if missing:
        raise ScanError(f"labels file lacks columns {sorted(missing)}", path=csv)
    return table


def source(name: str):
    """Open sample ``name`` as a FrameSource (``xlabel.open_scan(path(name))``)."""
    from .io import open_scan
    return open_scan(path(name))
