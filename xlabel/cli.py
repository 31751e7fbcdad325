"""The ``xlabel`` command line: per-frame statistics, bundled samples, training, filtering.

    xlabel stats SCAN... --out stats.csv
    xlabel samples
    xlabel train SCAN... --labels LABELS.csv... [--kind mlp-features] [--preset NAME] --out MODEL
    xlabel train SCAN... --labels TAGS.csv... [--kind tags-joint] [--tags a,b] --out MODEL
    xlabel filter SCAN... --model MODEL [--out OUT] [--workers N | --scheduler ADDRESS]
    xlabel filter SCAN... --model MODEL --audit N     (then judge and: xlabel audit AUDIT.csv...)
    xlabel review SCAN... --labels LABELS.csv... --out suspects.csv

Errors are printed as one line (``xlabel: error: ...``) with exit status 2, no traceback;
warnings as ``xlabel: warning: ...`` lines on stderr. The help texts below are plain text
(``--help`` prints them as written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MissingDependencyError, ScanError, XLabelError, missing_file_message
from .label_csv import read_label_csv

__all__ = ["main", "read_label_csv", "filter_scan"]

#: ``xlabel train`` warns when a labeled class has a training-set recall below this.
SEPARATION_RECALL = 0.95

DESCRIPTION = """\
xlabel: find the bad frames of X-ray detector scans (shutter closed, beam lost, darks,
saturation) from per-frame statistics or pixels, label them, train a classifier and
filter new scans with it.

A SCAN is an HDF5/NeXus master file (frames found automatically; --dataset to choose),
a .npy stack, a TIFF/CBF/EDF image series (a glob in quotes or a folder).
"""

EXAMPLES = """\
examples:
  xlabel samples
  xlabel stats data_samples/scan_a/scan_a_master.h5 --out stats.csv
  xlabel train scan_a_master.h5 scan_b_master.h5 --labels a.csv b.csv --out model
  xlabel filter new_scan_master.h5 --model model --out filtered
"""

TRAIN_HELP = """\
Train a classifier of frames on labeled scans and print its held-out evaluation.

Each SCAN comes with one labels CSV (columns frame,label; a LabelStore export works too),
given in the same order. Every frame must be labeled with one of --classes, once; a CSV
that labels only some frames needs --allow-partial. With several scans, whole scans are
held out for the evaluation; with one scan, contiguous blocks of frames.

xlabel prints a warning when the model does not even separate the classes on its own
training frames (the features cannot tell them apart: choose other --columns or --kind).
"""

TRAIN_EXAMPLES = """\
examples:
  xlabel train k11-18014.nxs --labels k11_labels.csv --out model
  xlabel train a.h5 b.h5 --labels a.csv b.csv --preset 256-128-64 --out model
  xlabel train a.h5 --labels a.csv --kind cnn --size 64 --epochs 20 --out cnn_model
  xlabel train a.h5 --labels some_frames.csv --allow-partial --out model
"""

FILTER_HELP = """\
Apply a saved model to new scans and write, per scan, into --out:

  <scan>_filter.csv     one row per frame: frame, prediction (class), probability (of the
                        prediction), p_<class> for every class, keep (True/False), reason
                        (why a frame is dropped: "model says bad", "undefined features: no
                        beam", "undefined features: no valid pixels"...; empty when kept)
  <scan>_summary.json   frames, kept, dropped, counts per class and per reason, outputs
  <scan>_filtered.h5    HDF5 scans only: the kept frames as an HDF5 virtual dataset (no
                        frame is copied: it maps to the original data files) with the
                        master's metadata; per-frame metadata (image_key, angles...) keeps
                        the kept frames' rows. Any HDF5 reader opens it, e.g.
                        xlabel.open_scan("<scan>_filtered.h5").

Frames whose features are undefined (no valid pixel, no beam on the whole scan) are never
kept: the model is not asked to guess.
"""

FILTER_EXAMPLES = """\
examples:
  xlabel filter new_master.h5 --model model --out filtered
  xlabel filter day1/*_master.h5 --model model --out filtered --workers 8
  xlabel filter day1/*_master.h5 --model model --out filtered --scheduler tcp://10.0.0.5:8786
"""


def main(argv=None) -> int:
    """Entry point of the ``xlabel`` command (``xlabel = "xlabel.cli:main"``)."""
    args = _parser().parse_args(argv)
    try:
        _check_inputs(args)
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return args.run(args) or 0
    except XLabelError as err:
        print(f"xlabel: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xlabel: interrupted", file=sys.stderr)
        return 130


def warn(message: str) -> None:
    """One ``xlabel: warning: ...`` line on stderr."""
    print(f"xlabel: warning: {message}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Python warnings (held-out split, NaN rows, scikit-learn) as ``xlabel: warning:`` lines."""
    name = "" if issubclass(category, UserWarning) and category.__module__.startswith("xlabel") \
        else f"{category.__name__}: "
    warn(f"{name}{message}")


def _check_inputs(args):
    """Missing input files: one error with the absolute path and the working directory."""
    for scan in getattr(args, "scans", []):
        text = str(scan)
        if not any(ch in text for ch in "*?[") and not os.path.exists(text):
            raise ScanError(missing_file_message("scan", text))
    for csv in getattr(args, "labels", None) or []:
        if not os.path.exists(csv):
            raise XLabelError(missing_file_message("labels CSV", csv))
    model = getattr(args, "model", None)
    if model is not None and not os.path.exists(model):
        raise XLabelError(missing_file_message("model", model))


def _command(commands, name, help_text, description, examples):
    return commands.add_parser(name, help=help_text, description=description, epilog=examples,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _scans_argument(parser, what):
    parser.add_argument("scans", nargs="+", metavar="SCAN",
                        help=f"{what}: HDF5/NeXus master file, .npy stack, or an image "
                             "series (quoted glob or folder)")
    parser.add_argument("--dataset", default=None,
                        help="HDF5 dataset of the frames (default: found automatically, "
                             "e.g. the NeXus signal or /entry/data/data)")


def _progress_argument(parser):
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (for logs and batch jobs)")


def _compute_arguments(parser):
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="threads that read and reduce frames on this machine "
                             "(default: every usable core)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="address of a running Dask scheduler (e.g. tcp://host:8786): "
                             "frame statistics run on its cluster, one task per ~64 MB of "
                             "frames; the scan files must be readable from the workers")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlabel", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stats = _command(commands, "stats", "per-frame statistics of scans as CSV",
                     "Per-frame statistics (xlabel.features.frame_stats) of scans as one CSV: "
                     "one row per frame,\ncolumns scan, frame, mean, ..., flux_local, "
                     "no_beam, problem.",
                     "example:\n  xlabel stats scan_master.h5 --out stats.csv")
    _scans_argument(stats, "scan(s) to describe")
    stats.add_argument("--out", required=True, help="CSV file to write")
    _compute_arguments(stats)
    _progress_argument(stats)
    stats.set_defaults(run=_run_stats)

    samples = _command(commands, "samples", "list the bundled sample scans",
                       "List the bundled synthetic sample scans: name, master file, frames.",
                       "example:\n  xlabel samples")
    samples.set_defaults(run=_run_samples)

    train = _command(commands, "train", "train a classifier on labeled scans", TRAIN_HELP,
                     TRAIN_EXAMPLES)
    _scans_argument(train, "labeled scan(s)")
    train.add_argument("--labels", nargs="+", required=True, metavar="LABELS.csv",
                       help="one CSV (columns frame,label, or frame + one 0/1 column per "
                            "tag) per scan, in the same order")
    train.add_argument("--allow-partial", action="store_true",
                       help="accept labels CSVs that leave frames unlabeled (train and "
                            "evaluate on the labeled frames only)")
    train.add_argument("--kind", choices=_kinds(), default=None,
                       help="mlp-features (default for frame,label CSVs): an MLP on per-frame "
                            "statistics, fast, any frame shape; mlp-pixels: an MLP on binned "
                            "frames; cnn: a small CNN on binned frames (needs torch); "
                            "tags-joint (default for CSVs with 0/1 tag columns), tags-cnn, "
                            "tags-polar: multi-label tag models. Pixel models need one frame "
                            "shape")
    train.add_argument("--tags", default=None,
                       help="comma-separated tag columns (default: every 0/1 column)")
    train.add_argument("--preset", default=None,
                       help="MLP hidden layers: 512-256-128 (default for mlp-features) or "
                            "256-128-64 (default for mlp-pixels)")
    train.add_argument("--columns", default=None,
                       help="comma-separated feature columns for mlp-features (default: "
                            f"{','.join(_default_columns())}; xlabel stats lists all)")
    train.add_argument("--classes", default="good,bad",
                       help="class names, comma-separated (default good,bad)")
    train.add_argument("--size", type=int, default=None,
                       help="binned frame size of pixel models (default 32 mlp-pixels, 64 cnn)")
    train.add_argument("--epochs", type=int, default=None,
                       help="CNN epochs (at most; default: the model's, 30)")
    train.add_argument("--test-size", type=float, default=0.25,
                       help="fraction of scans (or blocks of one scan) held out (default 0.25)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--out", required=True, help="model folder to write")
    _compute_arguments(train)
    _progress_argument(train)
    train.set_defaults(run=_run_train)

    filt = _command(commands, "filter", "apply a saved model to new scans", FILTER_HELP,
                    FILTER_EXAMPLES)
    _scans_argument(filt, "scan(s) to filter")
    filt.add_argument("--model", required=True,
                      help="model folder written by xlabel train (or xlabel.models.save_model)")
    filt.add_argument("--out", default=".",
                      help="folder for the outputs (default: the working directory)")
    filt.add_argument("--keep", default=None,
                      help="class of frames to keep (default: 'good' or the first class)")
    filt.add_argument("--no-filtered-scan", action="store_true",
                      help="do not write <scan>_filtered.h5")
    _compute_arguments(filt)
    _progress_argument(filt)
    filt.add_argument("--audit", type=int, default=None, metavar="N",
                      help="also write <scan>_audit.csv: a seeded sample of N dropped and N kept "
                           "frames to judge (then: xlabel audit <scan>_audit.csv)")
    filt.add_argument("--seed", type=int, default=0, help="seed of the --audit sample")
    filt.set_defaults(run=_run_filter)

    audit = _command(commands, "audit", "false-reject/false-keep rates of judged audits",
                     "Summarise judged audit samples written by xlabel filter --audit N: fill "
                     "the\n'judged' column with the true class of each frame, then run this. "
                     "Prints the\nfalse-reject and false-keep rates with exact 95 % intervals "
                     "and writes\n<audit>.summary.json.",
                     "example:\n  xlabel audit filtered/scan_audit.csv")
    audit.add_argument("audits", nargs="+", metavar="AUDIT.csv",
                       help="judged audit CSV(s) written by xlabel filter --audit")
    audit.set_defaults(run=_run_audit)

    review = _command(commands, "review", "rank frames whose label is probably wrong",
                      "Rank labeled frames whose label is probably wrong (out-of-fold "
                      "probabilities,\nfolds keep whole scans apart; confident learning). "
                      "Writes frame, scan, label,\nsuggested, score; most suspicious first.",
                      "example:\n  xlabel review a.h5 b.h5 --labels a.csv b.csv --out suspects.csv")
    _scans_argument(review, "labeled scan(s), at least two")
    review.add_argument("--labels", nargs="+", required=True, metavar="LABELS.csv",
                        help="one CSV (columns frame,label) per scan, in the same order")
    review.add_argument("--allow-partial", action="store_true",
                        help="accept labels CSVs that leave frames unlabeled")
    review.add_argument("--classes", default="good,bad",
                        help="class names, comma-separated (default good,bad)")
    review.add_argument("--out", required=True, help="suspects CSV to write")
    review.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _compute_arguments(review)
    _progress_argument(review)
    review.set_defaults(run=_run_review)
    return parser


def _default_columns():
    from .models.mlp import DEFAULT_COLUMNS
    return DEFAULT_COLUMNS


def _kinds():
    from .models import registry
    return registry.names()


def _run_stats(args):
    table = _features(_open_all(args.scans, args.dataset), args)
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


@contextmanager
def _dask_client(address):
    """A ``distributed.Client`` connected to ``address`` (None: no client)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise MissingDependencyError("--scheduler needs dask.distributed: "
                                     "pip install 'xlabel[dask]'") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as err:
        raise XLabelError(f"cannot connect to the Dask scheduler {address!r}: {err}") from None
    try:
        yield client
    finally:
        client.close()


def _features(sources, args):
    """frame_stats of the scans, on this machine (``--workers``) or a Dask cluster."""
    from .features import frame_stats
    with _dask_client(args.scheduler) as client:
        return frame_stats(sources, workers=args.workers, client=client,
                           progress=not args.no_progress)


def _labeled_scans(args):
    """The opened ``args.scans`` and their concatenated labels from ``args.labels``."""
    if len(args.labels) != len(args.scans):
        raise XLabelError(f"{len(args.scans)} scans but {len(args.labels)} label files "
                          "(give one labels CSV per scan, in the same order)")
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    sources = _open_all(args.scans, args.dataset)
    labels = np.concatenate([read_label_csv(path, len(src), classes, args.allow_partial)
                             for path, src in zip(args.labels, sources)])
    return sources, labels


def _run_train(args):
    from .models import evaluate, registry, split
    from .models.persist import save_model
    from . import _cli_tags
    if args.kind is None:
        has_tags = _cli_tags.csv_has_tags(args.labels[0])
        args.kind = _cli_tags.DEFAULT_TAG_KIND if has_tags else "mlp-features"
    if args.kind.startswith("tags-"):
        if len(args.labels) != len(args.scans):
            raise XLabelError(f"{len(args.scans)} scans but {len(args.labels)} label files "
                              "(give one labels CSV per scan, in the same order)")
        return _cli_tags.run_train(args, registry.get(args.kind),
                                   _open_all(args.scans, args.dataset))
    if args.tags is not None:
        raise XLabelError(f"--tags applies to the tags-* kinds, not --kind {args.kind}")
    sources, labels = _labeled_scans(args)
    groups = np.concatenate([np.full(len(src), i) for i, src in enumerate(sources)])
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    cls = registry.get(args.kind)
    model = cls(**_model_params(cls, args, classes))
    data = sources if cls.uses_frames else _features(sources, args)
    scan_names = np.asarray([str(p) for p in args.scans], dtype=object)[groups]
    train_idx, test_idx = split(scan_names, test_size=args.test_size, seed=args.seed,
                                labels=labels)
    train_labels = labels.copy()
    train_labels[test_idx] = ""
    from .models.mlp import fit_progress
    with fit_progress(not args.no_progress):
        model.fit(data, train_labels, groups=groups)
    train_idx = train_idx[labels[train_idx] != ""]
    _warn_unseparated(model, labels[train_idx],
                      _predict_held_out(model, sources, data, train_idx))
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


def _warn_unseparated(model, truth, predicted):
    """Warn when a class is not even recognised on the frames the model was trained on."""
    for name in model.classes:
        mine = truth == name
        if not mine.any():
            continue
        hits = int((predicted[mine] == name).sum())
        if hits / mine.sum() < SEPARATION_RECALL:
            what = (f"the features {list(model.columns_)}" if not model.uses_frames
                    else f"the {model.kind} model")
            warn(f"{what} do not separate the labeled classes on the training data: only "
                 f"{hits} of {int(mine.sum())} training frames labeled {name!r} are "
                 f"predicted {name!r} (recall {hits / mine.sum():.2f} < "
                 f"{SEPARATION_RECALL}); try other --columns or --kind, or check the labels")


def _run_review(args):
    from .review import find_label_issues
    sources, labels = _labeled_scans(args)
    table = _features(sources, args)
    table["scan"] = np.concatenate([np.full(len(src), str(path), dtype=object)
                                    for path, src in zip(args.scans, sources)])
    issues = find_label_issues(table, labels, seed=args.seed)
    issues[["frame", "scan", "label", "suggested", "score"]].to_csv(args.out, index=False)
    print(f"{int(issues['flagged'].sum())} of {len(issues)} labeled frames flagged as "
          f"probably mislabeled -> {args.out}")


def _model_params(cls, args, classes) -> dict:
    """The estimator's parameters from the options given; an option it does not take is an error."""
    columns = None if args.columns is None else [c.strip() for c in args.columns.split(",")]
    given = {"preset": args.preset, "columns": columns, "size": args.size,
             "epochs": args.epochs}
    accepted = set(cls._get_param_names())
    wrong = [name for name, value in given.items() if value is not None and name not in accepted]
    if wrong:
        raise XLabelError(f"--{wrong[0]} does not apply to --kind {args.kind}")
    params = {"class_names": classes, "seed": args.seed, "progress": not args.no_progress,
              **given}
    return {name: value for name, value in params.items()
            if value is not None and name in accepted}


def _predict_held_out(model, sources, data, indices):
    """Predictions at ``indices`` of the concatenated scans; a frame model sees each scan
    whole (models that judge a frame against its scan's running flux need the scan, not a
    subset of frames). Used for the held-out evaluation and the training-set check."""
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
    if model.kind.startswith("tags-"):
        return _filter_tags(args, model)
    keep = args.keep or ("good" if "good" in model.classes else model.classes[0])
    if keep not in model.classes:
        raise XLabelError(f"--keep {keep!r} is not a class of the model {model.classes}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _dask_client(args.scheduler) as client:
        for source in _open_all(args.scans, args.dataset):
            summary = filter_scan(model, source, out, keep, progress=not args.no_progress,
                                  workers=args.workers, client=client,
                                  filtered_scan=not args.no_filtered_scan)
            print(f"{summary['scan']}: kept {summary['kept']}, dropped {summary['dropped']} "
                  f"of {summary['frames']} frames -> {summary['csv']}"
                  + (f", {summary['filtered_scan']}" if summary["filtered_scan"] else ""))
            if args.audit is not None:
                _write_audit(args, model, keep, summary)


def _write_audit(args, model, keep, summary):
    from .review import audit_sample
    table = pd.read_csv(summary["csv"], keep_default_na=False)
    sample = audit_sample(table, args.audit, keep, model.classes, scan=summary["scan"],
                          seed=args.seed)
    path = Path(summary["csv"]).with_name(Path(summary["csv"]).name
                                          .replace("_filter.csv", "_audit.csv"))
    sample.to_csv(path, index=False)
    print(f"audit sample: {int((~sample['keep']).sum())} dropped, {int(sample['keep'].sum())} "
          f"kept frames to judge -> {path}")


def _run_audit(args):
    from .review import audit_summary
    for path in args.audits:
        try:
            audit = pd.read_csv(path, keep_default_na=False, dtype={"judged": str})
        except (OSError, ValueError, pd.errors.ParserError) as err:
            raise XLabelError(f"cannot read the audit: {err}", path=path) from None
        missing = {"keep", "keep_class", "classes", "judged"} - set(audit.columns)
        if missing:
            raise XLabelError(f"not an audit CSV: no columns {sorted(missing)}", path=path)
        audit["keep"] = audit["keep"].astype(str).str.lower() == "true"
        summary = audit_summary(audit, where=str(path))
        out = Path(path).with_suffix(".summary.json")
        out.write_text(json.dumps(summary, indent=2))
        for name in ("false_reject", "false_keep"):
            entry = summary[name]
            rate = "n/a" if entry["rate"] is None else (
                f"{entry['rate']:.1%} (95% CI {entry['ci95'][0]:.1%}-{entry['ci95'][1]:.1%})")
            print(f"{path}: {name.replace('_', '-')} {rate}: {entry['errors']} of "
                  f"{entry['judged']} judged")
        print(f"{summary['not_judged']} frame(s) not judged yet -> {out}")


def _filter_tags(args, model):
    from ._cli_tags import filter_tags
    if args.keep is not None:
        raise XLabelError("--keep does not apply to a tag model: it predicts tags, not a class")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for source in _open_all(args.scans, args.dataset):
        summary = filter_tags(model, source, out, progress=not args.no_progress)
        print(f"{summary['scan']}: {summary['frames']} frames, tagged {summary['counts']} "
              f"-> {summary['csv']}")


def filter_scan(model, source, out: Path, keep: str, progress=True, workers=None, client=None,
                filtered_scan=True) -> dict:
    """Predict every frame of ``source``; write ``<scan>_filter.csv``, ``<scan>_summary.json``
    and (HDF5 scans, ``filtered_scan``) ``<scan>_filtered.h5``; return the summary dict."""
    if model.uses_frames:
        table = None
        proba = model.predict_proba(source, progress=progress)
    else:
        from .features import frame_stats
        table = frame_stats(source, progress=progress, workers=workers, client=client)
        proba = model.predict_proba(table, progress=progress)
    result = decide(model, proba, keep, source if table is None else table)
    name = Path(str(source.name)).stem or "scan"
    csv = out / f"{name}_filter.csv"
    result.to_csv(csv, index=False)
    summary = {"scan": str(source.name), "path": str(getattr(source, "path", "")),
               "frames": int(len(result)), "kept": int(result["keep"].sum()),
               "dropped": int((~result["keep"]).sum()), "keep_class": keep,
               "counts": {c: int((result["prediction"] == c).sum()) for c in model.classes},
               "reasons": {str(k): int(v) for k, v in
                           result.loc[~result["keep"], "reason"].value_counts().items()},
               "csv": str(csv), "filtered_scan": _write_filtered(source, result, out, name,
                                                                 filtered_scan)}
    (out / f"{name}_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def decide(model, proba, keep: str, data) -> pd.DataFrame:
    """Per-frame decision table: prediction, probabilities, keep and the reason of a drop.

    ``data``: what the model was given (a ``frame_stats`` table, or frames). Frames the
    model cannot judge (features NaN: no valid pixel, no beam on the whole scan...) get
    the model's unsafe class, NaN probabilities and are never kept; their reason says
    "undefined features: <why> (<the NaN columns>)". Frames dropped by the model read
    "model says <class>" (plus "; no beam" where ``no_beam`` is 1).
    """
    proba = np.asarray(proba, dtype=np.float64)
    prediction = model.classes_from_proba(proba)
    unsafe = np.asarray(model.explain_unsafe(data), dtype=object)
    result = pd.DataFrame({"frame": np.arange(len(proba)), "prediction": prediction,
                           "probability": proba.max(axis=1)})  # NaN: no probability
    for i, name in enumerate(model.classes):
        result[f"p_{name}"] = proba[:, i]
    result["keep"] = (prediction == keep) & (unsafe == "")
    table = data if isinstance(data, pd.DataFrame) else pd.DataFrame(index=range(len(proba)))
    no_beam = table.get("no_beam", pd.Series(0.0, index=table.index)).to_numpy() == 1
    problem = table.get("problem", pd.Series("", index=table.index)).to_numpy()
    said = "model says " + prediction.astype(str)
    reason = np.where(no_beam, said + "; no beam", said).astype(object)
    for i in np.flatnonzero(unsafe != ""):
        why = ("no valid pixels" if problem[i] == "no valid pixels"
               else "no beam" if no_beam[i] else "NaN features")
        reason[i] = f"undefined features: {why} ({str(unsafe[i]).split(': ', 1)[-1]})"
    result["reason"] = np.where(result["keep"], "", reason)
    return result


def _write_filtered(source, result, out, name, wanted):
    if not wanted or not getattr(source, "segments", None):
        return None
    from .io.filtered import write_filtered_scan
    return str(write_filtered_scan(source, result["keep"].to_numpy(), out / f"{name}_filtered.h5"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
