"""A real crash test: a child process assigning labels is killed with SIGKILL at random moments.

Each round forks a child that reopens the journaled store and assigns in a
loop, writing ``done <step>`` to its stdout after each ``assign`` returns. The
parent kills it after a random short delay, reopens the store and checks that
every reported step is there. Forking (instead of starting a new interpreter)
keeps 25 rounds within a few seconds.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sys
import time
import warnings

import numpy as np
import pytest

from xlabel.labels import JournalRecoveryWarning, LabelStore

N_FRAMES = 200_000
MARKERS = 20_000  # frame i < MARKERS is labeled by step i only; the rest get random blocks


def _child(path, write_fd):
    """Assign forever, reporting each finished step; never returns."""
    os.dup2(write_fd, 1)
    store = LabelStore(N_FRAMES, path=path)
    rng = np.random.default_rng(os.getpid())
    while True:
        step = store._next_step
        block = rng.integers(MARKERS, N_FRAMES, size=int(rng.integers(1, 60_000)))
        store.assign(np.concatenate([[step], block]), step % 2, note=f"step {step}")
        os.write(1, f"done {step}\n".encode())


def _run_round(path, delay) -> list:
    """Fork a child, kill it after ``delay`` seconds, return the steps it reported."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            os.close(read_fd)
            _child(path, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    output = b""
    deadline = time.monotonic() + delay
    while (left := deadline - time.monotonic()) > 0:
        if select.select([read_fd], [], [], left)[0]:
            output += os.read(read_fd, 65536)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(read_fd, 65536):
        output += chunk
    os.close(read_fd)
    lines = output.decode().split("\n")[:-1]  # the last piece may be cut short
    return [int(line.split()[1]) for line in lines]


@pytest.mark.skipif(sys.platform == "win32", reason="needs os.fork and SIGKILL")
def test_sigkill_at_random_moments_loses_no_reported_step(tmp_path):
    path = tmp_path / "crash.xlabel"
    LabelStore(N_FRAMES, path=path).close()
    rounds, reported, repaired = 25, [], 0
    random_delay = random.Random(12345)
    for _ in range(rounds):
        reported += _run_round(path, random_delay.uniform(0.02, 0.35))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = LabelStore.open(path)
        repaired += sum(issubclass(w.category, JournalRecoveryWarning) for w in caught)
        steps = np.array(reported)
        assert store._next_step >= (steps.max() + 1 if len(steps) else 0)
        assert (store.labels[steps] == steps % 2).all()
        notes = {store.provenance(int(s))["note"] for s in steps[-20:]}
        assert notes == {f"step {s}" for s in steps[-20:]}
        store.close()
    assert len(reported) >= rounds  # the child got work done in most rounds
    history = LabelStore.open(path).history
    assert history["step"].tolist() == list(range(len(history)))
    print(f"{len(reported)} reported steps over {rounds} kills, {repaired} torn tails repaired")
