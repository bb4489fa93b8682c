"""One loader per shop × entity: the load lease in staging, on SQLite and PostgreSQL.

Two stores on one staging database stand for two loader processes (a zombie task and its retry, the migration and
a regular price load). A stalled loader is made by stopping its heartbeat thread, which is what a frozen process,
a long GC pause or a lost network looks like from the staging database.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from starmamut.config import LeaseSettings, Settings
from starmamut.jobs import initial_product_sync, orders_to_mamut, products_to_mamut
from starmamut.jobs.common import JobContext, run_step
from starmamut.jobs.registry import JOBS, MIGRATION_WRITES
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut.staging import store as store_module
from starmamut.staging import tables
from starmamut.staging.store import Lease, LeaseHeld, LeaseLost, StagingStore
from starmamut.starweb.client import StarwebClient, StarwebCredentials
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.mamut import fresh_mock_database
from tests.fixtures.staging import staging_url_for
from tests.test_mamut_orders import orders_in
from tests.test_orders_to_mamut import settings_for

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_PARTS = ("include", "devtools", ".")  # the test run's pythonpath (pyproject), for the loader processes
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


def holder_of(store: StagingStore, shop: str, entity: str) -> str | None:
    """Who holds the lease now; None when nobody does or it was never taken."""
    table = tables.load_lease
    with store._engine.connect() as connection:
        return connection.scalar(sa.select(table.c.holder).where(table.c.shop == shop, table.c.entity == entity))


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


def lease_reads(store: StagingStore) -> list[str]:
    """The statements that read the lease table on ``store``'s engine from now on (a list that fills up)."""
    seen: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "load_lease" in statement:
            seen.append(statement)

    sa.event.listen(store._engine, "before_cursor_execute", record)
    return seen


class ShiftedClock:
    """Moves the staging store's clocks (wall and monotonic) ahead of real time, for every store of the process:
    as if a loader had stalled that long, without the wait."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        shifted_time = SimpleNamespace(monotonic=lambda: time.monotonic() + self.offset, sleep=time.sleep)
        wall = store_module._now
        monkeypatch.setattr(store_module, "time", shifted_time)
        monkeypatch.setattr(store_module, "_now", lambda: wall() + timedelta(seconds=self.offset))

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def test_check_does_not_read_staging_while_the_lease_is_certainly_still_ours(two_stores) -> None:
    """Nobody else can take a lease before the expiry our last acquire or renewal wrote: until a margin before it
    (max(5 s, ttl/10)), check trusts it, so a load's thousands of write requests cost no staging reads."""
    first, _second = two_stores
    with first.lease("demo", "products", ttl=30, wait=0) as held:
        reads = lease_reads(first)
        for _ in range(1000):
            held.check()
        assert reads == []
    with pytest.raises(LeaseLost, match="it was released"):  # after the release, check reads again
        held.check()
    assert len(reads) == 1


def test_check_reads_staging_near_the_expiry_and_refuses_a_lease_another_took_after_it(
    two_stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two_stores
    clock = ShiftedClock(monkeypatch)
    with first.lease("demo", "orders", ttl=30, wait=0) as stalled:
        stall(stalled)  # no renewal from here: the expiry stays 30 s after the acquire
        reads = lease_reads(first)
        clock.advance(20)
        stalled.check()
        assert reads == []  # 10 s left, more than the margin (5 s)
        clock.advance(6)
        stalled.check()  # 4 s left, under the margin: read, and still ours
        assert len(reads) == 1
        with pytest.raises(LeaseHeld), second.lease("demo", "orders", ttl=30, wait=0):
            pass  # not expired yet: nobody else can take it
        clock.advance(5)  # expired: the next loader takes it
        with second.lease("demo", "orders", ttl=30, wait=0) as taker:
            with pytest.raises(LeaseLost, match=f"{taker.holder} holds it now with token {taker.token}"):
                stalled.check()
            assert len(reads) == 2
            with pytest.raises(LeaseLost):
                stalled.check()  # lost for good, without reading again
            assert len(reads) == 2


def test_a_renewal_moves_on_the_moment_check_trusts_the_lease_until(
    two_stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _second = two_stores
    clock = ShiftedClock(monkeypatch)
    with first.lease("demo", "orders", ttl=30, wait=0) as held:
        stall(held)
        reads = lease_reads(first)
        clock.advance(26)
        held.check()
        assert len(reads) == 1  # within the margin of the acquire's expiry
        held._renew()  # what the heartbeat does every ttl/3
        clock.advance(20)  # 46 s after the acquire, 20 s after the renewal
        held.check()
        assert len(reads) == 1


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
    base = {"version": 1, "mamut": {"vat_codes": {25: 1}}, "shops": {}}
    assert Settings.model_validate(base).lease.model_dump() == {"ttl_seconds": 120, "wait_seconds": 60}
    for bad in ({"ttl_seconds": 5}, {"wait_seconds": -1}, {"ttl": 120}):
        with pytest.raises(ValidationError, match="lease"):
            Settings.model_validate({**base, "lease": bad})


# ----------------------------------------------------------------------------------------- every load holds them


def job_settings(wait_seconds: float = 0) -> Settings:
    return Settings.model_validate(
        {
            "version": 1,
            "mamut": {"vat_codes": {25: 1}},
            "lease": {"wait_seconds": wait_seconds},
            "shops": {"demo": {"name": "Demo", "flow": "combo", "starweb_conn_id": "unused"}},
        }
    )


def guarded_context(store: StagingStore) -> tuple[JobContext, SimpleNamespace]:
    """A job context whose Starweb client and Mamut gateway are one stand-in carrying both guards."""
    stand_in = SimpleNamespace(write_guard=None, commit_guard=None)
    ctx = JobContext(
        settings=job_settings(),
        shop=job_settings().shop("demo"),
        store=store,
        open_starweb=lambda: nullcontext(stand_in),
        open_mamut=lambda: stand_in,
    )
    return ctx, stand_in


@pytest.fixture
def sqlite_stores(tmp_path: Path) -> Iterator[tuple[StagingStore, StagingStore]]:
    url = f"sqlite:///{tmp_path / 'staging.db'}"
    first, second = StagingStore.from_url(url), StagingStore.from_url(url)
    first.migrate()
    yield first, second
    first.close()
    second.close()


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_jobs_load_holds_the_leases_of_what_it_writes_and_guards_its_writes(
    job: str, sqlite_stores: tuple[StagingStore, StagingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = sqlite_stores
    spec, steps = JOBS[job], importlib.import_module(JOBS[job].module)
    ctx, stand_in = guarded_context(store)
    batch_id = store.start_batch("demo", job, spec.writes[0])
    seen: dict[str, Any] = {}

    def load(leased: JobContext, batch: str) -> dict[str, Any]:
        seen["holders"] = {entity: lease_row(other, "demo", entity).holder for entity in spec.writes}
        with leased.open_starweb() as client:
            seen["starweb_guard"] = client.write_guard
        seen["mamut_guard"] = leased.open_mamut().commit_guard
        return {}

    monkeypatch.setattr(steps, "load", load)
    for entity in spec.writes:
        with other.lease("demo", entity, ttl=30, wait=0) as held, pytest.raises(LeaseHeld, match=held.holder):
            run_step(steps, "load", ctx, batch_id)
    assert not seen  # refused before the load began

    run_step(steps, "load", ctx, batch_id)
    assert all(seen["holders"].values())
    assert callable(seen["starweb_guard"]) and seen["mamut_guard"] is seen["starweb_guard"]
    assert stand_in.write_guard is None and stand_in.commit_guard is None  # restored after the load
    assert all(lease_row(other, "demo", entity).holder is None for entity in spec.writes)  # released


@pytest.mark.parametrize("entity", MIGRATION_WRITES)
def test_a_migration_chunk_holds_the_product_price_and_stock_leases(
    entity: str, sqlite_stores: tuple[StagingStore, StagingStore]
) -> None:
    store, other = sqlite_stores
    ctx, _stand_in = guarded_context(store)
    options = initial_product_sync.MigrationOptions.from_mapping({"direction": "mamut_to_starweb"})
    chunk = {"batch_id": "unused", "first": "a", "last": "z", "index": 0, "chunks": 1}
    with other.lease("demo", entity, ttl=30, wait=0), pytest.raises(LeaseHeld, match=f"demo: {entity} is being"):
        initial_product_sync.migrate_chunk(ctx, options, chunk)


def refuse() -> None:
    raise LeaseLost("shop demo: this loader lost the orders lease")


def test_a_refusing_guard_stops_a_starweb_write_before_it_is_sent_but_not_a_read() -> None:
    sent: list[str] = []

    def shop(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, json={"data": {"orderId": 1}})

    credentials = StarwebCredentials("https://shop.example/api/v2", "client", "secret")
    with StarwebClient(credentials, transport=httpx.MockTransport(shop)) as client:
        client.write_guard = refuse
        client.get("/orders/1")
        for write in (lambda: client.patch("/orders/1", {"statusId": 3}), lambda: client.post("/products", {})):
            with pytest.raises(LeaseLost):
                write()
    assert sent == ["POST /api/v2/token", "GET /api/v2/orders/1"]


def test_a_refusing_guard_rolls_back_a_mamut_transaction_that_wrote(tmp_path: Path) -> None:
    with fresh_mock_database("sqlite", tmp_path) as odbc, MamutGateway(odbc, SchemaMap.load()) as gateway:
        gateway.commit_guard = refuse
        with gateway.transaction() as transaction:  # a read-only transaction commits without asking
            before = transaction.select("warehouse", ["warehouse_id"])
        with pytest.raises(LeaseLost), gateway.transaction() as transaction:
            transaction.insert("warehouse", {"warehouse_id": 99, "description": "Zombielager"})
        gateway.commit_guard = None
        with gateway.transaction() as transaction:
            assert transaction.select("warehouse", ["warehouse_id"]) == before


# ----------------------------------------------------------------------------------- two real loader processes


@pytest.fixture(params=STAGING_BACKENDS)
def staging_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from staging_url_for(request.param, tmp_path)


def wait_until(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def spawn_loader(spec: dict[str, Any], name: str, wait_seconds: float, **files: Path) -> subprocess.Popen[str]:
    """A load of ``spec``'s batch in its own process (tests/fixtures/loader_process.py) with the settings of
    tests/test_orders_to_mamut.py, waiting ``wait_seconds`` for a held lease; ``files`` are its ``start`` and
    ``proceed`` signals."""
    settings = settings_for().model_copy(update={"lease": LeaseSettings(wait_seconds=wait_seconds)})
    spec = {
        **spec,
        "settings": settings.model_dump(mode="json", by_alias=True),
        "ready": spec["ready"].format(name=name),
        **{key: str(path) for key, path in files.items()},
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO_ROOT / part) for part in REPO_PARTS)}
    command = [sys.executable, "-m", "tests.fixtures.loader_process", json.dumps(spec)]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE)


def outcome(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, _ = process.communicate(timeout=180)
    assert process.returncode == 0, stdout
    return json.loads(stdout.strip().splitlines()[-1])


def test_two_processes_loading_the_same_orders_at_once_load_them_once(
    staging_url: str, sandbox: Any, tmp_path: Path
) -> None:
    """Three real processes load one batch of orders_to_mamut: the first holds the lease (kept at its first Mamut
    statement until the others have tried); one with a short wait stops with LeaseHeld naming it, one with a long
    wait waits, then finds every order loaded and written back, and writes nothing."""
    store = StagingStore.from_url(staging_url)
    store.migrate()
    with fresh_mock_database("sqlite", tmp_path) as odbc, MamutGateway(odbc, SchemaMap.load()) as gateway:
        ctx = sandbox_job_context(settings_for(), sandbox, store, gateway)
        products_to_mamut.run(ctx)
        batch_id = run_step(orders_to_mamut, "extract", ctx)["batch_id"]
        run_step(orders_to_mamut, "validate", ctx, batch_id)
        valid = store.count_staged(batch_id, orders_to_mamut.ENTITY)["valid"]
        sandbox.reset_requests()
        spec = {
            "shop": "demo",
            "job": "orders_to_mamut",
            "batch_id": batch_id,
            "staging_url": staging_url,
            "mamut_odbc": odbc,
            "starweb": {
                "base_url": sandbox.base_url,
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
            },
            "ready": str(tmp_path / "{name}.ready"),
        }
        start, proceed = tmp_path / "start", tmp_path / "proceed"
        first = spawn_loader(spec, "first", 0, proceed=proceed)
        impatient = spawn_loader(spec, "impatient", 0.5, start=start)
        patient = spawn_loader(spec, "patient", 90, start=start)
        try:
            wait_until(lambda: holder_of(store, "demo", "orders") is not None, "the first loader's lease")
            wait_until(lambda: all((tmp_path / f"{n}.ready").exists() for n in ("impatient", "patient")), "ready")
            holder = holder_of(store, "demo", "orders")
            start.touch()
            refused = outcome(impatient)
            time.sleep(1)
            assert patient.poll() is None  # still waiting for the lease
            proceed.touch()
            loaded, waited = outcome(first), outcome(patient)
        finally:
            for process in (first, impatient, patient):
                process.kill()
            store.close()

        assert f"orders is being loaded by {holder} since" in refused["lease_held"]
        assert "lease_held" not in loaded and "lease_held" not in waited
        in_mamut = orders_in(gateway, "demo:")
        assert len(in_mamut) == len({order["external_id"] for order in in_mamut}) == valid > 0
        patches = Counter(request.path for request in sandbox.write_requests() if request.method == "PATCH")
        assert patches and set(patches.values()) == {1}  # each order written back once
        assert waited["loaded"].get("loaded", 0) == 0


def test_a_suspended_machine_reads_the_lease_again_although_its_monotonic_clock_stood_still(
    two_stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux's monotonic clock stops while the machine is suspended, the wall clock does not: a worker resumed
    after its lease expired must not trust the monotonic clock alone."""
    first, second = two_stores
    wall = store_module._now
    suspended = timedelta(0)
    monkeypatch.setattr(store_module, "_now", lambda: wall() + suspended)
    with first.lease("demo", "orders", ttl=30, wait=0) as resumed:
        stall(resumed)
        suspended = timedelta(seconds=31)  # asleep past the expiry; time.monotonic did not move
        with second.lease("demo", "orders", ttl=30, wait=0), pytest.raises(LeaseLost, match="holds it now"):
            resumed.check()
