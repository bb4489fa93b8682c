"""Customer register writes: find a web order's buyer in Mamut, update what changed, or create them.

Everything runs inside the caller's transaction (the order load), so a customer created for an order
that then fails is rolled back with it. Matching tries the configured keys in order and only ever
finds contacts that are customers (CUSTID set), never suppliers or prospects: ``external_id`` (EXTID,
exact), ``email`` (trimmed and case-insensitive, ASCII letters only on SQLite), ``org_no`` (trimmed).
The first contact by key wins when several share a value.

A customer's master data (name, e-mail, phone, contact persons, addresses) is written when the
customer is created; a matched customer keeps it unless the caller asks to ``update_matched`` (the
shop setting orders_to_mamut.update_customer_from_order): an order is a snapshot, and a guest using a
customer's e-mail or a gift sent elsewhere must not rewrite the customer card. Without it, a matched
customer only gets the buyer's EXTID when it has none (that links it; it changes no master data).
With it, a matched customer is updated only where the shop's value differs from Mamut's; ``None``
(the shop did not say) keeps Mamut's value, an EXTID already set (e.g. by another shop) is kept, and
a contact person is updated only when first and last name match one of the contact's persons (else
one is added). Invoice (ADRTYPE 1) and delivery (ADRTYPE 3) addresses are kept in G_DELI.

The match and the number allocation (MAX + 1 within the series) run under the contact table's app lock
(:meth:`MamutTransaction.lock`), so two writers never match nothing and create the same buyer twice, nor take
the same number, whether or not the install has a unique index on CUSTID.

Comparisons beyond ``select`` (trimmed/case-folded, MAX over a range) go through ``iter_query`` in
logical names with ``?`` markers only; :func:`max_value` is shared with the order load.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starmamut.mamut.documents import CustomerNumberPolicy, MamutAddress, MamutCustomer
from starmamut.mamut.gateway import MamutError, MamutGateway, MamutTransaction
from starmamut.mamut.schema_map import SchemaMapError, TableSpec

CONTACT = "contact"
CONTACT_PERSON = "contact_person"
ADDRESS = "address"
CONTACT_SOURCE = 1  # G_DELI.SOURCETYPE of addresses that belong to a contact
INVOICE_ADDRESS = 1  # G_DELI.ADRTYPE
DELIVERY_ADDRESS = 3
MATCH_KEYS = ("external_id", "email", "org_no")

_CONTACT_FIELDS = ("name", "email", "phone", "org_number", "vat_number")
_ADDRESS_FIELDS = ("recipient", "street", "zip_code", "city", "country_iso")


class MamutRecordError(MamutError):
    """A record cannot be written as it stands (the message names it and why); retrying will not help."""


@dataclass(frozen=True)
class CustomerWriteResult:
    """Which Mamut customer an order belongs to and what the upsert did to it."""

    contact_id: int
    customer_no: int
    created: bool
    updated: bool


def max_value(
    transaction: MamutTransaction, table: str, column: str, between: tuple[int, int] | None = None
) -> int | None:
    """``MAX(column)`` of an int column, optionally over the values within ``between`` (inclusive) only.

    The select list of :meth:`MamutTransaction.iter_query` takes plain columns, so the maximum comes
    from a sub-query that the outer query matches (one row, or a few equal ones).
    """
    condition = ""
    params: list[int] = []
    if between is not None:
        condition = f" WHERE {{m.{column}}} >= ? AND {{m.{column}}} <= ?"
        params = list(between)
    rows = list(
        transaction.iter_query(
            {"t": table, "m": table},
            {"value": f"t.{column}"},
            f"FROM {{t}} WHERE {{t.{column}}} = (SELECT MAX({{m.{column}}}) FROM {{m}}{condition})",
            params,
        )
    )
    return rows[0]["value"] if rows else None


def stamp_values(table: TableSpec, now: dt.datetime, *columns: str) -> dict[str, dt.datetime]:
    """``now`` as naive UTC seconds for those of the timestamp ``columns`` this install has."""
    return {name: table.column(name).canonical(now) for name in columns if table.has(name)}


def fold_email(email: str) -> str:
    """The form e-mail addresses are compared in: trimmed, lower case."""
    return email.strip().lower()


class CustomerRepository:
    """Finds and writes Mamut customers (G_CONTAC, G_CPERS, G_DELI) inside a caller's transaction."""

    def __init__(self, gateway: MamutGateway) -> None:
        schema = gateway.schema_map
        self._contact = schema.table(CONTACT)
        self._person = schema.table(CONTACT_PERSON)
        self._address = schema.table(ADDRESS)
        self._contact_fields = tuple(name for name in _CONTACT_FIELDS if self._contact.has(name))
        self._address_fields = tuple(name for name in _ADDRESS_FIELDS if self._address.has(name))

    def find(self, transaction: MamutTransaction, customer: MamutCustomer, match_keys: Sequence[str]) -> int | None:
        """CONTID of the first key (in the given order) that finds a customer; keys the buyer lacks are skipped."""
        self._check_match_keys(match_keys)
        for key in match_keys:
            contact_id = self._find_by(transaction, customer, key)
            if contact_id is not None:
                return contact_id
        return None

    def upsert(
        self,
        transaction: MamutTransaction,
        customer: MamutCustomer,
        *,
        match_keys: Sequence[str],
        numbers: CustomerNumberPolicy,
        guest_customer_no: int | None,
        update_matched: bool,
        now: dt.datetime,
    ) -> CustomerWriteResult:
        """Use (and with ``update_matched`` update) the matched customer, or the guest customer, or create one;
        see the module docstring.

        Raises ValueError for a customer that cannot be stored (naming it and the field), MamutRecordError
        for a missing guest customer, a full number series or a number taken by another contact.
        """
        problems = customer.problems()
        if problems:
            raise ValueError("; ".join(problems))
        contact_values = self._contact_values(customer)
        person_values = self._person_values(customer)
        addresses = self._address_values(customer)
        transaction.lock(CONTACT)
        contact_id = self.find(transaction, customer, match_keys)
        if contact_id is not None and update_matched:
            return self._update(transaction, contact_id, contact_values, person_values, addresses, now)
        if contact_id is not None:
            return self._link(transaction, contact_id, contact_values.get("external_id"), now)
        if customer.external_id is None and guest_customer_no is not None:
            return self._guest(transaction, guest_customer_no, customer)
        customer_no = self._allocate_number(transaction, customer, numbers)
        stamps = stamp_values(self._contact, now, "reg_date", "edit_date")
        transaction.insert(CONTACT, {"customer_number": customer_no, **contact_values, **stamps})
        [inserted] = transaction.select(CONTACT, ["contact_key"], where={"customer_number": customer_no})
        contact_id = inserted["contact_key"]
        if person_values:
            person_stamps = stamp_values(self._person, now, "reg_date", "edit_date")
            transaction.insert(CONTACT_PERSON, {"contact_key": contact_id, **person_values, **person_stamps})
        for address_type, values in addresses.items():
            transaction.insert(ADDRESS, self._address_row(contact_id, address_type, values))
        return CustomerWriteResult(contact_id=contact_id, customer_no=customer_no, created=True, updated=False)

    def _check_match_keys(self, match_keys: Sequence[str]) -> None:
        unknown = [key for key in match_keys if key not in MATCH_KEYS]
        if unknown or isinstance(match_keys, str):
            raise ValueError(f"unknown customer match key(s) {unknown or match_keys!r}; use {', '.join(MATCH_KEYS)}")
        if "external_id" in match_keys and not self._contact.has("external_id"):
            raise SchemaMapError(
                f"customer match key external_id needs column {self._contact.logical}.external_id, "
                "which this install maps to null: drop external_id from customer_match"
            )

    def _find_by(self, transaction: MamutTransaction, customer: MamutCustomer, key: str) -> int | None:
        if key == "external_id":
            if customer.external_id is None:
                return None
            return self._first_customer(transaction, "external_id", customer.external_id, fold="none")
        if key == "email":
            if customer.email is None or not customer.email.strip():
                return None
            return self._first_customer(transaction, "email", fold_email(customer.email), fold="lower")
        if customer.org_no is None or not customer.org_no.strip():
            return None
        return self._first_customer(transaction, "org_number", customer.org_no.strip(), fold="trim")

    @staticmethod
    def _first_customer(
        transaction: MamutTransaction, column: str, value: str, *, fold: Literal["none", "trim", "lower"]
    ) -> int | None:
        """Lowest CONTID among customers whose ``column`` equals ``value`` after folding the stored value."""
        stored = f"{{c.{column}}}"
        expression = {"none": stored, "trim": f"LTRIM(RTRIM({stored}))", "lower": f"LOWER(LTRIM(RTRIM({stored})))"}
        rows = transaction.iter_query(
            {"c": CONTACT},
            {"contact_key": "c.contact_key"},
            f"FROM {{c}} WHERE {expression[fold]} = ? AND {{c.customer_number}} IS NOT NULL",
            [value],
        )
        return min((row["contact_key"] for row in rows), default=None)

    def _guest(
        self, transaction: MamutTransaction, guest_customer_no: int, customer: MamutCustomer
    ) -> CustomerWriteResult:
        """Guests nobody matched go to the shop's collective guest customer, which is never rewritten."""
        rows = transaction.select(CONTACT, ["contact_key"], where={"customer_number": guest_customer_no})
        if not rows:
            raise MamutRecordError(
                f"customer {customer.label!r} is a guest and goes to guest customer number {guest_customer_no} "
                "(orders_to_mamut.guest_customer_no), which does not exist in Mamut",
                operation="select",
                table=CONTACT,
            )
        return CustomerWriteResult(
            contact_id=rows[0]["contact_key"], customer_no=guest_customer_no, created=False, updated=False
        )

    def _allocate_number(
        self, transaction: MamutTransaction, customer: MamutCustomer, numbers: CustomerNumberPolicy
    ) -> int:
        """Starweb's id plus the offset when Starweb owns numbers and the buyer has an id, else Mamut's next."""
        if numbers.owner == "starweb" and customer.starweb_customer_id is not None:
            customer_no = numbers.starweb_offset + customer.starweb_customer_id
            taken = transaction.select(CONTACT, ["contact_key", "name"], where={"customer_number": customer_no})
            if taken:
                raise MamutRecordError(
                    f"customer {customer.label!r}: customer number {customer_no} (Starweb customer "
                    f"{customer.starweb_customer_id} + offset {numbers.starweb_offset}) already belongs to "
                    f"{taken[0]['name']!r} (CONTID {taken[0]['contact_key']}), which the match keys did not find",
                    operation="insert",
                    table=CONTACT,
                )
            return customer_no
        highest = max_value(transaction, CONTACT, "customer_number", (numbers.first, numbers.last))
        customer_no = numbers.first if highest is None else highest + 1
        if customer_no > numbers.last:
            raise MamutRecordError(
                f"customer {customer.label!r}: the customer number series {numbers.first}-{numbers.last} is full "
                f"({highest} is taken); widen mamut.customer_numbers",
                operation="insert",
                table=CONTACT,
            )
        return customer_no

    def _update(
        self,
        transaction: MamutTransaction,
        contact_id: int,
        contact_values: dict[str, Any],
        person_values: dict[str, Any],
        addresses: dict[int, dict[str, Any]],
        now: dt.datetime,
    ) -> CustomerWriteResult:
        columns = ["customer_number", *self._contact_fields]
        if self._contact.has("external_id"):
            columns.append("external_id")
        row = transaction.select(CONTACT, columns, where={"contact_key": contact_id})[0]
        changes = {
            name: value
            for name, value in contact_values.items()
            if value is not None and not _same(name, row[name], value) and (name != "external_id" or row[name] is None)
        }
        changed = bool(changes)
        changed |= self._update_person(transaction, contact_id, person_values, now)
        for address_type, values in addresses.items():
            changed |= self._update_address(transaction, contact_id, address_type, values)
        if changed:
            changes.update(stamp_values(self._contact, now, "edit_date"))
            if changes:
                transaction.update(CONTACT, changes, where={"contact_key": contact_id})
        return CustomerWriteResult(
            contact_id=contact_id, customer_no=row["customer_number"], created=False, updated=changed
        )

    def _link(
        self, transaction: MamutTransaction, contact_id: int, external_id: str | None, now: dt.datetime
    ) -> CustomerWriteResult:
        """The matched customer as it is, given the buyer's EXTID if it has none yet (``external_id`` is None for
        a guest and where the install has no EXTID column)."""
        columns = ["customer_number", *(["external_id"] if external_id is not None else [])]
        row = transaction.select(CONTACT, columns, where={"contact_key": contact_id})[0]
        linked = external_id is not None and row["external_id"] is None
        if linked:
            changes = {"external_id": external_id, **stamp_values(self._contact, now, "edit_date")}
            transaction.update(CONTACT, changes, where={"contact_key": contact_id})
        return CustomerWriteResult(
            contact_id=contact_id, customer_no=row["customer_number"], created=False, updated=linked
        )

    def _update_person(
        self, transaction: MamutTransaction, contact_id: int, values: dict[str, Any], now: dt.datetime
    ) -> bool:
        """Refresh the person with the same name, or add the buyer as another person of the contact."""
        if not values:
            return False
        columns = ["contact_person_key", "first_name", "last_name", "email", "phone_work"]
        persons = transaction.select(CONTACT_PERSON, columns, where={"contact_key": contact_id})
        wanted = _name_key(values.get("first_name"), values.get("last_name"))
        same_name = sorted(
            (person for person in persons if _name_key(person["first_name"], person["last_name"]) == wanted),
            key=lambda person: person["contact_person_key"],
        )
        if not same_name:
            stamps = stamp_values(self._person, now, "reg_date", "edit_date")
            transaction.insert(CONTACT_PERSON, {"contact_key": contact_id, **values, **stamps})
            return True
        person = same_name[0]
        changes = {  # the names are the match key: a difference in case alone is no change
            name: value
            for name, value in values.items()
            if name in ("email", "phone_work") and value is not None and not _same(name, person[name], value)
        }
        if not changes:
            return False
        changes.update(stamp_values(self._person, now, "edit_date"))
        transaction.update(CONTACT_PERSON, changes, where={"contact_person_key": person["contact_person_key"]})
        return True

    def _update_address(
        self, transaction: MamutTransaction, contact_id: int, address_type: int, values: dict[str, Any]
    ) -> bool:
        rows = transaction.select(
            ADDRESS,
            ["address_key", *self._address_fields],
            where={"source_type": CONTACT_SOURCE, "source_key": contact_id, "address_type": address_type},
        )
        if not rows:
            transaction.insert(ADDRESS, self._address_row(contact_id, address_type, values))
            return True
        row = min(rows, key=lambda candidate: candidate["address_key"])
        changes = {name: value for name, value in values.items() if value is not None and row[name] != value}
        if not changes:
            return False
        transaction.update(ADDRESS, changes, where={"address_key": row["address_key"]})
        return True

    def _contact_values(self, customer: MamutCustomer) -> dict[str, Any]:
        raw = {
            "name": customer.name.strip(),
            "email": _stripped(customer.email),
            "phone": _stripped(customer.phone),
            "org_number": _stripped(customer.org_no),
            "vat_number": _stripped(customer.vat_no),
        }
        values = {name: raw[name] for name in self._contact_fields}
        if self._contact.has("external_id"):
            values["external_id"] = customer.external_id
        return canonical_values(self._contact, values, f"customer {customer.label!r}")

    def _person_values(self, customer: MamutCustomer) -> dict[str, Any]:
        first, last = _stripped(customer.first_name), _stripped(customer.last_name)
        if first is None and last is None:
            return {}
        values = {
            "first_name": first,
            "last_name": last,
            "email": _stripped(customer.email),
            "phone_work": _stripped(customer.phone),
        }
        return canonical_values(self._person, values, f"customer {customer.label!r}")

    def _address_values(self, customer: MamutCustomer) -> dict[int, dict[str, Any]]:
        addresses = {INVOICE_ADDRESS: customer.invoice_address}
        if customer.delivery_address is not None:
            addresses[DELIVERY_ADDRESS] = customer.delivery_address
        return {
            address_type: canonical_values(
                self._address, self._address_fields_of(address), f"customer {customer.label!r}"
            )
            for address_type, address in addresses.items()
        }

    def _address_fields_of(self, address: MamutAddress) -> dict[str, Any]:
        raw = {
            "recipient": _stripped(address.name),
            "street": _stripped(address.street),
            "zip_code": _stripped(address.zip_code),
            "city": _stripped(address.city),
            "country_iso": address.country.strip().upper() if address.country else None,
        }
        return {name: raw[name] for name in self._address_fields}

    @staticmethod
    def _address_row(contact_id: int, address_type: int, values: Mapping[str, Any]) -> dict[str, Any]:
        return {"source_type": CONTACT_SOURCE, "source_key": contact_id, "address_type": address_type, **values}


def canonical_values(table: TableSpec, raw: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The values this install has columns for, as they will read back; strict checks name ``label``."""
    try:
        return {name: table.column(name).canonical(value) for name, value in raw.items() if table.has(name)}
    except ValueError as exc:
        raise ValueError(f"{label}: {exc}") from None


def _same(column: str, stored: Any, wanted: Any) -> bool:
    """E-mail addresses differing only in case or surrounding blanks are the same address."""
    if column == "email" and isinstance(stored, str) and isinstance(wanted, str):
        return fold_email(stored) == fold_email(wanted)
    return bool(stored == wanted)


def _name_key(first: str | None, last: str | None) -> tuple[str, str]:
    return ((first or "").strip().casefold(), (last or "").strip().casefold())


def _stripped(text: str | None) -> str | None:
    """Blank text is no value at all (Starweb sends empty strings for fields the buyer left out)."""
    if text is None:
        return None
    return text.strip() or None
