"""Safe model files: a folder ``NAME.xlmodel/`` with ``meta.json`` and the parameters.

scikit-learn pipelines are stored with skops and loaded only if every type in the
file is on an explicit allow-list; CNN weights are a ``state_dict`` loaded with
``torch.load(weights_only=True)``. Nothing is ever unpickled.

>>> save_model(model, "bad_frames.xlmodel")      # doctest: +SKIP
>>> model = load_model("bad_frames.xlmodel")     # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import ModelError
from .trained import KINDS, TrainedModel

__all__ = ["save_model", "load_model", "TRUSTED_TYPES", "FORMAT"]

FORMAT = "xlabel-model"
VERSION = 1
META = "meta.json"
SKOPS_FILE = "model.skops"
WEIGHTS_FILE = "weights.pt"

#: Every type a saved xlabel MLP pipeline may contain; anything else is refused.
TRUSTED_TYPES = (
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.preprocessing._label.LabelBinarizer",
    "numpy.dtype",
)


def save_model(model: TrainedModel, path) -> Path:
    """Write ``model`` to the folder ``path`` (created; an existing model folder is replaced).

    Returns the folder path.
    """
    if not isinstance(model, TrainedModel):
        raise ModelError(f"save_model() needs a TrainedModel, got {type(model).__name__}")
    folder = Path(path)
    if folder.exists() and not (folder / META).is_file():
        if folder.is_dir() and any(folder.iterdir()) or folder.is_file():
            raise ModelError("refusing to overwrite something that is not an xlabel model",
                             path=folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if model.kind == "cnn":
        from ._deps import require_torch
        require_torch().save(model.estimator.state_dict(), folder / WEIGHTS_FILE)
    else:
        import skops.io
        skops.io.dump(model.estimator, folder / SKOPS_FILE)
    (folder / META).write_text(json.dumps(_meta(model), indent=2, default=_jsonable))
    return folder


def _meta(model: TrainedModel) -> dict:
    return {"format": FORMAT, "version": VERSION, "kind": model.kind,
            "classes": list(model.classes), "columns": list(model.columns),
            "frame_shape": None if model.frame_shape is None else list(model.frame_shape),
            "preprocessing": model.preprocessing, "info": model.info}


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def load_model(path) -> TrainedModel:
    """Load a model folder written by :func:`save_model`; anything unsafe raises ModelError."""
    folder = Path(path)
    meta = _read_meta(folder)
    if meta["kind"] == "cnn":
        estimator = _load_network(folder, meta)
    else:
        estimator = _load_pipeline(folder / SKOPS_FILE)
    return TrainedModel(meta["kind"], meta["classes"], estimator, columns=meta.get("columns", ()),
                        frame_shape=meta.get("frame_shape"),
                        preprocessing=meta.get("preprocessing", {}), info=meta.get("info", {}))


def _read_meta(folder: Path) -> dict:
    if not folder.is_dir():
        raise ModelError("not an xlabel model folder (save_model writes a folder with "
                         f"{META})" if folder.exists() else "model not found", path=folder)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read {META}: {err}", path=folder) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{META} is not xlabel model metadata", path=folder)
    if meta.get("kind") not in KINDS or not isinstance(meta.get("classes"), list):
        raise ModelError(f"{META} has an unknown kind or no classes", path=folder)
    return meta


def _load_pipeline(file: Path):
    import skops.io
    try:
        untrusted = skops.io.get_untrusted_types(file=file)
    except Exception as err:  # skops raises many types for a non-skops file
        raise ModelError(f"not a valid skops file ({type(err).__name__}: {err})",
                         path=file) from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ModelError(f"refusing to load: the file contains types outside the allow-list: "
                         f"{refused}", path=file)
    try:
        return skops.io.load(file, trusted=list(untrusted))
    except Exception as err:
        raise ModelError(f"cannot load the scikit-learn model ({type(err).__name__}: {err})",
                         path=file) from None


def _load_network(folder: Path, meta: dict):
    from ._deps import require_torch
    torch = require_torch()
    from .cnn import build_network
    file = folder / WEIGHTS_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for unsafe payloads, OSError, RuntimeError...
        raise ModelError(f"refusing to load the CNN weights ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})", path=file) from None
    network = build_network(len(meta["classes"]), meta["preprocessing"].get("channels", (8, 16, 32)))
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ModelError(f"weights do not fit the network in {META}: {err}", path=file) from None
    network.eval()
    return network
