"""OrderRepository on real mock databases: exactly-once order and invoice writes, atomicity, races, money."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from starmamut.mamut.customers import CustomerRepository, MamutRecordError
from starmamut.mamut.documents import MamutCustomer, MamutOrder, MamutOrderLine
from starmamut.mamut.gateway import MamutError, MamutGateway, MamutTransaction
from starmamut.mamut.orders import ExistingOrder, OrderRepository, OrderWriteResult
from starmamut.mamut.schema_map import SchemaMap
from tests.fixtures.mamut import MamutTestDatabase, fresh_mock_database, reject_inserts
from tests.test_mamut_customers import (
    ALL_KEYS,
    MAMUT_NUMBERS,
    T1,
    T2,
    company_buyer,
    customer_card,
    guest_buyer,
    home_address,
    private_buyer,
    rows,
)

GIFT_ADDRESS = home_address(name="Mormor Berg", street="Fjällvägen 9", zip_code="981 31", city="Kiruna")


def web_order(external_id: str = "a:1001", **changes: Any) -> MamutOrder:
    """A Swedish web order as the order mapper builds it: two article lines, shipping, a free-text line."""
    order = MamutOrder(
        external_id=external_id,
        document="order",
        currency="SEK",
        exchange_rate=Decimal("1"),
        order_date=dt.date(2026, 5, 1),
        reference="Starweb 1001 · rabattkod SOMMAR",
        your_reference="Åsa Öberg",
        lines=(
            MamutOrderLine("MUGG-ORE", "Kaffemugg Örebro", Decimal("2"), Decimal("79.20"), Decimal("0"), 1),
            MamutOrderLine("BOK-SKANE", "Kokbok Smaker från Skåne", Decimal("1"), Decimal("235.85"), Decimal("10"), 3),
            MamutOrderLine("FRAKT", "Frakt", Decimal("1"), Decimal("39.20"), Decimal("0"), 1),
            MamutOrderLine(None, "Presentinslagning – gåvokort", Decimal("1"), Decimal("0"), Decimal("0"), 1),
        ),
        total_incl_vat=Decimal("471.97"),
        invoice_address=home_address(),
        delivery_address=home_address(name="Åsa Öberg c/o Lund", street="Ängsvägen 7", city="Malmö"),
    )
    return dataclasses.replace(order, **changes)


def create(
    gateway: MamutGateway,
    order: MamutOrder,
    customer: MamutCustomer | None = None,
    *,
    guest_customer_no: int | None = None,
    update_customer: bool = False,
    now: dt.datetime = T1,
) -> OrderWriteResult:
    return OrderRepository(gateway).create(
        order,
        customer or private_buyer(),
        match_keys=ALL_KEYS,
        numbers=MAMUT_NUMBERS,
        guest_customer_no=guest_customer_no,
        update_customer=update_customer,
        now=now,
    )


def orders_in(gateway: MamutGateway, prefix: str | None = None) -> list[dict[str, Any]]:
    return list(OrderRepository(gateway).iter_orders_with_lines(prefix))


def assert_nothing_written(gateway: MamutGateway) -> None:
    for table, key in (("order", "order_key"), ("order_line", "order_line_key"), ("contact", "contact_key")):
        assert rows(gateway, table, [key]) == [], table
    assert rows(gateway, "contact_person", ["contact_person_key"]) == []
    assert rows(gateway, "address", ["address_key"]) == []


def test_an_order_is_written_with_its_customer_lines_and_references(mamut_db: MamutTestDatabase) -> None:
    result = create(mamut_db.gateway, web_order())

    assert result == OrderWriteResult(
        order_key=result.order_key,
        order_no=1,
        invoice_no=None,
        contact_id=result.contact_id,
        customer_no=10000,
        created=True,
        customer_created=True,
    )
    [order] = orders_in(mamut_db.gateway)
    expected = {
        "order_key": result.order_key,
        "order_number": 1,
        "invoice_number": None,
        "status_id": 5100,  # the mock's "Ubehandlad order": open, not quote/invoiced/delivered
        "contact_key": result.contact_id,
        "customer_number": 10000,
        "contact_name": "Åsa Öberg",
        "delivery_address": "Åsa Öberg c/o Lund\nÄngsvägen 7\n111 22 Malmö\nSE",
        "reference": "Starweb 1001 · rabattkod SOMMAR",
        "your_reference": "Åsa Öberg",
        "external_id": "a:1001",
        "currency_id": 1,
        "exchange_rate": Decimal("1.000000"),
        "total_gross": Decimal("471.97"),
        "order_date": dt.date(2026, 5, 1),
        "invoice_date": None,
        "reg_date": T1,
        "edit_date": T1,
    }
    assert {key: order[key] for key in expected} == expected
    assert [
        (line["line_number"], line["sku"], line["description"], line["qty_ordered"], line["price"])
        + (line["discount_pct"], line["vat_code"])
        for line in order["lines"]
    ] == [
        (1, "MUGG-ORE", "Kaffemugg Örebro", Decimal("2.000"), Decimal("79.2000"), Decimal("0.00"), 1),
        (2, "BOK-SKANE", "Kokbok Smaker från Skåne", Decimal("1.000"), Decimal("235.8500"), Decimal("10.00"), 3),
        (3, "FRAKT", "Frakt", Decimal("1.000"), Decimal("39.2000"), Decimal("0.00"), 1),
        (4, None, "Presentinslagning – gåvokort", Decimal("1.000"), Decimal("0.0000"), Decimal("0.00"), 1),
    ]
    assert OrderRepository(mamut_db.gateway).find_by_external_id("a:1001") == ExistingOrder(
        order_key=result.order_key, order_no=1, invoice_no=None, status_id=5100
    )
    assert OrderRepository(mamut_db.gateway).find_by_external_id("a:9999") is None


def test_creating_the_same_order_twice_writes_it_once(mamut_db: MamutTestDatabase) -> None:
    first = create(mamut_db.gateway, web_order(), now=T1)
    before = mamut_db.gateway.statements_executed
    second = create(mamut_db.gateway, web_order(reference="changed in the shop"), now=T2)
    statements = mamut_db.gateway.statements_executed - before

    assert second == dataclasses.replace(first, created=False, customer_created=False)
    [order] = orders_in(mamut_db.gateway)
    assert order["reference"] == "Starweb 1001 · rabattkod SOMMAR" and len(order["lines"]) == 4
    assert len(rows(mamut_db.gateway, "contact", ["contact_key"])) == 1
    assert rows(mamut_db.gateway, "contact", ["edit_date"]) == [{"edit_date": T1}]  # not even the customer
    assert statements == 2  # the order table's app lock and the lookup


def test_the_same_starweb_order_id_in_two_shops_makes_two_orders(mamut_db: MamutTestDatabase) -> None:
    in_shop_a = create(mamut_db.gateway, web_order("a:1001"))
    in_shop_b = create(mamut_db.gateway, web_order("b:1001"), company_buyer(external_id="b:42"))

    assert in_shop_a.created and in_shop_b.created and in_shop_a.order_key != in_shop_b.order_key
    assert [order["external_id"] for order in orders_in(mamut_db.gateway)] == ["a:1001", "b:1001"]
    assert [order["external_id"] for order in orders_in(mamut_db.gateway, "b:")] == ["b:1001"]


def test_unique_indexes_refuse_a_second_row_with_the_same_external_id_or_invoice_number(
    mamut_db: MamutTestDatabase,
) -> None:
    """The last line of defence when two writers race past the lookup."""
    create(mamut_db.gateway, web_order("a:1001"))
    [contact] = rows(mamut_db.gateway, "contact", ["contact_key"])
    row = {"status_id": 5100, "contact_key": contact["contact_key"], "currency_id": 1}
    with mamut_db.gateway.transaction() as tx:  # rows without external id (typed in Mamut) are fine
        tx.insert_many("order", [{**row, "order_number": number, "external_id": None} for number in (7, 8)])
    with pytest.raises(MamutError, match="(?i)unique"), mamut_db.gateway.transaction() as tx:
        tx.insert("order", {**row, "order_number": 9, "external_id": "a:1001"})
    with mamut_db.gateway.transaction() as tx:
        tx.update("order", {"invoice_number": 1}, where={"order_number": 7})
    with pytest.raises(MamutError, match="(?i)unique"), mamut_db.gateway.transaction() as tx:
        tx.update("order", {"invoice_number": 1}, where={"order_number": 8})  # invoice numbers never repeat


def test_a_database_failure_after_the_order_insert_leaves_nothing(mamut_db: MamutTestDatabase) -> None:
    """A trigger rejects the lines, after G_ORDER and a new customer were inserted: all is rolled back."""
    reject_inserts(mamut_db, "G_ORDERL", "FRAKT")

    with pytest.raises(MamutError, match="order 'a:1001' not written after 4 attempts: .*trigger rejects FRAKT"):
        create(mamut_db.gateway, web_order())

    assert_nothing_written(mamut_db.gateway)


def test_an_exception_inside_the_load_is_not_retried_and_leaves_nothing(
    mamut_db: MamutTestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_inserts: list[str] = []
    original_insert = MamutTransaction.insert
    original_insert_many = MamutTransaction.insert_many

    def counting_insert(self: MamutTransaction, table: str, values: Any) -> None:
        if table == "order":
            order_inserts.append(values["external_id"])
        original_insert(self, table, values)

    def crashing_insert_many(self: MamutTransaction, table: str, rows_: Any) -> None:
        if table == "order_line":
            raise RuntimeError("worker killed between G_ORDER and G_ORDERL")
        original_insert_many(self, table, rows_)

    monkeypatch.setattr(MamutTransaction, "insert", counting_insert)
    monkeypatch.setattr(MamutTransaction, "insert_many", crashing_insert_many)
    with pytest.raises(RuntimeError, match="worker killed"):
        create(mamut_db.gateway, web_order())
    monkeypatch.undo()

    assert order_inserts == ["a:1001"]
    assert_nothing_written(mamut_db.gateway)
    assert create(mamut_db.gateway, web_order()).order_no == 1  # the retried load starts from scratch


def run_at_once(*loads: Callable[[], OrderWriteResult]) -> list[OrderWriteResult]:
    """Run each load in its own thread, released together; the first error any of them raised is re-raised."""
    barrier = threading.Barrier(len(loads))
    results: list[OrderWriteResult] = []
    errors: list[BaseException] = []

    def run(load: Callable[[], OrderWriteResult]) -> None:
        try:
            barrier.wait()
            results.append(load())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(load,)) for load in loads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_two_writers_creating_the_same_order_at_once_write_it_once(mamut_db: MamutTestDatabase) -> None:
    for external_id in ("a:2000", "a:2001", "a:2002"):
        results = run_at_once(*[partial(create, mamut_db.gateway, web_order(external_id)) for _ in range(2)])

        assert sorted(result.created for result in results) == [False, True]
        assert results[0].order_key == results[1].order_key

    assert [order["external_id"] for order in orders_in(mamut_db.gateway)] == ["a:2000", "a:2001", "a:2002"]
    assert len(rows(mamut_db.gateway, "contact", ["contact_key"])) == 1


def test_concurrent_orders_of_new_customers_get_distinct_numbers(mamut_db: MamutTestDatabase) -> None:
    buyers = [
        private_buyer(name=f"Kund {number}", email=f"kund{number}@example.se", external_id=f"a:{number}", org_no=None)
        for number in (1, 2, 3)
    ]
    results = run_at_once(
        *[
            partial(create, mamut_db.gateway, web_order(f"a:{3000 + index}"), buyer)
            for index, buyer in enumerate(buyers)
        ]
    )

    assert all(result.created and result.customer_created for result in results)
    assert sorted(result.customer_no for result in results) == [10000, 10001, 10002]
    assert sorted(result.order_no for result in results) == [1, 2, 3]


@pytest.mark.postgres
def test_a_writer_arriving_between_lookup_and_insert_waits_for_the_lock_and_finds_the_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic race on PostgreSQL: a competitor starts after our lookup found nothing, before our insert.

    It waits on the order table's app lock until we commit, then finds our order and writes nothing. Without the
    lock it would find nothing too and write the order again (caught here only by the mock's unique index).
    """
    with fresh_mock_database("postgres", tmp_path) as odbc:
        ours, theirs = MamutGateway(odbc, SchemaMap.load()), MamutGateway(odbc, SchemaMap.load())
        original_upsert = CustomerRepository.upsert
        competitor: list[OrderWriteResult] = []
        started: list[threading.Thread] = []

        def upsert_while_a_competitor_starts(self: CustomerRepository, *args: Any, **kwargs: Any) -> Any:
            if not started:  # our lookup is done, the insert still to come
                started.append(threading.Thread(target=lambda: competitor.append(create(theirs, web_order()))))
                started[0].start()
                time.sleep(1)
                assert not competitor, "the competitor got past the lock while we held it"
            return original_upsert(self, *args, **kwargs)

        monkeypatch.setattr(CustomerRepository, "upsert", upsert_while_a_competitor_starts)
        try:
            result = create(ours, web_order())
            started[0].join(30)
            assert competitor == [dataclasses.replace(result, created=False, customer_created=False)]
            assert len(orders_in(ours)) == 1
        finally:
            ours.close()
            theirs.close()


def test_invoices_are_numbered_after_the_highest_invoice_and_dated_on_the_order_date(
    mamut_db: MamutTestDatabase,
) -> None:
    gateway = mamut_db.gateway
    typed_in_mamut = create(gateway, web_order("manual:1"))
    with gateway.transaction() as tx:
        tx.update("order", {"order_number": 500, "invoice_number": 90}, where={"order_key": typed_in_mamut.order_key})

    invoice = create(gateway, web_order("a:1", document="invoice", order_date=dt.date(2026, 4, 30)))
    order = create(gateway, web_order("a:2"))
    second_invoice = create(gateway, web_order("a:3", document="invoice"))

    assert (invoice.order_no, invoice.invoice_no) == (501, 91)
    assert (order.order_no, order.invoice_no) == (502, None)
    assert (second_invoice.order_no, second_invoice.invoice_no) == (503, 92)
    written = {row["external_id"]: row for row in orders_in(gateway, "a:")}
    assert (written["a:1"]["status_id"], written["a:1"]["invoice_date"]) == (5400, dt.date(2026, 4, 30))
    assert (written["a:2"]["status_id"], written["a:2"]["invoice_date"]) == (5100, None)
    assert OrderRepository(gateway).find_by_external_id("a:3") == ExistingOrder(
        order_key=second_invoice.order_key, order_no=503, invoice_no=92, status_id=5400
    )


def test_money_and_swedish_text_read_back_exactly(mamut_db: MamutTestDatabase) -> None:
    lines = (
        MamutOrderLine("SYLT-ÅÄÖ", "Blåbärssylt Östgöta – ÅÄÖ åäö", Decimal("1.5"), Decimal("0.1"), Decimal("12.5"), 2),
        MamutOrderLine("DYR", "Konstverk", Decimal("3"), Decimal("123456789.1234"), Decimal("0.01"), 1),
        MamutOrderLine(None, "Avrundning", Decimal("1"), Decimal("-0.03"), Decimal("0"), 1),
    )
    order = web_order("a:€", currency="EUR", exchange_rate=Decimal("11.234567"), lines=lines)
    order = dataclasses.replace(order, total_incl_vat=Decimal("462962962962.96"))
    create(mamut_db.gateway, order)

    [written] = orders_in(mamut_db.gateway)
    assert (written["currency_id"], written["exchange_rate"], written["total_gross"]) == (
        2,
        Decimal("11.234567"),
        Decimal("462962962962.96"),
    )
    assert [(line["qty_ordered"], line["price"], line["discount_pct"]) for line in written["lines"]] == [
        (Decimal("1.5"), Decimal("0.1"), Decimal("12.5")),
        (Decimal("3"), Decimal("123456789.1234"), Decimal("0.01")),
        (Decimal("1"), Decimal("-0.03"), Decimal("0")),
    ]
    assert written["lines"][0]["description"] == "Blåbärssylt Östgöta – ÅÄÖ åäö"
    assert written["lines"][0]["sku"] == "SYLT-ÅÄÖ"


def test_an_unknown_currency_is_refused_naming_order_and_code_and_writes_nothing(
    mamut_db: MamutTestDatabase,
) -> None:
    repository = OrderRepository(mamut_db.gateway)
    assert repository.known_currencies() == {"SEK", "EUR", "NOK"}

    with pytest.raises(MamutRecordError, match=r"order 'a:1001': currency 'DKK' is not in .*\(EUR, NOK, SEK\)"):
        create(mamut_db.gateway, web_order(currency="DKK"))

    assert_nothing_written(mamut_db.gateway)


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (web_order(lines=()), "order 'a:1001': has no lines"),
        (
            web_order(lines=(MamutOrderLine("X", "Tält", Decimal("0"), Decimal("1"), Decimal("0"), 1),)),
            r"order 'a:1001' line 1 \(X\): quantity must be positive",
        ),
        (
            web_order(lines=(MamutOrderLine(None, "Rabatt", Decimal("1"), Decimal("1"), Decimal("101"), 1),)),
            r"line 1 \(free text\): discount_pct must be within 0..100",
        ),
        (
            web_order(lines=(MamutOrderLine("X", "Å" * 201, Decimal("1"), Decimal("1"), Decimal("0"), 1),)),
            r"order 'a:1001' line 1: order_line.description \(DESCRIPTION\) takes at most 200 characters",
        ),
        (web_order("a:" + "9" * 60), r"order.external_id \(EXTERNALID\) takes at most 50 characters"),
        (web_order(exchange_rate=Decimal("NaN")), "exchange_rate must be positive"),
    ],
)
def test_orders_that_cannot_be_stored_are_refused_before_touching_the_database(
    mamut_db: MamutTestDatabase, order: MamutOrder, message: str
) -> None:
    before = mamut_db.gateway.statements_executed
    with pytest.raises(ValueError, match=message):
        create(mamut_db.gateway, order)
    assert mamut_db.gateway.statements_executed == before


def test_a_status_register_without_an_open_order_status_is_a_clear_error(mamut_db: MamutTestDatabase) -> None:
    with mamut_db.gateway.transaction() as tx:
        tx.update("order_status", {"is_open": False}, where={"is_open": True})

    with pytest.raises(MamutRecordError, match="no order status fits a new order"):
        create(mamut_db.gateway, web_order())
    assert create(mamut_db.gateway, web_order(document="invoice")).invoice_no == 1


def test_orders_of_guests_go_to_the_guest_customer_with_the_buyers_name_on_the_order(
    mamut_db: MamutTestDatabase,
) -> None:
    gateway = mamut_db.gateway
    with gateway.transaction() as tx:
        tx.insert("contact", {"customer_number": 9999, "name": "Webbkund (gäst)"})
    guest = private_buyer(external_id=None, starweb_customer_id=None, org_no=None, email="gast@example.se")

    result = create(gateway, web_order(), guest, guest_customer_no=9999)

    assert (result.customer_no, result.customer_created) == (9999, False)
    [order] = orders_in(gateway)
    assert (order["customer_number"], order["contact_name"]) == (9999, "Åsa Öberg")
    assert order["delivery_address"].startswith("Åsa Öberg c/o Lund\nÄngsvägen 7")


def test_a_gift_delivery_address_lands_on_the_order_not_on_the_customer(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    first = create(gateway, web_order("a:1001"))
    card = customer_card(gateway)

    # The mapper builds order and buyer from the same Starweb order: both carry the gift's address.
    gift = create(
        gateway,
        web_order("a:1002", delivery_address=GIFT_ADDRESS),
        private_buyer(delivery_address=GIFT_ADDRESS),
        now=T2,
    )

    assert gift.contact_id == first.contact_id and not gift.customer_created
    assert customer_card(gateway) == card
    by_id = {order["external_id"]: order for order in orders_in(gateway)}
    assert by_id["a:1002"]["delivery_address"] == "Mormor Berg\nFjällvägen 9\n981 31 Kiruna\nSE"
    assert by_id["a:1001"]["delivery_address"] == "Åsa Öberg c/o Lund\nÄngsvägen 7\n111 22 Malmö\nSE"


def test_a_guest_order_with_a_returning_customers_email_leaves_the_customer_unchanged(
    mamut_db: MamutTestDatabase,
) -> None:
    gateway = mamut_db.gateway
    registered = create(gateway, web_order("a:1001"))
    card = customer_card(gateway)
    stranger = home_address(name="Okänd Person", street="Annangatan 5", city="Uppsala")
    guest = guest_buyer(
        name="Okänd Person",
        first_name="Okänd",
        last_name="Person",
        phone="070-000 00 00",
        invoice_address=stranger,
        delivery_address=None,
    )

    result = create(gateway, web_order("a:1002", invoice_address=stranger, delivery_address=None), guest, now=T2)

    assert result.contact_id == registered.contact_id  # matched by e-mail: the order belongs to that customer
    assert customer_card(gateway) == card
    order = next(order for order in orders_in(gateway) if order["external_id"] == "a:1002")
    assert (order["contact_name"], order["delivery_address"]) == (
        "Okänd Person",
        "Okänd Person\nAnnangatan 5\n111 22 Uppsala\nSE",
    )


def test_update_customer_writes_the_orders_buyer_over_the_matched_customer(mamut_db: MamutTestDatabase) -> None:
    """The old behaviour, for shops that want it (orders_to_mamut.update_customer_from_order)."""
    gateway = mamut_db.gateway
    create(gateway, web_order("a:1001"))

    create(
        gateway,
        web_order("a:1002", delivery_address=GIFT_ADDRESS),
        private_buyer(delivery_address=GIFT_ADDRESS),
        update_customer=True,
        now=T2,
    )

    delivery = rows(gateway, "address", ["street", "city"], address_type=3)
    assert delivery == [{"street": "Fjällvägen 9", "city": "Kiruna"}]
