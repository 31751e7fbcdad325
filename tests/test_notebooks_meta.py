"""The guided notebooks: paired with their jupytext scripts, outputs stripped, teaching structure.

Each ``notebooks/NN_name.ipynb`` is paired with ``notebooks/NN_name.py`` (jupytext percent
format); either side may be edited, then ``jupytext --sync notebooks/*.ipynb`` updates the
other. Running them is nbval's job (``pytest --nbval-lax notebooks``); here: the pairs agree,
their form, and that a check cell really fails on a wrong answer.
"""

import difflib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = ["01_explore_raw_scans.ipynb", "02_cluster_and_compare.ipynb",
            "03_correct_labels_by_lasso.ipynb", "04_train_a_classifier.ipynb",
            "05_explain_and_filter.ipynb"]
SOLUTION = "<details><summary>Solution</summary>"
PAIRING = "ipynb,py:percent"
# The four cells of an exercise, in order, and the tag each one carries.
EXERCISE_TAGS = ("exercise", "answer", "solution", "check")


def read(name, directory=NOTEBOOK_DIR):
    return nbformat.read(directory / name, as_version=4)


def script_of(name, directory=NOTEBOOK_DIR):
    return directory / (Path(name).stem + ".py")


def tags(cell):
    return cell.metadata.get("tags", [])


def out_of_sync(name, directory=NOTEBOOK_DIR):
    """A diff between the notebook and its script, both as jupytext renders them ('' if none).

    Both sides go through jupytext's own percent rendering, so cell ids and the cell metadata
    that jupytext does not pair (JupyterLab's ``collapsed``, ``scrolled``...) are ignored.
    """
    from_notebook = jupytext.writes(read(name, directory), fmt="py:percent")
    from_script = jupytext.writes(jupytext.read(script_of(name, directory)), fmt="py:percent")
    return "".join(difflib.unified_diff(from_script.splitlines(True),
                                        from_notebook.splitlines(True),
                                        f"{script_of(name).name}", name))


def test_exactly_the_five_numbered_notebooks_and_their_scripts():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == EXPECTED
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.py")) == [
        script_of(name).name for name in EXPECTED]


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_paired_with_its_script(name):
    nb = read(name)
    assert nb.metadata["jupytext"]["formats"] == PAIRING
    script = jupytext.read(script_of(name))
    assert script.metadata["jupytext"]["formats"] == PAIRING
    assert script.metadata["kernelspec"] == nb.metadata["kernelspec"]


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_and_script_are_in_sync(name):
    diff = out_of_sync(name)
    assert not diff, (f"notebooks/{name} and its script differ: run "
                      f"`jupytext --sync notebooks/*.ipynb`\n{diff}")


@pytest.mark.parametrize("name", EXPECTED)
def test_outputs_are_stripped(name):
    nb = read(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("name", EXPECTED)
def test_intro_summary_and_exercises(name):
    cells = read(name).cells
    assert cells[0].cell_type == "markdown" and "you will" in cells[0].source
    assert re.match(r"# \d\. ", cells[0].source), "the first cell starts with the numbered title"
    assert cells[-1].cell_type == "markdown" and cells[-1].source.startswith("## Summary")
    solutions = [i for i, cell in enumerate(cells) if SOLUTION in cell.source]
    assert len(solutions) >= 2, "each notebook has at least two exercises"
    for i in solutions:
        task, answer, check = cells[i - 2], cells[i - 1], cells[i + 1]
        assert task.cell_type == "markdown" and task.source.startswith("### Exercise")
        assert answer.cell_type == "code" and "= None" in answer.source
        assert check.cell_type == "code" and "assert" in check.source
        assert [tags(c) for c in cells[i - 2:i + 2]] == [[t] for t in EXERCISE_TAGS]
    tagged = [i for i, cell in enumerate(cells) if "solution" in tags(cell)]
    assert tagged == solutions, "a cell is tagged 'solution' exactly when it holds a solution"


def test_make_lab_opens_notebook_one():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "jupyter lab" in lab and EXPECTED[0] in lab


def test_sync_carries_a_script_edit_into_the_notebook(tmp_path):
    """The documented workflow: edit the .py, `jupytext --sync`, the .ipynb follows.

    Cell ids of unchanged cells survive (small diffs), and an unsynced edit is caught.
    """
    name = EXPECTED[1]
    for path in (NOTEBOOK_DIR / name, script_of(name)):
        shutil.copy(path, tmp_path / path.name)
    ids_before = [cell.id for cell in read(name, tmp_path).cells]
    script = script_of(name, tmp_path)
    text = script.read_text(encoding="utf-8")
    edited = text.replace("km = cluster.kmeans(scan_a, k=2)\n",
                          "km = cluster.kmeans(scan_a, k=2)  # edited as text\n", 1)
    assert edited != text
    script.write_text(edited, encoding="utf-8")
    assert out_of_sync(name, tmp_path), "an edit to the script alone must be reported"

    subprocess.run([sys.executable, "-m", "jupytext", "--sync", str(script)],
                   check=True, capture_output=True)
    assert not out_of_sync(name, tmp_path)
    cells = read(name, tmp_path).cells
    assert [cell.id for cell in cells] == ids_before
    assert any("# edited as text" in cell.source for cell in cells)


def test_check_cell_rejects_a_wrong_answer():
    """Notebook 2, exercise 1: answering "every frame is cluster 0" must fail its check."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = read("02_cluster_and_compare.ipynb")
    first = next(i for i, c in enumerate(nb.cells) if c.source.startswith("### Exercise 1"))
    answer, check = first + 1, first + 3
    assert "answer" in tags(nb.cells[answer]) and "check" in tags(nb.cells[check])
    nb.cells[answer].source = "answer = np.zeros(len(late), dtype=int)"
    nb.cells = nb.cells[:check + 1]
    client = NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    with pytest.raises(CellExecutionError, match="AssertionError"):
        client.execute()
