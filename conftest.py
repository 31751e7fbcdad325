"""Doctest collection for ``make test`` (``pytest --doctest-modules ... xlabel``).

Loaded by every pytest run started in this repository, so ``pytest --doctest-modules xlabel``
alone behaves as ``make test`` does.

* ``notebooks/*.py`` are the jupytext twins of the guided notebooks: importing one would run
  the whole notebook as a module, so they are never collected (nbval runs the ``.ipynb``).
* ``DOCTEST_PENDING``: modules whose docstring examples fail while another branch rewrites
  them. They are left out of the doctest run (not reported as skipped); the lead removes an
  entry after merging the branch that rewrites that module. Keep this list empty otherwise.
"""

collect_ignore_glob = ["notebooks/*.py"]

DOCTEST_PENDING: list[str] = [
    # e.g. "xlabel/cluster.py",  # N failing examples (branch NAME rewrites it)
]

collect_ignore = list(DOCTEST_PENDING)
