"""The rules every registered job obeys, run over every job in the registry: a new job gets them by registering.

- A dry run writes nothing to either side: no write request reaches any shop, Mamut's tables stay as they were,
  and no link, ledger entry, watermark or quarantine entry changes; yet it plans writes (it read something).
- A batch stopped at the quality gate stays stopped: the task's retry stops again, its load refuses it, and the
  next run stops again, until a person releases it (``accept_quarantine``), raises the threshold or fixes the
  records.
- Only a complete live read moves a watermark: ``dry_run``, ``resync_ids``, ``skus`` and ``since`` never do.
- Open quarantine entries are read again by key on every run and heal once their cause is gone.

The world is config/examples/three_shops.yaml (an ecom, an erp and a combo shop on one Mamut mock, each shop on
its own sandbox), the fixture of tests/test_multishop.py. A job runs for the combo shop when its flows include
``combo``, else for the first shop whose flow runs it; :data:`WORLD` names another shop, the jobs that must run
first (what the job needs to find on the other side) or that a manual run names products, not orders, by id. A
record is made to fail by the gate being handed a reason for every record (:func:`fail_every_record`), so the
real gate, quarantine and re-read code run unchanged.

``test_a_new_job_gets_the_contract_by_registering`` shows it: a job written here (:class:`ShopStockToMamut`),
registered in the registry for the length of the test, passes every rule without a line of its own for them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from starmamut.config import ShopConfig
from starmamut.jobs import base
from starmamut.jobs.base import Job, Outcome, Session
from starmamut.jobs.common import JobContext, QualityGateFailed, run_step
from starmamut.jobs.registry import JOBS, JobSpec
from starmamut.mamut.catalogue import CatalogueReader
from starmamut.mamut.customers import MamutRecordError
from starmamut.mamut.products import ProductRepository, StockLevel
from starmamut.services.binder import variants_of
from starmamut.staging.store import StagedRow
from starmamut_devtools.mamut_mock import progress_demo_orders
from tests.test_multishop import SHOPS, ThreeShops, mamut_skus, shops  # the fixture too (see pyproject)

FORCED = "contract_test"


@dataclass(frozen=True)
class JobWorld:
    """Where a job runs in the three-shop world beyond the default (see the module docstring)."""

    shop: str | None = None
    before: tuple[str, ...] = ()  # jobs run first (or "progress": the demo orders move on in Mamut)
    resync: str = "orders"  # what resync_ids names: "orders" or "products"


WORLD = {
    "products_to_mamut": JobWorld(resync="products"),
    "orders_to_mamut": JobWorld(before=("products_to_mamut",)),
    "order_status_to_starweb": JobWorld(before=("products_to_mamut", "orders_to_mamut", "progress")),
    "prices_to_starweb": JobWorld(before=("products_to_starweb",)),
    "stock_to_starweb": JobWorld(before=("products_to_starweb",)),
}


def world_of(shops: ThreeShops, job: str) -> tuple[JobWorld, str]:
    """The job's world and the shop it runs for."""
    world, spec = WORLD.get(job, JobWorld()), JOBS[job]
    flows = {shop: shops.settings.shop(shop).flow for shop in SHOPS}
    shop = world.shop or next(
        (shop for shop in SHOPS if flows[shop] == "combo" and "combo" in spec.flows),
        next(shop for shop in SHOPS if flows[shop] in spec.flows),
    )
    return world, shop


def steps_of(job: str) -> Job:
    return JOBS[job].steps()


def prepare(shops: ThreeShops, job: str) -> str:
    """Run what the job needs first; returns the shop it runs for."""
    world, shop = world_of(shops, job)
    for step in world.before:
        if step == "progress":
            assert progress_demo_orders(shops.gateway, shop, now=datetime.now(UTC))
        else:
            steps_of(step).run(shops.ctx(shop))
    return shop


def fail_every_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate gets a reason for every record it judges (the job's own checks still run)."""
    real = base.apply_verdicts

    def failing(
        ctx: Any, batch_id: str, entity: str, keys: Iterable[str], reasons: Mapping[str, Any], **options: Any
    ) -> dict[str, int]:
        keys = list(keys)
        forced = {key: [{"check": FORCED, "reason": f"{entity} {key} made to fail"}] for key in keys}
        return real(ctx, batch_id, entity, keys, forced, **options)

    monkeypatch.setattr(base, "apply_verdicts", failing)


def forced_entries(shops: ThreeShops, shop: str, job: str) -> list[Any]:
    return [
        entry
        for entry in shops.store.open_quarantine(shop, steps_of(job).entity)
        if any(reason["check"] == FORCED for reason in entry.reasons)
    ]


# ------------------------------------------------------------------------------------------------------ the rules


def sqlite_tables(path: Path, names: Iterable[str] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the named tables (all tables when None) of a SQLite file, in a stable order."""
    with sqlite3.connect(path) as connection:
        tables = names or [
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {table: sorted(map(repr, connection.execute(f'SELECT * FROM "{table}"'))) for table in tables}


STAGING_STATE = ("id_map", "watermark", "quarantine", "ledger")
"""What a run keeps between runs (its own batch and staged rows aside)."""


def both_sides(shops: ThreeShops, staging: Path) -> dict[str, Any]:
    mamut = Path(dict(part.split("=", 1) for part in shops.odbc.split(";") if "=" in part)["Database"])
    return {"mamut": sqlite_tables(mamut), "staging": sqlite_tables(staging, STAGING_STATE)}


def check_dry_run_writes_nothing(shops: ThreeShops, job: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shop = prepare(shops, job)
    before = both_sides(shops, tmp_path / "staging.db")
    for sandbox in shops.sandboxes.values():
        sandbox.reset_requests()

    result = steps_of(job).run(shops.ctx(shop, dry_run=True))

    assert {name: sandbox.write_requests() for name, sandbox in shops.sandboxes.items()} == dict.fromkeys(SHOPS, [])
    assert both_sides(shops, tmp_path / "staging.db") == before
    assert result["would_write"] > 0, "the dry run planned nothing, so it proves nothing"
    assert result["loaded"] == 0


def check_gate_holds(shops: ThreeShops, job: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shop = prepare(shops, job)
    steps = steps_of(job)
    fail_every_record(monkeypatch)

    ctx = shops.ctx(shop)
    batch_id = run_step(steps, "extract", ctx)["batch_id"]
    for _attempt in ("the task", "its automatic retry"):
        with pytest.raises(QualityGateFailed):
            run_step(steps, "validate", ctx, batch_id)
    with pytest.raises(QualityGateFailed, match="stopped at the quality gate"):
        run_step(steps, "load", ctx, batch_id)
    held = forced_entries(shops, shop, job)
    assert held and all(entry.accepted_at is None for entry in held)

    with pytest.raises(QualityGateFailed):  # the next scheduled run reads them again and stops again
        steps.run(shops.ctx(shop))

    released = steps.run(shops.ctx(shop, accept_quarantine=True))
    assert released["quarantined"] >= len(held)
    assert all(entry.accepted_at is not None for entry in forced_entries(shops, shop, job))
    steps.run(shops.ctx(shop))  # accepted entries no longer stop a run


def check_quarantine_heals(shops: ThreeShops, job: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shop = prepare(shops, job)
    steps = steps_of(job)
    with monkeypatch.context() as patched:
        fail_every_record(patched)
        steps.run(shops.ctx(shop, accept_quarantine=True))  # a complete run: its watermark moves past them
    assert forced_entries(shops, shop, job)

    steps.run(shops.ctx(shop))  # nothing changed at the source: only the re-read finds them

    assert forced_entries(shops, shop, job) == []


def manual_params(shops: ThreeShops, job: str, shop: str) -> dict[str, Callable[[], Any]]:
    """A value for each manual option that limits a run, as an operator would give it."""
    state = shops.sandboxes[shop].state
    world, _ = world_of(shops, job)
    return {
        "dry_run": lambda: True,
        "resync_ids": lambda: [state.product_ids()[0] if world.resync == "products" else state.order_ids()[0]],
        "skus": lambda: [sorted(mamut_skus(shops.gateway))[0]],
        "since": lambda: (datetime.now(UTC) - timedelta(days=1)).isoformat(),
    }


MANUAL = ("dry_run", "resync_ids", "skus", "since")


def check_manual_runs_keep_the_watermark(
    shops: ThreeShops, job: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shop = prepare(shops, job)
    steps = steps_of(job)
    mark = datetime.now(UTC) - timedelta(days=400)
    shops.store.set_watermark(shop, job, mark)

    for option in (option for option in MANUAL if option in JOBS[job].params):
        steps.run(shops.ctx(shop, **{option: manual_params(shops, job, shop)[option]()}))
        assert shops.store.get_watermark(shop, job) == mark, f"a run with {option} moved the watermark"

    if steps.keeps_watermark:  # the control: a complete run does move it
        steps.run(shops.ctx(shop))
        assert shops.store.get_watermark(shop, job) != mark


CONTRACT: dict[str, Callable[[ThreeShops, str, pytest.MonkeyPatch, Path], None]] = {
    "dry_run_writes_nothing": check_dry_run_writes_nothing,
    "gate_holds": check_gate_holds,
    "quarantine_heals": check_quarantine_heals,
    "manual_runs_keep_the_watermark": check_manual_runs_keep_the_watermark,
}


@pytest.mark.slow
@pytest.mark.parametrize("rule", sorted(CONTRACT))
@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_registered_job_keeps_the_contract(
    job: str, rule: str, shops: ThreeShops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    CONTRACT[rule](shops, job, monkeypatch, tmp_path)


def test_every_world_entry_names_a_registered_job() -> None:
    assert set(WORLD) <= set(JOBS)
    assert {step for world in WORLD.values() for step in world.before} - {"progress"} <= set(JOBS)


# ------------------------------------------------------------------------------------------ a job of its own


@dataclass(kw_only=True)
class _StockWriting(Session):
    repository: ProductRepository
    warehouse: int


class ShopStockToMamut(Job):
    """A job written for this test: the shop's stock of each product's variants becomes Mamut stock in the first
    warehouse. It says what differs (where products come from, what a record is, how one is written) and
    nothing about dry runs, the gate, watermarks or the quarantine."""

    name = "shop_stock_to_mamut"
    entity = "shop_stock"
    noun = "product"
    key_field = "product_id"
    reads_starweb_by_time = True

    def settings(self, shop: ShopConfig) -> Any:
        return shop.products_to_mamut  # its threshold and overlap

    def read_given(self, ctx: JobContext, session: Session) -> Iterable[Any] | None:
        ids = ctx.params.resync_ids
        return (
            (session.client.get_product(product_id, include=("primaryVariant",)) for product_id in ids) if ids else None
        )

    def read_changed(self, ctx: JobContext, session: Session, since: datetime | None) -> Iterator[Any]:
        return session.client.iter_products(updated_since=since, include=("primaryVariant",))

    def read_by_key(self, ctx: JobContext, session: Session, key: str) -> Any:
        return session.client.get_product(int(key), include=("primaryVariant",))

    def source_key(self, item: Any) -> str:
        return str(item["productId"])

    def fetch(self, ctx: JobContext, session: Session, item: Any) -> Any:
        return variants_of(session.client, item)

    def normalise(self, ctx: JobContext, session: Session, item: Any, fetched: Any, known: Any) -> dict[str, Any]:
        return {
            "product_id": item["productId"],
            "stock": {variant["sku"]: str(variant.get("stockQuantity") or 0) for variant in fetched},
        }

    @contextmanager
    def open_load(self, ctx: JobContext, batch_id: str, before_load: Any) -> Iterator[Session]:
        gateway = ctx.open_mamut()
        yield _StockWriting(repository=ProductRepository(gateway), warehouse=min(CatalogueReader(gateway).warehouses()))

    def write_one(self, ctx: JobContext, session: Session, known: Any, row: StagedRow) -> Outcome:
        assert isinstance(session, _StockWriting)
        levels = [
            StockLevel(sku=sku, warehouse_id=session.warehouse, quantity=Decimal(quantity))
            for sku, quantity in row.payload["stock"].items()
        ]
        if ctx.params.dry_run:
            return Outcome(counted=None, would_write=True, planned=[f"stock of {len(levels)} article(s)"])
        try:
            session.repository.set_stock(levels, now=ctx.clock())
        except MamutRecordError as exc:  # an article Mamut does not have
            return Outcome.refused("mamut_refused", f"product {row.key}: {exc}")
        return Outcome()


@pytest.mark.slow
@pytest.mark.parametrize("rule", sorted(CONTRACT))
def test_a_new_job_gets_the_contract_by_registering(
    rule: str, shops: ThreeShops, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = JobSpec(
        name=ShopStockToMamut.name,
        job=ShopStockToMamut,
        flows=frozenset({"combo"}),
        default_schedule=None,
        summary="The shop's stock to Mamut (a job of the contract test's own).",
        writes=("stock",),
        params=("dry_run", "full_refresh", "resync_ids", "accept_quarantine"),
    )
    monkeypatch.setitem(JOBS, spec.name, spec)
    monkeypatch.setitem(WORLD, spec.name, JobWorld(before=("products_to_mamut",), resync="products"))

    CONTRACT[rule](shops, spec.name, monkeypatch, tmp_path)
