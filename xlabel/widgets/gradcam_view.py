"""``GradCAMOverlay``: a frame (log-scaled) with its class activation map on top.

Controls: opacity slider, class explained (or the predicted class), conv layer (or
"all": every conv layer combined), CAM method (LayerCAM by default: it points at local
defects where Grad-CAM does not, see :mod:`xlabel.models.gradcam`), colormap, and
prev/next through a list of frames (e.g. ``ConfusionMatrixViewer.misclassified``). Maps
are computed on demand with :func:`xlabel.models.gradcam.cam` and cached per ``(frame,
class, layer, method)``, so changing opacity or colormap never recomputes them. Needs PyTorch.

Any CNN works, a trained :class:`~xlabel.models.TrainedModel` (e.g. with
``indices=viewer.misclassified``) or, as here, a plain untrained ``torch.nn.Module``:

>>> import numpy as np, torch
>>> _ = torch.manual_seed(0)
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
...                           torch.nn.Linear(4, 2))
>>> frames = np.random.default_rng(0).poisson(100, (5, 16, 16)).astype(np.float32)
>>> overlay = GradCAMOverlay(net, frames, indices=[1, 3], classes=("good", "bad"))
>>> overlay.index, overlay.next(), overlay.index
(1, 1, 3)
>>> overlay.cam_map.shape, overlay.png[1:4]
((16, 16), b'PNG')
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from ..errors import WidgetArgumentError
from ..models._deps import require_torch
from ..models.frames import as_source
from .gallery import StatusMixin, WeakObserver, check_indices, check_lengths, class_indices, guarded
from .imaging import COLORMAPS, LRUCache, overlay_png

__all__ = ["GradCAMOverlay"]

PREDICTED = "predicted class"


class GradCAMOverlay(StatusMixin, widgets.VBox):
    """Grad-CAM heat map over a frame, with opacity, class, layer, method and colormap controls.

    Parameters
    ----------
    model : a :class:`~xlabel.models.CNNClassifier` (a frame model with a network) or a
        ``torch.nn.Module`` taking ``(n, 1, H, W)``.
    source : FrameSource or ``(n, H, W)`` array of the frames.
    indices : frames to browse (default: all).
    classes : class names for a plain module (an xlabel model or ``store`` knows its own).
    layers : conv layer names offered (default: every ``Conv2d`` of the model and "all" for
        their combined map; selected first: the method's default layer, "all" for LayerCAM).
    method : one of :data:`xlabel.models.gradcam.METHODS` (default: LayerCAM).
    store, predictions : optional label store and predictions shown in the status line.
    opacity, cmap : initial overlay opacity (0-1) and colormap (``inferno``, ``viridis``, ``jet``, ``gray``).
    size : displayed width in pixels (the PNG itself is at frame resolution).
    """

    def __init__(self, model, source, indices=None, classes=None, layers=None, method=None,
                 *, store=None, predictions=None, opacity=0.5, cmap="inferno", size=384):
        require_torch()
        from ..models import gradcam
        self._cam, self._model = gradcam.cam, model
        self._source = as_source(source)
        self._store = store
        check_lengths(source=self._source, store=store, predictions=predictions)
        network = getattr(model, "network", model)
        self._classes = self._class_names(model, classes, store, network)
        self._predictions = None if predictions is None else class_indices(
            predictions, self._classes, "predictions")
        self._maps = LRUCache(256)
        self._frames = LRUCache(64)
        self._status_text = ""
        self._indices = np.arange(len(self._source))
        self._position = 0
        method = method or gradcam.DEFAULT_METHOD
        self._build(self._layer_names(network, layers, method), method, opacity, cmap, size,
                    gradcam.METHODS)
        self._observer = WeakObserver(store, self._on_labels) if store is not None else None
        self.show(self._indices if indices is None else indices)

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _class_names(model, classes, store, network):
        for candidate in (getattr(model, "classes", None), classes,
                          None if store is None else store.classes):
            if candidate:
                return tuple(str(c) for c in candidate)
        outputs = [m.out_features for m in network.modules() if hasattr(m, "out_features")]
        return tuple(f"class {i}" for i in range(outputs[-1] if outputs else 0))

    @staticmethod
    def _layer_names(network, layers, method):
        """(layer names offered, the one selected first: the method's default layer)."""
        from ..models.gradcam import ALL_LAYERS, conv_layers, default_layer
        convs = conv_layers(network)
        if layers is None:
            first = default_layer(network, method) if convs else None
            return (convs + [ALL_LAYERS] if len(convs) > 1 else convs), first
        known = dict(network.named_modules())
        unknown = [name for name in layers if name not in known and name != ALL_LAYERS]
        if unknown or not layers:
            raise WidgetArgumentError(f"layers {unknown or '(none)'} not found in the model; "
                                      f"conv layers: {convs}")
        return list(layers), list(layers)[-1]

    def _build(self, layer_choice, method, opacity, cmap, size, methods):
        layers, first_layer = layer_choice
        if not layers:
            raise WidgetArgumentError("the model has no Conv2d layer; pass layers= with module names")
        if method not in methods:
            raise WidgetArgumentError(f"unknown CAM method {method!r}; choose one of {methods}")
        if cmap not in COLORMAPS:
            raise WidgetArgumentError(
                f"unknown colormap {cmap!r}; choose one of {tuple(COLORMAPS)}")
        self._opacity = widgets.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05,
                                            description="opacity")
        self._class = widgets.Dropdown(description="class",
                                       options=[(PREDICTED, -1)] + [(c, i) for i, c in enumerate(self._classes)])
        self._layer = widgets.Dropdown(description="layer", options=layers, value=first_layer)
        self._method = widgets.Dropdown(description="method", options=methods, value=method)
        self._cmap = widgets.Dropdown(description="colormap", options=list(COLORMAPS), value=cmap)
        for control in (self._opacity, self._class, self._layer, self._method, self._cmap):
            control.observe(lambda _: self._control_changed(), names="value")
        height = int(size * self._source.frame_shape[0] / self._source.frame_shape[1])
        self._image = widgets.Image(format="png", layout=widgets.Layout(
            width=f"{int(size)}px", height=f"{max(height, 8)}px", object_fit="contain"))
        self._prev = widgets.Button(description="◀ prev", layout=widgets.Layout(width="auto"))
        self._next = widgets.Button(description="next ▶", layout=widgets.Layout(width="auto"))
        self._prev.on_click(lambda _: self._step_clicked(-1))
        self._next.on_click(lambda _: self._step_clicked(1))
        self._where = widgets.Label()
        self._status_html = widgets.HTML()
        controls = widgets.VBox([self._opacity, self._class, self._layer, self._method, self._cmap])
        super().__init__([widgets.HBox([self._prev, self._where, self._next]),
                          widgets.HBox([self._image, controls]), self._status_html])

    # ------------------------------------------------------------------ public API
    @property
    def indices(self) -> np.ndarray:
        """The frames being browsed."""
        return self._indices.copy()

    @property
    def position(self) -> int:
        """Position of the current frame in :attr:`indices`."""
        return self._position

    @property
    def index(self) -> int | None:
        """The current frame index (None when there are no frames)."""
        return int(self._indices[self._position]) if self._indices.size else None

    @property
    def png(self) -> bytes:
        """The current overlay as RGBA PNG bytes at frame resolution."""
        return bytes(self._image.value)

    @property
    def cam_map(self) -> np.ndarray | None:
        """The current frame's CAM map ``(H, W)`` in [0, 1]."""
        return None if self.index is None else self._map(self.index)

    opacity = property(lambda self: self._opacity.value,
                       lambda self, value: setattr(self._opacity, "value", float(value)))
    layer = property(lambda self: self._layer.value,
                     lambda self, value: self._set_choice(self._layer, value, "layer"))
    method = property(lambda self: self._method.value,
                      lambda self, value: self._set_choice(self._method, value, "CAM method"))
    cmap = property(lambda self: self._cmap.value,
                    lambda self, value: self._set_choice(self._cmap, value, "colormap"))

    @property
    def target_class(self) -> str | None:
        """Class explained: a class name, or None for each frame's predicted class."""
        return None if self._class.value < 0 else self._classes[self._class.value]

    @target_class.setter
    def target_class(self, value):
        self._class.value = -1 if value is None else int(class_indices([value], self._classes, "class")[0])

    def show(self, indices):
        """Browse ``indices`` (e.g. the misclassified frames), starting at the first."""
        self._indices = check_indices(indices, len(self._source))
        self._position = 0
        self._redraw()

    def go_to(self, position: int) -> int:
        """Show the frame at ``position`` in :attr:`indices` (clamped); returns the position."""
        self._position = int(min(max(position, 0), max(self._indices.size - 1, 0)))
        self._redraw()
        return self._position

    def next(self) -> int:
        return self.go_to(self._position + 1)

    def prev(self) -> int:
        return self.go_to(self._position - 1)

    # ------------------------------------------------------------------ rendering
    @staticmethod
    def _set_choice(dropdown, value, what):
        options = [o[0] if isinstance(o, tuple) else o for o in dropdown.options]
        if value not in options:
            raise WidgetArgumentError(f"unknown {what} {value!r}; choose one of {options}")
        dropdown.value = value

    def _frame(self, index):
        frame = self._frames.get(index)
        if frame is None:
            frame = self._source[index]
            self._frames.put(index, frame)
        return frame

    def _map(self, index):
        key = (index, self._class.value, self._layer.value, self._method.value)
        heat = self._maps.get(key)
        if heat is None:
            target = None if self._class.value < 0 else self._class.value
            heat = self._cam(self._model, self._source, target=target, rows=[index],
                             layer=self._layer.value, method=self._method.value)[0]
            self._maps.put(key, heat)
        return heat

    def _redraw(self):
        self._prev.disabled = self._position <= 0
        self._next.disabled = self._position >= self._indices.size - 1
        if self.index is None:
            self._image.value = b""
            self._where.value = "no frames"
            self.set_status("no frames to show (empty selection)")
            return
        index = self.index
        self._image.value = overlay_png(self._frame(index), self._map(index), self._source,
                                        opacity=self._opacity.value, cmap=self._cmap.value)
        self._where.value = f"frame {index} ({self._position + 1} of {self._indices.size})"
        self.set_status(self._describe(index))

    def _describe(self, index):
        parts = [f"frame {index}"]
        if self._store is not None:
            parts.append(f"label {self._store.class_name(int(self._store.labels[index])) or 'unlabeled'}")
        if self._predictions is not None:
            parts.append(f"pred {self._classes[self._predictions[index]]}")
        explained = self.target_class or PREDICTED
        parts.append(f"explaining {explained} at {self.layer} ({self.method})")
        return " · ".join(parts)

    def _on_labels(self, change):
        if self.index is not None and self.index in change.indices:
            self.set_status(self._describe(self.index))

    @guarded
    def _control_changed(self):
        self._redraw()

    @guarded
    def _step_clicked(self, step):
        self.go_to(self._position + step)
