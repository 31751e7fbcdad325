"""The guided notebooks are committed as generated, outputs stripped, with the teaching structure.

Running them is nbval's job (`pytest --nbval-lax notebooks`); here: their form, and that a
check cell really fails on a wrong answer.
"""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = ["01_explore_raw_scans.ipynb", "02_cluster_and_compare.ipynb",
            "03_correct_labels_by_lasso.ipynb", "04_train_a_classifier.ipynb",
            "05_explain_and_filter.ipynb"]
SOLUTION = "<details><summary>Solution</summary>"


def load_builder():
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOK_DIR / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_builder()


def read(name):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def test_exactly_the_five_numbered_notebooks():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == EXPECTED
    assert sorted(BUILD.NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_equals_generated(name):
    committed = (NOTEBOOK_DIR / name).read_text(encoding="utf-8")
    assert committed == BUILD.render(name), (
        f"{name} differs from notebooks/_build.py: edit the generator and run "
        f"`python notebooks/_build.py`")


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


def test_make_lab_opens_notebook_one():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "jupyter lab" in lab and EXPECTED[0] in lab


def test_check_cell_rejects_a_wrong_answer():
    """Notebook 2, exercise 1: answering "every frame is cluster 0" must fail its check."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = read("02_cluster_and_compare.ipynb")
    first = next(i for i, c in enumerate(nb.cells) if c.source.startswith("### Exercise 1"))
    answer, check = first + 1, first + 3
    nb.cells[answer].source = "answer = np.zeros(len(late), dtype=int)"
    nb.cells = nb.cells[:check + 1]
    client = NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    with pytest.raises(CellExecutionError, match="AssertionError"):
        client.execute()
