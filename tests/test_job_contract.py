"""The rules every registered job obeys, run over every job (a new job gets them by registering here).

- A batch the quality gate stopped stays stopped: the task's retry stops again, its load refuses it, and the
  next run stops again, until a person releases it (``accept_quarantine``), raises the threshold or fixes
  the records.
- Only a complete live read moves a watermark: ``dry_run``, ``resync_ids``, ``skus`` and ``since`` never do.
- Open quarantine entries are read again by id on every run and heal once their cause is gone.

The world is config/examples/three_shops.yaml (an ecom, an erp and a combo shop on one Mamut mock, each shop on
its own sandbox), the fixture of tests/test_multishop.py. A record is made to fail by the job's own gate call
being handed a reason for every record, so the real gate, quarantine and re-read code run unchanged.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

import starmamut.jobs
from starmamut.jobs import common
from starmamut.jobs.common import QualityGateFailed, run_step
from starmamut.jobs.registry import JOBS
from starmamut_devtools.mamut_mock import progress_demo_orders
from tests.test_multishop import ThreeShops, mamut_skus, shops  # the fixture too (see pyproject)

FORCED = "contract_test"


@dataclass(frozen=True)
class JobWorld:
    """Where a job runs in the three-shop world, what must run before it, and whether it keeps a watermark."""

    shop: str
    before: tuple[str, ...] = ()
    watermark: bool = True


WORLD = {
    "products_to_mamut": JobWorld("kombo"),
    "orders_to_mamut": JobWorld("kombo", before=("products_to_mamut",)),
    "order_status_to_starweb": JobWorld("kombo", before=("products_to_mamut", "orders_to_mamut", "progress")),
    "products_to_starweb": JobWorld("grossist"),
    "prices_to_starweb": JobWorld("grossist", before=("products_to_starweb",), watermark=False),
    "stock_to_starweb": JobWorld("grossist", before=("products_to_starweb",), watermark=False),
}


def test_every_registered_job_is_in_the_contract() -> None:
    assert set(WORLD) == set(JOBS)


def steps_of(job: str) -> ModuleType:
    return importlib.import_module(JOBS[job].module)


def prepare(shops: ThreeShops, job: str) -> str:
    """Run what the job needs first; returns the shop it runs for."""
    world = WORLD[job]
    for step in world.before:
        if step == "progress":
            assert progress_demo_orders(shops.gateway, world.shop, now=datetime.now(UTC))
        else:
            steps_of(step).run(shops.ctx(world.shop))
    return world.shop


def fail_every_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job's gate call gets a reason for every record it judges (the job's own checks still run)."""
    real = common.apply_verdicts

    def failing(
        ctx: Any, batch_id: str, entity: str, keys: Iterable[str], reasons: Mapping[str, Any], **options: Any
    ) -> dict[str, int]:
        keys = list(keys)
        forced = {key: [{"check": FORCED, "reason": f"{entity} {key} made to fail"}] for key in keys}
        return real(ctx, batch_id, entity, keys, forced, **options)

    for module_info in pkgutil.iter_modules(starmamut.jobs.__path__):
        module = importlib.import_module(f"starmamut.jobs.{module_info.name}")
        if module is not common and getattr(module, "apply_verdicts", None) is real:
            monkeypatch.setattr(module, "apply_verdicts", failing)


def forced_entries(shops: ThreeShops, shop: str, job: str) -> list[Any]:
    entity = steps_of(job).ENTITY
    return [
        entry
        for entry in shops.store.open_quarantine(shop, entity)
        if any(reason["check"] == FORCED for reason in entry.reasons)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_batch_stopped_at_the_gate_stays_stopped_until_released(
    job: str,
    shops: ThreeShops,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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


@pytest.mark.slow
@pytest.mark.parametrize("job", sorted(JOBS))
def test_quarantined_records_are_read_again_and_heal(
    job: str,
    shops: ThreeShops,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
    first_id = state.product_ids()[0] if job == "products_to_mamut" else state.order_ids()[0]
    return {
        "dry_run": lambda: True,
        "resync_ids": lambda: [first_id],
        "skus": lambda: [sorted(mamut_skus(shops.gateway))[0]],
        "since": lambda: (datetime.now(UTC) - timedelta(days=1)).isoformat(),
    }


LIMITED_RUNS = [
    (job, option)
    for job in sorted(JOBS)
    for option in ("dry_run", "resync_ids", "skus", "since")
    if option in JOBS[job].params
]


@pytest.mark.slow
@pytest.mark.parametrize(("job", "option"), LIMITED_RUNS)
def test_only_a_complete_live_read_moves_the_watermark(job: str, option: str, shops: ThreeShops) -> None:
    shop = prepare(shops, job)
    steps = steps_of(job)
    mark = datetime.now(UTC) - timedelta(days=400)
    shops.store.set_watermark(shop, job, mark)

    steps.run(shops.ctx(shop, **{option: manual_params(shops, job, shop)[option]()}))
    assert shops.store.get_watermark(shop, job) == mark

    if WORLD[job].watermark:  # the control: a complete run does move it
        steps.run(shops.ctx(shop))
        assert shops.store.get_watermark(shop, job) != mark
