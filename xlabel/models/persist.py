"""Safe model files: a folder ``NAME.xlmodel/`` with ``meta.json`` and the parameters.

``meta.json`` names the model's registry kind, its ``__init__`` parameters and its
JSON-able fitted state; each model class writes its own parameter files through the
helpers here. scikit-learn pipelines are stored with skops and loaded only if every
type in the file is on an explicit allow-list of exactly the types xlabel saves (all
types in the file are compared, not only those skops calls untrusted); network weights
are a ``state_dict`` loaded with ``torch.load(weights_only=True)``. Nothing is ever
unpickled.

>>> import os, shutil, tempfile, xlabel
>>> from xlabel.models.mlp import train_mlp
>>> from xlabel.synth import make_scan
>>> scan = make_scan(n_frames=60, seed=1, ramp_frames=0, losses=[(20, 10)], saturation=0)
>>> table = xlabel.frame_stats(xlabel.open_scan(scan.frames), progress=False)
>>> model = train_mlp(table, scan.truth["label"], preset="256-128-64")
>>> tmp = tempfile.mkdtemp()
>>> folder = save_model(model, os.path.join(tmp, "bad_frames.xlmodel"))
>>> folder.name, sorted(os.listdir(folder))
('bad_frames.xlmodel', ['meta.json', 'model.skops'])
>>> loaded = load_model(folder)
>>> type(loaded).__name__, bool((loaded.predict(table) == model.predict(table)).all())
('FeatureMLP', True)
>>> shutil.rmtree(tmp)
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from ..errors import ModelArgumentError, ModelError
from . import registry

__all__ = ["save_model", "load_model", "dump_pipeline", "load_pipeline", "save_weights",
           "load_weights", "TRUSTED_TYPES", "FORMAT"]

FORMAT = "xlabel-model"
VERSION = 2
META = "meta.json"
SKOPS_FILE = "model.skops"
WEIGHTS_FILE = "weights.pt"

#: Every type a saved xlabel MLP pipeline contains; a file holding anything else is refused.
TRUSTED_TYPES = frozenset({
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.preprocessing._label.LabelBinarizer",
    "numpy.ndarray", "numpy.dtype", "numpy.random.mtrand.RandomState",
    "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32", "numpy.bool_", "numpy.bool",
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.NoneType",
})


def save_model(model, path) -> Path:
    """Write ``model`` (a fitted xlabel model) to the folder ``path``; returns the folder.

    The folder is created; an existing model folder is replaced, anything else refused.
    """
    from .base import Model
    if not isinstance(model, Model) or not model.kind:
        raise ModelArgumentError(
            f"save_model() needs a registered xlabel model, got {type(model).__name__}")
    model._require_fitted()
    folder = Path(path)
    if folder.exists() and not (folder / META).is_file():
        if folder.is_dir() and any(folder.iterdir()) or folder.is_file():
            raise ModelError("refusing to overwrite something that is not an xlabel model",
                             path=folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    state = model._save_state(folder)
    meta = {"format": FORMAT, "version": VERSION, "kind": model.kind,
            "params": model.get_params(deep=False), "state": state, "info": model.info}
    (folder / META).write_text(json.dumps(meta, indent=2, default=_jsonable))
    return folder


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def load_model(path):
    """Load a model folder written by :func:`save_model`; anything unsafe raises ModelError."""
    folder = Path(path)
    meta = _read_meta(folder)
    cls = registry.get(meta["kind"])
    params = {name: _tuples(value) for name, value in meta["params"].items()}
    try:
        model = cls(**params)
    except TypeError as err:
        raise ModelError(f"{META} has parameters the {meta['kind']!r} model does not take: "
                         f"{err}", path=folder) from None
    try:
        model._load_state(folder, meta["state"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{META} state does not fit a {meta['kind']!r} model: "
                         f"{type(err).__name__}: {err}", path=folder) from None
    model.info_ = meta.get("info") or {}
    return model


def _tuples(value):
    """JSON lists back to the tuples model parameters are given as."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


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
    if meta.get("version") != VERSION:
        raise ModelError(f"model format version {meta.get('version')!r} is not {VERSION}: "
                         "retrain the model with this xlabel", path=folder)
    if meta.get("kind") not in registry.names() or not isinstance(meta.get("params"), dict) \
            or not isinstance(meta.get("state"), dict):
        raise ModelError(f"{META} has an unknown kind or no parameters", path=folder)
    return meta


# ---------------------------------------------------------------- scikit-learn pipelines

def dump_pipeline(pipeline, folder: Path):
    """Write a scikit-learn pipeline to ``folder/model.skops``."""
    import skops.io
    skops.io.dump(pipeline, Path(folder) / SKOPS_FILE)


def load_pipeline(folder: Path):
    """Load ``folder/model.skops`` if every type in it is in :data:`TRUSTED_TYPES`."""
    import skops.io
    file = Path(folder) / SKOPS_FILE
    try:
        found = skops_types(file) | set(skops.io.get_untrusted_types(file=file))
    except Exception as err:  # skops and zipfile raise many types for a non-skops file
        raise ModelError(f"not a valid skops file ({type(err).__name__}: {err})",
                         path=file) from None
    refused = sorted(found - TRUSTED_TYPES)
    if refused:
        raise ModelError(f"refusing to load: the file contains types outside the allow-list: "
                         f"{refused}", path=file)
    try:
        return skops.io.load(file, trusted=sorted(found))
    except Exception as err:
        raise ModelError(f"cannot load the scikit-learn model ({type(err).__name__}: {err})",
                         path=file) from None


def skops_types(file: Path) -> set:
    """Every ``module.Class`` (and ``module.function``) named in a skops file's schema.

    skops' own ``get_untrusted_types`` leaves out the types it trusts by default (all of
    scikit-learn), so it cannot tell an xlabel pipeline from any other estimator.
    """
    with zipfile.ZipFile(file) as archive:
        schema = json.loads(archive.read("schema.json"))
    found = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node and "__module__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            if "module_path" in node and "function" in node:
                found.add(f"{node['module_path']}.{node['function']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


# ---------------------------------------------------------------- torch weights

def save_weights(network, folder: Path):
    """Write a ``torch.nn.Module``'s ``state_dict`` to ``folder/weights.pt``."""
    from ._deps import require_torch
    require_torch().save(network.state_dict(), Path(folder) / WEIGHTS_FILE)


def load_weights(network, folder: Path):
    """Fill ``network`` from ``folder/weights.pt`` (``weights_only=True``: tensors, no code)."""
    from ._deps import require_torch
    torch = require_torch()
    file = Path(folder) / WEIGHTS_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for unsafe payloads, OSError, RuntimeError...
        raise ModelError(f"refusing to load the network weights ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})", path=file) from None
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ModelError(f"weights do not fit the network in {META}: {err}", path=file) from None
    network.eval()
    return network
