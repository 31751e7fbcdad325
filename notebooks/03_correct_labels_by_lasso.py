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
# # 3. Correct labels by lasso
#
# Clusters are good proposals and bad labels: a few frames always land on the wrong side.
# In this notebook you will:
#
# 1. seed a `LabelStore` from K-means clusters,
# 2. find the frames that clustering got wrong on the flux scatter and fix them with the **lasso**,
# 3. use **undo/redo** and read the history,
# 4. **save**, **reopen** and **export** the labels for training.
#
# The `LabelStore` is the single source of truth: every widget reads it and redraws when it
# changes, and every change is journaled to disk before it returns.

# %%
from pathlib import Path

import numpy as np
import pandas as pd
import xlabel
from xlabel import cluster, samples
from xlabel.labels import LabelStore
from xlabel.widgets import FluxScatter

src = xlabel.open_scan(samples.path("scan_a"))
table = xlabel.frame_stats(src)
truth = samples.truth("scan_a")["label"].to_numpy()

def agreement(store):
    """Share of frames whose label in the store equals the ground truth."""
    names = np.array(store.classes + ("",))[store.labels]   # -1 (unlabeled) -> ""
    return float(np.mean(names == truth))


# %% [markdown]
# ## Seed the labels from clusters
#
# The store lives in a folder: here `work_03/` next to this notebook (git-ignored; in real
# work, a folder next to your data). It is kept between runs: running this cell again, or
# the whole notebook in a new kernel, reopens the same store with its history, and
# `seed_from` then starts a new step on top of it. `order_by` makes cluster 0 the darkest,
# so the mapping "0 is bad" is safe.

# %%
work = Path("work_03")
store = LabelStore(len(table), classes=("good", "bad"), path=work / "scan_a.xlabel")
ids = cluster.order_by(cluster.kmeans(table, k=2), table["mean"])
store.seed_from(ids, mapping={0: "bad", 1: "good"}, source="kmeans")
print(store.counts(), f"agreement with the truth: {agreement(store):.2%}")

# %% [markdown]
# ## Look, then lasso
#
# Run the next cell. In the scatter, pick the **lasso** tool, draw around the points you want
# to relabel, then press the **bad** button (or key `2`). `Ctrl+Z` undoes. Turn on the log
# axis or switch `y` to `flux_rel` to see the shutter ramp better. The selected frames appear
# as thumbnails below the plot, six per page: first those whose label differs from their
# neighbours' (the edges K-means is least sure about), all drawn with one brightness range so
# that a beam-loss frame looks dark (the *contrast* menu stretches each frame instead).
#
# Look at the end of the shutter ramp and at the edges of the beam loss near frame 70: a few
# half-bright frames are still colored *good*.

# %%
scatter = FluxScatter(store, table, source=src)
scatter

# %% [markdown] tags=["exercise"]
# ### Exercise 1
#
# Relabel the frames that K-means got wrong. Either draw a lasso around them in the
# scatter and set `answer = scatter.selected`, or select them in code: the frames still
# labeled *good* whose `flux_rel` is below 0.85. The check cell selects `answer` and
# assigns *bad*, exactly like the button (`scatter.select(...)`, `scatter.assign("bad")`).

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# good = store.class_index("good")
# answer = np.flatnonzero((table["flux_rel"] < 0.85).to_numpy() & (store.labels == good))
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 1 not answered yet: using the solution.")
    good = store.class_index("good")
    answer = np.flatnonzero((table["flux_rel"] < 0.85).to_numpy() & (store.labels == good))
scatter.select(answer)
scatter.assign("bad", note="end of shutter ramp and beam-loss edges")
print(f"relabeled frames {list(map(int, answer))}; agreement {agreement(store):.2%}")
assert agreement(store) >= 0.99
print("Exercise 1: correct.")

# %% [markdown]
# ## Undo, redo and history
#
# Every assignment is one step. `undo()` and `redo()` walk through them (the widget's buttons
# and `Ctrl+Z` do the same); `history` lists what happened, and `provenance(i)` tells who
# labeled a frame and when.

# %%
before = agreement(store)
store.undo()
print(f"after undo: {agreement(store):.2%}")
store.redo()
print(f"after redo: {agreement(store):.2%}")
assert agreement(store) == before
store.history[["kind", "step", "label", "source", "n_frames", "note", "applied"]]

# %%
store.provenance(10)

# %% [markdown]
# ## Save, reopen, export
#
# There is no "save" button to forget: the journal on disk already holds every step, so
# `LabelStore.open` gives back labels, history and provenance from the folder, in this
# kernel, another notebook or after a restart. `to_csv` exports `frame,label,...` for
# `xlabel train` or any other tool. `store.close()` releases the folder when you are done
# labeling; this notebook leaves the store open so that the scatter above keeps working.

# %%
path = store.path
print(sorted(p.name for p in Path(path).iterdir()))

# %% [markdown] tags=["exercise"]
# ### Exercise 2
#
# Reopen the store from `path` into `answer`, and export it to `work / "scan_a_labels.csv"`.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = LabelStore.open(path)
# answer.to_csv(work / "scan_a_labels.csv")
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 2 not answered yet: using the solution.")
    answer = LabelStore.open(path)
    answer.to_csv(work / "scan_a_labels.csv")
exported = pd.read_csv(work / "scan_a_labels.csv", keep_default_na=False)
assert agreement(answer) >= 0.99
assert (exported["label"].to_numpy() == truth).mean() >= 0.99
assert answer.provenance(10)["source"] == "manual"
print(f"reopened: {answer.counts()}; the CSV has {len(exported)} rows")
print("Exercise 2: correct.")

# %% [markdown]
# ## Summary
#
# - `seed_from` turns cluster ids into labels in one undoable step.
# - The flux scatter with the lasso fixes what clustering got wrong; `scatter.select(...)` and
#   `scatter.assign(...)` do the same from code.
# - `undo`/`redo`, `history` and `provenance` keep track of every change; the journal saves
#   as you go, `LabelStore.open` reopens, `to_csv` exports.
# - Here the corrected labels match the ground truth to better than 99 %.
#
# Next: **04_train_a_classifier.ipynb** trains a classifier on corrected labels.
