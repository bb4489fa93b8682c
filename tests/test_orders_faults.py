"""orders_to_mamut against what a shop can send that the sandbox's own data never holds, and against a listing or
a clock that cannot be trusted: a bad record is quarantined naming its field and the rest of the batch loads;
a listing that cannot be shown complete, or a worker clock far from Starweb's, stops the run before any
watermark moves.

The sandbox only holds data its spec checks accept, so a malformed order is made by changing how the shop
renders that one order (as a shop with a bug would send it), not by storing it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from starmamut.jobs import orders_to_mamut
from starmamut.jobs.common import JobContext
from starmamut.starweb.errors import StarwebClockSkew, StarwebIncompleteListing
from starmamut_devtools.sandbox.errors import bad_request
from tests.test_orders_to_mamut import eligible_orders, make_ctx, mamut_orders  # the fixture too (see pyproject)


def render_order_as(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, order_id: int, change: Callable[[dict[str, Any]], None]
) -> None:
    """From now on the shop sends order ``order_id`` changed by ``change`` wherever it renders it."""
    state = sandbox.state
    render = state._render_order

    def rendered(order: Any, includes: frozenset[str]) -> dict[str, Any]:
        body = render(order, includes)
        if order.order_id == order_id:
            change(body)
        return body

    monkeypatch.setattr(state, "_render_order", rendered)


def open_reasons(ctx: JobContext) -> dict[str, str]:
    return {
        entry.key: "; ".join(reason["reason"] for reason in entry.reasons)
        for entry in ctx.store.open_quarantine(ctx.shop.id, orders_to_mamut.ENTITY)
    }


def test_an_unreadable_amount_quarantines_that_order_naming_the_field_and_the_rest_load(
    make_ctx: Callable[..., JobContext],
    sandbox: Any,
    mamut_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = eligible_orders(sandbox)
    bad = min(expected)
    render_order_as(sandbox, monkeypatch, bad, lambda body: body.update(shippingCost="12,50"))

    result = orders_to_mamut.run(make_ctx())

    reasons = open_reasons(make_ctx())
    assert list(reasons) == [str(bad)]
    assert "shippingCost" in reasons[str(bad)] and "12,50" in reasons[str(bad)]
    assert set(mamut_orders(mamut_db.gateway)) == {f"demo:{oid}" for oid in expected if oid != bad}
    assert result["quarantined"] == 1

    monkeypatch.undo()  # the shop fixes its data: the next run reads the order again by id and it heals
    orders_to_mamut.run(make_ctx())
    assert open_reasons(make_ctx()) == {}
    assert f"demo:{bad}" in mamut_orders(mamut_db.gateway)


def test_an_order_without_modified_at_neither_stops_the_run_nor_is_left_behind(
    make_ctx: Callable[..., JobContext],
    sandbox: Any,
    mamut_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = eligible_orders(sandbox)
    odd = max(expected)
    render_order_as(sandbox, monkeypatch, odd, lambda body: body.pop("modifiedAt", None))
    ctx = make_ctx()
    ctx.store.set_watermark(ctx.shop.id, orders_to_mamut.JOB, datetime.now(UTC) - timedelta(days=1))

    orders_to_mamut.run(make_ctx(full_refresh=False))
    orders_to_mamut.run(make_ctx(resync_ids=sorted(expected)))  # an operator's re-sync reads each by id

    assert set(mamut_orders(mamut_db.gateway)) == {f"demo:{oid}" for oid in expected}


def test_a_refused_write_back_quarantines_the_order_without_failing_the_run(
    make_ctx: Callable[..., JobContext],
    sandbox: Any,
    mamut_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = eligible_orders(sandbox)
    refused = min(expected)
    state = sandbox.state
    update = state.update_order

    def update_order(order_id: int, body: Any) -> dict[str, Any]:
        if order_id == refused:
            raise bad_request("externalId: the order is locked")
        return update(order_id, body)

    monkeypatch.setattr(state, "update_order", update_order)
    result = orders_to_mamut.run(make_ctx())

    assert f"demo:{refused}" in mamut_orders(mamut_db.gateway)  # in Mamut once, as it should be
    assert result["write_back_refused"] == 1 and result["written_back"] == len(expected) - 1
    assert "refused the write-back" in open_reasons(make_ctx())[str(refused)]

    monkeypatch.undo()
    orders_to_mamut.run(make_ctx())  # fixed in the shop: the write-back follows, still one Mamut order
    assert open_reasons(make_ctx()) == {}
    assert state.order(refused)["externalId"]
    assert len(mamut_orders(mamut_db.gateway)) == len(expected)


def test_a_listing_shorter_than_its_total_fails_the_extract_and_moves_no_watermark(
    make_ctx: Callable[..., JobContext],
    sandbox: Any,
    mamut_db: Any,
) -> None:
    sandbox.faults.listing_short_by = 1

    with pytest.raises(StarwebIncompleteListing):
        orders_to_mamut.run(make_ctx())

    ctx = make_ctx()
    assert ctx.store.get_watermark(ctx.shop.id, orders_to_mamut.JOB) is None
    assert mamut_orders(mamut_db.gateway) == {}


def test_a_worker_clock_far_from_starwebs_stops_the_run_before_reading(
    make_ctx: Callable[..., JobContext],
    sandbox: Any,
    mamut_db: Any,
) -> None:
    sandbox.faults.clock_skew_seconds = 20 * 60  # more than half the 30-minute overlap

    with pytest.raises(StarwebClockSkew):
        orders_to_mamut.run(make_ctx())
    assert mamut_orders(mamut_db.gateway) == {}

    sandbox.faults.clock_skew_seconds = 60  # well inside the overlap
    assert orders_to_mamut.run(make_ctx())["loaded"] == len(eligible_orders(sandbox))
