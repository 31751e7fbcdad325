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
# # 7. Bin frames by an embedding
#
# Series of GISAXS measurements give many images of a few kinds of structure (system 4 in
# `domain.md`). Flux alone cannot sort them; an autoencoder's latent space can help. In this
# notebook you will:
#
# 1. simulate GISAXS-like series whose structure type is known (`xlabel.synth.make_gisaxs`),
# 2. train a small **denoising autoencoder** and turn frames into a feature table
#    (`z0..` latent columns and a 2-D projection `proj_x`, `proj_y`); it sees each frame as
#    two noisy views, zoomed and shifted differently, and their latents must agree, so the
#    latent keeps the *kind* of structure rather than its size, spacing or position,
# 3. **bin frames by lasso** on the projection, as undoable steps in the LabelStore,
# 4. compare K-means and DBSCAN on the latent space (`ClusterComparison`).
#
# The autoencoder is evaluated on series it never saw (another seed). Everything is small
# (64x64 frames binned to 32x32) so the notebook runs in well under a minute.

# %%
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import adjusted_rand_score

from xlabel.cluster import dbscan, kmeans
from xlabel.embed import fit_embedding
from xlabel.labels import LabelStore
from xlabel.synth import GISAXS_STRUCTURES, make_gisaxs
from xlabel.widgets import ClusterComparison, FluxScatter

torch.set_num_threads(2)
train = make_gisaxs(n_series=12, frames_per_series=8, frame_shape=(64, 64), seed=0)
new = make_gisaxs(n_series=8, frames_per_series=8, frame_shape=(64, 64), seed=1)
print(train, new, sep="\n")

# %% [markdown]
# ## Train the autoencoder, embed the new series
#
# Each frame is first divided by its mean and put on a log scale over its valid pixels
# (`prepare_input`), so exposure and the detector's gaps do not matter. Training reconstructs
# the clean frame from a noisy, zoomed/shifted view, while a second view's latent must agree.
# `transform` gives one row per frame.

# %%
emb = fit_embedding(train.source(), size=32, epochs=15, seed=0)
table = emb.transform(new.source(), table=new.truth)
table.head()

# %% [markdown]
# ## Bin by lasso on the projection
#
# Draw a lasso around a group of points, then press a class button (or 1..4). Frames of one
# structure should sit together; hover shows the frame.

# %%
store = LabelStore(len(table), classes=GISAXS_STRUCTURES)
scatter = FluxScatter(store, table, x="proj_x", y="proj_y")
scatter

# %% [markdown] tags=["exercise"]
# ### Exercise 1
#
# Bin the frames of the group with the largest `proj_x` as one class. Lasso them and set
# `answer = scatter.selected`, or select them in code: cluster the latent columns with
# `kmeans(table, k=4, columns=emb.latent_columns)` and take the cluster whose mean `proj_x`
# is largest. The check cell assigns them the structure most of them have.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# bins = kmeans(table, k=4, columns=emb.latent_columns)
# right = table.groupby(bins)["proj_x"].mean().idxmax()
# answer = np.flatnonzero(bins == right)
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 1 not answered yet: using the solution.")
    bins = kmeans(table, k=4, columns=emb.latent_columns)
    answer = np.flatnonzero(bins == table.groupby(bins)["proj_x"].mean().idxmax())
scatter.select(answer)
majority = new.truth["structure"].iloc[scatter.selected].mode()[0]
scatter.assign(majority)
purity = (new.truth["structure"].iloc[scatter.selected] == majority).mean()
print(f"{len(scatter.selected)} frames binned as {majority}; {purity:.0%} of them are {majority}")
assert len(scatter.selected) >= 4 and purity >= 0.5
print("Exercise 1: correct.")

# %% [markdown]
# ## K-means vs DBSCAN on the latent space
#
# Cluster ids mean nothing by themselves: the comparison aligns DBSCAN's to K-means' and
# shows where they disagree. Lasso in one panel highlights the same frames in the other.

# %%
a = kmeans(table, k=4, columns=emb.latent_columns)
b = dbscan(table, columns=emb.latent_columns)
comparison = ClusterComparison(table, a, b, store=store, names=("kmeans", "dbscan"),
                               x="proj_x", y="proj_y")
comparison

# %% [markdown] tags=["exercise"]
# ### Exercise 2
#
# How well do the K-means bins match the true structure types of the new series? Set
# `answer` to the adjusted Rand index of `a` against `new.truth["structure"]`
# (`adjusted_rand_score`). The benchmark (BENCHMARKS.md) says what to expect with more
# training series: about 0.85 on average on fresh held-out sets, where clustering the pixels
# gets about 0.5.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = adjusted_rand_score(new.truth["structure"], a)
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 2 not answered yet: using the solution.")
    answer = adjusted_rand_score(new.truth["structure"], a)
assert abs(answer - adjusted_rand_score(new.truth["structure"], a)) < 1e-9
print(f"K-means on the latent space: ARI {answer:.2f}")
print(pd.crosstab(new.truth["structure"], a))
print("Exercise 2: correct.")

# %% [markdown]
# ## Summary
#
# - `fit_embedding` trains a denoising autoencoder; `Embedding.transform` turns any frames
#   into a feature table with latent columns and a 2-D projection.
# - The table works with every xlabel component: `FluxScatter(..., x="proj_x", y="proj_y")`
#   to bin by lasso, `kmeans`/`dbscan` with `columns=emb.latent_columns`, `ClusterComparison`.
# - Bins are labels: undoable steps in the LabelStore, exported like any other label.
# - Honest caveat: one training run differs from the next (held-out ARI 0.61-1.0 across
#   training seeds and sets in BENCHMARKS.md); a structure type may be split in two or merged with
#   another: correct the bins by lasso.
