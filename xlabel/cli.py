"""The ``xlabel`` command line: per-frame statistics, bundled samples, training, filtering.

    xlabel stats SCAN... --out stats.csv
    xlabel samples
    xlabel train SCAN... --labels LABELS.csv... [--kind mlp-features] [--preset NAME] --out MODEL
    xlabel filter SCAN... --model MODEL [--out OUT]

Errors are printed as one line (``xlabel: error: ...``) with exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import XLabelError

__all__ = ["main"]


def main(argv=None) -> int:
    """Entry point of the ``xlabel`` command (``xlabel = "xlabel.cli:main"``)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except XLabelError as err:
        print(f"xlabel: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xlabel: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlabel", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    stats = commands.add_parser("stats", help="per-frame statistics of scans as CSV")
    stats.add_argument("scans", nargs="+", metavar="SCAN")
    stats.add_argument("--dataset", default=None, help="HDF5 dataset of the frames")
    stats.add_argument("--out", required=True, help="CSV file to write")
    stats.set_defaults(run=_run_stats)

    samples = commands.add_parser("samples", help="list the bundled sample scans")
    samples.set_defaults(run=_run_samples)

    train = commands.add_parser("train", help="train a classifier on labeled scans")
    train.add_argument("scans", nargs="+", metavar="SCAN")
    train.add_argument("--labels", nargs="+", required=True, metavar="LABELS.csv",
                       help="one CSV (columns frame,label) per scan, in the same order")
    train.add_argument("--kind", choices=_kinds(), default="mlp-features")
    train.add_argument("--preset", default=None,
                       help="MLP hidden layers: 512-256-128 (default) or 256-128-64")
    train.add_argument("--columns", default=None,
                       help="comma-separated feature columns (mlp-features)")
    train.add_argument("--classes", default="good,bad", help="class names (default good,bad)")
    train.add_argument("--size", type=int, default=None, help="binned frame size (pixel models)")
    train.add_argument("--epochs", type=int, default=None, help="CNN epochs (at most)")
    train.add_argument("--test-size", type=float, default=0.25)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--dataset", default=None)
    train.add_argument("--out", required=True, help="model folder to write")
    train.set_defaults(run=_run_train)

    filt = commands.add_parser("filter", help="apply a saved model to new scans")
    filt.add_argument("scans", nargs="+", metavar="SCAN")
    filt.add_argument("--model", required=True)
    filt.add_argument("--out", default=".", help="folder for the per-scan CSV and summary")
    filt.add_argument("--keep", default=None,
                      help="class of frames to keep (default: 'good' or the first class)")
    filt.add_argument("--dataset", default=None)
    filt.add_argument("--no-progress", action="store_true")
    filt.set_defaults(run=_run_filter)
    return parser


def _kinds():
    from .models import registry
    return registry.names()


def _run_stats(args):
    from .features import frame_stats
    table = frame_stats(list(args.scans), dataset=args.dataset)
    table.to_csv(args.out, index=False)
    print(f"{len(table)} frames of {table['scan'].nunique()} scan(s) -> {args.out}")


def _run_samples(args):
    from . import samples
    for name in samples.names():
        truth = samples.truth(name)
        print(f"{name}\t{samples.path(name)}\t{len(truth)} frames, "
              f"{int((truth['label'] == 'bad').sum())} bad")


def _open_all(paths, dataset):
    from .io import open_scan
    return [open_scan(path, dataset=dataset) for path in paths]


def read_label_csv(path, n_frames: int) -> np.ndarray:
    """Per-frame label names (``""`` = unlabeled) from a ``frame,label`` CSV."""
    try:
        table = pd.read_csv(path, keep_default_na=False, dtype={"label": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise XLabelError(f"cannot read labels: {err}", path=path) from None
    if not {"frame", "label"} <= set(table.columns):
        raise XLabelError("labels CSV needs columns frame,label", path=path)
    frames = pd.to_numeric(table["frame"], errors="coerce")
    bad = frames.isna() | (frames < 0) | (frames >= n_frames)
    if bad.any():
        raise XLabelError(f"frame numbers out of range 0..{n_frames - 1} "
                          f"(first: {table['frame'][bad].iloc[0]!r})", path=path)
    labels = np.full(n_frames, "", dtype=object)
    labels[frames.astype(np.int64).to_numpy()] = table["label"].to_numpy(dtype=object)
    return labels


def _run_train(args):
    from .models import evaluate, registry, split
    from .models.persist import save_model
    if len(args.labels) != len(args.scans):
        raise XLabelError(f"{len(args.scans)} scans but {len(args.labels)} label files "
                          "(give one labels CSV per scan, in the same order)")
    sources = _open_all(args.scans, args.dataset)
    labels = np.concatenate([read_label_csv(path, len(src))
                             for path, src in zip(args.labels, sources)])
    groups = np.concatenate([np.full(len(src), i) for i, src in enumerate(sources)])
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    cls = registry.get(args.kind)
    model = cls(**_model_params(cls, args, classes))
    data = sources if cls.uses_frames else _features(sources)
    scan_names = np.asarray([str(p) for p in args.scans], dtype=object)[groups]
    train_idx, test_idx = split(scan_names, test_size=args.test_size, seed=args.seed,
                                labels=labels)
    train_labels = labels.copy()
    train_labels[test_idx] = ""
    model.fit(data, train_labels, groups=groups)
    test_idx = test_idx[labels[test_idx] != ""]
    predicted = _predict_held_out(model, sources, data, test_idx)
    evaluation = evaluate(labels[test_idx], predicted, model.classes,
                          groups=scan_names[test_idx])
    model.info.update({"trained_on": [str(p) for p in args.scans],
                       "held_out": sorted(set(scan_names[test_idx])),
                       "held_out_frames": int(len(test_idx)),
                       "balanced_accuracy": evaluation.balanced_accuracy,
                       "worst_scan": evaluation.worst_scan,
                       "per_class": evaluation.per_class.to_dict(orient="index")})
    folder = save_model(model, args.out)
    print(f"held-out evaluation ({len(test_idx)} frames):")
    print(evaluation.summary())
    print(f"model ({model.kind}) saved to {folder}")


def _model_params(cls, args, classes) -> dict:
    """The estimator's parameters from the options given; an option it does not take is an error."""
    columns = None if args.columns is None else [c.strip() for c in args.columns.split(",")]
    given = {"preset": args.preset, "columns": columns, "size": args.size,
             "epochs": args.epochs}
    accepted = set(cls._get_param_names())
    wrong = [name for name, value in given.items() if value is not None and name not in accepted]
    if wrong:
        raise XLabelError(f"--{wrong[0]} does not apply to --kind {args.kind}")
    params = {"class_names": classes, "seed": args.seed, **given}
    return {name: value for name, value in params.items()
            if value is not None and name in accepted}


def _features(sources):
    from .features import frame_stats
    return frame_stats(sources)


def _predict_held_out(model, sources, data, indices):
    """Predictions at ``indices``; a frame model sees each held-out scan whole (models that
    judge a frame against its scan's running flux need the scan, not a subset of frames)."""
    if not model.uses_frames:
        return model.predict(_subset(sources, data, indices), progress=False)
    offsets = np.cumsum([0] + [len(s) for s in sources])
    predicted = np.empty(len(indices), dtype=object)
    for k, source in enumerate(sources):
        inside = (indices >= offsets[k]) & (indices < offsets[k + 1])
        if inside.any():
            predicted[inside] = model.predict(source, progress=False)[indices[inside] - offsets[k]]
    return predicted


def _subset(sources, data, indices):
    """Rows of the feature table, or the frames, at ``indices`` of the concatenated scans."""
    if isinstance(data, pd.DataFrame):
        return data.iloc[indices]
    offsets = np.cumsum([0] + [len(s) for s in sources])
    parts = [sources[k][indices[(indices >= offsets[k]) & (indices < offsets[k + 1])] - offsets[k]]
             for k in range(len(sources))]
    return np.concatenate([p for p in parts if len(p)]) if len(indices) else \
        np.zeros((0, *sources[0].frame_shape), sources[0].dtype)


def _run_filter(args):
    from .models.persist import load_model
    model = load_model(args.model)
    keep = args.keep or ("good" if "good" in model.classes else model.classes[0])
    if keep not in model.classes:
        raise XLabelError(f"--keep {keep!r} is not a class of the model {model.classes}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for source in _open_all(args.scans, args.dataset):
        summary = filter_scan(model, source, out, keep, progress=not args.no_progress)
        print(f"{summary['scan']}: kept {summary['kept']}, dropped {summary['dropped']} "
              f"of {summary['frames']} frames -> {summary['csv']}")


def filter_scan(model, source, out: Path, keep: str, progress=True) -> dict:
    """Predict every frame of ``source``; write ``<scan>_filter.csv`` and ``<scan>_summary.json``."""
    if model.uses_frames:
        data = source
    else:
        from .features import frame_stats
        data = frame_stats(source, progress=progress)
    proba = model.predict_proba(data, progress=progress)
    prediction = model.classes_from_proba(proba)
    table = pd.DataFrame({"frame": np.arange(len(proba)), "prediction": prediction,
                          "probability": proba.max(axis=1)})  # NaN: no probability
    for i, name in enumerate(model.classes):
        table[f"p_{name}"] = proba[:, i]
    table["reason"] = model.explain_unsafe(data)
    table["keep"] = table["prediction"] == keep
    name = Path(str(source.name)).stem or "scan"
    csv = out / f"{name}_filter.csv"
    table.to_csv(csv, index=False)
    summary = {"scan": str(source.name), "path": str(getattr(source, "path", "")),
               "frames": int(len(table)), "kept": int(table["keep"].sum()),
               "dropped": int((~table["keep"]).sum()), "keep_class": keep,
               "counts": {c: int((table["prediction"] == c).sum()) for c in model.classes},
               "csv": str(csv)}
    (out / f"{name}_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
