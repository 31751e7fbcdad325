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
# # 6. Tag scattering images
#
# A frame has one class (good or bad) but can show several things at once: powder
# **rings**, Bragg **spots**, an amorphous **halo**, a **streak**, the **beamstop** shadow.
# These are *tags*: each frame carries any number of them (the NSLS-II study, system 2 in
# `domain.md`). In this notebook you will:
#
# 1. simulate scattering frames whose tags are known (`xlabel.synth.make_tagged_batches`),
# 2. tag frames by **lasso** in the scatter ("add tag"), as one undoable step in the
#    LabelStore, and colour the scatter by a tag,
# 3. train a **multi-label** model (one probability per tag) on whole batches, your
#    lasso tags included,
# 4. read its **per-tag precision-recall curves** on a batch it never saw,
# 5. look at what the model sees for a tag (**Grad-CAM per tag**).
#
# Everything is small (128x128 frames, four batches) so the notebook runs in about a minute.

# %%
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sklearn.metrics import precision_recall_curve

from xlabel import coefficients
from xlabel.labels import LabelStore
from xlabel.models.frames import bin_frames, prepare_frames
from xlabel.models.multilabel import TagJointCNN, evaluate_tags
from xlabel.synth import TAGS, make_tagged_batches
from xlabel.widgets import FluxScatter

batches = make_tagged_batches(4, 48, (128, 128), seed=0)
train, test = batches[:3], batches[3]
print(batches[0])
pd.DataFrame({b.name: b.tags.mean() for b in batches}).round(2)

# %% [markdown]
# ## Features that show a tag
#
# In polar coordinates about the beam centre a tag is simple: the beamstop is a dark disc,
# so an inner ring is darker than the ones just outside it (`shadow`); a spot or streak
# makes one sector of a ring much brighter than the rest (`contrast`). `xlabel.coefficients`
# computes both from the binned, log-scaled frame the models see (`valid` leaves the
# detector gaps out of the means).

# %%
scan = train[0]
prepared = prepare_frames(scan.frames, size=64, source=scan.source())
valid = bin_frames(~scan.pixel_mask[None], 64)[0]
profile = coefficients.radial_profile(prepared, n_radial=16, valid=valid)
table = pd.DataFrame({
    "scan": scan.name, "frame": np.arange(len(scan)), "mean": prepared.mean(axis=(1, 2)),
    "shadow": profile[:, 3] - profile[:, 1],
    "contrast": coefficients.azimuthal_contrast(prepared, 16, 32, valid=valid)[:, 4:].max(1)})
store = LabelStore(len(scan))
scatter = FluxScatter(store, table, x="shadow", y="contrast", source=scan.source())
scatter

# The toolbar's tag field and its **add tag** / **remove tag** buttons tag the frames you
# lassoed: type a new name (or pick one of the store's tags) and press the button. Each
# press is one step in the LabelStore, with source `manual`, undone by **undo** or Ctrl+Z
# like a class assignment. The **color** dropdown lists every tag as `tag:<name>`: it
# draws the frames carrying that tag in the tag's colour and the others grey. In code the
# same is `scatter.add_tag(name)`, `scatter.remove_tag(name)` and
# `scatter.color_by = "tag:<name>"`.

# %% [markdown] tags=["exercise"]
# ### Exercise 1
#
# Tag the frames with a beamstop shadow. Draw a lasso around the frames far to the right
# (large `shadow`), type `beamstop` in the tag field and press **add tag**; or set
# `answer` to the frames to tag (`scatter.selected` after a lasso, or in code: the frames
# whose `shadow` is above 1.5). The check cell then selects `answer` and presses "add tag"
# from code, `scatter.add_tag("beamstop")`, and colours the scatter by the new tag.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = np.flatnonzero(table["shadow"].to_numpy() > 1.5)
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None and "beamstop" in store.tag_names:
    answer = np.flatnonzero(store.tagged("beamstop"))  # tagged with the button
if answer is None:
    print("Exercise 1 not answered yet: using the solution.")
    answer = np.flatnonzero(table["shadow"].to_numpy() > 1.5)
scatter.select(answer)
scatter.add_tag("beamstop", note="lasso on shadow")  # what "add tag" does
scatter.color_by = "tag:beamstop"
agreement = (store.tagged("beamstop") == scan.tags["beamstop"].to_numpy()).mean()
print(f"{store.last_action}; agreement with the truth {agreement:.0%}")
assert agreement >= 0.85  # a lasso on two features is good, not perfect
print("Exercise 1: correct.")

# %% [markdown]
# ## Tags live in the LabelStore
#
# A tag step is undoable like a label step, has provenance, and exports as one 0/1 column
# per tag (`to_csv`), which is what `xlabel train --labels` reads. Here the other tags come
# from the simulation's truth, as if a colleague had tagged them; the scatter's colour
# dropdown now lists all five.

# %%
for tag in TAGS[:-1]:
    store.add_tag(scan.tags[tag].to_numpy(), tag, source="import")
store.undo()
store.redo()
print("colour by:", scatter.plot.color_options)
print("beamstop on frame", answer[0], store.tag_provenance(int(answer[0]))["beamstop"])
store.to_dataframe().head()

# %% [markdown]
# ## Train a multi-label model
#
# `TagJointCNN` looks at the frame twice: as an image (conv layers) and as polar cells (the
# "coefficient view"). Each tag gets a sigmoid output, a class weight for its imbalance and
# a threshold chosen on a validation batch. Whole batches are held out: batch 3 is never
# seen in training. The tags of batch 0 are the ones in the store, your lasso's
# `beamstop` included (mistakes and all); batches 1 and 2 bring their own.

# %%
tags = pd.concat([store.tags[list(TAGS)]] + [b.tags for b in train[1:]], ignore_index=True)
model = TagJointCNN(size=32, channels=(8, 16, 32), n_radial=12, n_azimuth=16, epochs=12,
                    seed=0).fit([b.source() for b in train], tags)
proba = model.predict_proba(test.source())
scores = evaluate_tags(test.tags, proba, thresholds=model.thresholds_)
print(scores.summary())

# %% [markdown]
# ## Per-tag precision-recall curves
#
# A curve per tag shows what each threshold costs: high precision at low recall means the
# model is sure about the clear cases; the area under it is the tag's average precision.

# %%
figure = go.Figure()
for j, tag in enumerate(model.classes):
    precision, recall, _ = precision_recall_curve(test.tags[tag], proba[:, j])
    figure.add_scatter(x=recall, y=precision, mode="lines",
                       name=f"{tag} (AP {scores.per_tag.loc[tag, 'ap']:.2f})")
figure.update_layout(xaxis_title="recall", yaxis_title="precision", height=380,
                     title="held-out batch: precision-recall per tag")
figure

# %% [markdown] tags=["exercise"]
# ### Exercise 2
#
# Which tag is hardest for this small model? Set `answer` to the name of the tag with the
# lowest average precision on the held-out batch (read it off the curves or from `scores`).

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = scores.per_tag["ap"].idxmin()
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 2 not answered yet: using the solution.")
    answer = scores.per_tag["ap"].idxmin()
assert answer == scores.per_tag["ap"].idxmin(), f"{answer!r} is not the lowest AP"
print(f"Exercise 2: correct: {answer!r} (AP {scores.per_tag.loc[answer, 'ap']:.2f}).")

# %% [markdown]
# ## What the model looks at, per tag
#
# `model.explain(frames, tag)` is Grad-CAM of that tag's output: for *beamstop* the map
# should light up the centre and the holder arm, for *rings* the rings.

# %%
frame = int(np.flatnonzero(test.tags["beamstop"] & test.tags["rings"])[0])
maps = {tag: model.explain(test.frames[frame:frame + 1], tag)[0] for tag in ("beamstop", "rings")}
image = np.log1p(np.where(test.pixel_mask, 0, test.frames[frame]).astype(float))
figure = go.Figure()
for i, (title, values) in enumerate([("frame", image), *maps.items()]):
    figure.add_heatmap(z=values, x0=i * 140, showscale=False, colorscale="Viridis", name=title)
figure.update_layout(height=260, title="frame · Grad-CAM beamstop · Grad-CAM rings",
                     yaxis=dict(scaleanchor="x", autorange="reversed"))
figure

# %% [markdown]
# ## Summary
#
# - `make_tagged_batches` simulates scattering frames with known tags (0 to 5 per frame).
# - Lasso, then **add tag** / **remove tag** in the scatter (`scatter.add_tag` in code), put
#   tags beside the class in the same journal as `store.add_tag`: undo, provenance and one
#   0/1 CSV column per tag come with them; `color_by="tag:<name>"` shows a tag.
# - The tag models (`tags-cnn`, `tags-polar`, `tags-joint`) give one probability per tag;
#   `evaluate_tags` reports average precision per tag and the macro mAP.
# - Precision-recall curves per tag show what each threshold costs; Grad-CAM shows what the
#   model used for one tag.
# - From the shell: `xlabel train SCAN... --labels TAGS.csv... --out tags.xlmodel`, then
#   `xlabel filter` writes `p_<tag>` and the predicted tags.
