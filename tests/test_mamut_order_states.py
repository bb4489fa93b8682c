"""Order states read from real mock databases: the rules table, the shop's orders only, changes by EDITDATE.

Orders are written by OrderRepository (as orders_to_mamut writes them) and moved along by the mock's back office
(starmamut_devtools.mamut_mock.progress_order), so the reader is tested against the rows the other parts really produce.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from starmamut.mamut.gateway import MamutError, MamutGateway
from starmamut.mamut.order_states import STATE_RULES, OrderState, OrderStateReader, StateRule
from starmamut.mamut.schema_map import SchemaMap, SchemaMapError
from starmamut_devtools.mamut_mock import progress_order
from tests.fixtures.mamut import MamutTestDatabase, fresh_mock_database
from tests.test_mamut_customers import T1, T2
from tests.test_mamut_orders import create, web_order


def states_by_id(reader: OrderStateReader, shop: str, changed_since: dt.datetime) -> dict[str, frozenset[str]]:
    return {order.order_id: order.states for order in reader.iter_shop_orders(shop, changed_since=changed_since)}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ((), set()),
        (("picked",), {"picked"}),
        (("invoiced",), {"invoiced"}),
        (("invoiced", "paid"), {"invoiced", "paid"}),
        (("delivered",), {"picked", "invoiced", "delivered"}),
        (("cancelled",), {"cancelled"}),
        (("delivered", "credited"), {"picked", "invoiced", "credited"}),
    ],
)
def test_each_back_office_step_gives_the_states_of_the_rules(mamut_db: MamutTestDatabase, steps, expected) -> None:
    create(mamut_db.gateway, web_order("a:1001"))
    progress_order(mamut_db.gateway, "a:1001", *steps, now=T2)

    [order] = OrderStateReader(mamut_db.gateway).iter_shop_orders("a")

    assert order.states == expected
    assert order.order_id == "1001" and order.edit_date == T2.replace(tzinfo=dt.UTC) and order.tracking_no is None
    assert (order.invoice_number is not None) == ("invoiced" in expected or "credited" in expected)


def test_delivery_carries_the_tracking_number_and_invoices_once(mamut_db: MamutTestDatabase) -> None:
    create(mamut_db.gateway, web_order("a:1001"))
    create(mamut_db.gateway, web_order("a:1002"))
    progress_order(mamut_db.gateway, "a:1002", "invoiced", now=T2)
    progress_order(
        mamut_db.gateway, "a:1001", "delivered", now=T2, tracking_no=" 00370712345678901234 ", tracker_type=1
    )
    progress_order(mamut_db.gateway, "a:1002", "delivered", now=T2)

    orders = {order.order_id: order for order in OrderStateReader(mamut_db.gateway).iter_shop_orders("a")}

    assert (orders["1001"].tracking_no, orders["1001"].tracker_type) == ("00370712345678901234", 1)
    assert (orders["1002"].invoice_number, orders["1001"].invoice_number) == (1, 2)  # 1002 keeps its first number
    with pytest.raises(MamutError, match="no order with external id 'a:9999'"):
        progress_order(mamut_db.gateway, "a:9999", "picked", now=T2)


def test_only_the_shops_own_web_orders_are_read(mamut_db: MamutTestDatabase) -> None:
    for external_id in ("a_b:1", "axb:2", "A_B:3", "a_b:not-a-number", "a_b2:4", "a_b:5"):
        create(mamut_db.gateway, web_order(external_id))

    reader = OrderStateReader(mamut_db.gateway)

    assert [order.order_id for order in reader.iter_shop_orders("a_b")] == ["1", "5"]
    assert [order.order_id for order in reader.shop_orders("a_b", ["5", 1, "2", "404"])] == ["1", "5"]
    assert reader.shop_orders("axb", []) == []


def test_changed_since_reads_only_orders_edited_at_or_after_it(mamut_db: MamutTestDatabase) -> None:
    create(mamut_db.gateway, web_order("a:1"), now=T1)
    create(mamut_db.gateway, web_order("a:2"), now=T1)
    progress_order(mamut_db.gateway, "a:2", "picked", now=T2)
    reader = OrderStateReader(mamut_db.gateway)

    assert states_by_id(reader, "a", changed_since=T2) == {"2": frozenset({"picked"})}
    assert set(states_by_id(reader, "a", changed_since=T1.replace(tzinfo=dt.UTC))) == {"1", "2"}
    assert reader.tracks_changes


STOCKHOLM = ZoneInfo("Europe/Stockholm")


def test_on_the_night_the_clocks_go_back_a_change_after_the_watermark_is_still_read(tmp_path: Path) -> None:
    """2026-10-25 at 01:00 UTC Swedish clocks go back from 03:00 CEST to 02:00 CET: 02:00-03:00 happens twice,
    and Mamut stamps EDITDATE in that local time."""
    schema_map = SchemaMap.load(timezone=STOCKHOLM)
    watermark = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)  # the first 02:30 in Stockholm
    changed = dt.datetime(2026, 10, 25, 1, 10, tzinfo=dt.UTC)  # 40 minutes later: the second 02:10
    with fresh_mock_database("sqlite", tmp_path, schema_map=schema_map) as odbc, MamutGateway(odbc, schema_map) as gw:
        create(gw, web_order("a:1"), now=watermark - dt.timedelta(days=1))
        create(gw, web_order("a:2"), now=watermark - dt.timedelta(days=1))
        progress_order(gw, "a:1", "picked", now=changed)
        with gw.transaction() as tx:
            stamps = {row["external_id"]: row["edit_date"] for row in tx.select("order", ["external_id", "edit_date"])}
        reader = OrderStateReader(gw)

        assert stamps["a:1"] == dt.datetime(2026, 10, 25, 2, 10)  # the wall clock, earlier than the mark's 02:30
        [order] = reader.iter_shop_orders("a", changed_since=watermark)
        assert order.order_id == "1"
        assert order.edit_date is not None and order.edit_date <= changed  # an ambiguous time reads as the earlier


def test_without_edit_date_or_paid_columns_the_reader_still_works(tmp_path: Path) -> None:
    schema_map = SchemaMap.load(overrides={"tables": {"order": {"columns": {"edit_date": None, "paid": None}}}})
    with fresh_mock_database("sqlite", tmp_path, schema_map=schema_map) as odbc, MamutGateway(odbc, schema_map) as gw:
        create(gw, web_order("a:1"))
        progress_order(gw, "a:1", "invoiced", "paid", now=T2)
        reader = OrderStateReader(gw)

        [order] = reader.iter_shop_orders("a")
        assert order.states == {"invoiced"} and order.edit_date is None  # no LPAID: "paid" is never derived
        assert not reader.tracks_changes
        with pytest.raises(ValueError, match="no change timestamp"):
            list(reader.iter_shop_orders("a", changed_since=T1))


def test_an_owner_adds_a_state_with_one_rule(mamut_db: MamutTestDatabase) -> None:
    create(mamut_db.gateway, web_order("a:1"))
    with mamut_db.gateway.transaction() as tx:
        tx.update("order", {"ready_for_invoicing": True}, where={"external_id": "a:1"})
    ready = StateRule("ready_for_invoicing", 15, (("order", "ready_for_invoicing"),), must_map=False)

    [order] = OrderStateReader(mamut_db.gateway, (*STATE_RULES, ready)).iter_shop_orders("a")

    assert isinstance(order, OrderState) and order.states == {"ready_for_invoicing"}
    with pytest.raises(SchemaMapError, match="unknown column 'shipped'"):
        OrderStateReader(mamut_db.gateway, (StateRule("shipped", 45, (("order", "shipped"),), must_map=True),))
