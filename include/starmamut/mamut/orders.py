"""Web orders into Mamut exactly once: order or invoice, with its customer, in one transaction.

:meth:`OrderRepository.create` looks the order up by EXTERNALID ("<shop>:<starweb orderId>") inside the
transaction that would write it: an order already there is returned untouched, so a retried load never
writes twice. Otherwise it upserts the customer, numbers the order (and the invoice) as MAX+1, and
writes G_ORDER plus its G_ORDERL lines; any failure rolls all of it back, customer included.

The order keeps its own buyer and addresses: CONTNAME is the name on the order's invoice address and
ADRDELIV its delivery address (else its invoice address), whatever the customer card says, so a gift or
a guest's address never has to go onto the customer. The invoice address itself has no G_ORDER column
seen in a real install (the GBAOX10 import has an ADRINVO tag; check for such a column before mapping one).
A matched customer is rewritten from the order only with ``update_customer`` (see CustomerRepository).

Two writers on the same external id (or wanting the same next number) never interleave: the transaction
takes the order table's app lock (:meth:`MamutTransaction.lock`) before the lookup, and the customer upsert
the contact table's after it, always in that order, so the second writer finds what the first committed and
returns it with ``created=False``. Correctness does not rest on the unique indexes on EXTERNALID, ORDERID and
CUSTID that the mock has and a real install may lack; where they exist they are a second net. A database
error (a lock wait timed out, a deadlock victim, a clash caught by such an index) rolls the attempt back and
the whole attempt is repeated a few times. Errors in the order itself (ValueError, MamutRecordError) are
raised at once and never retried; other database errors are raised, naming the order, after MAX_ATTEMPTS.

Status ids come from the G_ORDERSTATUS flags, because real STATUSID values are unknown: a new order takes
the lowest open status that is neither quote, invoiced, delivered, cancelled nor credit (the mock's
"Ubehandlad order"); an invoice the lowest invoiced, undelivered, non-credit status, with INVOICEID
MAX+1 and DATEINVOICE = the order date.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starmamut.mamut.customers import (
    CustomerRepository,
    MamutRecordError,
    canonical_values,
    max_value,
    stamp_values,
)
from starmamut.mamut.documents import CustomerNumberPolicy, MamutAddress, MamutCustomer, MamutOrder
from starmamut.mamut.gateway import MamutError, MamutGateway, MamutTransaction

ORDER = "order"
ORDER_LINE = "order_line"
ORDER_STATUS = "order_status"
CURRENCY = "currency"
MAX_ATTEMPTS = 4
"""Attempts per order when the database refuses one (a lock wait timed out, a deadlock victim, a key clash)."""

_STATUS_FLAGS = ("is_quote", "is_open", "is_invoiced", "is_delivered", "is_cancelled", "is_credit")
# The flags a status must have (True) or lack (False) to be the one a new document gets.
_STATUS_FOR_DOCUMENT: Mapping[str, Mapping[str, bool]] = {
    "order": {
        "is_open": True,
        "is_quote": False,
        "is_invoiced": False,
        "is_delivered": False,
        "is_cancelled": False,
        "is_credit": False,
    },
    "invoice": {"is_invoiced": True, "is_delivered": False, "is_cancelled": False, "is_credit": False},
}


@dataclass(frozen=True)
class ExistingOrder:
    """An order already in Mamut, as its external id finds it."""

    order_key: int
    order_no: int
    invoice_no: int | None
    status_id: int


@dataclass(frozen=True)
class OrderWriteResult:
    """What :meth:`OrderRepository.create` wrote (``created=False``: the order was already there)."""

    order_key: int
    order_no: int
    invoice_no: int | None
    contact_id: int
    customer_no: int | None  # None only for an order typed into Mamut without a customer number
    created: bool
    customer_created: bool


class OrderRepository:
    """Writes web orders to G_ORDER/G_ORDERL (with their customer) and reads them back."""

    def __init__(self, gateway: MamutGateway) -> None:
        self._gateway = gateway
        self._customers = CustomerRepository(gateway)
        self._order = gateway.schema_map.table(ORDER)
        self._line = gateway.schema_map.table(ORDER_LINE)

    def find_by_external_id(self, external_id: str) -> ExistingOrder | None:
        """The order written for this external id, if any."""
        with self._gateway.transaction() as transaction:
            row = self._existing(transaction, external_id)
        if row is None:
            return None
        return ExistingOrder(
            order_key=row["order_key"],
            order_no=row["order_number"],
            invoice_no=row["invoice_number"],
            status_id=row["status_id"],
        )

    def create(
        self,
        order: MamutOrder,
        customer: MamutCustomer,
        *,
        match_keys: Sequence[str],
        numbers: CustomerNumberPolicy,
        guest_customer_no: int | None,
        update_customer: bool,
        now: dt.datetime,
    ) -> OrderWriteResult:
        """Write the order and its customer once; see the module docstring.

        ``now`` (naive UTC or aware) stamps REGDATE/EDITDATE. Raises ValueError for an order or customer
        that cannot be stored (naming it and the field), MamutRecordError for an unknown currency, a
        missing status or guest customer, or a full number series, MamutError when the database keeps
        failing after MAX_ATTEMPTS attempts. Nothing is written whenever it raises.
        """
        problems = order.problems() + customer.problems()
        if problems:
            raise ValueError("; ".join(problems))
        header = self._header_values(order, customer, now)
        lines = self._line_rows(order, now)
        attempt = 1
        while True:
            try:
                return self._create_once(
                    order,
                    customer,
                    header,
                    lines,
                    match_keys=match_keys,
                    numbers=numbers,
                    guest_customer_no=guest_customer_no,
                    update_customer=update_customer,
                    now=now,
                )
            except MamutRecordError:
                raise
            except MamutError as exc:
                if attempt >= MAX_ATTEMPTS:
                    raise MamutError(
                        f"order {order.external_id!r} not written after {attempt} attempts: {exc}",
                        operation=exc.operation,
                        table=exc.table,
                    ) from None
            time.sleep(random.uniform(0.02, 0.1) * attempt)  # let the competing writer finish first
            attempt += 1

    def iter_orders_with_lines(self, external_id_prefix: str | None = None) -> Iterator[dict[str, Any]]:
        """Every order (optionally only external ids starting with the prefix) with a ``lines`` list.

        Keys are the logical column names of the schema map; orders in key order, lines by line number.
        """
        order_columns = [column.logical for column in self._order.columns]
        line_columns = [column.logical for column in self._line.columns]
        with self._gateway.transaction() as transaction:
            orders = [
                row
                for row in transaction.select(ORDER, order_columns)
                if external_id_prefix is None or (row["external_id"] or "").startswith(external_id_prefix)
            ]
            keys = [row["order_key"] for row in orders]
            line_rows = transaction.select(ORDER_LINE, line_columns, where_in=("order_key", keys)) if keys else []
        lines_by_order: dict[int, list[dict[str, Any]]] = {}
        for line in sorted(line_rows, key=lambda row: (row["order_key"], row["line_number"])):
            lines_by_order.setdefault(line["order_key"], []).append(line)
        for row in sorted(orders, key=lambda row: row["order_key"]):
            yield {**row, "lines": lines_by_order.get(row["order_key"], [])}

    def known_currencies(self) -> set[str]:
        """ISO codes of the currencies Mamut knows (orders in any other currency are refused)."""
        with self._gateway.transaction() as transaction:
            return set(self._currency_ids(transaction))

    def _create_once(
        self,
        order: MamutOrder,
        customer: MamutCustomer,
        header: dict[str, Any],
        lines: list[dict[str, Any]],
        *,
        match_keys: Sequence[str],
        numbers: CustomerNumberPolicy,
        guest_customer_no: int | None,
        update_customer: bool,
        now: dt.datetime,
    ) -> OrderWriteResult:
        with self._gateway.transaction(locks=(ORDER,)) as transaction:
            existing = self._existing(transaction, order.external_id)
            if existing is not None:
                return OrderWriteResult(
                    order_key=existing["order_key"],
                    order_no=existing["order_number"],
                    invoice_no=existing["invoice_number"],
                    contact_id=existing["contact_key"],
                    customer_no=existing["customer_number"],
                    created=False,
                    customer_created=False,
                )
            currencies = self._currency_ids(transaction)
            currency_id = currencies.get(order.currency.upper())
            if currency_id is None:
                raise MamutRecordError(
                    f"order {order.external_id!r}: currency {order.currency!r} is not in Mamut's currency "
                    f"register ({', '.join(sorted(currencies))})",
                    operation="insert",
                    table=ORDER,
                )
            status_id = self._status_id(transaction, order.document)
            written = self._customers.upsert(
                transaction,
                customer,
                match_keys=match_keys,
                numbers=numbers,
                guest_customer_no=guest_customer_no,
                update_matched=update_customer,
                now=now,
            )
            order_no = (max_value(transaction, ORDER, "order_number") or 0) + 1
            invoice_no = None
            values = {
                **header,
                "order_number": order_no,
                "status_id": status_id,
                "currency_id": currency_id,
                "contact_key": written.contact_id,
                "customer_number": written.customer_no,
            }
            if order.document == "invoice":
                invoice_no = (max_value(transaction, ORDER, "invoice_number") or 0) + 1
                values.update(invoice_number=invoice_no, invoice_date=order.order_date)
            transaction.insert(ORDER, values)
            [inserted] = transaction.select(ORDER, ["order_key"], where={"order_number": order_no})
            order_key = inserted["order_key"]
            transaction.insert_many(ORDER_LINE, [{"order_key": order_key, **line} for line in lines])
        return OrderWriteResult(
            order_key=order_key,
            order_no=order_no,
            invoice_no=invoice_no,
            contact_id=written.contact_id,
            customer_no=written.customer_no,
            created=True,
            customer_created=written.created,
        )

    def _existing(self, transaction: MamutTransaction, external_id: str) -> dict[str, Any] | None:
        rows = transaction.select(
            ORDER,
            ["order_key", "order_number", "invoice_number", "status_id", "contact_key", "customer_number"],
            where={"external_id": external_id},
        )
        return rows[0] if rows else None

    @staticmethod
    def _currency_ids(transaction: MamutTransaction) -> dict[str, int]:
        rows = transaction.select(CURRENCY, ["currency_id", "iso_code"])
        return {row["iso_code"].strip().upper(): row["currency_id"] for row in rows}

    @staticmethod
    def _status_id(transaction: MamutTransaction, document: str) -> int:
        wanted = _STATUS_FOR_DOCUMENT[document]
        rows = transaction.select(ORDER_STATUS, ["status_id", *_STATUS_FLAGS])
        fitting = [row["status_id"] for row in rows if all(row[flag] == value for flag, value in wanted.items())]
        if not fitting:
            flags = ", ".join(f"{flag}={int(value)}" for flag, value in wanted.items())
            raise MamutRecordError(
                f"no order status fits a new {document} ({flags}) in the order status register",
                operation="select",
                table=ORDER_STATUS,
            )
        return min(fitting)

    def _header_values(self, order: MamutOrder, customer: MamutCustomer, now: dt.datetime) -> dict[str, Any]:
        """The G_ORDER values known before the transaction, canonical, so bad data fails before any write."""
        buyer = order.invoice_address.name if order.invoice_address else None
        delivery = order.delivery_address or order.invoice_address
        raw: dict[str, Any] = {
            "external_id": order.external_id,
            "contact_name": (buyer or customer.name).strip(),
            "delivery_address": _address_text(delivery) if delivery else None,
            "reference": order.reference,
            "your_reference": order.your_reference,
            "total_gross": order.total_incl_vat,
            "exchange_rate": order.exchange_rate,
            "order_date": order.order_date,
            **stamp_values(self._order, now, "reg_date", "edit_date"),
        }
        return canonical_values(self._order, raw, f"order {order.external_id!r}")

    def _line_rows(self, order: MamutOrder, now: dt.datetime) -> list[dict[str, Any]]:
        stamps = stamp_values(self._line, now, "edit_date")
        rows = []
        for number, line in enumerate(order.lines, start=1):
            raw = {
                "line_number": number,
                "sku": line.sku,
                "description": line.description,
                "qty_ordered": line.quantity,
                "price": line.unit_price,
                "discount_pct": line.discount_pct,
                "vat_code": line.vat_code,
                **stamps,
            }
            rows.append(canonical_values(self._line, raw, f"order {order.external_id!r} line {number}"))
        return rows


def _address_text(address: MamutAddress) -> str | None:
    """ADRDELIV as Mamut shows it: recipient, street, postcode and city, country, one per line."""
    parts = [
        address.name,
        address.street,
        " ".join(part.strip() for part in (address.zip_code, address.city) if part and part.strip()),
        address.country,
    ]
    text = "\n".join(part.strip() for part in parts if part and part.strip())
    return text or None
