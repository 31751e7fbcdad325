"""Bad arguments raise ``ValueError`` kinds that are still xlabel errors.

Code outside xlabel catches the built-in kinds (``except ValueError``); a notebook
catches every xlabel error with ``except XLabelError``. Both must work, and the
message must still name the frame where one is involved.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlabel.errors import LabelError, ModelError, XLabelError
from xlabel.io.base import ArraySource
from xlabel.labels import LabelStore


def _frames(n=6, shape=(8, 10)):
    return np.random.default_rng(0).poisson(20, size=(n, *shape)).astype(np.float32)


def _features(n=6):
    return pd.DataFrame({"frame": np.arange(n), "mean": np.linspace(1.0, 2.0, n)})


def _store(n=6):
    return LabelStore(n, classes=("good", "bad"))


def _raises_value_error(call, kind=XLabelError):
    with pytest.raises(ValueError) as info:
        call()
    assert isinstance(info.value, kind), type(info.value).__mro__
    return info.value


# --- LabelStore ---------------------------------------------------------------------

def test_label_store_unknown_class_is_value_error():
    store = _store()
    err = _raises_value_error(lambda: store.assign([0, 1], "cosmic"), LabelError)
    assert "cosmic" in str(err)
    assert (store.labels == -1).all()   # nothing changed


def test_label_store_frame_out_of_range_is_value_error():
    store = _store()
    err = _raises_value_error(lambda: store.assign([2, 6], "good"), LabelError)
    assert err.frame == 6 and "frame 6" in str(err)


def test_label_store_bad_classes_argument_is_value_error():
    _raises_value_error(lambda: LabelStore(3, classes=()), LabelError)


# --- widgets --------------------------------------------------------------------------

def test_flux_scatter_bad_axis_is_value_error():
    from xlabel.widgets import FluxScatter
    _raises_value_error(lambda: FluxScatter(_store(), _features(), y="no_such_column"), LabelError)


def test_flux_scatter_store_of_other_length_is_value_error():
    from xlabel.widgets import FluxScatter
    _raises_value_error(lambda: FluxScatter(_store(5), _features(6)), LabelError)


def test_frame_gallery_bad_arguments_are_value_errors():
    from xlabel.widgets import FrameGallery
    source = ArraySource(_frames())
    _raises_value_error(lambda: FrameGallery(source, per_page=0))
    _raises_value_error(lambda: FrameGallery(source, scale="cubic"))
    err = _raises_value_error(lambda: FrameGallery(source, indices=[1, 9]))
    assert err.frame == 9


def test_cluster_comparison_bad_clustering_is_value_error():
    from xlabel.widgets import ClusterComparison
    ids = np.zeros(6, dtype=np.int64)
    _raises_value_error(lambda: ClusterComparison(_features(), ids, ids[:4]), LabelError)
    _raises_value_error(lambda: ClusterComparison(_features(), ids, ids, names=("a", "a")))


def test_confusion_matrix_viewer_bad_arguments_are_value_errors():
    from xlabel.widgets import ConfusionMatrixViewer
    # labels as indices need class names
    _raises_value_error(lambda: ConfusionMatrixViewer([0, 1, 0], [0, 1, 1]))
    viewer = ConfusionMatrixViewer(["good", "bad", "good"], ["good", "bad", "bad"],
                                   classes=("good", "bad"))
    _raises_value_error(lambda: viewer.cell_indices("good", "cosmic"))


def test_gradcam_overlay_bad_arguments_are_value_errors():
    torch = pytest.importorskip("torch")
    from xlabel.widgets import GradCAMOverlay

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
            self.head = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    source = ArraySource(_frames())
    _raises_value_error(lambda: GradCAMOverlay(Net(), source, method="magic"))
    _raises_value_error(lambda: GradCAMOverlay(Net(), source, cmap="no_such_map"))
    _raises_value_error(lambda: GradCAMOverlay(Net(), source, layers=["no_such_layer"]))


def test_review_queue_bad_suspects_are_value_errors():
    from xlabel.widgets import ReviewQueue
    store = _store()
    _raises_value_error(lambda: ReviewQueue(store, pd.DataFrame({"frame": [1, 2]})))
    _raises_value_error(lambda: ReviewQueue(store, pd.DataFrame({"row": [1, 60]})))
    _raises_value_error(lambda: ReviewQueue(None, pd.DataFrame({"row": [1]})), LabelError)


def test_review_queue_state_errors_stay_plain_xlabel_errors():
    """Nothing to undo is a state, not an argument: not a ValueError."""
    from xlabel.widgets import ReviewQueue
    queue = ReviewQueue(_store(), pd.DataFrame({"row": [1, 2]}))
    with pytest.raises(XLabelError) as info:
        queue.undo()
    assert not isinstance(info.value, ValueError)


# --- models ---------------------------------------------------------------------------

def test_unknown_model_kind_is_value_error():
    from xlabel.models import registry
    err = _raises_value_error(lambda: registry.get("no-such-kind"), ModelError)
    assert "no-such-kind" in str(err)


def test_bad_mlp_preset_is_value_error():
    from xlabel.models.mlp import build_pipeline
    _raises_value_error(lambda: build_pipeline("1-2-3"), ModelError)
    _raises_value_error(lambda: build_pipeline((64, 0)), ModelError)


def test_bad_split_arguments_are_value_errors():
    from xlabel.models.split import split
    _raises_value_error(lambda: split(["a", "b", "c"], test_size=1.5), ModelError)
