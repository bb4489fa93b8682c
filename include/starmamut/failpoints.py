"""Named crash points, so tests can kill a step at a precise place and prove a retry is safe.

Set ``STARMAMUT_FAILPOINT=<name>`` (or ``<name>@<n>`` to crash at the n-th pass in this process) and the
step raises ``SimulatedCrash`` there. Unset, a fail point costs one dictionary lookup.
"""

from __future__ import annotations

import os
from collections import Counter

_passes: Counter[str] = Counter()


class SimulatedCrash(RuntimeError):
    """Raised at an armed fail point; stands for the worker dying at that line."""


def failpoint(name: str) -> None:
    armed = os.environ.get("STARMAMUT_FAILPOINT")
    if not armed:
        return
    target, _, nth = armed.partition("@")
    if target != name:
        return
    _passes[name] += 1
    if _passes[name] >= int(nth or 1):
        _passes[name] = 0
        raise SimulatedCrash(f"simulated crash at fail point {name!r}")
