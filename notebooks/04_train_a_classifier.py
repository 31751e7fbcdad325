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
# # 4. Train a classifier
#
# With corrected labels on a few scans, a classifier can label the next thousand scans.
# In this notebook you will:
#
# 1. split the data **by scan**, so the test really is new data,
# 2. see why **recall and precision** of the bad class matter more than accuracy,
# 3. train the two **MLP presets** on features and a small **CNN** on the frames,
# 4. explore the errors in the **confusion-matrix viewer** and fix a wrong label from it,
# 5. measure recall and precision on a **held-out scan**.
#
# The labels are the ground truth of the bundled scans: what notebook 3's lasso gives you.
# Training is kept short so the notebook runs in about a minute on a laptop CPU.

# %%
import numpy as np
import xlabel
from xlabel import models, samples
from xlabel.labels import LabelStore
from xlabel.widgets import ConfusionMatrixViewer

names = samples.names()
sources = [xlabel.open_scan(samples.path(name)) for name in names]
stats = xlabel.frame_stats(sources)
labels = np.concatenate([samples.truth(name)["label"].to_numpy() for name in names])
print(stats.groupby("scan").size().to_dict(), "bad frames:", int(np.sum(labels == "bad")))

# %% [markdown]
# ## An honest split: hold out whole scans
#
# Neighbouring frames of a scan are nearly identical. A random split puts frame 100 in the
# training set and frame 101 in the test set, and the test score only measures memory.
# `models.split` keeps whole scans apart (one scan: contiguous blocks).

# %%
train, test = models.split(stats, test_size=0.25, seed=0)
test_scans = sorted(stats["scan"].iloc[test].unique())
print("train scans:", sorted(stats["scan"].iloc[train].unique()), "test scans:", test_scans)

# %% [markdown]
# ## Accuracy lies when classes are imbalanced
#
# Only about 6 % of the frames are bad. A "classifier" that calls every frame good is 94 %
# accurate and useless. Look at the **recall** of the bad class (the share of bad frames
# found) and its **precision** (the share of flagged frames that are really bad), and the
# balanced accuracy (mean recall over classes).

# %%
always_good = np.full(len(test), "good", dtype=object)
lazy = models.evaluate(labels[test], always_good, classes=("good", "bad"))
print(f"accuracy {lazy.accuracy:.1%}, balanced accuracy {lazy.balanced_accuracy:.1%}")
lazy.per_class


# %% [markdown]
# ## MLP presets on features
#
# Two multi-layer perceptrons, 512-256-128 and 256-128-64 hidden units. First on the raw
# mean flux alone (the classic baseline), then on xlabel's default features
# (`flux_local`, `flux_scan`, `frac_saturated`: flux relative to the frames with beam nearby
# and in the whole scan, and the saturated fraction), which do not depend on the exposure.

# %%
def bad_scores(model, data, truth):
    result = models.evaluate(truth, model.predict(data), model.classes)
    return result.per_class.loc["bad", ["precision", "recall"]].round(3).to_dict()

for preset in models.PRESETS:
    for columns in (models.BASELINE_COLUMNS, models.DEFAULT_COLUMNS):
        mlp = models.train_mlp(stats.iloc[train], labels[train], preset=preset,
                               columns=columns, max_iter=100)
        print(f"{preset:12} {'+'.join(columns):26}", bad_scores(mlp, stats.iloc[test], labels[test]))

# %% [markdown]
# ## A CNN on the frames
#
# The CNN sees the (binned, log-scaled) pixels instead of hand-made features. `groups`
# makes its validation set hold out whole scans too. Real training runs for 30 epochs;
# here 4 epochs on 32x32 frames keep it quick.

# %%
train_scans = [s for s, name in zip(sources, names) if name not in test_scans]
test_sources = [s for s, name in zip(sources, names) if name in test_scans]
train_groups = stats["scan"].iloc[train].to_numpy()
cnn = models.train_cnn(train_scans, labels[train], groups=train_groups, size=32, epochs=4,
                       seed=0, threads=2)
cnn_pred = np.concatenate([cnn.predict(s) for s in test_sources])
print("CNN on the held-out scan(s):", bad_scores(cnn, test_sources[0], labels[test])
      if len(test_sources) == 1 else models.evaluate(labels[test], cnn_pred, cnn.classes).summary())

# %% [markdown]
# ## The confusion-matrix viewer
#
# Rows are the labels in the store, columns the predictions. Click a cell (or call
# `open_cell`) to see its frames in the gallery below, and relabel them there. The store is
# live: relabel a frame anywhere and the matrix redraws.
#
# Misclassified frames are where wrong labels hide. To see it, we slip on purpose: the
# store of the held-out scan gets a few bad frames labeled *good*, as a careless lasso would.

# %%
model = models.train_mlp(stats.iloc[train], labels[train], preset="256-128-64", max_iter=100)
test_table = stats.iloc[test].reset_index(drop=True)
test_truth = labels[test]
store = LabelStore(len(test_table), classes=("good", "bad"))
store.seed_from((test_truth == "bad").astype(int), source="import")
slipped = np.flatnonzero(test_truth == "bad")[:3]
store.assign(slipped, "good", note="a lasso slip")

test_source = test_sources[0] if len(test_sources) == 1 else None
viewer = ConfusionMatrixViewer(store, model.predict(test_table), features=test_table,
                               source=test_source)
viewer

# %% [markdown] tags=["exercise"]
# ### Exercise 1
#
# Open the cell "labeled good, predicted bad", look at its frames and relabel the ones
# that really are bad. In code: `frames = viewer.open_cell("good", "bad")`, then
# `store.assign(frames, "bad")` (or select them in the gallery and press "→ bad").
# Put the relabeled frames in `answer`.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = viewer.open_cell("good", "bad")
# store.assign(answer, "bad", note="fixed from the confusion matrix")
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 1 not answered yet: using the solution.")
    answer = viewer.open_cell("good", "bad")
    store.assign(answer, "bad", note="fixed from the confusion matrix")
fixed = np.array(store.classes)[store.labels]
assert set(slipped) <= set(map(int, answer)), "some slipped frames were not relabeled"
assert np.mean(fixed == test_truth) >= 0.99
print(f"store agrees with the truth on {np.mean(fixed == test_truth):.1%} of the held-out scan")
print("Exercise 1: correct.")

# %% [markdown] tags=["exercise"]
# ### Exercise 2
#
# What are the recall and the precision of the class *bad* of `model` on the held-out
# scan? Put them in `answer` as a tuple `(recall, precision)`
# (hint: `models.evaluate(...).per_class`).

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# scores = models.evaluate(test_truth, model.predict(test_table), model.classes).per_class
# answer = (scores.loc["bad", "recall"], scores.loc["bad", "precision"])
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 2 not answered yet: using the solution.")
    scores = models.evaluate(test_truth, model.predict(test_table), model.classes).per_class
    answer = (scores.loc["bad", "recall"], scores.loc["bad", "precision"])
predicted_bad = model.predict(test_table) == "bad"
true_bad = test_truth == "bad"
recall = np.sum(predicted_bad & true_bad) / np.sum(true_bad)
precision = np.sum(predicted_bad & true_bad) / max(np.sum(predicted_bad), 1)
assert np.allclose(answer, (recall, precision)), f"expected {(recall, precision)}"
print(f"recall {recall:.1%}, precision {precision:.1%}")
assert recall >= 0.95, "the default features should find at least 95 % of the bad frames"
print("Exercise 2: correct.")

# %% [markdown]
# ## Summary
#
# - Split **by scan**: neighbouring frames are near copies, so a random split flatters.
# - With imbalanced classes, report recall and precision of the rare class and balanced
#   accuracy, not accuracy.
# - Features that are relative to the scan (`flux_local`, `flux_scan`, `frac_saturated`)
#   generalize to new scans; absolute flux does not. The CNN learns from pixels and needs more epochs.
# - The confusion-matrix viewer turns model errors into label corrections.
#
# Next: **05_explain_and_filter.ipynb** asks what the CNN looks at and filters a new scan.
