"""``xlabel train`` / ``xlabel filter`` for multi-label tag models (kinds ``tags-*``).

Kept out of :mod:`xlabel.cli` so the command line module only dispatches here. A labels
CSV for tags has ``frame`` and one 0/1 column per tag (``label`` and the other columns
:meth:`LabelStore.to_csv` writes may be there too); frames not listed are unlabeled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import XLabelError

#: The model ``xlabel train`` picks for a CSV with tag columns when --kind is not given.
DEFAULT_TAG_KIND = "tags-joint"


def csv_has_tags(path) -> bool:
    """Whether the labels CSV at ``path`` is a tags CSV: tag columns (0/1 columns other than
    frame, label...) and no class labels (a CSV with both trains a class model unless
    ``--kind tags-*`` says otherwise)."""
    from .labels.formats import read_label_csv, tag_columns
    try:
        table = read_label_csv(path)
    except XLabelError:
        # Not a readable tags CSV: the strict class-labels reader (xlabel.label_csv) then
        # names the doubtful row.
        return False
    return bool(tag_columns(table)) and not (table["label"] != "").any()


def read_tag_csv(path, n_frames: int, tags=None):
    """``(float matrix (n_frames, k), tag names)``: 0/1 per listed frame, NaN for frames the
    CSV does not list. Errors name the file and the frame."""
    from .labels.formats import csv_tags, read_label_csv
    table = read_label_csv(path, tags)
    names, matrix = csv_tags(table, tags, path)
    if not names:
        raise XLabelError("labels CSV has no tag columns (0/1 columns besides frame, label, "
                          "source, time, note)", path=path)
    frames = table["frame"].to_numpy(dtype=np.int64)
    bad = (frames < 0) | (frames >= n_frames)
    if bad.any():
        raise XLabelError(f"frame numbers out of range 0..{n_frames - 1}", path=path,
                          frame=int(frames[bad][0]))
    values = np.full((n_frames, len(names)), np.nan)
    values[frames] = matrix
    return values, tuple(names)


def run_train(args, cls, sources):
    """Train ``cls`` on the scans' tag CSVs, hold out whole scans, report per-tag scores, save."""
    from .models import split
    from .models.multilabel import evaluate_tags
    from .models.persist import save_model
    for option in ("preset", "columns"):
        if getattr(args, option) is not None:
            raise XLabelError(f"--{option} does not apply to --kind {args.kind}")
    tags = None if args.tags is None else [t.strip() for t in args.tags.split(",") if t.strip()]
    parts = [read_tag_csv(path, len(src), tags) for path, src in zip(args.labels, sources)]
    names = parts[0][1]
    for path, (_, found) in zip(args.labels, parts):
        if found != names:
            raise XLabelError(f"tag columns {list(found)} differ from the first CSV's "
                              f"{list(names)}; pass --tags", path=path)
    values = np.concatenate([part[0] for part in parts])
    scans = np.concatenate([np.full(len(src), str(p), dtype=object)
                            for p, src in zip(args.scans, sources)])
    train_idx, test_idx = split(scans, test_size=args.test_size, seed=args.seed)
    train_values = values.copy()
    train_values[test_idx] = np.nan
    params = {"tag_names": names, "seed": args.seed, "size": args.size, "epochs": args.epochs}
    model = cls(**{k: v for k, v in params.items() if v is not None})
    model.fit(sources, pd.DataFrame(train_values, columns=list(names)), groups=scans)
    test_idx = test_idx[~np.isnan(values[test_idx]).any(axis=1)]
    proba = model.predict_proba(_frames_at(sources, test_idx))
    scores = evaluate_tags(values[test_idx], proba, names, model.thresholds_)
    model.info.update({"trained_on": [str(p) for p in args.scans],
                       "held_out": sorted(set(scans[test_idx])),
                       "held_out_frames": int(len(test_idx)), "mean_ap": scores.mean_ap,
                       "per_tag": scores.per_tag.to_dict(orient="index")})
    folder = save_model(model, args.out)
    print(f"held-out evaluation ({len(test_idx)} frames of {', '.join(sorted(set(scans[test_idx])))}):")
    print(scores.summary())
    print(f"model ({model.kind}) saved to {folder}")


def _frames_at(sources, indices):
    offsets = np.cumsum([0] + [len(s) for s in sources])
    parts = [sources[k][indices[(indices >= offsets[k]) & (indices < offsets[k + 1])] - offsets[k]]
             for k in range(len(sources))]
    return np.concatenate([p for p in parts if len(p)])


def filter_tags(model, source, out: Path, progress=True) -> dict:
    """Write ``<scan>_filter.csv`` (``frame``, ``p_<tag>`` per tag, one 0/1 column per tag,
    ``tags``: the predicted tags joined by ``;``) and ``<scan>_summary.json``."""
    table = model.predict_tags(source, progress=progress)
    tags = list(model.classes)
    table[tags] = table[tags].astype(np.int8)
    table.insert(0, "frame", np.arange(len(table)))
    table["tags"] = [";".join(t for t, on in zip(tags, row) if on)
                     for row in table[tags].to_numpy(dtype=bool)]
    name = Path(str(source.name)).stem or "scan"
    csv = out / f"{name}_filter.csv"
    table.to_csv(csv, index=False)
    summary = {"scan": str(source.name), "path": str(getattr(source, "path", "")),
               "frames": int(len(table)), "counts": {t: int(table[t].sum()) for t in tags},
               "thresholds": dict(zip(tags, map(float, model.thresholds_))), "csv": str(csv)}
    (out / f"{name}_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
