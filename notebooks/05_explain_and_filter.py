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
# # 5. Explain and filter
#
# A classifier you cannot question is a classifier you should not trust. In this notebook
# you will:
#
# 1. train a small CNN and overlay **Grad-CAM** heat maps on good and bad frames,
# 2. ask **what the model looks at**, and whether that is physics or an accident,
# 3. save a model and **filter a brand-new scan** with the `xlabel filter` command.

# %%
import json
import subprocess
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xlabel
from xlabel import models, samples, synth
from xlabel.widgets import GradCAMOverlay

train_names = ["scan_a", "scan_b", "scan_c"]
train_sources = [xlabel.open_scan(samples.path(name)) for name in train_names]
train_labels = np.concatenate([samples.truth(name)["label"].to_numpy() for name in train_names])
groups = np.concatenate([[name] * len(src) for name, src in zip(train_names, train_sources)])
cnn = models.train_cnn(train_sources, train_labels, groups=groups, size=32, epochs=8,
                       seed=0, threads=2)
print(cnn.kind, cnn.classes, cnn.info["epochs_run"], "epochs")

# %% [markdown]
# ## Grad-CAM: where does the evidence come from?
#
# A class activation map weighs a convolution layer's feature maps by how much they
# push the score of a class, and shows the result as a heat map over the frame. The default,
# LayerCAM, weighs every location by its own gradient and combines all conv layers; classic
# Grad-CAM gives each feature map of the last layer one weight (notebook 8 shows where that
# goes wrong). We look at `scan_d`, which the CNN never
# saw: a good frame, a shutter frame, a beam-loss frame and the saturated frame. Use the
# controls to change the class, the layer ("all": every conv layer combined), the method
# (Grad-CAM, Grad-CAM++, XGradCAM, SmoothGrad-CAM++) and the opacity; ◀ ▶ step through the
# frames.

# %%
src = xlabel.open_scan(samples.path("scan_d"))
truth = samples.truth("scan_d")
picks = [int(truth.query(f"reason == '{reason}'")["frame"].iloc[0])
         for reason in ("", "shutter", "beam_loss", "saturated")]
prediction = cnn.predict(src)
print("frames", picks, "predicted", list(prediction[picks]), "truth", list(truth["label"][picks]))
overlay = GradCAMOverlay(cnn, src, indices=picks, predictions=prediction)
overlay

# %% [markdown]
# `models.cam` returns the same maps as arrays (one per frame, scaled to 0..1), so you can
# measure what the model looks at instead of eyeballing it. For a saturated frame, a model
# that learned the physics should look at the saturated pixels.

# %%
frames = src[picks]
maps = models.cam(cnn, frames, target="bad")
for kind, frame_map in zip(["good", "shutter", "beam loss", "saturated"], maps):
    print(f"{kind:10} strongest 'bad' evidence {frame_map.max():.2f}, mean {frame_map.mean():.2f}")
saturated = frames[3] == np.iinfo(frames.dtype).max - 1      # count cutoff of this detector
share = maps[3][saturated].sum() / max(maps[3].sum(), 1e-12)
print(f"{int(saturated.sum())} saturated pixels carry {share:.0%} of the saturated frame's map"
      " (an all-zero map means: no evidence for 'bad' at all)")

# %% [markdown] tags=["exercise"]
# ### Exercise 1
#
# Which frames of `scan_d` does the CNN call *bad*? Put their frame numbers in `answer`
# and compare them with the truth: the check wants at least 90 % of the flagged frames to
# be really bad (precision) on this scan the CNN never saw.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# answer = np.flatnonzero(prediction == "bad")
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 1 not answered yet: using the solution.")
    answer = np.flatnonzero(prediction == "bad")
really_bad = set(truth.loc[truth["label"] == "bad", "frame"])
precision = len(really_bad & set(map(int, answer))) / max(len(answer), 1)
recall = len(really_bad & set(map(int, answer))) / len(really_bad)
print(f"{len(answer)} frames flagged; precision {precision:.0%}, recall {recall:.0%}")
assert len(answer) > 0 and precision >= 0.9
print("Exercise 1: correct.")

# %% [markdown]
# A short training run finds the dark frames (the whole detector is dim: the heat map spreads
# over the frame) more easily than a single saturated frame (a few pixels). Train longer or
# on more saturated examples, and check the maps again: Grad-CAM tells you *why* a model is
# right or wrong, not only *that* it is.
#
# ## Filter a new scan with `xlabel filter`
#
# For production filtering we use the feature MLP of notebook 4 (it generalized perfectly
# to a new scan). Save it, simulate a completely new scan with `xlabel.synth`, and run the
# command line tool on it, exactly as you would in a terminal:
#
# ```bash
# xlabel filter new_scan_master.h5 --model model.xlmodel --out filtered/
# ```

# %%
all_stats = xlabel.frame_stats(train_sources)
mlp = models.train_mlp(all_stats, train_labels, preset="256-128-64", max_iter=100)

work = Path("work_05")                   # scratch folder next to this notebook (git-ignored),
shutil.rmtree(work, ignore_errors=True)  # emptied at each run, so nothing piles up
work.mkdir()
models.save_model(mlp, work / "model.xlmodel")
new = synth.make_scan(n_frames=300, seed=2024, name="new_scan")
new_master = synth.write_scan(new, work / "new_scan")
print("model:", sorted(p.name for p in (work / "model.xlmodel").iterdir()))
print("new scan:", new_master.name, "| true bad frames:", int((new.truth["label"] == "bad").sum()))

# %%
command = [sys.executable, "-m", "xlabel.cli", "filter", str(new_master),
           "--model", str(work / "model.xlmodel"), "--out", str(work / "filtered"), "--no-progress"]
run = subprocess.run(command, capture_output=True, text=True)
print(run.stdout, run.stderr)
assert run.returncode == 0
sorted(p.name for p in (work / "filtered").iterdir())

# %% [markdown] tags=["exercise"]
# ### Exercise 2
#
# Read the per-frame result `work / "filtered" / "new_scan_filter.csv"` (columns
# `frame`, `prediction`, `probability`, `keep`, ...) and put the frame numbers that the
# filter **drops** into `answer`.

# %% tags=["answer"]
answer = None  # your code here

# %% [markdown] tags=["solution"]
# <details><summary>Solution</summary>
#
# ```python
# result = pd.read_csv(next((work / "filtered").glob("*_filter.csv")))
# answer = result.loc[~result["keep"], "frame"].to_numpy()
# ```
#
# </details>

# %% tags=["check"]
# Check cell: run it after your answer.
if answer is None:
    print("Exercise 2 not answered yet: using the solution.")
    result = pd.read_csv(next((work / "filtered").glob("*_filter.csv")))
    answer = result.loc[~result["keep"], "frame"].to_numpy()
bad = set(new.truth.loc[new.truth["label"] == "bad", "frame"])
dropped = set(map(int, answer))
recall = len(bad & dropped) / len(bad)
precision = len(bad & dropped) / max(len(dropped), 1)
print(f"dropped {len(dropped)} frames: recall {recall:.0%}, precision {precision:.0%}")
assert recall >= 0.95 and precision >= 0.9
print("Exercise 2: correct.")

# %% [markdown]
# ## Summary
#
# - Grad-CAM overlays (`GradCAMOverlay`, `models.cam`) show which pixels drive a prediction;
#   measure them against what you know about the physics.
# - A model that is right for the wrong reason fails on the next beamline: look before
#   you trust.
# - `models.save_model` writes a safe model folder (no pickle); `xlabel filter` applies it to
#   new scans and writes one CSV per scan (`keep` column) and a JSON summary.
#
# That closes the loop: raw scans, features, clusters, corrected labels, a classifier,
# explanations and filtering.
