"""One loader per shop × entity: the load lease in staging, on SQLite and PostgreSQL.

Two stores on one staging database stand for two loader processes (a zombie task and its retry, the migration and
a regular price load). A stalled loader is made by stopping its heartbeat thread, which is what a frozen process,
a long GC pause or a lost network looks like from the staging database.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from starmamut.staging import tables
from starmamut.staging.store import Lease, LeaseHeld, LeaseLost, StagingStore
from tests.fixtures.staging import staging_url_for

STAGING_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STAGING_BACKENDS)
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[StagingStore, StagingStore]]:
    """Two stores (engines) on one migrated staging database, as two loader processes have."""
    for url in staging_url_for(request.param, tmp_path):
        first, second = StagingStore.from_url(url), StagingStore.from_url(url)
        first.migrate()
        try:
            yield first, second
        finally:
            first.close()
            second.close()


def stall(lease: Lease) -> None:
    """The loader stops renewing, as a frozen process does (its lease runs out at its ttl)."""
    lease._stop.set()
    lease._heartbeat.join()


def lease_row(store: StagingStore, shop: str, entity: str) -> sa.Row:
    table = tables.load_lease
    with store._engine.connect() as connection:
        return connection.execute(sa.select(table).where(table.c.shop == shop, table.c.entity == entity)).one()


def batches(store: StagingStore, shop: str = "demo") -> int:
    return len(store.latest_batches(shop))


def test_a_second_loader_waits_for_the_lease_then_stops_naming_holder_and_since(two_stores) -> None:
    first, second = two_stores
    with first.lease("demo", "orders", ttl=30, wait=0) as held:
        started = time.monotonic()
        with pytest.raises(LeaseHeld) as refused, second.lease("demo", "orders", ttl=30, wait=1.5):
            pytest.fail("the second loader got a lease another holds")
        waited = time.monotonic() - started
        # other shops and other entities of the same shop are not held up
        with second.lease("other", "orders", ttl=30, wait=0), second.lease("demo", "prices", ttl=30, wait=0):
            pass

    assert 1.5 <= waited < 10
    message = str(refused.value)
    assert f"shop demo: orders is being loaded by {held.holder} since " in message and "waited 1.5 s" in message
    assert held.holder.split(":")[:2] == [socket.gethostname(), str(os.getpid())]
    with second.lease("demo", "orders", ttl=30, wait=0) as taken:  # released when its block ended
        assert taken.token == held.token + 1


def test_a_waiting_loader_gets_the_lease_once_the_holder_finishes(two_stores) -> None:
    first, second = two_stores
    holding = first.lease("demo", "orders", ttl=30, wait=0)
    held = holding.__enter__()
    threading.Timer(0.5, holding.__exit__, (None, None, None)).start()
    started = time.monotonic()
    with second.lease("demo", "orders", ttl=30, wait=20) as taken:
        assert 0.4 <= time.monotonic() - started < 10
        assert taken.token == held.token + 1


def test_the_heartbeat_keeps_a_lease_past_its_ttl(two_stores) -> None:
    first, second = two_stores
    with first.lease("demo", "stock", ttl=0.6, wait=0) as held:
        time.sleep(1.5)  # two and a half ttls: only renewals keep it
        with pytest.raises(LeaseHeld), second.lease("demo", "stock", ttl=30, wait=0):
            pass
        held.check()
        assert batches(first) == 0
        first.start_batch("demo", "stock_to_starweb", "stock")  # fenced, and ours


def test_an_expired_lease_is_taken_with_a_higher_token(two_stores) -> None:
    first, second = two_stores
    with first.lease("demo", "orders", ttl=0.5, wait=0) as stalled:
        stall(stalled)
        time.sleep(0.7)
        with second.lease("demo", "orders", ttl=30, wait=0) as taken:
            assert taken.token == stalled.token + 1
            row = lease_row(first, "demo", "orders")
            assert (row.holder, row.token) == (taken.holder, taken.token)


def test_a_zombie_that_lost_its_lease_cannot_write_to_staging_nor_pass_check(two_stores) -> None:
    zombie_store, live_store = two_stores
    with zombie_store.lease("demo", "orders", ttl=0.5, wait=0) as zombie:
        zombie_store.start_batch("demo", "orders_to_mamut", "order")  # while it holds the lease, it writes
        stall(zombie)
        time.sleep(0.7)
        with live_store.lease("demo", "orders", ttl=30, wait=0) as live:
            with pytest.raises(LeaseLost) as lost:
                zombie_store.start_batch("demo", "orders_to_mamut", "order")
            with pytest.raises(LeaseLost):
                zombie.check()
            assert batches(live_store) == 1  # the zombie's second write was rolled back
            live_store.start_batch("demo", "orders_to_mamut", "order")
            live.check()
        assert f"{live.holder} holds it now with token {live.token}" in str(lost.value)
    assert batches(live_store) == 2
    row = lease_row(live_store, "demo", "orders")
    assert row.holder is None and row.token == live.token  # the zombie's exit did not free the other's lease


def test_check_refuses_a_lease_that_expired_unrenewed_even_before_anyone_took_it(two_stores) -> None:
    first, _second = two_stores
    with first.lease("demo", "orders", ttl=0.5, wait=0) as stalled:
        stalled.check()
        stall(stalled)
        time.sleep(0.7)
        with pytest.raises(LeaseLost, match="expired at .* without being renewed"):
            stalled.check()


def test_the_fence_holds_the_lease_row_until_the_fenced_write_commits(two_stores) -> None:
    """The token check and the write are one transaction: a taker waits for it, so no write lands after a take."""
    first, second = two_stores
    taken_at: list[float] = []

    def take() -> None:
        with second.lease("demo", "orders", ttl=30, wait=20):
            taken_at.append(time.monotonic())

    with first.lease("demo", "orders", ttl=0.5, wait=0) as stalled:
        stall(stalled)
        time.sleep(0.7)  # expired: anyone may take it now
        with first._write() as connection:  # fenced: the row still carries our token
            taker = threading.Thread(target=take)
            taker.start()
            time.sleep(0.5)
            assert not taken_at
            connection.execute(sa.text("SELECT 1"))
            committed = time.monotonic()
        taker.join(30)
    assert taken_at and taken_at[0] >= committed


def test_lease_settings_are_validated_with_sensible_defaults() -> None:
    from pydantic import ValidationError

    from starmamut.config import Settings

    base = {"version": 1, "mamut": {"vat_codes": {25: 1}}, "shops": {}}
    assert Settings.model_validate(base).lease.model_dump() == {"ttl_seconds": 120, "wait_seconds": 60}
    for bad in ({"ttl_seconds": 5}, {"wait_seconds": -1}, {"ttl": 120}):
        with pytest.raises(ValidationError, match="lease"):
            Settings.model_validate({**base, "lease": bad})
