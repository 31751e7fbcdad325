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
            "05_explain_and_filter.ipynb", "06_tag_scattering_images.ipynb",
            "07_bin_by_embedding.ipynb", "08_find_local_defects.ipynb",
            "09_what_to_label_next.ipynb"]
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


# ----------------------------------------------------------------- make lab

def lab_clone(tmp_path):
    """A git repository with this one's Makefile (and what it names), tools/ and notebooks/."""
    clone = tmp_path / "repo"
    clone.mkdir()
    for name in ("Makefile", ".gitignore", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, clone / name)
    shutil.copytree(ROOT / "tools", clone / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    (clone / "notebooks").mkdir()
    for name in EXPECTED:
        for path in (NOTEBOOK_DIR / name, script_of(name)):
            shutil.copy(path, clone / "notebooks" / path.name)
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone")
    return clone


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def make(cwd, *args):
    return subprocess.run(["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def add_cell(path, source):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)


def test_make_lab_serves_a_git_ignored_copy_that_never_edits_the_repository(tmp_path):
    clone = lab_clone(tmp_path)
    planned = make(clone, "-n", "lab")
    assert "--ServerApp.root_dir=lab " in planned and "tools/lab_copy.py notebooks lab" in planned
    assert "root_dir=notebooks" not in planned

    make(clone, "lab-notebooks")
    lab = clone / "lab"
    assert sorted(p.name for p in lab.glob("*.ipynb")) == EXPECTED
    assert sorted(p.name for p in lab.glob("*.py")) == [script_of(n).name for n in EXPECTED]
    assert (lab / EXPECTED[0]).read_bytes() == (NOTEBOOK_DIR / EXPECTED[0]).read_bytes()
    # what JupyterLab does there: autosave with outputs, File > New, notebook scratch folders
    add_cell(lab / EXPECTED[0], "print('learner was here')")
    (lab / "Untitled.ipynb").write_text("{}")
    (clone / "notebooks" / "work_03").mkdir()
    (clone / "notebooks" / "work_03" / "journal.bin").write_bytes(b"x")
    assert git(clone, "status", "--porcelain") == ""

    # sources unchanged: the learner's edit stays
    assert "lab/:" not in make(clone, "lab-notebooks")
    assert "learner was here" in (lab / EXPECTED[0]).read_text()

    # new sources win: an untouched copy is replaced, an edited one set aside first
    for name in EXPECTED[:2]:
        add_cell(clone / "notebooks" / name, "print('new upstream cell')")
    out = make(clone, "lab-notebooks")
    for name in EXPECTED[:2]:
        assert (lab / name).read_bytes() == (clone / "notebooks" / name).read_bytes()
    kept = list((lab / "edited").glob(Path(EXPECTED[0]).stem + "-*.ipynb"))
    assert len(kept) == 1 and "learner was here" in kept[0].read_text()
    assert f"your edited copy is kept as lab/edited/{kept[0].name}" in out
    assert not list((lab / "edited").glob(Path(EXPECTED[1]).stem + "-*"))
    assert f"updated {EXPECTED[1]}" in out
    # the script is not older than its notebook (jupytext refuses to open it otherwise)
    notebook, script = lab / EXPECTED[1], script_of(EXPECTED[1], lab)
    assert script.stat().st_mtime >= notebook.stat().st_mtime
    assert git(clone, "status", "--porcelain") == " M notebooks/" + EXPECTED[0] + "\n" + \
        " M notebooks/" + EXPECTED[1] + "\n"


# ----------------------------------------------------------------- scratch folders and live widgets

def test_notebook_3_run_all_leaves_a_working_widget_and_nothing_in_tmp(tmp_path, monkeypatch):
    """After "Run All" the scatter's buttons still write to the store; /tmp stays clean."""
    from nbclient import NotebookClient

    name = "03_correct_labels_by_lasso.ipynb"
    run_dir, temp = tmp_path / "run", tmp_path / "tmp"
    run_dir.mkdir()
    temp.mkdir()
    nb = read(name)
    nb.cells.append(nbformat.v4.new_code_cell(
        "before = store.labels.copy()\n"
        "scatter.select([200, 201])\n"
        "scatter.plot._handle_custom_msg({'type': 'button', 'id': 'assign:1'}, [])  # 'bad'\n"
        "assert not scatter.status.startswith('⚠'), scatter.status\n"
        "assert store.labels[[200, 201]].tolist() == [1, 1]\n"
        "scatter.plot._handle_custom_msg({'type': 'button', 'id': 'undo'}, [])\n"
        "assert not scatter.status.startswith('⚠'), scatter.status\n"
        "assert (store.labels == before).all()\n"))
    monkeypatch.setenv("TMPDIR", str(temp))           # the kernel's tempfile.gettempdir()
    NotebookClient(nb, timeout=180, resources={"metadata": {"path": str(run_dir)}}).execute()
    assert (run_dir / "work_03" / "scan_a.xlabel").is_dir()      # next to the notebook
    assert [p.name for p in temp.iterdir()] == []


def test_notebook_scratch_folders_are_next_to_the_notebook_and_git_ignored():
    for name in EXPECTED:
        text = script_of(name).read_text(encoding="utf-8")
        assert "mkdtemp" not in text and "tempfile" not in text and "/tmp" not in text, name
        for folder in re.findall(r'Path\("(work_\d\d)"\)', text):
            ignored = subprocess.run(["git", "check-ignore", "-q", f"notebooks/{folder}/x"],
                                     cwd=ROOT)
            assert ignored.returncode == 0, f"notebooks/{folder}/ is not git-ignored"
    assert 'Path("work_05")' in script_of(EXPECTED[4]).read_text(encoding="utf-8")


# ----------------------------------------------------------------- doctests

def test_make_test_runs_the_docstring_examples_of_xlabel():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "--doctest-modules" in recipe and " xlabel" in recipe and "--nbval-lax" in recipe


def test_doctest_collection_never_imports_the_notebook_scripts(tmp_path):
    """With --doctest-modules a notebooks/*.py would be imported, i.e. the notebook run.

    The repository's conftest.py, in a scratch tree whose notebook script fails on import
    and whose package holds one docstring example.
    """
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_demo.py").write_text("raise RuntimeError('notebook ran')\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text('def f():\n    """\n    >>> 1 + 1\n    2\n    """\n')
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--doctest-modules", "notebooks", "pkg"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr
    assert "notebook ran" not in run.stdout + run.stderr


def test_doctest_pending_names_existing_modules_only():
    """Entries of conftest.DOCTEST_PENDING are real module paths (the lead removes them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for entry in module.DOCTEST_PENDING:
        assert (ROOT / entry).exists(), f"DOCTEST_PENDING names {entry}, which does not exist"
        assert entry.startswith("xlabel/")
    assert module.collect_ignore == module.DOCTEST_PENDING
