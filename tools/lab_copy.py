"""Keep ``lab/``, the learner's working copy of the guided notebooks, up to date.

``make lab`` runs this before it starts JupyterLab on ``lab/`` (git-ignored), so autosave,
outputs and File > New never touch the tracked ``notebooks/``. For each notebook pair
``notebooks/NN_name.ipynb`` + ``NN_name.py``:

* missing in ``lab/``: copied;
* unchanged in ``notebooks/`` since the last copy: left alone (the learner's edits and
  outputs stay);
* changed in ``notebooks/`` (a ``git pull`` brought a new version): newer sources win. A
  ``lab/`` copy the learner has not modified is replaced; one they have modified is first
  moved to ``lab/edited/NN_name-YYYYmmdd-HHMMSS.ipynb`` (and ``.py``) and a line says so,
  so nothing is overwritten silently.

"Modified" means the ``lab/`` notebook's bytes differ from what was copied last time
(recorded as SHA-256 digests in ``lab/.copied.json``); running a notebook and saving its
outputs counts as a modification. Standard library only: it runs before any install.

Usage: ``python tools/lab_copy.py [SOURCE_DIR [LAB_DIR]]`` (default ``notebooks lab``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

RECORD = ".copied.json"
EDITED = "edited"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pair(notebook: Path) -> list[Path]:
    """The notebook and its jupytext script (if any), the notebook first."""
    script = notebook.with_suffix(".py")
    return [notebook] + ([script] if script.exists() else [])


def copy_pair(notebook: Path, lab: Path):
    # the script last, so it is not older than the notebook (jupytext refuses a paired
    # notebook that is newer than its text file)
    for path in pair(notebook):
        shutil.copyfile(path, lab / path.name)


def set_aside(name: str, lab: Path) -> Path:
    """Move the learner's edited copy of notebook ``name`` to lab/edited/; returns its path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target_dir = lab / EDITED
    target_dir.mkdir(exist_ok=True)
    stem = Path(name).stem
    moved = None
    for suffix in (".ipynb", ".py"):
        path = lab / (stem + suffix)
        if path.exists():
            target = target_dir / f"{stem}-{stamp}{suffix}"
            path.replace(target)
            moved = moved or target
    return moved


def refresh(source: Path, lab: Path) -> list[str]:
    """Bring ``lab`` up to date with ``source``; returns one message per action."""
    lab.mkdir(parents=True, exist_ok=True)
    record_path = lab / RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    messages = []
    for notebook in sorted(source.glob("*.ipynb")):
        name, new = notebook.name, digest(notebook)
        copy = lab / name
        if copy.exists() and record.get(name) == new:
            continue                                   # sources unchanged: keep the copy
        if copy.exists() and digest(copy) == new:
            record[name] = new                         # already identical (first run)
            continue
        if copy.exists() and digest(copy) != record.get(name):
            moved = set_aside(name, lab)
            messages.append(f"{notebook} changed; your edited copy is kept as "
                            f"{moved.relative_to(lab.parent) if moved else moved}")
        else:
            messages.append(f"{'updated' if copy.exists() else 'copied'} {name}")
        copy_pair(notebook, lab)
        record[name] = new
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True))
    return messages


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0] if args else "notebooks")
    lab = Path(args[1] if len(args) > 1 else "lab")
    if not source.is_dir():
        sys.exit(f"lab_copy: no notebook folder {source.resolve()}")
    for message in refresh(source, lab):
        print(f"lab/: {message}")


if __name__ == "__main__":
    main()
