# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Find local detector defects: when pixels beat features
#
# Notebook 4's feature MLP is perfect on flux problems (shutter ramp, beam loss): a bad frame
# is *dim* and one number per frame says so. Now take defects that do not change the flux: a
# readout module that reads 0, a bright streak of parasitic scattering, a corner shadowed to
# 10 %. In this notebook you will:
#
# 1. simulate scans with such **local defects**, at exposures 30x apart, and hold out whole
#    scans whose exposure no training scan has,
# 2. see the **feature MLP fail** and a **CNN on the pixels win** (per-class recall and
#    precision, the worst scan),
# 3. check **where the CNN looks** with class activation maps, at raw frame resolution with
#    the detector's invalid pixels shown, and measure how often the map points at the defect.
#
# Everything is small (64x64 frames, a few epochs) so the notebook runs in under a minute.

# %%
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from threadpoolctl import threadpool_limits

import xlabel
from xlabel import models, synth
from xlabel.models.gradcam import map_peaks, pointing_score
from xlabel.widgets import GradCAMOverlay

# Small scikit-learn MLPs train fastest on one BLAS thread (two threads fight on a busy laptop).
threadpool_limits(1)

task = synth.make_defect_task(n_train=8, n_test=3, n_frames=60, frame_shape=(64, 64), seed=0,
                              defect_fraction=0.2)
print(task)
frames_per_kind = pd.DataFrame({scan.name: scan.truth["reason"].replace("", "good").value_counts()
                                for scan in task.train + task.test}).T.fillna(0).astype(int)
frames_per_kind.assign(level=[round(scan.params["level"], 1) for scan in task.train + task.test])

# %% [markdown]
# ## What a local defect looks like
#
# One frame of each kind from a training scan, log-scaled; the green box is the defect (the
# generator's ground truth). Its mean flux is within the ±8 % frame-to-frame jitter of the
# scan: no flux threshold can see it. Gray pixels are invalid (detector gaps, flagged pixels).

# %%
def show_frames(images, titles, boxes, peaks=None, height=280):
    """Images side by side (NaN = invalid pixel, drawn gray), defect boxes, map maxima."""
    figure = make_subplots(rows=1, cols=len(images), subplot_titles=titles, horizontal_spacing=0.02)
    for k, (image, box) in enumerate(zip(images, boxes), start=1):
        figure.add_trace(go.Heatmap(z=image, colorscale="Inferno", showscale=False), row=1, col=k)
        y0, y1, x0, x1 = box
        figure.add_shape(type="rect", x0=x0 - 0.5, x1=x1 - 0.5, y0=y0 - 0.5, y1=y1 - 0.5,
                         line=dict(color="lime", width=2), row=1, col=k)
        if peaks is not None:
            figure.add_trace(go.Scatter(x=[peaks[k - 1][1]], y=[peaks[k - 1][0]], mode="markers",
                                        marker=dict(symbol="x", size=12, color="cyan")), row=1, col=k)
    figure.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(height=height, showlegend=False, plot_bgcolor="gray",
                         margin=dict(l=10, r=10, t=40, b=10))
    return figure


def one_of_each(scan):
    """The first frame of each defect kind in ``scan``."""
    reasons = scan.truth["reason"]
    return [int(np.flatnonzero(reasons == kind)[0]) for kind in synth.DEFECT_REASONS]


example = task.train[0]
picked = one_of_each(example)
images = [np.where(example.pixel_mask, np.nan, np.log10(1 + example.frames[i].astype(float)))
          for i in picked]
show_frames(images, list(synth.DEFECT_REASONS), synth.defect_boxes(example.truth)[picked]).show()

# %% [markdown]
# ## Held-out scans of other exposure
#
# Training scans and test scans never share an exposure, and the lowest and highest
# exposures are test scans: the models must hold on count levels they never saw. We report,
# pooled over the test scans, the recall and precision of each class, and the **worst test
# scan** (a pooled score can hide one scan where the model is useless).

# %%
train_sources = [scan.source() for scan in task.train]
train_labels = np.concatenate([scan.truth["label"] for scan in task.train])
test_truth = np.concatenate([scan.truth["label"] for scan in task.test])
test_groups = np.concatenate([[scan.name] * len(scan) for scan in task.test])


def held_out(name, predict):
    """Per-class scores pooled over the test scans, and the lowest bad recall and precision
    of any single test scan."""
    predicted = np.concatenate([predict(scan) for scan in task.test])
    scores = models.evaluate(test_truth, predicted, ("good", "bad"), groups=test_groups)
    worst = [models.evaluate(test_truth[test_groups == g], predicted[test_groups == g], ("good", "bad"))
             .per_class.loc["bad", ["recall", "precision"]] for g in np.unique(test_groups)]
    per_class = scores.per_class
    return {"model": name, "bad recall": per_class.loc["bad", "recall"],
            "bad precision": per_class.loc["bad", "precision"],
            "good recall": per_class.loc["good", "recall"],
            "good precision": per_class.loc["good", "precision"],
            "worst-scan bad recall": min(w["recall"] for w in worst),
            "worst-scan bad precision": np.nanmin([w["precision"] for w in worst])}, predicted


# %% [markdown]
# ## The feature MLP: blind to local defects
#
# The MLP of notebook 4 on the default `frame_stats` features (flux relative to the scan,
# fraction of saturated pixels).

# %%
train_stats = xlabel.frame_stats(train_sources, progress=False)
mlp = models.train_mlp(train_stats, train_labels, preset="256-128-64", max_iter=100)
mlp_row, mlp_pred = held_out("feature MLP", lambda scan: mlp.predict(
    xlabel.frame_stats(scan.source(), progress=False)))
pd.DataFrame([mlp_row]).round(3)

# %% [markdown]
# ## A CNN on the pixels
#
# xlabel's CNN (`xlabel train --kind cnn`) sees each frame divided by its own mean and by its
# scan's median pattern, so what is *unusual* in a frame stands out at any exposure.
# `threads=2` uses both cores of a laptop; real training runs longer (the default is 30 epochs).

# %%
cnn = models.registry.get("cnn")(epochs=10, threads=2, seed=0, progress=False)
cnn.fit(train_sources, train_labels)
cnn_row, cnn_pred = held_out("CNN", lambda scan: cnn.predict(scan.source()))
pd.DataFrame([mlp_row, cnn_row]).set_index("model").round(3)

# %% [markdown] tags=["exercise"]
# ### Exercise 1
#
# Which kinds of defect does each model find? Put the CNN's recall per defect kind on the
# test scans (share of that kind's frames it calls "bad") in `answer` as a dict
# `{kind: recall}` (hint: `np.concatenate([scan.truth["reason"] for scan in task.test])`
# lines up with `cnn_pred`).

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# test_reasons = np.concatenate([scan.truth["reason"] for scan in task.test])
# answer = {kind: np.mean(cnn_pred[test_reasons == kind] == "bad") for kind in synth.DEFECT_REASONS}
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 1 not answered yet: using the solution.")
    test_reasons = np.concatenate([scan.truth["reason"] for scan in task.test])
    answer = {kind: np.mean(cnn_pred[test_reasons == kind] == "bad") for kind in synth.DEFECT_REASONS}
per_kind = pd.DataFrame({
    model_name: {kind: float(np.mean(np.concatenate([
        predicted[test_groups == scan.name][scan.truth["reason"].to_numpy() == kind] == "bad"
        for scan in task.test]))) for kind in synth.DEFECT_REASONS}
    for model_name, predicted in (("feature MLP", mlp_pred), ("CNN", cnn_pred))})
assert set(answer) == set(synth.DEFECT_REASONS), f"one recall per kind: {synth.DEFECT_REASONS}"
assert all(np.isclose(answer[k], per_kind.loc[k, "CNN"]) for k in synth.DEFECT_REASONS), per_kind
print(per_kind.round(2))
assert (per_kind["CNN"] > per_kind["feature MLP"]).all(), "the CNN should find every kind more often"
print("Exercise 1: correct.")

# %% [markdown]
# ## Where does the CNN look?
#
# `models.cam` returns one class activation map per frame, at the frame's own resolution,
# scaled to 0..1, with NaN on the scan's invalid pixels. Its default method is **LayerCAM**:
# each location of a conv layer weighted by the gradient of the class score *at that
# location*, the maps of all conv layers combined (the last layer alone is coarse: 1/4 or 1/8
# of the frame). Classic Grad-CAM gives each feature channel one weight for the whole frame;
# on this CNN that weight is nearly the same on every defect frame, and its maps point at dim
# regions even when the defect is a bright streak: see Exercise 2.
#
# We explain the class "bad" on the defect frames of each test scan and ask how often the
# map's maximum (cyan x) falls inside the defect box: the **pointing score**. Chance is the
# box's share of the frame.

# %%
hits, kinds, chance = [], [], []
for scan in task.test:
    bad = np.flatnonzero(scan.is_bad)
    boxes = synth.defect_boxes(scan.truth)[bad]
    maps = models.cam(cnn, scan.source(), target="bad", rows=bad)
    hits.append(pointing_score(maps, boxes, return_hits=True)[1])
    kinds.append(scan.truth["reason"].to_numpy()[bad])
    chance.append((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]) / maps[0].size)
hits, kinds = np.concatenate(hits), np.concatenate(kinds)
chance = np.mean(np.concatenate(chance))
print(f"pointing score {hits.mean():.2f} on {len(hits)} defect frames (chance {chance:.2f})")
pd.Series({kind: hits[kinds == kind].mean() for kind in synth.DEFECT_REASONS}, name="pointing").round(2)

# %%
scan = task.test[-1]                        # the brightest test scan: no training scan was this bright
picked = one_of_each(scan)
maps = models.cam(cnn, scan.source(), target="bad", rows=picked)
show_frames(maps, [f"{kind}: frame {i}" for kind, i in zip(synth.DEFECT_REASONS, picked)],
            synth.defect_boxes(scan.truth)[picked], peaks=map_peaks(maps)).show()

# %% [markdown]
# The same maps over the frames, interactively: change the class, the layer ("all" combines
# every conv layer), the method, the opacity; ◀ ▶ step through the defect frames of the scan.

# %%
overlay = GradCAMOverlay(cnn, scan.source(), indices=np.flatnonzero(scan.is_bad),
                         predictions=cnn_pred[test_groups == scan.name])
overlay

# %% [markdown] tags=["exercise"]
# ### Exercise 2
#
# Compute the pointing score of classic **Grad-CAM** (`method="gradcam"`) on the defect
# frames of the test scans, per defect kind, as a dict `{kind: score}` in `answer`. Which
# kind does it miss?

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# gradcam_hits = np.concatenate([
#     pointing_score(models.cam(cnn, s.source(), target="bad", rows=np.flatnonzero(s.is_bad),
#                               method="gradcam"),
#                    synth.defect_boxes(s.truth)[s.is_bad], return_hits=True)[1]
#     for s in task.test])
# answer = {kind: gradcam_hits[kinds == kind].mean() for kind in synth.DEFECT_REASONS}
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 2 not answered yet: using the solution.")
    gradcam_hits = np.concatenate([
        pointing_score(models.cam(cnn, s.source(), target="bad", rows=np.flatnonzero(s.is_bad),
                                  method="gradcam"),
                       synth.defect_boxes(s.truth)[s.is_bad], return_hits=True)[1]
        for s in task.test])
    answer = {kind: gradcam_hits[kinds == kind].mean() for kind in synth.DEFECT_REASONS}
expected_hits, expected_kinds = [], []
for s in task.test:
    rows = np.flatnonzero(s.truth["label"] == "bad")
    gradcam_maps = models.cam(cnn, s.source(), target="bad", rows=rows, method="gradcam")
    expected_hits.append(pointing_score(gradcam_maps, synth.defect_boxes(s.truth)[rows], return_hits=True)[1])
    expected_kinds.append(s.truth["reason"].to_numpy()[rows])
expected_hits, expected_kinds = np.concatenate(expected_hits), np.concatenate(expected_kinds)
expected = {kind: expected_hits[expected_kinds == kind].mean() for kind in synth.DEFECT_REASONS}
assert set(answer) == set(expected), f"one score per kind: {sorted(expected)}"
assert all(np.isclose(answer[k], expected[k]) for k in expected), f"expected {expected}"
print("Grad-CAM:", {k: round(float(v), 2) for k, v in expected.items()}, "| LayerCAM:",
      {kind: round(float(hits[kinds == kind].mean()), 2) for kind in synth.DEFECT_REASONS})
assert hits.mean() > expected_hits.mean(), "LayerCAM should point at the defect more often"
print("Exercise 2: correct.")

# %% [markdown]
# ## Summary
#
# - Features summarise a frame in a few numbers; a defect that does not change them (a dead
#   module, a streak, a shadow) is invisible to a feature model, however well trained.
# - A CNN on exposure-invariant pixels finds them on scans of exposures it never saw; judge
#   it per class and by its worst scan, not by accuracy.
# - Class activation maps tell you *why*: measure them (pointing score) against what you
#   know, per kind of defect. A method that looks right on average can miss a whole kind.
