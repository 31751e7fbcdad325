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
# # 1. Explore raw scans
#
# A beamline scan is a stack of detector frames. Some frames are unusable: the shutter was
# still opening at the start, the beam was lost for a while, or the detector saturated.
# Before any machine learning, **look at the data**.
#
# In this notebook you will:
#
# 1. open a bundled scan (an Eiger-like NeXus master file with its data files),
# 2. look at single frames on a linear and a log scale, and see why masked pixels matter,
# 3. compute per-frame statistics with `xlabel.frame_stats`,
# 4. plot the flux against the frame number and spot the **shutter ramp** and the **beam losses**,
# 5. write a first rule that separates good from bad frames and check it against the ground truth.
#
# The bundled scans are synthetic (made by `xlabel.synth`), so we know the truth for every
# frame. At the end there is an optional look at real beamline data.

# %%
import numpy as np
import plotly.express as px

import xlabel
from xlabel import samples

samples.names()

# %% [markdown]
# ## Open a scan
#
# `xlabel.open_scan` accepts HDF5/NeXus files, Eiger master files, image series, `.npy`
# files and arrays. It is **lazy**: it reads the file's layout, not the frames. The master
# file of `scan_a` links to four data files of 100 frames each.

# %%
src = xlabel.open_scan(samples.path("scan_a"))
print(f"{src.name}: {len(src)} frames of {src.frame_shape} {src.dtype}")
print("dataset:", src.dataset)
print("first frame of each data file:", src.part_starts)

# %% [markdown]
# Indexing reads only what you ask for: `src[100]` is one frame, `src[0:12]` twelve.

# %%
frame = src[100]
print(frame.dtype, frame.shape, "min", frame.min(), "max", frame.max())

# %% [markdown]
# ## Look at a frame: masks and log scale
#
# The maximum is 65535, the largest `uint16`. Eiger detectors write that value into
# module gaps and dead pixels, and the file's `pixel_mask` lists them too.
# `xlabel.io.invalid_pixels` is the one place that decides which pixels to ignore.
#
# Photon counts span several orders of magnitude (a bright ring next to a dark
# background), so a **log scale** shows much more than a linear one.

# %%
invalid = xlabel.io.invalid_pixels(src[100:101], src)[0]
print(f"{invalid.sum()} invalid pixels of {invalid.size}")

shown = np.where(invalid, np.nan, frame.astype(float))
px.imshow(shown, title="frame 100, linear scale", width=380).show()
px.imshow(np.log10(1 + shown), title="frame 100, log10(1 + counts)", width=380).show()

# %% [markdown]
# Why the mask matters: with the flagged pixels included, the mean of a frame is
# dominated by a few hundred pixels at 65535. `open_scan(..., invalid_values="none",
# file_mask=False)` reads the file without any masking.

# %%
unmasked = xlabel.open_scan(samples.path("scan_a"), invalid_values="none", file_mask=False)
print("mean of frame 100 with gap pixels:", round(float(unmasked[100].mean()), 1))
print("mean of frame 100, valid pixels only:", round(float(frame[~invalid].mean()), 1))

# %% [markdown]
# A gallery shows many frames at once (log scale, invalid pixels in color). Here are the
# first twelve frames of the scan: watch them get brighter.

# %%
from xlabel.widgets import FrameGallery

FrameGallery(src, range(12), per_page=12, columns=6, thumb_size=96)

# %% [markdown]
# ## Per-frame statistics
#
# `frame_stats` streams through the scan and computes one row per frame, ignoring invalid
# pixels. `mean` is the average flux per valid pixel. `flux_rel` divides it by the running
# median of the scan (window 51 frames), so a value of 1 means "as bright as its
# neighbours", whatever the exposure of the scan.

# %%
table = xlabel.frame_stats(src)
table.head()

# %% [markdown]
# ## The flux-vs-frame scatter
#
# This plot is the central view of xlabel. Look for:
#
# - the **shutter ramp**: the first frames rise from almost nothing to full flux,
# - **beam losses**: short drops in the middle of the scan,
# - the slow drift of the good frames (beam decay, sample transmission): not a problem.

# %%
px.scatter(table, x="frame", y="mean", title="scan_a: mean flux per frame", height=350)

# %%
fig = px.scatter(table, x="frame", y="flux_rel", title="scan_a: flux relative to the running median",
                 height=350)
fig.add_hline(y=0.85, line_dash="dash", annotation_text="0.85")
fig

# %% [markdown] tags=["exercise"]
# ### Exercise 1
#
# How many frames does the shutter ramp of `scan_a` last? Count the frames at the
# start of the scan before `flux_rel` first reaches 0.85. Put the number in `answer`.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = int(np.argmax(table["flux_rel"].to_numpy() >= 0.85))
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 1 not answered yet: using the solution.")
    answer = int(np.argmax(table["flux_rel"].to_numpy() >= 0.85))
truth = samples.truth("scan_a")
expected = int((truth["reason"] == "shutter").sum())
assert answer == expected, f"{answer} frames; the ground truth has {expected} shutter frames"
shutter_frames = answer
print("Exercise 1: correct.")

# %% [markdown] tags=["exercise"]
# ### Exercise 2
#
# Which frames of `scan_a` were hit by a beam loss? Make `answer` an array of the frame
# numbers after the shutter ramp whose `flux_rel` is below 0.85.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# low = table.loc[table["flux_rel"] < 0.85, "frame"].to_numpy()
# answer = low[low >= shutter_frames]
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 2 not answered yet: using the solution.")
    low = table.loc[table["flux_rel"] < 0.85, "frame"].to_numpy()
    answer = low[low >= shutter_frames]
expected = truth.loc[truth["reason"] == "beam_loss", "frame"].to_numpy()
assert sorted(answer) == sorted(expected), f"got {sorted(answer)}, truth {sorted(expected)}"
print("Exercise 2: correct.")

# %% [markdown]
# ## All bundled scans at once
#
# `frame_stats` takes a list of scans and returns one table; the `scan` column tells them
# apart and `frame` restarts at 0 for each. Two scans contain **saturated** frames: a few
# pixels at the detector's count limit push the mean up by orders of magnitude, hence the
# log axis. `frac_saturated` measures them directly.

# %%
all_stats = xlabel.frame_stats([samples.path(name) for name in samples.names()])
px.scatter(all_stats, x="frame", y="mean", color="scan", log_y=True, height=380,
           hover_data=["flux_rel", "frac_saturated"])

# %% [markdown] tags=["exercise"]
# ### Exercise 3
#
# Write one rule on the columns of `all_stats` that marks the bad frames of **all four**
# scans: a boolean Series `answer`, True for bad frames. Hint: combine `flux_rel` with
# `frac_saturated`. The check wants at least 99 % agreement with the truth on every scan.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = (all_stats["flux_rel"] < 0.85) | (all_stats["frac_saturated"] > 0.005)
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 3 not answered yet: using the solution.")
    answer = (all_stats["flux_rel"] < 0.85) | (all_stats["frac_saturated"] > 0.005)
for name in samples.names():
    in_scan = (all_stats["scan"] == name).to_numpy()
    truth_bad = (samples.truth(name)["label"] == "bad").to_numpy()
    agreement = float(np.mean(np.asarray(answer)[in_scan] == truth_bad))
    print(f"{name}: {agreement:.1%} agreement")
    assert agreement >= 0.99, f"{name}: only {agreement:.1%} agreement with the truth"
print("Exercise 3: correct.")

# %% [markdown]
# A hand-made threshold works here because the synthetic scans are clean. On real data the
# thresholds move from beamline to beamline and new kinds of bad frames appear: that is why
# the next notebooks cluster, correct labels by hand and train a classifier.
#
# ## Spots: hits and blanks
#
# In serial crystallography most frames are **blanks** (no crystal in the beam) and the useful
# ones are **hits** showing Bragg spots. Hit finders (Cheetah, OnDA, DIALS) count the spots
# of every frame. `frame_stats(..., spots=True)` adds that count, `n_spots`, and the summed
# spot intensity: pixels standing out of the local background (median of 8x8 tiles, noise
# from the MAD) are grouped into spots by DBSCAN. Module gaps, dead pixels and hot pixels
# never become spots; powder or ice rings are the usual false spots. A small U-Net
# (`xlabel.models.unet`, `method="unet"`) can select the pixels instead: see BENCHMARKS.md.
#
# The scan below is synthetic (`xlabel.synth.make_spot_scan`): about half of its frames are
# hits, and hits and blanks alike carry powder rings, module gaps and hot pixels.

# %%
from sklearn.metrics import roc_auc_score

from xlabel.spots import find_spots
from xlabel.synth import make_spot_scan

spot_scan = make_spot_scan(n_frames=64, frame_shape=(128, 128), seed=4)
spot_stats = xlabel.frame_stats(spot_scan.source(), spots=True)
spot_stats["truth"] = np.where(spot_scan.truth["hit"], "hit", "blank")
print(spot_stats.groupby("truth")["n_spots"].describe()[["count", "min", "50%", "max"]])
print(f"ROC AUC of n_spots for hits: {roc_auc_score(spot_scan.truth['hit'], spot_stats['n_spots']):.3f}")
px.strip(spot_stats, x="n_spots", y="truth", color="truth", height=300,
         title="Spots per frame (threshold): hits vs blanks")

# %% [markdown]
# Hits get many spots, most blanks few, but some blanks get dozens: the rings break into
# pieces that look like spots to a threshold. Circled on one of them:

# %%
spots = find_spots(spot_scan.source(), progress=False)
worst_blank = int(spot_stats.loc[spot_stats["truth"] == "blank"].sort_values("n_spots")["frame"].iloc[-1])
image = np.log1p(np.where(spot_scan.pixel_mask, 0, spot_scan.frames[worst_blank]).astype(float))
fig = px.imshow(image, color_continuous_scale="gray", height=450,
                title=f"blank frame {worst_blank}: {int((spots['frame'] == worst_blank).sum())} false spots")
on_frame = spots[spots["frame"] == worst_blank]
fig.add_scatter(x=on_frame["x"], y=on_frame["y"], mode="markers", name="found",
                marker=dict(symbol="circle-open", size=12, color="red"))
fig

# %% [markdown]
# A small U-Net, trained in a few seconds on *other* synthetic scans (focal loss, so it leans
# toward finding every spot), selects the pixels instead of the threshold; its decision
# threshold is tuned on a third scan. It has learned that a spot is compact and a ring is
# not. (Trained longer, as in BENCHMARKS.md, it does better still.)

# %%
from xlabel.models.unet import train_spot_unet
from xlabel.spots import tune_threshold

train_scans = [make_spot_scan(n_frames=24, frame_shape=(96, 96), seed=s) for s in (11, 12)]
selector = train_spot_unet([t.frames for t in train_scans], [t.spot_pixels() for t in train_scans],
                           pixel_mask=[t.pixel_mask for t in train_scans], steps=200,
                           batch_size=8, patch=48, alpha=0.9)
tune_threshold(selector, [make_spot_scan(n_frames=16, frame_shape=(96, 96), seed=13)])
unet_stats = xlabel.frame_stats(spot_scan.source(), spots=selector, progress=False)
unet_stats["truth"] = spot_stats["truth"]
print(unet_stats.groupby("truth")["n_spots"].describe()[["count", "min", "50%", "max"]])
print(f"ROC AUC of n_spots for hits: {roc_auc_score(spot_scan.truth['hit'], unet_stats['n_spots']):.3f}")
px.strip(unet_stats, x="n_spots", y="truth", color="truth", height=300,
         title="Spots per frame (U-Net selection): hits vs blanks")

# %% [markdown]
# ## Optional: real beamline data
#
# If the folder `shared/realdata` sits next to the repository (see its README), this cell
# opens 3201 real frames from Diamond Light Source (beamline K11). The instrument labels
# each frame: 0 projection, 1 flat field (open beam), 2 dark (shutter closed).

# %%
from pathlib import Path
import h5py

real = Path("../../shared/realdata/dls_k11_diad_tomo/k11-18014.nxs")
if real.exists():
    real_src = xlabel.open_scan(real)
    real_stats = xlabel.frame_stats(real_src)
    with h5py.File(real) as f:
        key = f["/entry/instrument/imaging/image_key"][()]
    real_stats["image_key"] = np.array(["projection", "flat", "dark"])[key]
    print(real_stats.groupby("image_key")["mean"].agg(["count", "min", "max"]))
    fig = px.scatter(real_stats, x="frame", y="mean", color="image_key", height=350,
                     title="DLS K11: mean flux per frame")
else:
    fig = None
    print(f"{real} not found: skipping the real data.")
fig

# %% [markdown]
# ## Summary
#
# - `open_scan` opens a scan lazily; `src[i]` reads one frame.
# - Invalid pixels (module gaps, dead pixels, flagged values) must be excluded, or the mean
#   flux is meaningless; `frame_stats` does it for you.
# - Frames are best viewed on a log scale.
# - The flux-vs-frame scatter shows the shutter ramp and beam losses at a glance;
#   `flux_rel` compares each frame to its neighbours; `frac_saturated` finds saturation.
# - `frame_stats(..., spots=True)` counts spots per frame (`n_spots`): hits vs blanks;
#   rings make false spots for a threshold, fewer for the U-Net selection.
#
# Next: **02_cluster_and_compare.ipynb** finds the groups automatically with K-means and DBSCAN.
