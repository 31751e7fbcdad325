"""LabelStore durability with real processes and real filesystems (issue 12).

* A full disk (a real small tmpfs when this process may mount one, and a file-size
  limit, ``RLIMIT_FSIZE``) in the middle of labeling: failed steps raise and are not
  applied, the journal is cut back, later steps append fine once space is freed, and
  reopening recovers every acknowledged step.
* Readers opening the store while its writer snapshots never replace its files.
* ``journal.bin`` deleted under a live store: steps are refused, not lost.
* A full-length last record with a bad checksum is corruption: never truncated.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import time
import warnings

import numpy as np
import pytest

from xlabel.errors import JournalError, LabelError
from tests.test_labels_persist import three_step_journal
from xlabel.labels import JOURNAL_NAME, JournalRecoveryWarning, LabelStore

N_FRAMES = 50_000
MARKERS = 5_000   # frame i < MARKERS is labeled only by step i


def _fork(target, *args) -> tuple:
    """Run ``target(*args)`` in a forked child whose stdout is a pipe; ``(pid, read_fd)``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            target(*args)
        except BaseException as err:  # report anything to the parent, never return
            os.write(1, f"error {type(err).__name__}: {err}\n".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _collect(pid, read_fd, timeout=120.0) -> list:
    """Lines the child wrote until it exited (killed after ``timeout``)."""
    output, deadline = b"", time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([read_fd], [], [], left)[0]:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            output += chunk
    else:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(read_fd)
    return output.decode().splitlines()


def _say(*words):
    os.write(1, (" ".join(map(str, words)) + "\n").encode())


def _step_block(store, rng, size):
    step = store._next_step
    return step, np.concatenate([[step], rng.integers(MARKERS, N_FRAMES, size=size)])


# ------------------------------------------------------------------ full disk

def _label_through_full_disk(path, fill, free):
    """Assign until 3 steps failed for lack of space, free space, assign 20 more."""
    store = LabelStore(N_FRAMES, path=path)
    rng = np.random.default_rng(7)
    for _ in range(3):
        step, block = _step_block(store, rng, 100)
        store.assign(block, "good")
        _say("done", step, 0)
    fill()
    failures, after = 0, 0
    while after < 20:
        step, block = _step_block(store, rng, int(rng.integers(2_000, 20_000)))
        before = store.labels.copy()
        try:
            store.assign(block, step % 2, note=f"step {step}")
        except JournalError as err:
            assert "the step was not applied" in str(err), err
            assert np.array_equal(store.labels, before) and store._next_step == step
            _say("failed", step)
            failures += 1
            if failures == 2:
                try:
                    store.snapshot()
                except JournalError:
                    _say("snapshot-refused")
            if failures == 3:
                free()
            continue
        _say("done", step, step % 2)
        after += failures >= 3
    store.close()


def _check_recovered(path, lines):
    assert not [line for line in lines if line.startswith("error")], lines
    done = [tuple(map(int, line.split()[1:])) for line in lines if line.startswith("done")]
    failed = [line for line in lines if line.startswith("failed")]
    assert len(failed) == 3 and len(done) >= 23, lines
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no repair needed: the journal was cut back
        store = LabelStore.open(path)
    steps = np.array([step for step, _ in done])
    labels = np.array([label for _, label in done])
    assert store._next_step == steps.max() + 1 == len(done)
    assert (store.labels[steps] == labels).all()
    assert (store.history["kind"] == "assign").sum() == len(done)
    store.close()
    return lines


def test_file_size_limit_mid_step_loses_nothing_acknowledged(tmp_path):
    path = tmp_path / "s.xlabel"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def fill():
        size = (path / JOURNAL_NAME).stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 150_000, hard))

    def free():
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    lines = _collect(*_fork(_label_through_full_disk, path, fill, free))
    _check_recovered(path, lines)
    assert "snapshot-refused" in lines


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB tmpfs when this process may mount one, else None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True)
    yield mount if done.returncode == 0 else None
    if done.returncode == 0:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_loses_nothing_acknowledged(small_disk, tmp_path):
    """A really full filesystem (tmpfs filled by another file, then freed); without the
    rights to mount one, a file-size limit stands in for it."""
    if small_disk is None:
        return test_file_size_limit_mid_step_loses_nothing_acknowledged(tmp_path)
    path = small_disk / "s.xlabel"
    filler = small_disk / "filler"

    def fill():
        free_bytes = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        with open(filler, "wb") as handle:
            handle.write(b"\0" * max(free_bytes - 150_000, 0))

    def free():
        filler.unlink()

    lines = _collect(*_fork(_label_through_full_disk, path, fill, free))
    _check_recovered(path, lines)


# ------------------------------------------------------------------ readers vs snapshots

def _write_and_snapshot(path, steps):
    store = LabelStore.open(path)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        step, block = _step_block(store, rng, 3_000)
        store.assign(block, step % 2)
        _say("done", step)
        if step % 2:
            store.snapshot()
    store.close()


def _keep_opening(path):
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", JournalRecoveryWarning)
            LabelStore.open(path).close()
        _say("opened")


def test_readers_during_snapshots_never_lose_the_writers_steps(tmp_path):
    path = tmp_path / "s.xlabel"
    LabelStore(N_FRAMES, path=path).close()
    readers = [_fork(_keep_opening, path) for _ in range(2)]
    writer = _fork(_write_and_snapshot, path, 60)
    lines = _collect(*writer)
    for pid, read_fd in readers:
        os.kill(pid, signal.SIGKILL)
    reader_lines = [line for reader in readers for line in _collect(*reader, timeout=5)]
    assert not [line for line in lines + reader_lines if line.startswith("error")]
    assert reader_lines.count("opened") > 10  # the readers really ran alongside
    done = np.array([int(line.split()[1]) for line in lines if line.startswith("done")])
    assert len(done) == 60
    store = LabelStore.open(path)
    assert store._next_step == 60
    assert (store.labels[done] == done % 2).all()


# ------------------------------------------------------------------ files deleted

@pytest.mark.parametrize("delete", ["journal", "folder"])
def test_deleted_journal_refuses_steps_and_snapshot_writes_them_back(tmp_path, delete):
    path = tmp_path / "s.xlabel"
    store = LabelStore(10, path=path)
    store.assign([0], "bad")
    if delete == "journal":
        (path / JOURNAL_NAME).unlink()
    else:
        shutil.rmtree(path)
    with pytest.raises(JournalError, match="journal.bin was deleted or replaced .* the step "
                                           "was not applied.*store.snapshot"):
        store.assign([1], "bad")
    assert store.labels.tolist()[:2] == [1, -1]
    store.snapshot()
    store.assign([2], "good")
    store.close()
    assert LabelStore.open(path).labels.tolist()[:3] == [1, -1, 0]


# ------------------------------------------------------------------ corrupt last record

def test_full_length_last_record_with_bad_checksum_is_corruption(tmp_path):
    path, journal, data = three_step_journal(tmp_path, 10)
    last = bytes(data).rfind(b"XLR1")  # where the last record starts
    data[-2] ^= 0xFF  # inside the payload: every byte is there, the checksum is wrong
    journal.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=rf"corrupt record at byte {last} \(record 3, the "
                                           rf"last one: all \d+ bytes present but the checksum"):
        LabelStore.open(path)
    assert journal.read_bytes() == bytes(data)  # never truncated
    with pytest.warns(JournalRecoveryWarning, match="2 steps were recovered"):
        recovered = LabelStore.open(path, recover=True)
    assert recovered.labels[:3].tolist() == [1, 1, -1]
    asides = list(path.glob("journal.damaged-*.bin"))
    assert len(asides) == 1 and asides[0].read_bytes() == bytes(data)


# ------------------------------------------------------------------ same path, same process

def test_rerunning_the_constructor_hands_back_the_open_store(tmp_path):
    from xlabel.widgets import FluxScatter
    from tests.test_widgets_scatter import make_features

    path = tmp_path / "s.xlabel"
    first = LabelStore(200, path=path)          # the first run of a notebook cell
    widget = FluxScatter(first, make_features())
    first.assign([0], "bad")
    again = LabelStore(200, path=path)          # the cell run again; the widget is alive
    assert again.assign([1], "bad") == 1
    assert first.labels[1] == 1                 # one store: the old handle sees it
    assert widget.undo() == 1                   # the old widget's button works
    assert widget.plot.status == again.last_action == "undid step 1 ('bad' on 1 frame(s), manual)"
    assert again.labels[:2].tolist() == [1, -1]
    with pytest.raises(JournalError, match="for 200 frames, not 300"):
        LabelStore(300, path=path)
    again.close()
    assert first.closed
    with pytest.raises(LabelError, match="this store was closed"):
        widget.undo()


def test_reopen_in_a_new_process_after_the_constructor_in_this_one(tmp_path):
    """The registry is per process: a forked child opens the files itself."""
    path = tmp_path / "s.xlabel"
    parent = LabelStore(20, path=path)
    parent.assign([0], "good")
    parent.close()

    def child():
        store = LabelStore(20, path=path)
        store.assign([1], "bad")
        _say("done")

    assert _collect(*_fork(child)) == ["done"]
    assert LabelStore(20, path=path).labels[:2].tolist() == [0, 1]


def test_forked_child_neither_writes_nor_keeps_the_parents_lock(tmp_path):
    path = tmp_path / "s.xlabel"
    store = LabelStore(20, path=path)
    store.assign([0], "good")                   # holds the lock
    release_fd, hold_fd = os.pipe()

    def child():
        try:
            store.assign([1], "bad")
        except LabelError as err:
            _say("refused", "closed" in str(err))
        os.read(release_fd, 1)                  # stay alive until the parent is done

    pid, read_fd = _fork(child)
    try:
        store.close()
        writer = LabelStore.open(path)          # the lock is free although the child lives
        writer.assign([2], "bad")
        writer.close()
    finally:
        os.write(hold_fd, b"x")
    assert _collect(pid, read_fd) == ["refused True"]
    assert LabelStore.open(path).labels[:3].tolist() == [0, -1, 1]
