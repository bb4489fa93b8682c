"""The state of one shop's web orders in Mamut, derived by one declarative rules table.

Real STATUSID values are unknown (see default_schema_map.yaml), so a state is never a status number: it is
a name that :data:`STATE_RULES` derives from the flags of the order's status (G_ORDERSTATUS) and from the
order's own columns (G_ORDER). An order is in every state whose rule matches, so it can be invoiced, paid and
delivered at once. An invoice is the same G_ORDER row in an invoiced status, so "orders and invoices" are
both read here. Which web orders belong to a shop is decided by EXTERNALID ``<shop>:<Starweb orderId>``.

The rank puts the states in the order of an order's life, which is how the status job knows which state is
furthest along and what "backwards" means::

    picked (10) < invoiced (20) < paid (30) < delivered (40) < cancelled (90) < credited (100)

Delivered ranks above paid because delivery is what the buyer waits for (and what captures the payment);
cancelled and credited rank above everything, so they override whatever the order reached before.

``must_map`` says what happens when a shop has no transition for a state its order is in: False means the
state is ignored (progress inside the back office, e.g. picked or invoiced), True means the order cannot be
reported until the shop decides (the status job quarantines it with a reason naming shop, order and state).

To add a state, append a :class:`StateRule` naming the logical columns (``("order", column)`` or
``("order_status", flag)``) that put an order in it; a column this install maps to null never matches, so
a rule may rely on optional columns (``paid`` is invented and may be absent).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from starmamut.mamut.gateway import MAX_PARAMS_PER_STATEMENT, MamutGateway
from starmamut.mamut.schema_map import SchemaMapError

ORDER = "order"
ORDER_STATUS = "order_status"
_ALIASES = {ORDER: "o", ORDER_STATUS: "s"}
_LIKE_ESCAPE = "!"
_ORDER_COLUMNS = ("order_key", "order_number", "invoice_number", "status_id", "external_id")
_OPTIONAL_ORDER_COLUMNS = ("tracking_no", "tracker_type", "edit_date")


@dataclass(frozen=True)
class StateRule:
    """One Mamut order state: where it sits in an order's life, what puts an order in it, and whether a shop
    must map it (see the module docstring)."""

    name: str
    rank: int
    any_of: tuple[tuple[str, str], ...]  # (table, logical column): set (a true bit or a value) = in the state
    must_map: bool


STATE_RULES: tuple[StateRule, ...] = (
    StateRule("picked", 10, ((ORDER, "picked"),), must_map=False),
    StateRule("invoiced", 20, ((ORDER_STATUS, "is_invoiced"), (ORDER, "invoice_number")), must_map=False),
    StateRule("paid", 30, ((ORDER, "paid"),), must_map=False),
    StateRule("delivered", 40, ((ORDER_STATUS, "is_delivered"),), must_map=True),
    StateRule("cancelled", 90, ((ORDER_STATUS, "is_cancelled"),), must_map=True),
    StateRule("credited", 100, ((ORDER_STATUS, "is_credit"),), must_map=True),
)


@dataclass(frozen=True)
class OrderState:
    """One web order of a shop as Mamut has it now: its states and the carrier's tracking number."""

    order_id: str  # the Starweb orderId (EXTERNALID without the "<shop>:" prefix)
    order_key: int
    order_number: int
    invoice_number: int | None
    status_id: int
    states: frozenset[str]
    tracking_no: str | None
    tracker_type: int | None
    edit_date: dt.datetime | None  # aware UTC; None where the install has no EDITDATE


class OrderStateReader:
    """Reads the web orders of one shop with their derived states (one query, streamed)."""

    def __init__(self, gateway: MamutGateway, rules: Sequence[StateRule] = STATE_RULES) -> None:
        self._gateway = gateway
        self._rules = tuple(rules)
        self._order = gateway.schema_map.table(ORDER)
        status = gateway.schema_map.table(ORDER_STATUS)
        tables = {ORDER: self._order, ORDER_STATUS: status}
        for rule in self._rules:
            for table, column in rule.any_of:
                if table not in tables:
                    raise SchemaMapError(
                        f"state rule {rule.name!r}: table {table!r} is not {ORDER!r} or {ORDER_STATUS!r}"
                    )
                tables[table].has(column)  # an unknown column is an error; one mapped to null only never matches
        self._inputs = sorted(
            {(table, column) for rule in self._rules for table, column in rule.any_of if tables[table].has(column)}
        )

    @property
    def tracks_changes(self) -> bool:
        """Whether orders carry a change timestamp (EDITDATE), so a run can read only the changed ones."""
        return self._order.has("edit_date")

    def iter_shop_orders(self, shop_id: str, *, changed_since: dt.datetime | None = None) -> Iterator[OrderState]:
        """Every web order of the shop, or (where EDITDATE exists) those changed at or after ``changed_since``."""
        prefix = f"{shop_id}:"
        escaped = "".join(f"{_LIKE_ESCAPE}{char}" if char in f"%_{_LIKE_ESCAPE}" else char for char in prefix)
        where = f"{{o.external_id}} LIKE ? ESCAPE '{_LIKE_ESCAPE}'"
        params: list[Any] = [escaped + "%"]
        if changed_since is not None:
            if not self.tracks_changes:
                raise ValueError("orders have no change timestamp in this install (order.edit_date is not mapped)")
            where += " AND {o.edit_date} >= ?"
            params.append(self._order.column("edit_date").since_param(changed_since))
        yield from self._query(prefix, where, params)

    def shop_orders(self, shop_id: str, order_ids: Collection[str | int]) -> list[OrderState]:
        """The shop's web orders with these Starweb order ids (ids Mamut does not have are left out)."""
        prefix = f"{shop_id}:"
        external_ids = sorted({f"{prefix}{order_id}" for order_id in order_ids})
        found: list[OrderState] = []
        for start in range(0, len(external_ids), MAX_PARAMS_PER_STATEMENT):
            chunk = external_ids[start : start + MAX_PARAMS_PER_STATEMENT]
            where = f"{{o.external_id}} IN ({', '.join('?' * len(chunk))})"
            found.extend(self._query(prefix, where, chunk))
        return found

    def _query(self, prefix: str, where: str, params: Sequence[Any]) -> Iterator[OrderState]:
        select = {column: f"o.{column}" for column in _ORDER_COLUMNS}
        select |= {column: f"o.{column}" for column in _OPTIONAL_ORDER_COLUMNS if self._order.has(column)}
        select |= {f"{table}.{column}": f"{_ALIASES[table]}.{column}" for table, column in self._inputs}
        body = f"FROM {{o}} JOIN {{s}} ON {{s.status_id}} = {{o.status_id}} WHERE {where} ORDER BY {{o.order_key}}"
        with self._gateway.transaction() as transaction:
            for row in transaction.iter_query({"o": ORDER, "s": ORDER_STATUS}, select, body, params):
                order_id = row["external_id"][len(prefix) :]
                # LIKE ignores case on some databases, and only digits can be a Starweb orderId.
                if row["external_id"].startswith(prefix) and order_id.isdigit():
                    yield self._state(order_id, row)

    def _state(self, order_id: str, row: dict[str, Any]) -> OrderState:
        def is_set(table: str, column: str) -> bool:
            value = row.get(f"{table}.{column}")
            return bool(value) if isinstance(value, bool) else value is not None

        tracking_no = (row.get("tracking_no") or "").strip() or None
        return OrderState(
            order_id=order_id,
            order_key=row["order_key"],
            order_number=row["order_number"],
            invoice_number=row["invoice_number"],
            status_id=row["status_id"],
            states=frozenset(rule.name for rule in self._rules if any(is_set(*column) for column in rule.any_of)),
            tracking_no=tracking_no,
            tracker_type=row.get("tracker_type"),
            edit_date=self._order.column("edit_date").to_utc(row.get("edit_date")) if self.tracks_changes else None,
        )
