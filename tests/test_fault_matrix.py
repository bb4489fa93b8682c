"""The fault matrix's CI set (issue #14; ``bench/fault_matrix.py --reduced``, the full matrix without it).

Each registered job runs as a real process, as a task runs it, with staging and the Mamut mock on PostgreSQL and
the shop's sandbox over HTTP on loopback. A kill: the process is held at a fail point, killed with SIGKILL and
the job run again to the end. A second loader: while the first is held there, another process of the same job
and shop runs; then the first is released and the job run to the end. Against a clean run of the same world,
every cell must show 0 duplicate Mamut rows, 0 records lost, at most one status PATCH with e-mail or capture
per order change and 0 duplicate Starweb products or values.

The second loader of order_status_to_starweb held before its PATCH is the lease's guard: without the load lease
both loaders find the orders not yet in their new status and both PATCH (two e-mails, two captures each).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from bench.fault_matrix import (
    CLEAN,
    KILL,
    MAMUT_COUNTS,
    STARWEB_COUNTS,
    Cell,
    EndState,
    cases,
    compare,
    planned_cells,
    run_matrix,
)
from starmamut import failpoints
from tests.fixtures.databases import require_postgres

PLANNED = [(case.name, fault, point) for case in cases() for fault, point in planned_cells(case, reduced=True)]


@pytest.fixture(scope="module")
def reduced_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str | None], Cell]:
    """Every cell of the reduced matrix (a few minutes: the clean runs, then the faults, two at a time)."""
    require_postgres()
    cells = run_matrix(reduced=True, only=None, logs=tmp_path_factory.mktemp("fault-matrix"))
    return {(cell.case, cell.fault, cell.failpoint): cell for cell in cells}


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("case", "fault", "failpoint"),
    PLANNED,
    ids=[f"{case}-{fault}-{point}".replace(" ", "_") for case, fault, point in PLANNED],
)
def test_a_killed_or_doubled_loader_duplicates_nothing_and_loses_nothing(
    reduced_matrix: dict[tuple[str, str, str | None], Cell], case: str, fault: str, failpoint: str
) -> None:
    clean = reduced_matrix[(case, CLEAN, None)]
    assert clean.problem is None, clean.details
    cell = reduced_matrix[(case, fault, failpoint)]
    assert cell.problem is None, f"{cell.problem}: {cell.story}"
    assert (cell.mamut_duplicates, cell.lost, cell.starweb_duplicates) == (0, 0, 0), cell.details
    assert cell.patches <= 1, cell.details


def test_a_cell_counts_duplicates_beyond_the_clean_run_lost_records_and_the_most_patches_per_change() -> None:
    def state(records: dict[str, object], orders: int, variants: int, patches: int) -> EndState:
        counts = {kind: Counter({"x": 1}) for kind in (*MAMUT_COUNTS, *STARWEB_COUNTS)}
        counts["Mamut orders per external id"] = Counter({"kombo:1003": orders})
        counts["shop variants per SKU"] = Counter({"TS-BAS-M": variants})
        return EndState(records, counts, Counter({(1003, 3): patches, (1005, 4): 1}))

    clean = state({"Mamut order kombo:1003": (125.0, 2), "shop order 1003": (3, True)}, 1, 1, 1)
    cell = Cell("orders_to_mamut", KILL, "orders_to_mamut.after_mamut_commit")

    compare(cell, clean, state({"Mamut order kombo:1003": (125.0, 2), "shop order 1003": (3, False)}, 2, 3, 2))

    assert (cell.mamut_duplicates, cell.lost, cell.patches, cell.starweb_duplicates) == (1, 1, 2, 2)
    assert not cell.passed
    assert "lost: shop order 1003: (3, False), clean (3, True)" in cell.details


def test_an_armed_fail_point_with_a_pause_dir_holds_every_thread_there_until_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failpoints, "_reached", set())
    monkeypatch.setenv("STARMAMUT_FAILPOINT", "test.point@2")
    monkeypatch.setenv("STARMAMUT_FAILPOINT_PAUSE_DIR", str(tmp_path))
    failpoints.failpoint("test.point")  # the first pass goes on
    assert not (tmp_path / "test.point.reached").exists()

    held = [threading.Thread(target=failpoints.failpoint, args=("test.point",)) for _ in range(3)]
    for thread in held:
        thread.start()
    for thread in held:
        thread.join(timeout=0.5)
    assert all(thread.is_alive() for thread in held)  # the second pass and every later one wait
    assert (tmp_path / "test.point.reached").read_text(encoding="utf-8") == str(os.getpid())

    (tmp_path / "test.point.go").touch()
    for thread in held:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in held)


def test_an_armed_fail_point_without_a_pause_dir_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STARMAMUT_FAILPOINT_PAUSE_DIR", raising=False)
    monkeypatch.setenv("STARMAMUT_FAILPOINT", "test.point")
    with pytest.raises(failpoints.SimulatedCrash, match="test.point"):
        failpoints.failpoint("test.point")
