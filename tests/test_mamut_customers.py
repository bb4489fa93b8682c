"""CustomerRepository on real mock databases: matching keys and order, guests, number series, changes only.

The builders here are shared with tests/test_mamut_orders.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from starmamut.mamut.customers import CustomerRepository, CustomerWriteResult, MamutRecordError
from starmamut.mamut.documents import CustomerNumberPolicy, MamutAddress, MamutCustomer
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap, SchemaMapError
from tests.fixtures.mamut import MAMUT_BACKENDS, MamutTestDatabase, fresh_mock_database

T1 = dt.datetime(2026, 5, 1, 8, 0, 0)
T2 = dt.datetime(2026, 5, 2, 8, 0, 0)
T3 = dt.datetime(2026, 5, 3, 8, 0, 0)
MAMUT_NUMBERS = CustomerNumberPolicy(owner="mamut", first=10000, last=49999, starweb_offset=50000)
STARWEB_NUMBERS = CustomerNumberPolicy(owner="starweb", first=10000, last=49999, starweb_offset=50000)
ALL_KEYS = ("external_id", "email", "org_no")


def home_address(**changes: Any) -> MamutAddress:
    address = MamutAddress(name="Åsa Öberg", street="Storgatan 1", zip_code="111 22", city="Göteborg", country="SE")
    return dataclasses.replace(address, **changes)


def private_buyer(**changes: Any) -> MamutCustomer:
    """A private person as the order mapper builds one from a Starweb customer."""
    buyer = MamutCustomer(
        name="Åsa Öberg",
        is_company=False,
        email="asa.oberg@example.se",
        phone="070-123 45 67",
        org_no="19800101-1234",
        vat_no=None,
        first_name="Åsa",
        last_name="Öberg",
        invoice_address=home_address(),
        delivery_address=home_address(name="Åsa Öberg c/o Lund", street="Ängsvägen 7", city="Malmö"),
        external_id="a:17",
        starweb_customer_id=17,
    )
    return dataclasses.replace(buyer, **changes)


def company_buyer(**changes: Any) -> MamutCustomer:
    buyer = MamutCustomer(
        name="Fjällräv Handel AB",
        is_company=True,
        email="inkop@fjallrav-handel.se",
        phone="08-123 456",
        org_no="556677-8899",
        vat_no="SE556677889901",
        first_name="Björn",
        last_name="Ängström",
        invoice_address=home_address(name="Fjällräv Handel AB", street="Box 123", zip_code="171 23", city="Solna"),
        delivery_address=None,
        external_id="a:42",
        starweb_customer_id=42,
    )
    return dataclasses.replace(buyer, **changes)


def guest_buyer(**changes: Any) -> MamutCustomer:
    """A guest checkout: no Starweb customer, so no external id."""
    return private_buyer(external_id=None, starweb_customer_id=None, org_no=None, **changes)


def rows(gateway: MamutGateway, table: str, columns: Sequence[str], **where: Any) -> list[dict[str, Any]]:
    with gateway.transaction() as tx:
        return tx.select(table, list(columns), where=where or None)


def upsert(
    gateway: MamutGateway,
    customer: MamutCustomer,
    *,
    match_keys: Sequence[str] = ALL_KEYS,
    numbers: CustomerNumberPolicy = MAMUT_NUMBERS,
    guest_customer_no: int | None = None,
    update_matched: bool = False,
    now: dt.datetime = T1,
) -> CustomerWriteResult:
    with gateway.transaction() as tx:
        return CustomerRepository(gateway).upsert(
            tx,
            customer,
            match_keys=match_keys,
            numbers=numbers,
            guest_customer_no=guest_customer_no,
            update_matched=update_matched,
            now=now,
        )


def customer_card(gateway: MamutGateway) -> dict[str, Any]:
    """Everything the integration may write about customers: contacts, contact persons, addresses."""
    return {
        "contact": rows(gateway, "contact", ["contact_key", "name", "email", "phone", "external_id", "edit_date"]),
        "contact_person": rows(gateway, "contact_person", ["first_name", "last_name", "email", "phone_work"]),
        "address": rows(gateway, "address", ["address_type", "recipient", "street", "zip_code", "city"]),
    }


def add_contact(gateway: MamutGateway, customer_number: int | None, name: str, **values: Any) -> int:
    """A contact registered in Mamut by hand (not by the integration)."""
    with gateway.transaction() as tx:
        tx.insert("contact", {"customer_number": customer_number, "name": name, **values})
        found = tx.select("contact", ["contact_key"], where={"name": name})
    return max(row["contact_key"] for row in found)


def test_a_new_customer_gets_contact_person_and_both_addresses(mamut_db: MamutTestDatabase) -> None:
    result = upsert(mamut_db.gateway, private_buyer())

    assert result.created and not result.updated and result.customer_no == 10000
    [contact] = rows(
        mamut_db.gateway,
        "contact",
        ["contact_key", "customer_number", "name", "email", "phone", "org_number", "external_id", "reg_date"],
    )
    assert contact == {
        "contact_key": result.contact_id,
        "customer_number": 10000,
        "name": "Åsa Öberg",
        "email": "asa.oberg@example.se",
        "phone": "070-123 45 67",
        "org_number": "19800101-1234",
        "external_id": "a:17",
        "reg_date": T1,
    }
    persons = rows(mamut_db.gateway, "contact_person", ["contact_key", "first_name", "last_name", "email"])
    assert persons == [
        {"contact_key": result.contact_id, "first_name": "Åsa", "last_name": "Öberg", "email": "asa.oberg@example.se"}
    ]
    columns = ["address_type", "recipient", "street", "zip_code", "city", "country_iso"]
    addresses = rows(mamut_db.gateway, "address", columns, source_type=1, source_key=result.contact_id)
    assert sorted(addresses, key=lambda row: row["address_type"]) == [
        dict(zip(columns, (1, "Åsa Öberg", "Storgatan 1", "111 22", "Göteborg", "SE"), strict=True)),
        dict(zip(columns, (3, "Åsa Öberg c/o Lund", "Ängsvägen 7", "111 22", "Malmö", "SE"), strict=True)),
    ]


def test_company_keeps_vat_number_and_the_buyer_as_contact_person(mamut_db: MamutTestDatabase) -> None:
    result = upsert(mamut_db.gateway, company_buyer())

    [contact] = rows(mamut_db.gateway, "contact", ["name", "org_number", "vat_number"])
    assert contact == {"name": "Fjällräv Handel AB", "org_number": "556677-8899", "vat_number": "SE556677889901"}
    [person] = rows(mamut_db.gateway, "contact_person", ["first_name", "last_name"], contact_key=result.contact_id)
    assert person == {"first_name": "Björn", "last_name": "Ängström"}
    assert [row["address_type"] for row in rows(mamut_db.gateway, "address", ["address_type"])] == [1]


def test_a_matched_customer_keeps_its_master_data(mamut_db: MamutTestDatabase) -> None:
    """An order is a snapshot: another name, phone or address on it (a gift, a guest) never rewrites the card."""
    gateway = mamut_db.gateway
    created = upsert(gateway, private_buyer(), now=T1)
    card = customer_card(gateway)

    elsewhere = home_address(name="Mormor Berg", street="Fjällvägen 9", zip_code="981 31", city="Kiruna")
    for buyer in (
        private_buyer(phone="070-999 99 99", delivery_address=elsewhere),
        guest_buyer(first_name="Åke", last_name="Berg", name="Åke Berg", invoice_address=elsewhere),
    ):
        matched = upsert(gateway, buyer, now=T2)
        assert matched == dataclasses.replace(created, created=False, updated=False)
    assert customer_card(gateway) == card


def test_a_matched_customer_without_external_id_is_linked_to_the_buyer_only(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    typed_in = add_contact(gateway, 20001, "Åsa Öberg (kund sedan 2019)", email="asa.oberg@example.se")

    linked = upsert(gateway, private_buyer(), now=T2)

    assert (linked.contact_id, linked.created, linked.updated) == (typed_in, False, True)
    card = customer_card(gateway)
    assert [(row["name"], row["phone"], row["external_id"], row["edit_date"]) for row in card["contact"]] == [
        ("Åsa Öberg (kund sedan 2019)", None, "a:17", T2)
    ]
    assert card["contact_person"] == card["address"] == []


def test_with_update_matched_an_unchanged_customer_is_not_rewritten_and_changes_touch_only_what_differs(
    mamut_db: MamutTestDatabase,
) -> None:
    gateway = mamut_db.gateway
    created = upsert(gateway, private_buyer(), now=T1)

    again = upsert(gateway, private_buyer(email="  ASA.Oberg@Example.se "), update_matched=True, now=T2)
    assert again == dataclasses.replace(created, created=False, updated=False)
    assert rows(gateway, "contact", ["email", "edit_date"]) == [{"email": "asa.oberg@example.se", "edit_date": T1}]

    moved = private_buyer(phone="070-999 99 99", delivery_address=home_address(street="Nygatan 3", city="Lund"))
    changed = upsert(gateway, moved, update_matched=True, now=T3)
    assert changed.updated and not changed.created and changed.contact_id == created.contact_id
    assert rows(gateway, "contact", ["phone", "edit_date"]) == [{"phone": "070-999 99 99", "edit_date": T3}]
    [person] = rows(gateway, "contact_person", ["phone_work", "edit_date"])
    assert person == {"phone_work": "070-999 99 99", "edit_date": T3}
    by_type = {row["address_type"]: row for row in rows(gateway, "address", ["address_type", "street", "city"])}
    assert by_type == {
        1: {"address_type": 1, "street": "Storgatan 1", "city": "Göteborg"},  # invoice address untouched
        3: {"address_type": 3, "street": "Nygatan 3", "city": "Lund"},
    }


def test_values_the_shop_did_not_give_keep_mamuts(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    upsert(gateway, private_buyer(), now=T1)

    sparse = private_buyer(phone=None, org_no="  ", delivery_address=None, invoice_address=home_address(name=None))
    assert not upsert(gateway, sparse, update_matched=True, now=T2).updated
    assert rows(gateway, "contact", ["phone", "org_number"]) == [
        {"phone": "070-123 45 67", "org_number": "19800101-1234"}
    ]
    assert len(rows(gateway, "address", ["address_key"])) == 2  # the delivery address stays


@pytest.mark.parametrize(
    ("match_keys", "expected"),
    [
        (["external_id", "email", "org_no"], "by external id"),
        (["email", "external_id"], "by email"),
        (["org_no", "email"], "by org no"),
        (["org_no"], "by org no"),
        ([], None),
    ],
)
def test_the_first_key_that_matches_wins_in_the_given_order(
    mamut_db: MamutTestDatabase, match_keys: list[str], expected: str | None
) -> None:
    gateway = mamut_db.gateway
    keys = {
        "by external id": add_contact(gateway, 20001, "by external id", external_id="a:17"),
        "by email": add_contact(gateway, 20002, "by email", email=" Asa.OBERG@example.se"),
        "by org no": add_contact(gateway, 20003, "by org no", org_number="19800101-1234 "),
    }
    add_contact(gateway, None, "prospect, not a customer", email="asa.oberg@example.se", external_id="a:17")

    with gateway.transaction() as tx:
        found = CustomerRepository(gateway).find(tx, private_buyer(), match_keys)
    assert found == (keys[expected] if expected else None)


def test_keys_the_buyer_lacks_are_skipped(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    by_org = add_contact(gateway, 20003, "by org no", org_number="556677-8899")
    add_contact(gateway, 20004, "empty email", email="")
    buyer = company_buyer(external_id=None, starweb_customer_id=None, email=" ")
    with gateway.transaction() as tx:
        assert CustomerRepository(gateway).find(tx, buyer, ALL_KEYS) == by_org


def test_unknown_match_keys_are_refused(mamut_db: MamutTestDatabase) -> None:
    with mamut_db.gateway.transaction() as tx, pytest.raises(ValueError, match="unknown customer match key"):
        CustomerRepository(mamut_db.gateway).find(tx, private_buyer(), ["phone"])


def test_matched_customer_gets_the_external_id_only_if_it_has_none(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    unlinked = add_contact(gateway, 20001, "Åsa Öberg", email="asa.oberg@example.se")
    other_shop = add_contact(gateway, 20002, "Fjällräv Handel AB", email="inkop@fjallrav-handel.se", external_id="b:9")

    assert upsert(gateway, private_buyer()).contact_id == unlinked
    assert upsert(gateway, company_buyer()).contact_id == other_shop
    ids = {row["contact_key"]: row["external_id"] for row in rows(gateway, "contact", ["contact_key", "external_id"])}
    assert ids == {unlinked: "a:17", other_shop: "b:9"}


def test_with_update_matched_another_buyer_of_a_company_is_added_as_a_second_contact_person(
    mamut_db: MamutTestDatabase,
) -> None:
    gateway = mamut_db.gateway
    first = upsert(gateway, company_buyer(), now=T1)
    second = upsert(gateway, company_buyer(first_name="Karin", last_name="Sjöberg"), update_matched=True, now=T2)
    same_again = upsert(gateway, company_buyer(first_name="björn ", last_name="ÄNGSTRÖM"), update_matched=True, now=T3)

    assert second.updated and not same_again.updated
    assert second.contact_id == same_again.contact_id == first.contact_id
    persons = rows(gateway, "contact_person", ["first_name", "last_name"], contact_key=first.contact_id)
    assert sorted((row["first_name"], row["last_name"]) for row in persons) == [
        ("Björn", "Ängström"),
        ("Karin", "Sjöberg"),
    ]


def test_a_guest_is_matched_by_email_when_email_is_a_key(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    first = upsert(gateway, guest_buyer(), guest_customer_no=None)
    second = upsert(gateway, guest_buyer(email="ASA.OBERG@example.se"), guest_customer_no=None)
    third = upsert(gateway, guest_buyer(), match_keys=["external_id", "org_no"], guest_customer_no=None)

    assert first.created and first.customer_no == 10000
    assert not second.created and second.contact_id == first.contact_id
    assert third.created and third.customer_no == 10001  # without email as key, a guest is new every time
    assert [row["external_id"] for row in rows(gateway, "contact", ["external_id"])] == [None, None]


def test_unmatched_guests_go_to_the_guest_customer_which_is_never_rewritten(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    guest_contact = add_contact(gateway, 9999, "Webbkund (gäst)")

    result = upsert(gateway, guest_buyer(), match_keys=["email"], guest_customer_no=9999)

    assert result == CustomerWriteResult(contact_id=guest_contact, customer_no=9999, created=False, updated=False)
    assert rows(gateway, "contact", ["name", "email"]) == [{"name": "Webbkund (gäst)", "email": None}]
    assert rows(gateway, "contact_person", ["contact_person_key"]) == []
    assert rows(gateway, "address", ["address_key"]) == []
    registered = upsert(gateway, private_buyer(), match_keys=["email"], guest_customer_no=9999)
    assert registered.created and registered.customer_no == 10000  # only guests go to the guest customer


def test_a_missing_guest_customer_is_an_error_naming_its_number(mamut_db: MamutTestDatabase) -> None:
    with pytest.raises(MamutRecordError, match="guest customer number 9999 .* does not exist"):
        upsert(mamut_db.gateway, guest_buyer(), match_keys=["email"], guest_customer_no=9999)
    assert rows(mamut_db.gateway, "contact", ["contact_key"]) == []


def test_mamut_numbers_continue_after_the_highest_in_the_series_only(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    add_contact(gateway, 9999, "below the series")
    add_contact(gateway, 10041, "in the series")
    add_contact(gateway, 50017, "above the series")

    first = upsert(gateway, private_buyer())
    second = upsert(gateway, company_buyer())

    assert (first.customer_no, second.customer_no) == (10042, 10043)


def test_a_full_series_is_a_clear_error(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    tiny = CustomerNumberPolicy(owner="mamut", first=30000, last=30001, starweb_offset=0)
    assert upsert(gateway, private_buyer(), numbers=tiny).customer_no == 30000
    assert upsert(gateway, company_buyer(), numbers=tiny).customer_no == 30001

    with pytest.raises(MamutRecordError, match="series 30000-30001 is full"):
        upsert(gateway, guest_buyer(email="ny@example.se"), numbers=tiny)


def test_starweb_numbers_are_offset_plus_customer_id_and_guests_use_mamuts_series(
    mamut_db: MamutTestDatabase,
) -> None:
    gateway = mamut_db.gateway
    registered = upsert(gateway, private_buyer(), numbers=STARWEB_NUMBERS)
    guest = upsert(gateway, guest_buyer(email="gast@example.se"), numbers=STARWEB_NUMBERS)

    assert registered.customer_no == 50017
    assert guest.customer_no == 10000


def test_a_starweb_number_taken_by_an_unmatched_contact_is_refused(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    add_contact(gateway, 50042, "Gammal kund AB")

    with pytest.raises(MamutRecordError, match=r"50042 \(Starweb customer 42 \+ offset 50000\).*Gammal kund AB"):
        upsert(gateway, company_buyer(), numbers=STARWEB_NUMBERS)
    assert len(rows(gateway, "contact", ["contact_key"])) == 1


def test_values_a_column_cannot_hold_are_refused_naming_the_customer(mamut_db: MamutTestDatabase) -> None:
    with pytest.raises(ValueError, match=r"customer 'a:17': contact.name \(NAME\) takes at most 100"):
        upsert(mamut_db.gateway, private_buyer(name="Å" * 101))
    with pytest.raises(ValueError, match="name is empty"):
        upsert(mamut_db.gateway, private_buyer(name=" "))
    assert rows(mamut_db.gateway, "contact", ["contact_key"]) == []


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_installs_without_the_invented_columns_still_take_customers(backend: str, tmp_path: Path) -> None:
    lean = SchemaMap.load(
        overrides={
            "tables": {
                "contact": {"columns": {"vat_number": None, "external_id": None, "edit_date": None}},
                "address": {"columns": {"recipient": None, "country_iso": None}},
            }
        }
    )
    with fresh_mock_database(backend, tmp_path, schema_map=lean) as odbc, MamutGateway(odbc, lean) as gateway:
        with pytest.raises(SchemaMapError, match="drop external_id from customer_match"):
            upsert(gateway, company_buyer())
        created = upsert(gateway, company_buyer(), match_keys=["email", "org_no"])
        again = upsert(gateway, company_buyer(), match_keys=["email", "org_no"])
        [address] = rows(gateway, "address", ["street", "city"])
    assert created.created and not again.created and not again.updated
    assert address == {"street": "Box 123", "city": "Solna"}


def test_number_policy_is_checked_when_built() -> None:
    with pytest.raises(ValueError, match="1 <= first <= last"):
        CustomerNumberPolicy(owner="mamut", first=500, last=100, starweb_offset=0)
    with pytest.raises(ValueError, match="owner must be one of mamut, starweb"):
        CustomerNumberPolicy(owner="shop", first=1, last=2, starweb_offset=0)  # type: ignore[arg-type]
