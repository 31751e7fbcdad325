"""Generate the guided notebooks: the single source of truth for notebooks/*.ipynb.

Run from the repository root after editing (outputs stay stripped)::

    .venv/bin/python notebooks/_build.py          # rewrite every notebook
    .venv/bin/python notebooks/_build.py 03       # only notebooks whose name starts with 03

tests/test_notebooks_meta.py fails when a committed notebook differs from what this
script generates, so edit here, never in the .ipynb files.

Exercise pattern: a task (markdown), an answer cell the learner fills (``answer = None``),
a collapsible solution and a check cell. The check cell falls back to the solution when
the answer is still ``None`` (so the notebook runs unattended), then asserts on real
computed results.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
NOTEBOOKS = {}  # file name -> function returning the list of cells


def notebook(name):
    """Register a function returning the cells of notebook ``name``."""
    def register(function):
        NOTEBOOKS[name] = function
        return function
    return register


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str):
    return new_code_cell(textwrap.dedent(text).strip())


def exercise(number: int, task: str, solution: str, check: str, variable: str = "answer"):
    """The four cells of an exercise: task, answer cell, collapsible solution, check cell."""
    solution = textwrap.dedent(solution).strip()
    check = textwrap.dedent(check).strip()
    fallback = (f"if {variable} is None:\n"
                f"    print(\"Exercise {number} not answered yet: using the solution.\")\n"
                + textwrap.indent(solution, "    "))
    return [
        md(f"### Exercise {number}\n\n" + textwrap.dedent(task).strip()),
        code(f"{variable} = None  # your code here"),
        md("<details><summary>Solution</summary>\n\n```python\n" + solution + "\n```\n\n</details>"),
        code(f"# Check cell: run it after your answer.\n{fallback}\n{check}\n"
             f"print(\"Exercise {number}: correct.\")"),
    ]


def build(name: str):
    """The notebook ``name`` as a NotebookNode (outputs empty)."""
    cells = []
    for item in NOTEBOOKS[name]():
        cells.extend(item if isinstance(item, list) else [item])
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL,
                                             "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:03d}"   # stable ids: regeneration gives the same bytes
    return nb


def render(name: str) -> str:
    """The exact text written for notebook ``name``."""
    return nbformat.writes(build(name)) + "\n"


# --------------------------------------------------------------------------- notebook 1
@notebook("01_explore_raw_scans.ipynb")
def explore_raw_scans():
    return [
        md("""
        # 1. Explore raw scans

        A beamline scan is a stack of detector frames. Some frames are unusable: the shutter was
        still opening at the start, the beam was lost for a while, or the detector saturated.
        Before any machine learning, **look at the data**.

        In this notebook you will:

        1. open a bundled scan (an Eiger-like NeXus master file with its data files),
        2. look at single frames on a linear and a log scale, and see why masked pixels matter,
        3. compute per-frame statistics with `xlabel.frame_stats`,
        4. plot the flux against the frame number and spot the **shutter ramp** and the **beam losses**,
        5. write a first rule that separates good from bad frames and check it against the ground truth.

        The bundled scans are synthetic (made by `xlabel.synth`), so we know the truth for every
        frame. At the end there is an optional look at real beamline data.
        """),
        code("""
        import numpy as np
        import plotly.express as px

        import xlabel
        from xlabel import samples

        samples.names()
        """),
        md("""
        ## Open a scan

        `xlabel.open_scan` accepts HDF5/NeXus files, Eiger master files, image series, `.npy`
        files and arrays. It is **lazy**: it reads the file's layout, not the frames. The master
        file of `scan_a` links to four data files of 100 frames each.
        """),
        code("""
        src = xlabel.open_scan(samples.path("scan_a"))
        print(f"{src.name}: {len(src)} frames of {src.frame_shape} {src.dtype}")
        print("dataset:", src.dataset)
        print("first frame of each data file:", src.part_starts)
        """),
        md("""
        Indexing reads only what you ask for: `src[100]` is one frame, `src[0:12]` twelve.
        """),
        code("""
        frame = src[100]
        print(frame.dtype, frame.shape, "min", frame.min(), "max", frame.max())
        """),
        md("""
        ## Look at a frame: masks and log scale

        The maximum is 65535, the largest `uint16`. Eiger detectors write that value into
        module gaps and dead pixels, and the file's `pixel_mask` lists them too.
        `xlabel.io.invalid_pixels` is the one place that decides which pixels to ignore.

        Photon counts span several orders of magnitude (a bright ring next to a dark
        background), so a **log scale** shows much more than a linear one.
        """),
        code("""
        invalid = xlabel.io.invalid_pixels(src[100:101], src)[0]
        print(f"{invalid.sum()} invalid pixels of {invalid.size}")

        shown = np.where(invalid, np.nan, frame.astype(float))
        px.imshow(shown, title="frame 100, linear scale", width=380).show()
        px.imshow(np.log10(1 + shown), title="frame 100, log10(1 + counts)", width=380).show()
        """),
        md("""
        Why the mask matters: with the flagged pixels included, the mean of a frame is
        dominated by a few hundred pixels at 65535. `open_scan(..., invalid_values="none",
        file_mask=False)` reads the file without any masking.
        """),
        code("""
        unmasked = xlabel.open_scan(samples.path("scan_a"), invalid_values="none", file_mask=False)
        print("mean of frame 100 with gap pixels:", round(float(unmasked[100].mean()), 1))
        print("mean of frame 100, valid pixels only:", round(float(frame[~invalid].mean()), 1))
        """),
        md("""
        A gallery shows many frames at once (log scale, invalid pixels in color). Here are the
        first twelve frames of the scan: watch them get brighter.
        """),
        code("""
        from xlabel.widgets import FrameGallery

        FrameGallery(src, range(12), per_page=12, columns=6, thumb_size=96)
        """),
        md("""
        ## Per-frame statistics

        `frame_stats` streams through the scan and computes one row per frame, ignoring invalid
        pixels. `mean` is the average flux per valid pixel. `flux_rel` divides it by the running
        median of the scan (window 51 frames), so a value of 1 means "as bright as its
        neighbours", whatever the exposure of the scan.
        """),
        code("""
        table = xlabel.frame_stats(src)
        table.head()
        """),
        md("""
        ## The flux-vs-frame scatter

        This plot is the central view of xlabel. Look for:

        - the **shutter ramp**: the first frames rise from almost nothing to full flux,
        - **beam losses**: short drops in the middle of the scan,
        - the slow drift of the good frames (beam decay, sample transmission): not a problem.
        """),
        code("""
        px.scatter(table, x="frame", y="mean", title="scan_a: mean flux per frame", height=350)
        """),
        code("""
        fig = px.scatter(table, x="frame", y="flux_rel", title="scan_a: flux relative to the running median",
                         height=350)
        fig.add_hline(y=0.85, line_dash="dash", annotation_text="0.85")
        fig
        """),
        exercise(1, """
            How many frames does the shutter ramp of `scan_a` last? Count the frames at the
            start of the scan before `flux_rel` first reaches 0.85. Put the number in `answer`.
            """,
            solution="""
            answer = int(np.argmax(table["flux_rel"].to_numpy() >= 0.85))
            """,
            check="""
            truth = samples.truth("scan_a")
            expected = int((truth["reason"] == "shutter").sum())
            assert answer == expected, f"{answer} frames; the ground truth has {expected} shutter frames"
            shutter_frames = answer
            """),
        exercise(2, """
            Which frames of `scan_a` were hit by a beam loss? Make `answer` an array of the frame
            numbers after the shutter ramp whose `flux_rel` is below 0.85.
            """,
            solution="""
            low = table.loc[table["flux_rel"] < 0.85, "frame"].to_numpy()
            answer = low[low >= shutter_frames]
            """,
            check="""
            expected = truth.loc[truth["reason"] == "beam_loss", "frame"].to_numpy()
            assert sorted(answer) == sorted(expected), f"got {sorted(answer)}, truth {sorted(expected)}"
            """),
        md("""
        ## All bundled scans at once

        `frame_stats` takes a list of scans and returns one table; the `scan` column tells them
        apart and `frame` restarts at 0 for each. Two scans contain **saturated** frames: a few
        pixels at the detector's count limit push the mean up by orders of magnitude, hence the
        log axis. `frac_saturated` measures them directly.
        """),
        code("""
        all_stats = xlabel.frame_stats([samples.path(name) for name in samples.names()])
        px.scatter(all_stats, x="frame", y="mean", color="scan", log_y=True, height=380,
                   hover_data=["flux_rel", "frac_saturated"])
        """),
        exercise(3, """
            Write one rule on the columns of `all_stats` that marks the bad frames of **all four**
            scans: a boolean Series `answer`, True for bad frames. Hint: combine `flux_rel` with
            `frac_saturated`. The check wants at least 99 % agreement with the truth on every scan.
            """,
            solution="""
            answer = (all_stats["flux_rel"] < 0.85) | (all_stats["frac_saturated"] > 0.005)
            """,
            check="""
            for name in samples.names():
                in_scan = (all_stats["scan"] == name).to_numpy()
                truth_bad = (samples.truth(name)["label"] == "bad").to_numpy()
                agreement = float(np.mean(np.asarray(answer)[in_scan] == truth_bad))
                print(f"{name}: {agreement:.1%} agreement")
                assert agreement >= 0.99, f"{name}: only {agreement:.1%} agreement with the truth"
            """),
        md("""
        A hand-made threshold works here because the synthetic scans are clean. On real data the
        thresholds move from beamline to beamline and new kinds of bad frames appear: that is why
        the next notebooks cluster, correct labels by hand and train a classifier.

        ## Optional: real beamline data

        If the folder `shared/realdata` sits next to the repository (see its README), this cell
        opens 3201 real frames from Diamond Light Source (beamline K11). The instrument labels
        each frame: 0 projection, 1 flat field (open beam), 2 dark (shutter closed).
        """),
        code("""
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
        """),
        md("""
        ## Summary

        - `open_scan` opens a scan lazily; `src[i]` reads one frame.
        - Invalid pixels (module gaps, dead pixels, flagged values) must be excluded, or the mean
          flux is meaningless; `frame_stats` does it for you.
        - Frames are best viewed on a log scale.
        - The flux-vs-frame scatter shows the shutter ramp and beam losses at a glance;
          `flux_rel` compares each frame to its neighbours; `frac_saturated` finds saturation.

        Next: **02_cluster_and_compare.ipynb** finds the groups automatically with K-means and DBSCAN.
        """),
    ]


# --------------------------------------------------------------------------- notebook 2
@notebook("02_cluster_and_compare.ipynb")
def cluster_and_compare():
    return [
        md("""
        # 2. Cluster and compare

        Labeling thousands of frames by hand is slow. Clustering proposes groups for free.
        In this notebook you will:

        1. run **K-means** and **DBSCAN** on the mean flux of a scan,
        2. compare the two clusterings in the cluster comparison panel,
        3. learn why **cluster ids need alignment** (and why "flip if the first frame is 1" breaks),
        4. see **when each method fails** and pick a feature that makes clustering work on every scan.
        """),
        code("""
        import numpy as np
        import xlabel
        from xlabel import cluster, samples
        from xlabel.widgets import ClusterComparison

        stats = xlabel.frame_stats([samples.path(name) for name in samples.names()])
        scan_a = stats[stats["scan"] == "scan_a"].reset_index(drop=True)
        truth_a = (samples.truth("scan_a")["label"] == "bad").to_numpy()
        """),
        md("""
        ## K-means and DBSCAN on the flux

        K-means with `k=2` always returns two clusters, numbered by ascending center: 0 is the
        darker one. DBSCAN groups frames that sit densely together; frames in sparse regions are
        noise (`-1`), and the number of clusters is whatever the data gives.
        """),
        code("""
        km = cluster.kmeans(scan_a, k=2)
        db, info = cluster.dbscan(scan_a, return_info=True)
        print("K-means cluster sizes:", np.bincount(km))
        print("DBSCAN:", info["n_clusters"], "clusters,", info["n_noise"], "noise frames, eps =",
              round(info["eps"], 4), "(standard deviations, chosen at the knee)")
        print("K-means 'cluster 0 = bad' agrees with the truth on", f"{np.mean((km == 0) == truth_a):.1%}")
        """),
        md("""
        The comparison panel shows both clusterings side by side; a lasso in one panel highlights
        the same frames in the other. DBSCAN cuts the good frames into several clusters because
        the flux drifts slowly between beam top-ups: density changes, so clusters split.
        """),
        code("""
        view = ClusterComparison(scan_a, km, db, names=("kmeans", "dbscan"))
        view
        """),
        code("""
        result = cluster.compare(km, db)
        print(f"adjusted Rand index {result.ari:.3f}, {result.disagree.size} frames differ")
        result.table
        """),
        md("""
        ## Why cluster ids need alignment

        A cluster id is a name, not a meaning. DBSCAN numbers clusters in the order it meets them;
        another method, another scan or another run may call the bad frames 0 or 1.
        `compare` first **aligns** `b` to `a` (`cluster.align_labels`: the Hungarian algorithm
        matches the clusters that overlap most), so its table reads like a confusion matrix.

        A common shortcut is "if the first frame is in cluster 1, flip the labels". It assumes the
        first frame is bad. Take a scan that starts after the shutter opened:
        """),
        code("""
        late = scan_a.iloc[20:].reset_index(drop=True)
        late_truth = truth_a[20:]
        ids = cluster.kmeans(late, k=2)
        naive = 1 - ids if ids[0] == 1 else ids          # the shortcut: frame 0 is assumed bad (= 0)
        print("first frame in cluster", ids[0], "-> naive rule agreement:",
              f"{np.mean((naive == 0) == late_truth):.1%}")
        """),
        exercise(1, """
            Give the clusters of `late` a meaning that does not depend on the first frame: make
            `answer` the cluster ids renumbered so that cluster 0 is the darkest
            (hint: `cluster.order_by`).
            """,
            solution="""
            answer = cluster.order_by(cluster.kmeans(late, k=2), late["mean"])
            """,
            check="""
            agreement = np.mean((np.asarray(answer) == 0) == late_truth)
            print(f"cluster 0 = bad agrees with the truth on {agreement:.1%}")
            assert agreement >= 0.99
            """),
        md("""
        ## When each method fails

        Scans `scan_c` and `scan_d` contain saturated frames whose mean is 100 to a million times
        the normal flux. K-means minimizes squared distances, so one far outlier gets a cluster of
        its own and the shutter ramp and beam loss are lumped with the good frames. DBSCAN
        z-scores the column first (`scale=True`), and that outlier inflates the standard
        deviation so much that every other frame looks identical.
        """),
        code("""
        for name in samples.names():
            table = stats[stats["scan"] == name].reset_index(drop=True)
            truth = (samples.truth(name)["label"] == "bad").to_numpy()
            km = cluster.kmeans(table, k=2)
            db = cluster.dbscan(table)
            print(f"{name}: K-means sizes {np.bincount(km).tolist()}, agreement {np.mean((km == 0) == truth):.1%};"
                  f" DBSCAN finds {db.max() + 1} cluster(s) and {np.sum(db < 0)} noise frames")
        """),
        md("""
        The cure is a better feature, not a better algorithm: `flux_rel` (flux relative to the
        running median of the scan) is about 1 for every good frame, whatever the scan's exposure.
        With `scale=False`, DBSCAN's `eps` is in `flux_rel` units, so "frames within 5 % of each
        other" is a physical statement. The largest cluster is then the good frames; everything
        else (noise, the beam-loss plateau, saturated frames) is suspect.
        """),
        exercise(2, """
            Write `answer = label_scan`, a function taking one scan's feature table and returning
            a boolean array (True = bad), that reaches 99 % agreement with the truth on **every**
            bundled scan. Hint: DBSCAN on `columns=["flux_rel"]`, `scale=False`, `eps=0.05`.
            """,
            solution="""
            def label_scan(table):
                ids = cluster.dbscan(table, columns=["flux_rel"], scale=False, eps=0.05)
                largest = np.bincount(ids[ids >= 0]).argmax()
                return ids != largest
            answer = label_scan
            """,
            check="""
            for name in samples.names():
                table = stats[stats["scan"] == name].reset_index(drop=True)
                truth = (samples.truth(name)["label"] == "bad").to_numpy()
                agreement = np.mean(np.asarray(answer(table)) == truth)
                print(f"{name}: {agreement:.1%}")
                assert agreement >= 0.99, name
            """),
        md("""
        ## Summary

        - K-means has a fixed number of clusters and is stable, but one outlier can steal a cluster.
        - DBSCAN finds any number of clusters and marks sparse frames as noise, but its clusters
          split when the flux drifts, and `eps` depends on the scaling.
        - Cluster ids carry no meaning: use `order_by` (cluster 0 = darkest) or `align_labels`
          (match to a reference), never "flip if the first frame is 1".
        - A scale-free feature (`flux_rel`) makes one recipe work on every scan.

        Clusters are proposals. Next: **03_correct_labels_by_lasso.ipynb** turns them into labels
        and corrects the mistakes by hand.
        """),
    ]

# --------------------------------------------------------------------------- notebook 3
@notebook("03_correct_labels_by_lasso.ipynb")
def correct_labels_by_lasso():
    return [
        md("""
        # 3. Correct labels by lasso

        Clusters are good proposals and bad labels: a few frames always land on the wrong side.
        In this notebook you will:

        1. seed a `LabelStore` from K-means clusters,
        2. find the frames that clustering got wrong on the flux scatter and fix them with the **lasso**,
        3. use **undo/redo** and read the history,
        4. **save**, **reopen** and **export** the labels for training.

        The `LabelStore` is the single source of truth: every widget reads it and redraws when it
        changes, and every change is journaled to disk before it returns.
        """),
        code("""
        import tempfile
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
            \"\"\"Share of frames whose label in the store equals the ground truth.\"\"\"
            names = np.array(store.classes + ("",))[store.labels]   # -1 (unlabeled) -> ""
            return float(np.mean(names == truth))
        """),
        md("""
        ## Seed the labels from clusters

        The store lives in a folder (here a temporary one; use a folder next to your data in real
        work). `order_by` makes cluster 0 the darkest, so the mapping "0 is bad" is safe.
        """),
        code("""
        work = Path(tempfile.mkdtemp(prefix="xlabel-notebook3-"))
        store = LabelStore(len(table), classes=("good", "bad"), path=work / "scan_a.xlabel")
        ids = cluster.order_by(cluster.kmeans(table, k=2), table["mean"])
        store.seed_from(ids, mapping={0: "bad", 1: "good"}, source="kmeans")
        print(store.counts(), f"agreement with the truth: {agreement(store):.2%}")
        """),
        md("""
        ## Look, then lasso

        Run the next cell. In the scatter, pick the **lasso** tool, draw around the points you want
        to relabel, then press the **bad** button (or key `2`). `Ctrl+Z` undoes. Turn on the log
        axis or switch `y` to `flux_rel` to see the shutter ramp better. The selected frames appear
        as thumbnails below the plot.

        Look at the end of the shutter ramp and at the edges of the beam loss near frame 70: a few
        half-bright frames are still colored *good*.
        """),
        code("""
        scatter = FluxScatter(store, table, source=src)
        scatter
        """),
        exercise(1, """
            Relabel the frames that K-means got wrong. Either draw a lasso around them in the
            scatter and set `answer = scatter.selected`, or select them in code: the frames still
            labeled *good* whose `flux_rel` is below 0.85. The check cell selects `answer` and
            assigns *bad*, exactly like the button (`scatter.select(...)`, `scatter.assign("bad")`).
            """,
            solution="""
            good = store.class_index("good")
            answer = np.flatnonzero((table["flux_rel"] < 0.85).to_numpy() & (store.labels == good))
            """,
            check="""
            scatter.select(answer)
            scatter.assign("bad", note="end of shutter ramp and beam-loss edges")
            print(f"relabeled frames {list(map(int, answer))}; agreement {agreement(store):.2%}")
            assert agreement(store) >= 0.99
            """),
        md("""
        ## Undo, redo and history

        Every assignment is one step. `undo()` and `redo()` walk through them (the widget's buttons
        and `Ctrl+Z` do the same); `history` lists what happened, and `provenance(i)` tells who
        labeled a frame and when.
        """),
        code("""
        before = agreement(store)
        store.undo()
        print(f"after undo: {agreement(store):.2%}")
        store.redo()
        print(f"after redo: {agreement(store):.2%}")
        assert agreement(store) == before
        store.history[["kind", "step", "label", "source", "n_frames", "note", "applied"]]
        """),
        code("""
        store.provenance(10)
        """),
        md("""
        ## Save, reopen, export

        There is no "save" button to forget: the journal on disk already holds every step.
        `close()` releases the files; `LabelStore.open` reopens the folder with labels, history and
        provenance. `to_csv` exports `frame,label,...` for `xlabel train` or any other tool.
        """),
        code("""
        path = store.path
        store.close()
        print(sorted(p.name for p in Path(path).iterdir()))
        """),
        exercise(2, """
            Reopen the store from `path` into `answer`, and export it to `work / "scan_a_labels.csv"`.
            """,
            solution="""
            answer = LabelStore.open(path)
            answer.to_csv(work / "scan_a_labels.csv")
            """,
            check="""
            exported = pd.read_csv(work / "scan_a_labels.csv", keep_default_na=False)
            assert agreement(answer) >= 0.99
            assert (exported["label"].to_numpy() == truth).mean() >= 0.99
            assert answer.provenance(10)["source"] == "manual"
            print(f"reopened: {answer.counts()}; the CSV has {len(exported)} rows")
            """),
        md("""
        ## Summary

        - `seed_from` turns cluster ids into labels in one undoable step.
        - The flux scatter with the lasso fixes what clustering got wrong; `scatter.select(...)` and
          `scatter.assign(...)` do the same from code.
        - `undo`/`redo`, `history` and `provenance` keep track of every change; the journal saves
          as you go, `LabelStore.open` reopens, `to_csv` exports.
        - Here the corrected labels match the ground truth to better than 99 %.

        Next: **04_train_a_classifier.ipynb** trains a classifier on corrected labels.
        """),
    ]

# --------------------------------------------------------------------------- notebook 4
@notebook("04_train_a_classifier.ipynb")
def train_a_classifier():
    return [
        md("""
        # 4. Train a classifier

        With corrected labels on a few scans, a classifier can label the next thousand scans.
        In this notebook you will:

        1. split the data **by scan**, so the test really is new data,
        2. see why **recall and precision** of the bad class matter more than accuracy,
        3. train the two **MLP presets** on features and a small **CNN** on the frames,
        4. explore the errors in the **confusion-matrix viewer** and fix a wrong label from it,
        5. measure recall and precision on a **held-out scan**.

        The labels are the ground truth of the bundled scans: what notebook 3's lasso gives you.
        Training is kept short so the notebook runs in about a minute on a laptop CPU.
        """),
        code("""
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
        """),
        md("""
        ## An honest split: hold out whole scans

        Neighbouring frames of a scan are nearly identical. A random split puts frame 100 in the
        training set and frame 101 in the test set, and the test score only measures memory.
        `models.split` keeps whole scans apart (one scan: contiguous blocks).
        """),
        code("""
        train, test = models.split(stats, test_size=0.25, seed=0)
        test_scans = sorted(stats["scan"].iloc[test].unique())
        print("train scans:", sorted(stats["scan"].iloc[train].unique()), "test scans:", test_scans)
        """),
        md("""
        ## Accuracy lies when classes are imbalanced

        Only about 6 % of the frames are bad. A "classifier" that calls every frame good is 94 %
        accurate and useless. Look at the **recall** of the bad class (the share of bad frames
        found) and its **precision** (the share of flagged frames that are really bad), and the
        balanced accuracy (mean recall over classes).
        """),
        code("""
        always_good = np.full(len(test), "good", dtype=object)
        lazy = models.evaluate(labels[test], always_good, classes=("good", "bad"))
        print(f"accuracy {lazy.accuracy:.1%}, balanced accuracy {lazy.balanced_accuracy:.1%}")
        lazy.per_class
        """),
        md("""
        ## MLP presets on features

        Two multi-layer perceptrons, 512-256-128 and 256-128-64 hidden units. First on the raw
        mean flux alone (the classic baseline), then on xlabel's default features
        (`flux_rel`, `frac_saturated`), which do not depend on the scan's exposure.
        """),
        code("""
        def bad_scores(model, data, truth):
            result = models.evaluate(truth, model.predict(data), model.classes)
            return result.per_class.loc["bad", ["precision", "recall"]].round(3).to_dict()

        for preset in models.PRESETS:
            for columns in (models.BASELINE_COLUMNS, models.DEFAULT_COLUMNS):
                mlp = models.train_mlp(stats.iloc[train], labels[train], preset=preset,
                                       columns=columns, max_iter=100)
                print(f"{preset:12} {'+'.join(columns):26}", bad_scores(mlp, stats.iloc[test], labels[test]))
        """),
        md("""
        ## A CNN on the frames

        The CNN sees the (binned, log-scaled) pixels instead of hand-made features. `groups`
        makes its validation set hold out whole scans too. Real training runs for 30 epochs;
        here 4 epochs on 32x32 frames keep it quick.
        """),
        code("""
        train_scans = [s for s, name in zip(sources, names) if name not in test_scans]
        test_sources = [s for s, name in zip(sources, names) if name in test_scans]
        train_groups = stats["scan"].iloc[train].to_numpy()
        cnn = models.train_cnn(train_scans, labels[train], groups=train_groups, size=32, epochs=4,
                               seed=0, threads=2)
        cnn_pred = np.concatenate([cnn.predict(s) for s in test_sources])
        print("CNN on the held-out scan(s):", bad_scores(cnn, test_sources[0], labels[test])
              if len(test_sources) == 1 else models.evaluate(labels[test], cnn_pred, cnn.classes).summary())
        """),
        md("""
        ## The confusion-matrix viewer

        Rows are the labels in the store, columns the predictions. Click a cell (or call
        `open_cell`) to see its frames in the gallery below, and relabel them there. The store is
        live: relabel a frame anywhere and the matrix redraws.

        Misclassified frames are where wrong labels hide. To see it, we slip on purpose: the
        store of the held-out scan gets a few bad frames labeled *good*, as a careless lasso would.
        """),
        code("""
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
        """),
        exercise(1, """
            Open the cell "labeled good, predicted bad", look at its frames and relabel the ones
            that really are bad. In code: `frames = viewer.open_cell("good", "bad")`, then
            `store.assign(frames, "bad")` (or select them in the gallery and press "→ bad").
            Put the relabeled frames in `answer`.
            """,
            solution="""
            answer = viewer.open_cell("good", "bad")
            store.assign(answer, "bad", note="fixed from the confusion matrix")
            """,
            check="""
            fixed = np.array(store.classes)[store.labels]
            assert set(slipped) <= set(map(int, answer)), "some slipped frames were not relabeled"
            assert np.mean(fixed == test_truth) >= 0.99
            print(f"store agrees with the truth on {np.mean(fixed == test_truth):.1%} of the held-out scan")
            """),
        exercise(2, """
            What are the recall and the precision of the class *bad* of `model` on the held-out
            scan? Put them in `answer` as a tuple `(recall, precision)`
            (hint: `models.evaluate(...).per_class`).
            """,
            solution="""
            scores = models.evaluate(test_truth, model.predict(test_table), model.classes).per_class
            answer = (scores.loc["bad", "recall"], scores.loc["bad", "precision"])
            """,
            check="""
            predicted_bad = model.predict(test_table) == "bad"
            true_bad = test_truth == "bad"
            recall = np.sum(predicted_bad & true_bad) / np.sum(true_bad)
            precision = np.sum(predicted_bad & true_bad) / max(np.sum(predicted_bad), 1)
            assert np.allclose(answer, (recall, precision)), f"expected {(recall, precision)}"
            print(f"recall {recall:.1%}, precision {precision:.1%}")
            assert recall >= 0.95, "the default features should find at least 95 % of the bad frames"
            """),
        md("""
        ## Summary

        - Split **by scan**: neighbouring frames are near copies, so a random split flatters.
        - With imbalanced classes, report recall and precision of the rare class and balanced
          accuracy, not accuracy.
        - Features that are relative to the scan (`flux_rel`, `frac_saturated`) generalize to new
          scans; absolute flux does not. The CNN learns from pixels and needs more epochs.
        - The confusion-matrix viewer turns model errors into label corrections.

        Next: **05_explain_and_filter.ipynb** asks what the CNN looks at and filters a new scan.
        """),
    ]

# --------------------------------------------------------------------------- notebook 5
@notebook("05_explain_and_filter.ipynb")
def explain_and_filter():
    return [
        md("""
        # 5. Explain and filter

        A classifier you cannot question is a classifier you should not trust. In this notebook
        you will:

        1. train a small CNN and overlay **Grad-CAM** heat maps on good and bad frames,
        2. ask **what the model looks at**, and whether that is physics or an accident,
        3. save a model and **filter a brand-new scan** with the `xlabel filter` command.
        """),
        code("""
        import json
        import subprocess
        import sys
        import tempfile
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
        """),
        md("""
        ## Grad-CAM: where does the evidence come from?

        Grad-CAM weighs the last convolution layer's feature maps by how much they push the score
        of a class, and shows the result as a heat map over the frame. We look at `scan_d`, which
        the CNN never saw: a good frame, a shutter frame, a beam-loss frame and the saturated frame.
        Use the controls to change the class, the layer, the method (Grad-CAM++, XGradCAM) and the
        opacity; ◀ ▶ step through the frames.
        """),
        code("""
        src = xlabel.open_scan(samples.path("scan_d"))
        truth = samples.truth("scan_d")
        picks = [int(truth.query(f"reason == '{reason}'")["frame"].iloc[0])
                 for reason in ("", "shutter", "beam_loss", "saturated")]
        prediction = cnn.predict(src)
        print("frames", picks, "predicted", list(prediction[picks]), "truth", list(truth["label"][picks]))
        overlay = GradCAMOverlay(cnn, src, indices=picks, predictions=prediction)
        overlay
        """),
        md("""
        `models.cam` returns the same maps as arrays (one per frame, scaled to 0..1), so you can
        measure what the model looks at instead of eyeballing it. For a saturated frame, a model
        that learned the physics should look at the saturated pixels.
        """),
        code("""
        frames = src[picks]
        maps = models.cam(cnn, frames, target="bad")
        for kind, frame_map in zip(["good", "shutter", "beam loss", "saturated"], maps):
            print(f"{kind:10} strongest 'bad' evidence {frame_map.max():.2f}, mean {frame_map.mean():.2f}")
        saturated = frames[3] == np.iinfo(frames.dtype).max - 1      # count cutoff of this detector
        share = maps[3][saturated].sum() / max(maps[3].sum(), 1e-12)
        print(f"{int(saturated.sum())} saturated pixels carry {share:.0%} of the saturated frame's map"
              " (an all-zero map means: no evidence for 'bad' at all)")
        """),
        exercise(1, """
            Which frames of `scan_d` does the CNN call *bad*? Put their frame numbers in `answer`
            and compare them with the truth: the check wants at least 90 % of the flagged frames to
            be really bad (precision) on this scan the CNN never saw.
            """,
            solution="""
            answer = np.flatnonzero(prediction == "bad")
            """,
            check="""
            really_bad = set(truth.loc[truth["label"] == "bad", "frame"])
            precision = len(really_bad & set(map(int, answer))) / max(len(answer), 1)
            recall = len(really_bad & set(map(int, answer))) / len(really_bad)
            print(f"{len(answer)} frames flagged; precision {precision:.0%}, recall {recall:.0%}")
            assert len(answer) > 0 and precision >= 0.9
            """),
        md("""
        A short training run finds the dark frames (the whole detector is dim: the heat map spreads
        over the frame) more easily than a single saturated frame (a few pixels). Train longer or
        on more saturated examples, and check the maps again: Grad-CAM tells you *why* a model is
        right or wrong, not only *that* it is.

        ## Filter a new scan with `xlabel filter`

        For production filtering we use the feature MLP of notebook 4 (it generalized perfectly
        to a new scan). Save it, simulate a completely new scan with `xlabel.synth`, and run the
        command line tool on it, exactly as you would in a terminal:

        ```bash
        xlabel filter new_scan_master.h5 --model model.xlmodel --out filtered/
        ```
        """),
        code("""
        all_stats = xlabel.frame_stats(train_sources)
        mlp = models.train_mlp(all_stats, train_labels, preset="256-128-64", max_iter=100)

        work = Path(tempfile.mkdtemp(prefix="xlabel-notebook5-"))
        models.save_model(mlp, work / "model.xlmodel")
        new = synth.make_scan(n_frames=300, seed=2024, name="new_scan")
        new_master = synth.write_scan(new, work / "new_scan")
        print("model:", sorted(p.name for p in (work / "model.xlmodel").iterdir()))
        print("new scan:", new_master.name, "| true bad frames:", int((new.truth["label"] == "bad").sum()))
        """),
        code("""
        command = [sys.executable, "-m", "xlabel.cli", "filter", str(new_master),
                   "--model", str(work / "model.xlmodel"), "--out", str(work / "filtered"), "--no-progress"]
        run = subprocess.run(command, capture_output=True, text=True)
        print(run.stdout, run.stderr)
        assert run.returncode == 0
        sorted(p.name for p in (work / "filtered").iterdir())
        """),
        exercise(2, """
            Read the per-frame result `work / "filtered" / "new_scan_filter.csv"` (columns
            `frame`, `prediction`, `probability`, `keep`, ...) and put the frame numbers that the
            filter **drops** into `answer`.
            """,
            solution="""
            result = pd.read_csv(next((work / "filtered").glob("*_filter.csv")))
            answer = result.loc[~result["keep"], "frame"].to_numpy()
            """,
            check="""
            bad = set(new.truth.loc[new.truth["label"] == "bad", "frame"])
            dropped = set(map(int, answer))
            recall = len(bad & dropped) / len(bad)
            precision = len(bad & dropped) / max(len(dropped), 1)
            print(f"dropped {len(dropped)} frames: recall {recall:.0%}, precision {precision:.0%}")
            assert recall >= 0.95 and precision >= 0.9
            """),
        md("""
        ## Summary

        - Grad-CAM overlays (`GradCAMOverlay`, `models.cam`) show which pixels drive a prediction;
          measure them against what you know about the physics.
        - A model that is right for the wrong reason fails on the next beamline: look before
          you trust.
        - `models.save_model` writes a safe model folder (no pickle); `xlabel filter` applies it to
          new scans and writes one CSV per scan (`keep` column) and a JSON summary.

        That closes the loop: raw scans, features, clusters, corrected labels, a classifier,
        explanations and filtering.
        """),
    ]

def main(argv):
    prefixes = argv or [""]
    for name in NOTEBOOKS:
        if any(name.startswith(p) for p in prefixes):
            (HERE / name).write_text(render(name), encoding="utf-8")
            print("wrote", HERE / name)


if __name__ == "__main__":
    main(sys.argv[1:])
