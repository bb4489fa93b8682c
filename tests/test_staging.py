"""Staging store on SQLite and PostgreSQL: migrations, batches, id map, watermarks, quarantine, ledger."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from starmamut.staging import (
    StagedRow,
    StagingError,
    StagingStore,
    UnknownBatchError,
    UnknownLinkError,
    UnknownStagedRowError,
    default_staging_url,
    tables,
)
from starmamut.staging.store import Link, SkuHolder, alembic_config
from tests.fixtures.databases import fresh_postgres_database, postgres_sqlalchemy_url

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGING_TABLES = {
    "staging_batch",
    "staged_row",
    "staged_sku",
    "id_map",
    "watermark",
    "quarantine",
    "ledger",
    "load_lease",
    "starweb_token",
}
REASON = [{"check": "expect_column_values_to_not_be_null", "reason": "price is missing"}]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def staging_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty staging database on each backend."""
    if request.param == "sqlite":
        yield default_staging_url(tmp_path)
        return
    with fresh_postgres_database("staging") as database:
        yield postgres_sqlalchemy_url(database)


@pytest.fixture
def inspection_engine(staging_url: str) -> Iterator[sa.Engine]:
    """A plain engine, independent of the store, to look at what the store wrote."""
    engine = sa.create_engine(staging_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(staging_url: str) -> Iterator[StagingStore]:
    migrated = StagingStore.from_url(staging_url)
    migrated.migrate()
    yield migrated
    migrated.close()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def product_row(index: int, **changes: object) -> StagedRow:
    fields: dict[str, object] = {
        "key": f"P{index:05d}",
        "payload": {"sku": f"SKU-{index:05d}", "name": f"Tröja åäö {index}", "price": Decimal("199.50")},
        "content_hash": f"hash-{index}",
    }
    fields.update(changes)
    return StagedRow(**fields)  # type: ignore[arg-type]


# -- migrations ---------------------------------------------------------------------------------------------


def test_migrate_creates_the_schema_once_and_twice_is_a_no_op(staging_url: str, inspection_engine: sa.Engine) -> None:
    store = StagingStore.from_url(staging_url)
    try:
        assert set(sa.inspect(inspection_engine).get_table_names()) == set(), "from_url must not create tables"
        store.migrate()
        assert current_revision(inspection_engine) == head_revision()
        assert set(sa.inspect(inspection_engine).get_table_names()) == STAGING_TABLES | {"alembic_version"}

        batch_id = store.start_batch("shop1", "products", "product")
        store.migrate()
        assert current_revision(inspection_engine) == head_revision()
        assert store.get_batch(batch_id).status == "running"
        with inspection_engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT count(*) FROM alembic_version")) == 1
    finally:
        store.close()


def test_migrated_schema_matches_tables_metadata(store: StagingStore, inspection_engine: sa.Engine) -> None:
    """The migration alone builds exactly what tables.py describes (so nothing relies on create_all)."""
    with inspection_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, tables.metadata) == []

        # The comparison does see differences: an index the migration never created shows up.
        drifted = sa.MetaData()
        for table in tables.metadata.tables.values():
            table.to_metadata(drifted)
        sa.Index("ix_ledger_value", drifted.tables["ledger"].c.value)
        diffs = compare_metadata(context, drifted)
        assert [diff[0] for diff in diffs] == ["add_index"]


def test_alembic_command_line_reports_head(store: StagingStore, staging_url: str) -> None:
    """`alembic current` through the developers' alembic.ini sees the programmatic migration at head."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "alembic"),
            "-c",
            str(REPO_ROOT / "include/starmamut/staging/alembic.ini"),
            "-x",
            f"url={staging_url}",
            "current",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.split() == [head_revision(), "(head)"]


MIGRATE_WHEN_RELEASED = """
import sys
from starmamut.staging import StagingStore
store = StagingStore.from_url(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
store.migrate()
print("migrated", flush=True)
"""


def test_two_processes_migrating_a_fresh_database_at_once_both_succeed(
    staging_url: str, inspection_engine: sa.Engine
) -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_WHEN_RELEASED, staging_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:  # release both at once
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (stdout, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr
        assert stdout.strip() == "migrated"
    assert current_revision(inspection_engine) == head_revision()


# -- batches and staged rows --------------------------------------------------------------------------------


def test_batch_lifecycle(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product", dry_run=True)
    started = store.get_batch(batch_id)
    assert (started.shop, started.job, started.entity, started.status) == (
        "shop1",
        "products",
        "product",
        "running",
    )
    assert started.dry_run is True
    assert started.started_at.tzinfo == UTC
    assert abs(datetime.now(UTC) - started.started_at) < timedelta(minutes=1)
    assert started.finished_at is None
    assert started.counts == {}

    store.finish_batch(batch_id, "succeeded", {"read": 3, "loaded": 2, "quarantined": 1})
    finished = store.get_batch(batch_id)
    assert finished.status == "succeeded"
    assert finished.counts == {"read": 3, "loaded": 2, "quarantined": 1}
    assert finished.finished_at is not None
    assert finished.finished_at.tzinfo == UTC
    assert finished.finished_at >= finished.started_at
    assert store.start_batch("shop1", "products", "product") != batch_id


def test_latest_batches_newest_first_filtered_by_job_and_limited(store: StagingStore) -> None:
    product_batches = [store.start_batch("shop1", "products", "product") for _ in range(3)]
    order_batch = store.start_batch("shop1", "orders", "order")

    everything = store.latest_batches("shop1")
    assert [batch.batch_id for batch in everything] == [order_batch, *reversed(product_batches)]
    assert [batch.batch_id for batch in store.latest_batches("shop1", "products")] == product_batches[::-1]
    assert [batch.batch_id for batch in store.latest_batches("shop1", limit=2)] == [
        order_batch,
        product_batches[2],
    ]


def test_unknown_batch_is_a_clear_error(store: StagingStore) -> None:
    with pytest.raises(UnknownBatchError, match="nope"):
        store.get_batch("nope")
    with pytest.raises(UnknownBatchError, match="nope"):
        store.finish_batch("nope", "failed", {})
    with pytest.raises(UnknownBatchError, match="nope"):
        store.stage_rows("nope", "product", [product_row(1)])
    with pytest.raises(UnknownBatchError, match="nope"):
        next(store.iter_staged("nope", "product"))


def test_stage_25000_rows_streamed_and_read_back_in_chunks(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    total = 25_000
    assert store.stage_rows(batch_id, "product", (product_row(index) for index in range(total))) == total
    assert store.count_staged(batch_id, "product") == {"pending": total}

    read_back = list(store.iter_staged(batch_id, "product", chunk_size=1000))
    assert [row.key for row in read_back] == [f"P{index:05d}" for index in range(total)]
    assert read_back[12_345] == product_row(
        12_345, payload={"sku": "SKU-12345", "name": "Tröja åäö 12345", "price": "199.50"}
    )

    # Chunks are fetched lazily: verdicts set after the first chunk was read change what later chunks yield.
    pending = store.iter_staged(batch_id, "product", verdict="pending", chunk_size=1000)
    assert next(pending).key == "P00000"
    store.set_verdicts(batch_id, "product", {f"P{index:05d}": ("valid", None) for index in range(12_500, total)})
    assert sum(1 for _ in pending) == 12_500 - 1
    assert store.count_staged(batch_id, "product") == {"pending": 12_500, "valid": 12_500}


def test_restaging_the_same_key_replaces_it(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    store.stage_rows(batch_id, "product", [product_row(1), product_row(2)])
    store.set_verdicts(batch_id, "product", {"P00001": ("quarantined", "price is missing")})

    retried = product_row(1, payload={"sku": "SKU-00001", "price": "249.00"}, content_hash="hash-new")
    duplicate_in_one_call = [product_row(3, content_hash="first"), product_row(3, content_hash="last")]
    assert store.stage_rows(batch_id, "product", [retried, *duplicate_in_one_call]) == 3

    rows = {row.key: row for row in store.iter_staged(batch_id, "product")}
    assert rows == {
        "P00001": retried,
        "P00002": product_row(2, payload=rows["P00002"].payload),
        "P00003": rows["P00003"],
    }
    assert rows["P00003"].content_hash == "last"
    assert store.count_staged(batch_id, "product") == {"pending": 3}

    store.stage_rows(batch_id, "variant", [product_row(1)])
    assert store.count_staged(batch_id, "variant") == {"pending": 1}
    assert store.count_staged(batch_id, "product") == {"pending": 3}


def test_payload_round_trips_unicode_and_decimal_as_string(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    payload = {
        "name": "Blåbärssylt – Smörgåsbord",
        "price": Decimal("1234.50"),
        "priceText": "0.10",
        "modifiedAt": datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
        "tags": ["ä", "ö"],
        "stock": 7,
        "active": True,
        "note": None,
    }
    store.stage_rows(batch_id, "product", [StagedRow("K1", payload, "h1")])
    (row,) = store.iter_staged(batch_id, "product")
    assert row.payload == {
        **payload,
        "price": "1234.50",
        "modifiedAt": "2026-11-27T08:30:00+00:00",
    }


def test_unstorable_payload_names_the_record_and_writes_nothing(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    rows = [product_row(1), StagedRow("BAD-1", {"price": float("nan")}, "h")]
    with pytest.raises(ValueError, match="product 'BAD-1' payload"):
        store.stage_rows(batch_id, "product", rows)
    with pytest.raises(ValueError, match="product 'BAD-2' payload.*set"):
        store.stage_rows(batch_id, "product", [StagedRow("BAD-2", {"tags": {"a"}}, "h")])
    assert store.count_staged(batch_id, "product") == {}


def test_verdicts_are_all_or_nothing_and_unknown_keys_are_named(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    store.stage_rows(batch_id, "product", [product_row(1), product_row(2)])

    with pytest.raises(UnknownStagedRowError, match="P09999"):
        store.set_verdicts(batch_id, "product", {"P00001": ("valid", None), "P09999": ("valid", None)})
    assert store.count_staged(batch_id, "product") == {"pending": 2}

    store.set_verdicts(batch_id, "product", {"P00001": ("valid", None), "P00002": ("quarantined", "no price")})
    assert store.count_staged(batch_id, "product") == {"valid": 1, "quarantined": 1}
    (quarantined,) = store.iter_staged(batch_id, "product", verdict="quarantined")
    assert (quarantined.key, quarantined.reason) == ("P00002", "no price")


# -- id map -------------------------------------------------------------------------------------------------


def test_links_upsert_lookup_retire_and_revive(store: StagingStore) -> None:
    store.upsert_link("shop1", "product", "P1", starweb_id="101", mamut_key="M-1", sku="SKU-1", content_hash="h1")
    store.upsert_link("shop1", "product", "P2", starweb_id="102", mamut_key=None, sku="SKU-2", content_hash=None)

    links = store.get_links("shop1", "product")
    assert set(links) == {"P1", "P2"}
    first = links["P1"]
    assert (
        first.shop,
        first.entity,
        first.key,
        first.starweb_id,
        first.mamut_key,
        first.sku,
        first.content_hash,
    ) == ("shop1", "product", "P1", "101", "M-1", "SKU-1", "h1")
    assert first.synced_at is not None and first.synced_at.tzinfo == UTC
    assert first.retired_at is None
    assert set(store.get_links("shop1", "product", ["P2", "P-unknown"])) == {"P2"}
    assert store.get_links("shop1", "order") == {}

    store.upsert_link("shop1", "product", "P1", starweb_id="101", mamut_key="M-1", sku="SKU-1b", content_hash="h2")
    updated = store.get_links("shop1", "product", ["P1"])["P1"]
    assert (updated.sku, updated.content_hash) == ("SKU-1b", "h2")
    assert updated.synced_at is not None and updated.synced_at >= first.synced_at
    assert store.find_link_by_sku("shop1", "product", "SKU-1b") == updated
    assert store.find_link_by_sku("shop1", "product", "SKU-1") is None

    store.retire_link("shop1", "product", "P1")
    retired = store.get_links("shop1", "product", ["P1"])["P1"]
    assert retired.retired_at is not None and retired.retired_at.tzinfo == UTC
    assert store.find_link_by_sku("shop1", "product", "SKU-1b") is None
    store.retire_link("shop1", "product", "P1")
    assert store.get_links("shop1", "product", ["P1"])["P1"].retired_at == retired.retired_at

    store.upsert_link("shop1", "product", "P1", starweb_id="101", mamut_key="M-1", sku="SKU-1b", content_hash="h3")
    revived = store.find_link_by_sku("shop1", "product", "SKU-1b")
    assert revived is not None and revived.retired_at is None and revived.content_hash == "h3"

    with pytest.raises(UnknownLinkError, match="P-unknown"):
        store.retire_link("shop1", "product", "P-unknown")


def test_find_link_by_sku_prefers_the_most_recently_synced_live_link(store: StagingStore) -> None:
    store.upsert_link("shop1", "product", "OLD", starweb_id="1", mamut_key=None, sku="SHARED", content_hash=None)
    store.upsert_link("shop1", "product", "NEW", starweb_id="2", mamut_key=None, sku="SHARED", content_hash=None)
    found = store.find_link_by_sku("shop1", "product", "SHARED")
    assert found is not None and found.key == "NEW"
    store.retire_link("shop1", "product", "NEW")
    found = store.find_link_by_sku("shop1", "product", "SHARED")
    assert found is not None and found.key == "OLD"


def test_get_links_by_many_keys_spans_chunks(store: StagingStore) -> None:
    for index in range(1200):
        store.upsert_link(
            "shop1", "stock", f"S{index}", starweb_id=None, mamut_key=f"M{index}", sku=None, content_hash=None
        )
    wanted = (f"S{index}" for index in range(0, 1200, 2))
    links = store.get_links("shop1", "stock", wanted)
    assert len(links) == 600
    assert links["S1198"].mamut_key == "M1198"


def test_find_links_by_sku_spans_chunks_and_skips_retired_links(store: StagingStore) -> None:
    store.upsert_links(
        Link(
            shop="shop1",
            entity="variant",
            key=str(index),
            starweb_id=f"1:{index}",
            mamut_key=None,
            sku=f"SKU-{index}",
            content_hash=None,
            synced_at=None,
            retired_at=None,
        )
        for index in range(1200)
    )
    store.retire_link("shop1", "variant", "7")
    found = store.find_links_by_sku("shop1", "variant", [f"SKU-{index}" for index in range(1300)])
    assert len(found) == 1199 and "SKU-7" not in found
    assert found["SKU-1199"].starweb_id == "1:1199" and found["SKU-1199"].synced_at is not None


# -- SKU index ----------------------------------------------------------------------------------------------


def test_sku_index_finds_the_holders_of_a_sku_and_the_skus_of_a_holder_per_side(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "initial_product_sync", "product")
    a1, a2, shared = (SkuHolder("10", "A-1", "a-1"), SkuHolder("10", "A-2", "a-2"), SkuHolder("11", "a-2", "a-2"))
    store.index_skus(batch_id, "source", [a1, a2, shared])
    store.index_skus(batch_id, "source", [a1])  # indexing again changes nothing
    target = SkuHolder("P1", "A-1", "a-1", ref="1:7")
    store.index_skus(batch_id, "target", [target])
    assert store.holders_by_sku(batch_id, "source", ["a-1", "a-2", "zz"]) == {"a-1": [a1], "a-2": [a2, shared]}
    assert store.holders_by_key(batch_id, "source", ["10", "12"]) == {"10": [a1, a2]}
    assert store.holders_by_sku(batch_id, "target", ["a-1"]) == {"a-1": [target]}
    store.clear_sku_index(batch_id, "target")
    assert store.holders_by_sku(batch_id, "target", ["a-1"]) == {}
    assert store.holders_by_sku(batch_id, "source", ["a-1"]) == {"a-1": [a1]}


def test_key_ranges_cut_the_batch_in_key_order_and_progress_is_kept(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "initial_product_sync", "product")
    store.stage_rows(
        batch_id, "product", (StagedRow(key=f"K{index:03d}", payload={}, content_hash="h") for index in range(7))
    )
    assert store.key_ranges(batch_id, "product", 3) == [("K000", "K002"), ("K003", "K005"), ("K006", "K006")]
    assert [row.key for row in store.iter_staged(batch_id, "product", key_range=("K003", "K005"))] == [
        "K003",
        "K004",
        "K005",
    ]
    store.set_batch_progress(batch_id, {"phase": "load", "pages_done": 3})
    batch = store.get_batch(batch_id)
    assert batch.status == "running" and batch.counts == {"phase": "load", "pages_done": 3}
    with pytest.raises(UnknownBatchError):
        store.set_batch_progress("nope", {})


# -- watermarks ---------------------------------------------------------------------------------------------


def test_watermarks_are_timezone_aware_utc(store: StagingStore) -> None:
    assert store.get_watermark("shop1", "orders") is None
    stockholm_summer = timezone(timedelta(hours=2))
    store.set_watermark("shop1", "orders", datetime(2026, 6, 1, 14, 0, 0, 123456, tzinfo=stockholm_summer))
    value = store.get_watermark("shop1", "orders")
    assert value == datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert value is not None and value.utcoffset() == timedelta(0)

    store.set_watermark("shop1", "orders", datetime(2026, 6, 2, tzinfo=UTC))
    assert store.get_watermark("shop1", "orders") == datetime(2026, 6, 2, tzinfo=UTC)
    assert store.get_watermark("shop1", "products") is None

    with pytest.raises(ValueError, match="naive datetime"):
        store.set_watermark("shop1", "orders", datetime(2026, 6, 3))
    assert store.get_watermark("shop1", "orders") == datetime(2026, 6, 2, tzinfo=UTC)


# -- quarantine ---------------------------------------------------------------------------------------------


def test_quarantine_lifecycle(store: StagingStore) -> None:
    first_batch = store.start_batch("shop1", "products", "product")
    store.quarantine("shop1", "product", "P1", REASON, first_batch)
    (opened,) = store.open_quarantine("shop1", "product")
    assert (opened.key, opened.reasons, opened.batch_id, opened.resolved_at) == (
        "P1",
        REASON,
        first_batch,
        None,
    )
    assert opened.first_seen == opened.last_seen and opened.first_seen.tzinfo == UTC

    second_batch = store.start_batch("shop1", "products", "product")
    new_reasons = [{"check": "expect_column_values_to_match_regex", "reason": "SKU 'å b' has a space", "row": 4}]
    store.quarantine("shop1", "product", "P1", new_reasons, second_batch)
    (seen_again,) = store.open_quarantine("shop1", "product")
    assert seen_again.first_seen == opened.first_seen
    assert seen_again.last_seen > opened.last_seen
    assert (seen_again.reasons, seen_again.batch_id) == (new_reasons, second_batch)

    store.quarantine("shop1", "order", "O1", REASON, second_batch)
    assert [entry.key for entry in store.open_quarantine("shop1")] == ["O1", "P1"]

    assert store.resolve_quarantine("shop1", "product", ["P1", "P-never-quarantined"]) == 1
    assert store.open_quarantine("shop1", "product") == []
    assert store.resolve_quarantine("shop1", "product", ["P1"]) == 0

    third_batch = store.start_batch("shop1", "products", "product")
    store.quarantine("shop1", "product", "P1", REASON, third_batch)
    (reopened,) = store.open_quarantine("shop1", "product")
    assert reopened.first_seen > seen_again.last_seen
    assert reopened.batch_id == third_batch
    assert [entry.key for entry in store.open_quarantine("shop1")] == ["O1", "P1"]


def test_quarantine_keeps_resolved_history(store: StagingStore, inspection_engine: sa.Engine) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    store.quarantine("shop1", "product", "P1", REASON, batch_id)
    store.resolve_quarantine("shop1", "product", ["P1"])
    store.quarantine("shop1", "product", "P1", REASON, batch_id)
    with inspection_engine.connect() as connection:
        rows = connection.execute(
            sa.select(tables.quarantine.c.resolved_at).order_by(tables.quarantine.c.quarantine_id)
        ).all()
    assert [row.resolved_at is None for row in rows] == [False, True]


def test_quarantine_acceptance_is_kept_once_given(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    store.quarantine("shop1", "product", "P1", REASON, batch_id, accepted=False)
    store.quarantine("shop1", "product", "P1", REASON, batch_id, accepted=False)  # the gate's retry
    assert [entry.accepted_at for entry in store.open_quarantine("shop1", "product")] == [None]

    assert store.accept_quarantine("shop1", "product", ["P1", "P2"]) == 1
    store.quarantine("shop1", "product", "P1", REASON, batch_id, accepted=False)  # seen failing again later
    (entry,) = store.open_quarantine("shop1", "product")
    assert entry.accepted_at is not None
    assert store.accept_quarantine("shop1", "product", ["P1"]) == 0


def test_quarantine_reasons_must_name_check_and_reason(store: StagingStore) -> None:
    batch_id = store.start_batch("shop1", "products", "product")
    with pytest.raises(ValueError, match="'P1'.*'check' and 'reason'"):
        store.quarantine("shop1", "product", "P1", [{"reason": "no check named"}], batch_id)
    with pytest.raises(ValueError, match="at least one reason"):
        store.quarantine("shop1", "product", "P1", [], batch_id)
    assert store.open_quarantine("shop1") == []


# -- ledger -------------------------------------------------------------------------------------------------


def test_ledger_round_trip(store: StagingStore) -> None:
    assert store.get_ledger("shop1", "price") == {}
    store.set_ledger(
        "shop1",
        "price",
        {("A-1", "pricelist:2"): "199.00", ("A-1", "pricelist:3"): "149.50", ("B-2", "pricelist:2"): "10.10"},
    )
    store.set_ledger("shop1", "stock", {("A-1", "location:main"): "7"})

    assert store.get_ledger("shop1", "price") == {
        ("A-1", "pricelist:2"): "199.00",
        ("A-1", "pricelist:3"): "149.50",
        ("B-2", "pricelist:2"): "10.10",
    }
    assert store.get_ledger("shop1", "price", ["B-2", "missing"]) == {("B-2", "pricelist:2"): "10.10"}
    assert store.get_ledger("shop1", "stock") == {("A-1", "location:main"): "7"}

    store.set_ledger("shop1", "price", {("A-1", "pricelist:2"): "189.00"})
    assert store.get_ledger("shop1", "price", ["A-1"]) == {
        ("A-1", "pricelist:2"): "189.00",
        ("A-1", "pricelist:3"): "149.50",
    }

    with pytest.raises(TypeError, match="'A-1'.*Decimal"):
        store.set_ledger("shop1", "price", {("A-1", "pricelist:2"): Decimal("1.00")})  # type: ignore[dict-item]
    assert store.get_ledger("shop1", "price", ["A-1"])[("A-1", "pricelist:2")] == "189.00"


# -- multishop ----------------------------------------------------------------------------------------------


def test_one_shops_state_is_never_visible_through_another_shops_calls(store: StagingStore) -> None:
    for shop in ("shop1", "shop2"):
        batch_id = store.start_batch(shop, "products", "product")
        store.stage_rows(batch_id, "product", [product_row(1, content_hash=f"{shop}-hash")])
        store.upsert_link(
            shop, "product", "P1", starweb_id=f"{shop}-sw", mamut_key=None, sku="SKU-1", content_hash=None
        )
        store.quarantine(shop, "product", "P1", [{"check": "c", "reason": shop}], batch_id)
        store.set_ledger(shop, "price", {("SKU-1", "pricelist:1"): f"{shop}-price"})
    store.set_watermark("shop1", "products", datetime(2026, 1, 1, tzinfo=UTC))

    for shop in ("shop1", "shop2"):
        (batch,) = store.latest_batches(shop)
        assert batch.shop == shop
        assert [row.content_hash for row in store.iter_staged(batch.batch_id, "product")] == [f"{shop}-hash"]
        assert store.get_links(shop, "product")["P1"].starweb_id == f"{shop}-sw"
        link = store.find_link_by_sku(shop, "product", "SKU-1")
        assert link is not None and link.starweb_id == f"{shop}-sw"
        assert [entry.reasons[0]["reason"] for entry in store.open_quarantine(shop)] == [shop]
        assert store.get_ledger(shop, "price") == {("SKU-1", "pricelist:1"): f"{shop}-price"}
    assert store.get_watermark("shop2", "products") is None

    store.retire_link("shop1", "product", "P1")
    store.resolve_quarantine("shop1", "product", ["P1"])
    assert store.get_links("shop2", "product")["P1"].retired_at is None
    assert len(store.open_quarantine("shop2")) == 1
    assert store.latest_batches("shop3") == []


def test_tasks_of_two_shops_write_at_the_same_time(store: StagingStore, staging_url: str) -> None:
    """Separate stores (as separate Airflow tasks would have) write concurrently without lock errors."""
    failures: list[BaseException] = []

    def run_task(shop: str) -> None:
        task_store = StagingStore.from_url(staging_url)
        try:
            batch_id = task_store.start_batch(shop, "products", "product")
            for index in range(40):
                task_store.stage_rows(batch_id, "product", [product_row(index)])
                task_store.upsert_link(
                    shop,
                    "product",
                    f"P{index}",
                    starweb_id=str(index),
                    mamut_key=None,
                    sku=f"SKU-{index}",
                    content_hash=None,
                )
                task_store.set_ledger(shop, "stock", {(f"SKU-{index}", "location:1"): str(index)})
            task_store.finish_batch(batch_id, "succeeded", {"read": 40})
        except BaseException as error:  # reported to the main thread below
            failures.append(error)
        finally:
            task_store.close()

    threads = [threading.Thread(target=run_task, args=(shop,)) for shop in ("shop1", "shop2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    for shop in ("shop1", "shop2"):
        (batch,) = store.latest_batches(shop)
        assert (batch.status, batch.counts) == ("succeeded", {"read": 40})
        assert store.count_staged(batch.batch_id, "product") == {"pending": 40}
        assert len(store.get_links(shop, "product")) == 40
        assert len(store.get_ledger(shop, "stock")) == 40


# -- construction -------------------------------------------------------------------------------------------


def test_default_url_is_a_sqlite_file_in_the_airflow_home(tmp_path: Path) -> None:
    url = default_staging_url(tmp_path)
    assert url == f"sqlite:///{tmp_path}/starmamut_staging.db"
    store = StagingStore.from_url(url)
    try:
        store.migrate()
        assert (tmp_path / "starmamut_staging.db").is_file()
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        engine.dispose()
    finally:
        store.close()


def test_repr_hides_the_database_password() -> None:
    store = StagingStore.from_url("postgresql+psycopg2://staging:s3cret-pw@127.0.0.1:5432/staging")
    try:
        assert repr(store) == "StagingStore(postgresql+psycopg2://staging:***@127.0.0.1:5432/staging)"
        assert "s3cret-pw" not in str(store)
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_bare_postgres_urls_use_the_pinned_driver(scheme: str) -> None:
    """Airflow Connection URIs (postgres://) and bare postgresql:// work without psycopg 3 installed."""
    with fresh_postgres_database("staging") as database:
        url = postgres_sqlalchemy_url(database).replace("postgresql+psycopg2://", f"{scheme}://")
        store = StagingStore.from_url(url)
        try:
            store.migrate()
            store.set_watermark("shop1", "orders", datetime(2026, 1, 1, tzinfo=UTC))
            assert store.get_watermark("shop1", "orders") == datetime(2026, 1, 1, tzinfo=UTC)
        finally:
            store.close()


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(StagingError, match="'mssql' is not supported"):
        StagingStore.from_url("mssql+pyodbc://user@dsn")
