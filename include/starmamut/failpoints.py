"""Named crash points, so tests can kill a step at a precise place and prove a retry is safe.

Set ``STARMAMUT_FAILPOINT=<name>`` (or ``<name>@<n>`` to act at the n-th pass in this process) and the
step raises ``SimulatedCrash`` there. Unset, a fail point costs one dictionary lookup.

With ``STARMAMUT_FAILPOINT_PAUSE_DIR=<dir>`` set as well, the process pauses there instead of raising: it
writes ``<dir>/<name>.reached`` holding its pid and waits until ``<dir>/<name>.go`` exists, then goes on. An
exception only stands for a crash the code sees coming; a pause lets a harness (bench/fault_matrix.py) kill
the process with SIGKILL exactly there, or start a second loader while the first holds there. Once the
point was reached, every later pass through it (another thread of the same step) waits for the same file.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

PAUSE_POLL_SECONDS = 0.05

_passes: Counter[str] = Counter()
_reached: set[str] = set()
_lock = threading.Lock()


class SimulatedCrash(RuntimeError):
    """Raised at an armed fail point; stands for the worker dying at that line."""


def failpoint(name: str) -> None:
    armed = os.environ.get("STARMAMUT_FAILPOINT")
    if not armed:
        return
    target, _, nth = armed.partition("@")
    if target != name:
        return
    pause_dir = os.environ.get("STARMAMUT_FAILPOINT_PAUSE_DIR")
    with _lock:
        if pause_dir and name in _reached:
            acted = True
        else:
            _passes[name] += 1
            acted = _passes[name] >= int(nth or 1)
            if acted:
                _passes[name] = 0
                if pause_dir:
                    _reached.add(name)
                    _announce(Path(pause_dir), name)
    if not acted:
        return
    if not pause_dir:
        raise SimulatedCrash(f"simulated crash at fail point {name!r}")
    go = Path(pause_dir) / f"{name}.go"
    while not go.exists():
        time.sleep(PAUSE_POLL_SECONDS)


def _announce(directory: Path, name: str) -> None:
    """Write ``<name>.reached`` with this pid in one rename, so a reader never sees it half written."""
    partial = directory / f"{name}.reached.{os.getpid()}"
    partial.write_text(str(os.getpid()), encoding="utf-8")
    partial.replace(directory / f"{name}.reached")
