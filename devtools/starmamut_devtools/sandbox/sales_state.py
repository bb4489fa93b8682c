"""Orders, customers, order statuses and the payment, shipping and currency lookups of the sandbox shop.

:class:`SalesState` is mixed into :class:`~starmamut_devtools.sandbox.state.ShopState`: it shares that class's
lock, clock and id counters, and handlers and tests go through the same public methods (``add_order`` is
exactly what ``POST /orders`` does). Bodies are checked completely before anything is changed.

Modelling choices where the spec is silent (each inferred, not documented by Starweb):

* **Totals** are computed from the order's rows, never stored (the spec marks them readOnly). Rows are the
  items, the shipping cost and the payment fee; every amount a client writes (``unitPrice``,
  ``shippingCost``, ``paymentFee`` and an ``amount`` discount) is ex VAT. Per row: net = unitPrice ×
  quantity, less ``discount`` percent of it (``discountType`` ``percent``, the spec's default) or less
  ``discount`` itself (``amount``: once for the whole line, whatever the quantity); the net is rounded to
  ``currencyPrecision``, and the row's VAT = rounded net × rate / 100, rounded the same way (half up).
  As the spec's OrderModel example has it (totalAmount 622.4 + totalVat 155.6 = amountToPay 778):
  ``totalAmount`` = Σ net (**ex VAT**), ``totalVat`` = Σ VAT and ``amountToPay`` = totalAmount + totalVat,
  always equal to the rounded rows exactly. Tests make totals the rows do not explain with ``add_order``'s
  ``total_override`` (another totalAmount) and ``unitemised_amount`` (an amount in amountToPay that no row
  shows: a gift card, a rounding); amountToPay = totalAmount + totalVat + that amount.
  ``*InBaseCurrency`` = value / ``currencyExchangeRate`` (the spec: 1 base unit = rate × order currency),
  rounded to the base currency's precision. ``totalWeight`` = Σ quantity × ``weightInKg`` of the catalogue
  variant with the item's SKU (items whose SKU the shop does not know weigh nothing).
* **Status changes**: a write whose ``statusId`` differs from the order's is a status change and is
  appended to ``status_changes``. The buyer gets an e-mail when ``onOrderStatusChangeSendEmail`` (default
  true), the order's ``sendEmailsOnStatusChange`` and the new status's ``shouldSendEmail`` are all true.
  With ``onOrderStatusChangeProcessPayment`` (default true) and a payment method that supports processing,
  a ``reserved`` payment becomes ``captured`` (and ``amountPaid`` = ``amountToPay``) when the new status is
  the standard ``completed``, and ``cancelled`` when it is the standard ``canceled``; every other change
  leaves ``paymentStatus`` alone. Both switches are write-only: accepted, never stored or returned.
* **No nulls where the spec allows none**: OrderModel declares no field nullable, so a guest order has no
  ``customerId`` key, an order without tracking no ``shippingTrackerType``, one without a payment or
  shipping method no ``paymentMethodId``/``paymentMethodIdCode``/``shippingMethodId``; custom order statuses
  have no ``idCode`` (as custom stock statuses). Unset order strings are ``""``. Requests may not send null
  for these fields either (400).
* Order ids start at 1001 and customer ids at 101, so the two can never be mixed up unnoticed.
* ``ordersCreatedAfter``/``ordersCreatedBefore`` and ``createdSince``/``updatedSince`` are inclusive at
  whole seconds; ``statusFilter`` with an id no status has finds nothing.
* POST and PUT of an order answer with ``items`` and ``addresses`` embedded (the caller learns the item
  ids); PATCH answers with the bare order. PUT resets omitted own fields to their defaults, keeps
  ``externalId``/``externalIdType`` (OrderPutModel has neither) and replaces items/addresses only when given;
  a PATCH with ``items`` replaces all items, and merges each given address type field by field.
* Standard order statuses and statuses that orders use cannot be changed (standard only) or deleted: 403.
* Customer e-mails are unique (case-insensitive). Customers created over the API have an account; a test
  makes one without (``add_customer(..., has_account=False)``), which only ``includeWithoutAccount=true``
  lists. Deleting a customer leaves its orders' ``customerId`` as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Literal

from starmamut_devtools.sandbox.errors import bad_request, forbidden, not_found
from starmamut_devtools.sandbox.paging import Page
from starmamut_devtools.sandbox.validation import (
    EXTERNAL_ID_RULES,
    FieldRule,
    check_fields,
    check_list_of_objects,
    format_timestamp,
    parse_timestamp,
)

ORDER_ADDRESS_TYPES: tuple[str, ...] = (
    "customerInvoice",
    "customerDelivery",
    "originalInvoice",
    "originalDelivery",
    "paymentMethodInvoice",
    "paymentMethodDelivery",
)
CUSTOMER_ADDRESS_TYPES: tuple[str, ...] = ("invoice", "delivery")
ORDER_INCLUDES = frozenset({"items", "items.bundledItems", "addresses", "customer", "status", "externalServices"})
ORDER_ITEM_INCLUDES = frozenset({"bundledItems"})
CUSTOMER_INCLUDES = frozenset({"addresses", "externalServices"})
ORDER_SORT_FIELDS: tuple[str, ...] = (
    "orderId",
    "createdAt",
    "modifiedAt",
    "customer",
    "paymentMethodName",
    "shippingMethodName",
    "totalAmount",
    "status",
    "read",
)
FIRST_ORDER_ID = 1001
FIRST_CUSTOMER_ID = 101

_ADDRESS_RULES: dict[str, FieldRule] = {
    "companyName": FieldRule("str", max_length=80),
    "firstName": FieldRule("str", max_length=35),
    "lastName": FieldRule("str", max_length=35),
    "careOf": FieldRule("str", max_length=80),
    "attention": FieldRule("str", max_length=80),
    "reference": FieldRule("str", max_length=80),
    "address": FieldRule("str", max_length=50),
    "postalCode": FieldRule("str", max_length=12),
    "city": FieldRule("str", max_length=30),
    "state": FieldRule("str", max_length=30),
    "countryCode": FieldRule("str", pattern="[A-Z]{2}"),
    "phoneNo": FieldRule("str", max_length=30),
    "mobilePhoneNo": FieldRule("str", max_length=30),
}

_ITEM_RULES: dict[str, FieldRule] = {
    "sku": FieldRule("str", max_length=40),
    "description": FieldRule("str", max_length=255),
    "quantity": FieldRule("int", minimum=-1_000_000, maximum=1_000_000),
    "unitSymbol": FieldRule("str", max_length=5),
    "unitPrice": FieldRule("num"),
    "vatRate": FieldRule("num", minimum=0, maximum=100),
    "discount": FieldRule("num", minimum=0),
    "discountType": FieldRule("str", choices=("amount", "percent")),
    "sortIndex": FieldRule("int", minimum=0),
}

_ORDER_PUT_RULES: dict[str, FieldRule] = {
    "createdAt": FieldRule("str"),
    "customerId": FieldRule("int", minimum=1),
    "statusId": FieldRule("int", minimum=1),
    "onOrderStatusChangeSendEmail": FieldRule("bool"),
    "onOrderStatusChangeProcessPayment": FieldRule("bool"),
    "sendEmailsOnStatusChange": FieldRule("bool"),
    "stockLocationId": FieldRule("int", minimum=1),
    "shippingMethodId": FieldRule("int", minimum=1),
    "paymentMethodId": FieldRule("int", minimum=1),
    "paymentMethodName": FieldRule("str", max_length=50),
    "paymentFee": FieldRule("num", minimum=0),
    "paymentVatRate": FieldRule("num", minimum=0, maximum=100),
    "shippingMethodName": FieldRule("str", max_length=30),
    "shippingCost": FieldRule("num", minimum=0),
    "shippingVatRate": FieldRule("num", minimum=0, maximum=100),
    **{f"customInfo{number}": FieldRule("str", max_length=255) for number in (1, 2, 3, 4)},
    "discountCode": FieldRule("str", max_length=20),
    "amountPaid": FieldRule("num"),
    "isComplete": FieldRule("bool"),
    "currencyCode": FieldRule("str", pattern="[A-Z]{3}"),
    "currencyExchangeRate": FieldRule("num", minimum=1e-9),
    "currencyPrecision": FieldRule("int", minimum=0, maximum=4),
    "langCode": FieldRule("str", pattern="[a-z]{2}"),
    "paymentReference": FieldRule("str", max_length=80),
    "paymentStatus": FieldRule("str", max_length=20),
    "isRead": FieldRule("bool"),
    "internalComment": FieldRule("str"),
    "shippingTrackerType": FieldRule("int"),
    "shippingTrackingNo": FieldRule("str", max_length=50),
    "originalCustomerEmail": FieldRule("str", max_length=255),
    "originalCustomerNationalIdNo": FieldRule("str", max_length=20),
    "originalCustomerVatNo": FieldRule("str", max_length=20),
    "originalCustomerCustomInfo1": FieldRule("str", max_length=255),
    "originalCustomerCustomInfo2": FieldRule("str", max_length=255),
    "items": FieldRule("list"),
    "addresses": FieldRule("object"),
}
_ORDER_RULES: dict[str, FieldRule] = {
    **_ORDER_PUT_RULES,
    "externalId": FieldRule("str", max_length=40),
    "externalIdType": FieldRule("str", max_length=20),
}
_ORDER_READ_ONLY: tuple[str, ...] = (
    "orderId",
    "modifiedAt",
    "baseCurrencyCode",
    "shopCountryCode",
    "totalAmount",
    "totalVat",
    "amountToPay",
    "totalAmountInBaseCurrency",
    "totalVatInBaseCurrency",
    "amountToPayInBaseCurrency",
    "amountPaidInBaseCurrency",
    "paymentMethodIdCode",
    "paymentMethodExternalId",
    "shippingMethodExternalId",
    "totalWeight",
    "hasComment",
    "hasComments",
)
_EXTERNAL_SERVICE_RULES: dict[str, FieldRule] = {
    "serviceName": FieldRule("str", min_length=1, max_length=40),
    "externalIdValue": FieldRule("str", max_length=40),
    "agent": FieldRule("str"),
}

_CUSTOMER_RULES: dict[str, FieldRule] = {
    "createdAt": FieldRule("str"),
    "type": FieldRule("str", choices=("person", "company")),
    "email": FieldRule("str", max_length=255, pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+"),
    "nationalIdNo": FieldRule("str", max_length=20),
    "vatNo": FieldRule("str", max_length=20),
    "customInfo1": FieldRule("str", max_length=255),
    "customInfo2": FieldRule("str", max_length=255),
    "pricelistId": FieldRule("int", nullable=True, minimum=1),
    **EXTERNAL_ID_RULES,
    "addresses": FieldRule("object"),
}
_CUSTOMER_READ_ONLY: tuple[str, ...] = ("customerId", "modifiedAt", "approved", "approvedAt", "langCode")
_CUSTOMER_DEFAULTS: dict[str, Any] = {
    "type": "person",
    "email": "",
    "nationalIdNo": "",
    "vatNo": "",
    "customInfo1": "",
    "customInfo2": "",
    "pricelistId": None,
    "externalId": None,
    "externalIdType": None,
}

_ORDER_STATUS_RULES: dict[str, FieldRule] = {
    "shouldSendEmail": FieldRule("bool"),
    "languages": FieldRule("object"),
}
_STATUS_LANGUAGE_RULES: dict[str, FieldRule] = {
    "langCode": FieldRule("str", pattern="[a-z]{2}"),
    "name": FieldRule("str", min_length=1, max_length=64),
}


@dataclass(frozen=True)
class StatusChange:
    """One order status change as the shop carried it out (what e-mail went out, what the payment did).

    ``send_email``/``process_payment`` are the write-only switches as the request sent them (default
    true); ``email_sent`` says whether the buyer actually gets an e-mail (switch, the order's
    ``sendEmailsOnStatusChange`` and the new status's ``shouldSendEmail``); ``tracking_no``/``tracker_type``
    are the order's tracking fields after the write (None when unset).
    """

    order_id: int
    from_status_id: int
    to_status_id: int
    send_email: bool
    email_sent: bool
    process_payment: bool
    payment_status_before: str
    payment_status_after: str
    tracking_no: str | None
    tracker_type: int | None
    at: datetime


@dataclass(frozen=True)
class OrderQuery:
    """The filters, sorting and includes of ``GET /orders`` (Starweb's defaults: complete only, DESC)."""

    page: int = 1
    created_after: datetime | None = None
    created_before: datetime | None = None
    status_id: int | None = None
    payment_method_id: int | None = None
    shipping_method_id: int | None = None
    include_non_complete: bool = False
    text: str | None = None
    sort_by: str = "orderId"
    descending: bool = True
    includes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CustomerQuery:
    """The filters, sorting and includes of ``GET /customers`` (default: with an account only, DESC)."""

    page: int = 1
    created_since: datetime | None = None
    updated_since: datetime | None = None
    include_without_account: bool = False
    descending: bool = True
    includes: frozenset[str] = frozenset()


@dataclass
class _Order:
    order_id: int
    fields: dict[str, Any]
    created_at: datetime
    modified_at: datetime
    base_currency_code: str
    shop_country_code: str
    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    external_services: dict[str, dict[str, Any]] = field(default_factory=dict)
    total_override: Decimal | None = None
    unitemised_amount: Decimal = Decimal(0)


@dataclass
class _Customer:
    customer_id: int
    fields: dict[str, Any]
    created_at: datetime
    modified_at: datetime
    has_account: bool
    approved: bool | None = None
    approved_at: datetime | None = None
    addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    external_services: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _OrderWrite:
    """A checked order body split into own fields, children and the write-only switches."""

    fields: dict[str, Any]
    items: list[dict[str, Any]] | None
    addresses: dict[str, dict[str, Any]] | None
    send_email: bool
    process_payment: bool


@dataclass(frozen=True)
class _Totals:
    net: Decimal
    vat: Decimal


def _decimal(value: float) -> Decimal:
    return Decimal(str(value))


def _round(value: Decimal, precision: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)


def _line_net(item: Mapping[str, Any]) -> Decimal:
    """An item's amount ex VAT after its discount (an ``amount`` discount applies once per line)."""
    gross = _decimal(item["unitPrice"]) * item["quantity"]
    discount = _decimal(item["discount"])
    if item["discountType"] == "amount":
        return gross - discount
    return gross * (100 - discount) / 100


def _order_totals(order: _Order, precision: int) -> _Totals:
    """Σ rounded row nets and Σ rounded row VAT over items, shipping and payment fee (module docstring)."""
    fields = order.fields
    rows = [(_line_net(item), item["vatRate"]) for item in order.items.values()]
    rows.append((_decimal(fields["shippingCost"]), fields["shippingVatRate"]))
    rows.append((_decimal(fields["paymentFee"]), fields["paymentVatRate"]))
    net = vat = Decimal(0)
    for row_net, rate in rows:
        rounded = _round(row_net, precision)
        net += rounded
        vat += _round(rounded * _decimal(rate) / 100, precision)
    return _Totals(net, vat)


def _language_list(value: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Status languages in the spec's collection shape ``{"data": [{"langCode", "name"}, ...]}``."""
    if set(value) != {"data"}:
        raise bad_request(f'{where}: expected {{"data": [{{"langCode": ..., "name": ...}}]}}')
    checked = [
        check_fields(language, _STATUS_LANGUAGE_RULES, where=f"{where}[{index}]", required=("langCode", "name"))
        for index, language in enumerate(check_list_of_objects(value["data"], f"{where}.data"))
    ]
    codes = [language["langCode"] for language in checked]
    if len(set(codes)) != len(codes):
        raise bad_request(f"{where}: a langCode appears twice")
    return checked


def _complete_address(address: Mapping[str, Any]) -> dict[str, Any]:
    return {name: address.get(name, "") for name in _ADDRESS_RULES}


def _check_addresses(value: Any, types: Sequence[str], where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise bad_request(f"{where}: expected an object keyed by address type ({', '.join(types)})")
    checked: dict[str, dict[str, Any]] = {}
    for address_type, address in value.items():
        if address_type not in types:
            raise bad_request(f"{where}: unknown address type {address_type!r}; use {', '.join(types)}")
        checked[address_type] = check_fields(address, _ADDRESS_RULES, where=f"{where}.{address_type}")
    return checked


class SalesState:
    """Orders, customers, order statuses and their lookups; mixed into ``ShopState`` (see module doc)."""

    status_changes: list[StatusChange]

    if TYPE_CHECKING:
        _lock: threading.RLock
        _shop: dict[str, Any]
        _vat_rates: dict[str, dict[str, Any]]
        _pricelists: dict[int, dict[str, Any]]
        _stock_locations: dict[int, dict[str, Any]]
        clock: Callable[[], datetime]

        def _next_id(self, entity: str) -> int: ...

        def _ecommerce_location_id(self, *, required: bool = True) -> int | None: ...

        def _page(self, matching: Sequence[Any], page: int, render: Callable[[Any], dict[str, Any]]) -> Page: ...

        def variant_weight(self, sku: str) -> float | None: ...

        @staticmethod
        def _require(table: dict[int, dict[str, Any]], entity_id: int, name: str) -> dict[str, Any]: ...

    def _reset_sales(self) -> None:
        """Empty every sales table (called by ``ShopState.clear``)."""
        self._order_statuses: dict[int, dict[str, Any]] = {}
        self._payment_methods: dict[int, dict[str, Any]] = {}
        self._capturing_payment_methods: set[int] = set()
        self._shipping_methods: dict[int, dict[str, Any]] = {}
        self._currencies: dict[str, dict[str, Any]] = {}
        self._tracking_types: dict[int, str] = {}
        self._orders: dict[int, _Order] = {}
        self._customers: dict[int, _Customer] = {}
        self.status_changes = []

    def _now(self) -> datetime:
        return self.clock().replace(microsecond=0)

    # ------------------------------------------------------------------ seeding the lookups

    def seed_currency(self, code: str, exchange_rate: float, precision: int) -> None:
        """Add a currency to ``/currencies`` (read-only over the API); the base currency has rate 1."""
        with self._lock:
            self._currencies[code.upper()] = {
                "code": code.upper(),
                "exchangeRate": float(exchange_rate),
                "precision": precision,
            }

    def seed_payment_method(self, method: dict[str, Any], *, supports_processing: bool = False) -> int:
        """Add a payment method (PaymentMethodModel fields); ``supports_processing``: capture/cancel on status."""
        with self._lock:
            method_id = self._next_id("payment_method")
            self._payment_methods[method_id] = {
                "idCode": method.get("idCode", ""),
                "fee": float(method.get("fee", 0.0)),
                **self._method_fields(method),
                "validForShippingMethods": method.get("validForShippingMethods", "all"),
            }
            if supports_processing:
                self._capturing_payment_methods.add(method_id)
            return method_id

    def seed_shipping_method(self, method: dict[str, Any]) -> int:
        """Add a shipping method (ShippingMethodModel fields); returns its id."""
        with self._lock:
            method_id = self._next_id("shipping_method")
            self._shipping_methods[method_id] = {
                **self._method_fields(method),
                "freeShippingMinItemsSubtotal": method.get("freeShippingMinItemsSubtotal"),
                "freeShippingMinWeight": method.get("freeShippingMinWeight"),
            }
            return method_id

    @staticmethod
    def _method_fields(method: dict[str, Any]) -> dict[str, Any]:
        """The validity rules, flags and languages payment and shipping methods share."""
        return {
            "active": method.get("active", True),
            "validForCountries": method.get("validForCountries", "all"),
            "validCountriesSelected": list(method.get("validCountriesSelected", [])),
            "validForMinItemsSubtotal": method.get("validForMinItemsSubtotal"),
            "validForMaxItemsSubtotal": method.get("validForMaxItemsSubtotal"),
            "validForMinWeight": method.get("validForMinWeight"),
            "validForMaxWeight": method.get("validForMaxWeight"),
            "validForCustomerType": method.get("validForCustomerType"),
            "isClickAndCollect": method.get("isClickAndCollect", False),
            "externalId": method.get("externalId"),
            "languages": [dict(language) for language in method.get("languages", [])],
        }

    def seed_tracking_type(self, tracking_type: int, name: str) -> None:
        """Add a carrier to ``/shipping-tracking-types``."""
        with self._lock:
            self._tracking_types[tracking_type] = name

    # ------------------------------------------------------------------ lookups

    def currencies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(currency) for currency in self._currencies.values()]

    def currency(self, code: str) -> dict[str, Any]:
        """A currency by ISO code, in any letter case (the spec's example is ``sek``)."""
        with self._lock:
            currency = self._currencies.get(code.upper())
            if currency is None:
                raise not_found(f"no currency {code!r}")
            return dict(currency)

    def payment_methods(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_method("paymentMethodId", key, self._payment_methods) for key in self._payment_methods]

    def payment_method(self, method_id: int) -> dict[str, Any]:
        with self._lock:
            self._require(self._payment_methods, method_id, "payment method")
            return self._render_method("paymentMethodId", method_id, self._payment_methods)

    def shipping_methods(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._render_method("shippingMethodId", key, self._shipping_methods) for key in self._shipping_methods
            ]

    def shipping_method(self, method_id: int) -> dict[str, Any]:
        with self._lock:
            self._require(self._shipping_methods, method_id, "shipping method")
            return self._render_method("shippingMethodId", method_id, self._shipping_methods)

    def shipping_tracking_types(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"type": key, "name": name} for key, name in self._tracking_types.items()]

    @staticmethod
    def _render_method(id_name: str, method_id: int, table: dict[int, dict[str, Any]]) -> dict[str, Any]:
        method = table[method_id]
        rendered = {id_name: method_id, **method, "validCountriesSelected": list(method["validCountriesSelected"])}
        rendered["languages"] = {"data": [dict(language) for language in method["languages"]]}
        return rendered

    # ------------------------------------------------------------------ order statuses

    def order_statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_order_status(status_id) for status_id in self._order_statuses]

    def order_status(self, status_id: int) -> dict[str, Any]:
        with self._lock:
            self._require(self._order_statuses, status_id, "order status")
            return self._render_order_status(status_id)

    def order_status_id(self, id_code: str) -> int:
        """The id of the standard status with this ``idCode`` (created, picking, completed, canceled)."""
        with self._lock:
            for status_id, status in self._order_statuses.items():
                if status["idCode"] == id_code:
                    return status_id
            raise not_found(f"no order status with idCode {id_code!r}")

    def seed_order_status(self, id_code: str | None, should_send_email: bool, names: Mapping[str, str]) -> int:
        """Add a status; only the seed gives an ``idCode`` (the four standard ones). Returns its id."""
        with self._lock:
            status_id = self._next_id("order_status")
            self._order_statuses[status_id] = {
                "idCode": id_code,
                "shouldSendEmail": should_send_email,
                "languages": [{"langCode": code, "name": name} for code, name in names.items()],
            }
            return status_id

    def add_order_status(self, body: Any) -> dict[str, Any]:
        """``POST /order-statuses``: a custom status (no idCode); ``languages`` with a name is required."""
        with self._lock:
            fields = self._check_order_status_body(body, where="orderStatus", replace=True)
            status_id = self._next_id("order_status")
            self._order_statuses[status_id] = {"idCode": None, **fields}
            return self._render_order_status(status_id)

    def update_order_status(self, status_id: int, body: Any, *, replace: bool = False) -> dict[str, Any]:
        """PATCH (merge languages by langCode) or PUT (``replace``) of a custom status; standard ones are 403."""
        with self._lock:
            status = self._require(self._order_statuses, status_id, "order status")
            if status["idCode"] is not None:
                raise forbidden(f"order status {status_id} ({status['idCode']}) is a standard status")
            fields = self._check_order_status_body(body, where=f"orderStatus {status_id}", replace=replace)
            if not replace and "languages" in fields:
                merged = {language["langCode"]: language for language in status["languages"]}
                merged.update({language["langCode"]: language for language in fields["languages"]})
                fields["languages"] = list(merged.values())
            status.update(fields)
            return self._render_order_status(status_id)

    def delete_order_status(self, status_id: int) -> None:
        """``DELETE /order-statuses/{id}``: 403 for a standard status or one that orders have."""
        with self._lock:
            status = self._require(self._order_statuses, status_id, "order status")
            if status["idCode"] is not None:
                raise forbidden(f"order status {status_id} ({status['idCode']}) is a standard status")
            in_use = sorted(order.order_id for order in self._orders.values() if order.fields["statusId"] == status_id)
            if in_use:
                raise forbidden(f"order status {status_id} is in use by {len(in_use)} order(s), e.g. {in_use[0]}")
            del self._order_statuses[status_id]

    def _check_order_status_body(self, body: Any, *, where: str, replace: bool) -> dict[str, Any]:
        fields = check_fields(
            body,
            _ORDER_STATUS_RULES,
            where=where,
            required=("languages",) if replace else (),
            read_only=("statusId", "idCode"),
        )
        if "languages" in fields:
            fields["languages"] = _language_list(fields["languages"], f"{where}.languages")
            if replace and not fields["languages"]:
                raise bad_request(f"{where}.languages: a status needs a name in at least one language")
        if replace:
            fields.setdefault("shouldSendEmail", False)
        return fields

    def _render_order_status(self, status_id: int) -> dict[str, Any]:
        status = self._order_statuses[status_id]
        rendered: dict[str, Any] = {"statusId": status_id}
        if status["idCode"] is not None:
            rendered["idCode"] = status["idCode"]
        rendered["shouldSendEmail"] = status["shouldSendEmail"]
        rendered["languages"] = {"data": [dict(language) for language in status["languages"]]}
        return rendered

    def _status_ref(self, status: int | str) -> int:
        """A status id given as id or as standard idCode (for the test helpers)."""
        if isinstance(status, str):
            return self.order_status_id(status)
        return status

    # ------------------------------------------------------------------ customers

    def list_customers(self, query: CustomerQuery) -> Page:
        """``GET /customers``: filter, sort by customerId, cut one page."""
        with self._lock:
            matching = [customer for customer in self._customers.values() if self._customer_matches(customer, query)]
            matching.sort(key=lambda customer: customer.customer_id, reverse=query.descending)
            return self._page(matching, query.page, lambda customer: self._render_customer(customer, query.includes))

    @staticmethod
    def _customer_matches(customer: _Customer, query: CustomerQuery) -> bool:
        checks = (
            customer.has_account or query.include_without_account,
            query.created_since is None or customer.created_at >= query.created_since.replace(microsecond=0),
            query.updated_since is None or customer.modified_at >= query.updated_since.replace(microsecond=0),
        )
        return all(checks)

    def customer(self, customer_id: int, includes: Iterable[str] = ()) -> dict[str, Any]:
        with self._lock:
            return self._render_customer(self._customer(customer_id), frozenset(includes))

    def customer_ids(self) -> list[int]:
        """Every customer id, ascending, with or without account (for tests)."""
        with self._lock:
            return sorted(self._customers)

    def add_customer(
        self,
        body: Any,
        *,
        has_account: bool = True,
        approved: bool | None = None,
        external_services: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """``POST /customers``; the keywords set what the API cannot (account, approval, external services)."""
        with self._lock:
            fields, addresses = self._check_customer_body(body, where="customer", customer_id=None)
            now = self._now()
            created_at = fields.pop("createdAt", now)
            customer = _Customer(
                customer_id=self._next_id("customer"),
                fields={**_CUSTOMER_DEFAULTS, **fields},
                created_at=created_at,
                modified_at=now,
                has_account=has_account,
                approved=approved,
                approved_at=None if approved is None else now,
                addresses={kind: _complete_address(address) for kind, address in (addresses or {}).items()},
                external_services=dict(external_services or {}),
            )
            self._customers[customer.customer_id] = customer
            rendered = self._render_customer(customer, frozenset())
            if rendered["approvedAt"] is None:
                del rendered["approvedAt"]  # CustomerCreatedModel does not allow null here
            return rendered

    def update_customer(self, customer_id: int, body: Any) -> dict[str, Any]:
        """``PATCH /customers/{id}``: the given fields; given address types merged field by field."""
        return self._write_customer(customer_id, body, replace=False)

    def replace_customer(self, customer_id: int, body: Any) -> dict[str, Any]:
        """``PUT /customers/{id}``: omitted fields back to defaults; addresses replaced when given."""
        return self._write_customer(customer_id, body, replace=True)

    def delete_customer(self, customer_id: int) -> None:
        with self._lock:
            self._customer(customer_id)
            del self._customers[customer_id]

    def customer_addresses(self, customer_id: int) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {kind: dict(address) for kind, address in self._customer(customer_id).addresses.items()}

    def customer_address(self, customer_id: int, address_type: str) -> dict[str, Any]:
        with self._lock:
            address = self._customer(customer_id).addresses.get(address_type)
            if address is None:
                raise not_found(f"customer {customer_id} has no {address_type!r} address")
            return dict(address)

    def customer_external_services(self, customer_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return self._render_customer_services(self._customer(customer_id))

    def customer_external_service(self, customer_id: int, service_name: str) -> dict[str, Any]:
        with self._lock:
            value = self._customer(customer_id).external_services.get(service_name)
            if value is None:
                raise not_found(f"customer {customer_id} has no external service {service_name!r}")
            return {"serviceName": service_name, "externalIdValue": value}

    def _write_customer(self, customer_id: int, body: Any, *, replace: bool) -> dict[str, Any]:
        with self._lock:
            customer = self._customer(customer_id)
            where = f"customer {customer_id}"
            fields, addresses = self._check_customer_body(body, where=where, customer_id=customer_id)
            if "createdAt" in fields:
                customer.created_at = fields.pop("createdAt")
            customer.fields = {**_CUSTOMER_DEFAULTS, **fields} if replace else {**customer.fields, **fields}
            if addresses is not None:
                if replace:
                    customer.addresses = {}
                for kind, address in addresses.items():
                    customer.addresses[kind] = _complete_address({**customer.addresses.get(kind, {}), **address})
            customer.modified_at = self._now()
            return self._render_customer(customer, frozenset())

    def _check_customer_body(
        self, body: Any, *, where: str, customer_id: int | None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
        fields = check_fields(body, _CUSTOMER_RULES, where=where, read_only=_CUSTOMER_READ_ONLY)
        addresses = fields.pop("addresses", None)
        if addresses is not None:
            addresses = _check_addresses(addresses, CUSTOMER_ADDRESS_TYPES, f"{where}.addresses")
        if "createdAt" in fields:
            fields["createdAt"] = parse_timestamp(fields["createdAt"], f"{where}.createdAt").replace(microsecond=0)
        if fields.get("pricelistId") is not None and fields["pricelistId"] not in self._pricelists:
            raise bad_request(f"{where}.pricelistId: no pricelist {fields['pricelistId']}")
        email = fields.get("email")
        if email:
            for other in self._customers.values():
                if other.customer_id != customer_id and other.fields["email"].casefold() == email.casefold():
                    raise bad_request(f"{where}.email: {email!r} is already used by customer {other.customer_id}")
        return fields, addresses

    def _customer(self, customer_id: int) -> _Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise not_found(f"no customer {customer_id}")
        return customer

    def _render_customer(self, customer: _Customer, includes: frozenset[str]) -> dict[str, Any]:
        fields = customer.fields
        rendered: dict[str, Any] = {
            "customerId": customer.customer_id,
            "createdAt": format_timestamp(customer.created_at),
            "modifiedAt": format_timestamp(customer.modified_at),
            **fields,
            "approved": customer.approved,
            "approvedAt": None if customer.approved_at is None else format_timestamp(customer.approved_at),
        }
        if "addresses" in includes:
            rendered["addresses"] = {"data": {kind: dict(address) for kind, address in customer.addresses.items()}}
        if "externalServices" in includes:
            rendered["externalServices"] = {"data": self._render_customer_services(customer)}
        return rendered

    @staticmethod
    def _render_customer_services(customer: _Customer) -> list[dict[str, Any]]:
        return [{"serviceName": name, "externalIdValue": value} for name, value in customer.external_services.items()]

    # ------------------------------------------------------------------ orders: reads

    def list_orders(self, query: OrderQuery) -> Page:
        """``GET /orders``: filter, sort (ties by orderId), cut one page."""
        with self._lock:
            matching = [order for order in self._orders.values() if self._order_matches(order, query)]
            matching.sort(key=lambda order: order.order_id, reverse=query.descending)
            matching.sort(key=lambda order: self._sort_key(order, query.sort_by), reverse=query.descending)
            return self._page(matching, query.page, lambda order: self._render_order(order, query.includes))

    def _order_matches(self, order: _Order, query: OrderQuery) -> bool:
        fields = order.fields
        checks = (
            query.include_non_complete or fields["isComplete"],
            query.created_after is None or order.created_at >= query.created_after.replace(microsecond=0),
            query.created_before is None or order.created_at <= query.created_before.replace(microsecond=0),
            query.status_id is None or fields["statusId"] == query.status_id,
            query.payment_method_id is None or fields["paymentMethodId"] == query.payment_method_id,
            query.shipping_method_id is None or fields["shippingMethodId"] == query.shipping_method_id,
            query.text is None or query.text.casefold() in self._search_text(order),
        )
        return all(checks)

    @staticmethod
    def _search_text(order: _Order) -> str:
        """What ``filterQuery`` searches: order id, buyer names and companies, e-mail, item SKUs and texts."""
        parts = [str(order.order_id), order.fields["originalCustomerEmail"]]
        for address in order.addresses.values():
            parts += [address["firstName"], address["lastName"], address["companyName"]]
        for item in order.items.values():
            parts += [item["sku"], item["description"]]
        return "\n".join(parts).casefold()

    def _sort_key(self, order: _Order, sort_by: str) -> Any:
        fields = order.fields
        if sort_by == "createdAt":
            return order.created_at
        if sort_by == "modifiedAt":
            return order.modified_at
        if sort_by == "customer":
            address = order.addresses.get("customerInvoice") or order.addresses.get("originalInvoice") or {}
            name = address.get("companyName") or f"{address.get('lastName', '')} {address.get('firstName', '')}"
            return name.strip().casefold()
        if sort_by in ("paymentMethodName", "shippingMethodName"):
            return fields[sort_by].casefold()
        if sort_by == "totalAmount":
            return self._amounts(order)["totalAmountInBaseCurrency"]
        if sort_by == "status":
            return fields["statusId"]
        if sort_by == "read":
            return fields["isRead"]
        return order.order_id

    def order(self, order_id: int, includes: Iterable[str] = ()) -> dict[str, Any]:
        with self._lock:
            return self._render_order(self._order(order_id), frozenset(includes))

    def order_ids(self) -> list[int]:
        """Every order id, ascending, complete or not (for tests)."""
        with self._lock:
            return sorted(self._orders)

    def _order(self, order_id: int) -> _Order:
        order = self._orders.get(order_id)
        if order is None:
            raise not_found(f"no order {order_id}")
        return order

    # ------------------------------------------------------------------ orders: writes

    def add_order(
        self, body: Any, *, total_override: float | None = None, unitemised_amount: float = 0.0
    ) -> dict[str, Any]:
        """``POST /orders``; for tests, ``total_override`` stores a totalAmount (ex VAT) that does not match the
        rows and ``unitemised_amount`` adds to amountToPay what no row shows (module docstring: totals)."""
        with self._lock:
            write = self._check_order_body(body, where="order", mode="create")
            now = self._now()
            fields = {**self._order_defaults(), **write.fields}
            created_at = fields.pop("createdAt", now)
            order = _Order(
                order_id=self._next_id("order"),
                fields=fields,
                created_at=created_at,
                modified_at=now,
                base_currency_code=self._shop["baseCurrency"],
                shop_country_code=self._shop["shopCountryCode"],
                total_override=None if total_override is None else _decimal(total_override),
                unitemised_amount=_decimal(unitemised_amount),
            )
            self._complete_currency(order, write.fields)
            self._set_items(order, write.items or [])
            order.addresses = {kind: _complete_address(address) for kind, address in (write.addresses or {}).items()}
            self._orders[order.order_id] = order
            return self._render_order(order, frozenset({"items", "addresses"}))

    def update_order(self, order_id: int, body: Any) -> dict[str, Any]:
        """``PATCH /orders/{id}``: the given fields, a status change with its e-mail and payment rules."""
        return self._write_order(order_id, body, replace=False)

    def replace_order(self, order_id: int, body: Any) -> dict[str, Any]:
        """``PUT /orders/{id}`` (``statusId`` required): own fields reset where omitted (module doc)."""
        return self._write_order(order_id, body, replace=True)

    def delete_order(self, order_id: int) -> None:
        with self._lock:
            self._order(order_id)
            del self._orders[order_id]

    def set_order_status(
        self,
        order_id: int,
        status: int | str,
        *,
        send_email: bool = True,
        process_payment: bool = True,
        tracking_no: str | None = None,
        tracker_type: int | None = None,
    ) -> dict[str, Any]:
        """Change the status (id or standard idCode) the way a client's PATCH does, with its switches."""
        body: dict[str, Any] = {
            "statusId": self._status_ref(status),
            "onOrderStatusChangeSendEmail": send_email,
            "onOrderStatusChangeProcessPayment": process_payment,
        }
        if tracking_no is not None:
            body["shippingTrackingNo"] = tracking_no
        if tracker_type is not None:
            body["shippingTrackerType"] = tracker_type
        return self.update_order(order_id, body)

    def mark_payment_complete(self, order_id: int) -> dict[str, Any]:
        """The buyer finished the payment step: ``isComplete`` true, a processing method's payment reserved."""
        with self._lock:
            order = self._order(order_id)
            fields = order.fields
            fields["isComplete"] = True
            processing = fields["paymentMethodId"] in self._capturing_payment_methods
            if processing and fields["paymentStatus"] in ("", "pending"):
                fields["paymentStatus"] = "reserved"
            order.modified_at = self._now()
            return self._render_order(order, frozenset())

    def _write_order(self, order_id: int, body: Any, *, replace: bool) -> dict[str, Any]:
        with self._lock:
            order = self._order(order_id)
            write = self._check_order_body(body, where=f"order {order_id}", mode="put" if replace else "patch")
            before = dict(order.fields)
            fields = dict(write.fields)
            if "createdAt" in fields:
                order.created_at = fields.pop("createdAt")
            if replace:
                kept = {name: before[name] for name in ("externalId", "externalIdType")}
                order.fields = {**self._order_defaults(), **kept, **fields}
            else:
                order.fields = {**before, **fields}
            self._complete_currency(order, write.fields)
            if write.items is not None:
                order.items = {}
                self._set_items(order, write.items)
                order.total_override = None  # new rows: the shop computes the totals again
                order.unitemised_amount = Decimal(0)
            if write.addresses is not None:
                if replace:
                    order.addresses = {}
                for kind, address in write.addresses.items():
                    merged = address if replace else {**order.addresses.get(kind, {}), **address}
                    order.addresses[kind] = _complete_address(merged)
            order.modified_at = self._now()
            if order.fields["statusId"] != before["statusId"]:
                self._change_status(order, before, write)
            includes = frozenset({"items", "addresses"}) if replace else frozenset()
            return self._render_order(order, includes)

    def _change_status(self, order: _Order, before: Mapping[str, Any], write: _OrderWrite) -> None:
        """Apply the payment rule and log the change (module docstring: status changes)."""
        fields = order.fields
        status = self._order_statuses[fields["statusId"]]
        payment_before = fields["paymentStatus"]
        if write.process_payment and fields["paymentMethodId"] in self._capturing_payment_methods:
            if status["idCode"] == "completed" and payment_before == "reserved":
                fields["paymentStatus"] = "captured"
                fields["amountPaid"] = float(self._amounts(order)["amountToPay"])
            elif status["idCode"] == "canceled" and payment_before == "reserved":
                fields["paymentStatus"] = "cancelled"
        self.status_changes.append(
            StatusChange(
                order_id=order.order_id,
                from_status_id=before["statusId"],
                to_status_id=fields["statusId"],
                send_email=write.send_email,
                email_sent=write.send_email and fields["sendEmailsOnStatusChange"] and status["shouldSendEmail"],
                process_payment=write.process_payment,
                payment_status_before=payment_before,
                payment_status_after=fields["paymentStatus"],
                tracking_no=fields["shippingTrackingNo"] or None,
                tracker_type=fields["shippingTrackerType"],
                at=order.modified_at,
            )
        )

    def _order_defaults(self) -> dict[str, Any]:
        """Own fields of an order nobody set, in the order a client sees them; optional ids are None."""
        shop_vat = self._vat_rates.get(self._shop["shopCountryCode"], {})
        general = float(self._shop["generalDefaultVatRate"])
        return {
            "customerId": None,
            "statusId": self.order_status_id("created"),
            "isComplete": True,
            "isRead": False,
            "sendEmailsOnStatusChange": True,
            "stockLocationId": self._ecommerce_location_id(),
            "langCode": self._shop["defaultLangCode"],
            "currencyCode": self._shop["baseCurrency"],
            "currencyExchangeRate": None,
            "currencyPrecision": None,
            "discountCode": "",
            "amountPaid": 0.0,
            "paymentMethodId": None,
            "paymentMethodName": "",
            "paymentFee": 0.0,
            "paymentVatRate": float(shop_vat.get("fixedOrderPaymentVatRate", general)),
            "paymentReference": "",
            "paymentStatus": "",
            "shippingMethodId": None,
            "shippingMethodName": "",
            "shippingCost": 0.0,
            "shippingVatRate": float(shop_vat.get("fixedOrderShippingVatRate", general)),
            "shippingTrackingNo": "",
            "shippingTrackerType": None,
            **{f"customInfo{number}": "" for number in (1, 2, 3, 4)},
            "internalComment": "",
            "originalCustomerEmail": "",
            "originalCustomerNationalIdNo": "",
            "originalCustomerVatNo": "",
            "originalCustomerCustomInfo1": "",
            "originalCustomerCustomInfo2": "",
            "externalId": "",
            "externalIdType": "",
        }

    def _complete_currency(self, order: _Order, written: Mapping[str, Any]) -> None:
        """A new currency brings its rate and precision unless the same write gave them."""
        currency = self._currencies[order.fields["currencyCode"]]
        for name, currency_field in (("currencyExchangeRate", "exchangeRate"), ("currencyPrecision", "precision")):
            if name not in written and ("currencyCode" in written or order.fields[name] is None):
                order.fields[name] = currency[currency_field]

    def _check_order_body(self, body: Any, *, where: str, mode: Literal["create", "patch", "put"]) -> _OrderWrite:
        """Check an order body completely (fields, references, items, addresses) before anything changes."""
        fields = check_fields(
            body,
            _ORDER_PUT_RULES if mode == "put" else _ORDER_RULES,
            where=where,
            required=("statusId",) if mode == "put" else (),
            read_only=_ORDER_READ_ONLY,
        )
        send_email = fields.pop("onOrderStatusChangeSendEmail", True)
        process_payment = fields.pop("onOrderStatusChangeProcessPayment", True)
        items = fields.pop("items", None)
        if items is not None:
            items = [
                self._check_item_body(item, where=f"{where}.items[{index}]", replace=True)
                for index, item in enumerate(check_list_of_objects(items, f"{where}.items"))
            ]
        addresses = fields.pop("addresses", None)
        if addresses is not None:
            addresses = _check_addresses(addresses, ORDER_ADDRESS_TYPES, f"{where}.addresses")
        if "createdAt" in fields:
            fields["createdAt"] = parse_timestamp(fields["createdAt"], f"{where}.createdAt").replace(microsecond=0)
        references: tuple[tuple[str, Mapping[Any, Any], str], ...] = (
            ("statusId", self._order_statuses, "order status"),
            ("customerId", self._customers, "customer"),
            ("paymentMethodId", self._payment_methods, "payment method"),
            ("shippingMethodId", self._shipping_methods, "shipping method"),
            ("stockLocationId", self._stock_locations, "stock location"),
            ("currencyCode", self._currencies, "currency"),
            ("shippingTrackerType", self._tracking_types, "shipping tracking type"),
        )
        for name, table, label in references:
            if name in fields and fields[name] not in table:
                raise bad_request(f"{where}.{name}: no {label} {fields[name]!r}")
        if "langCode" in fields and fields["langCode"] not in self._shop["activeLangCodes"]:
            active = ", ".join(self._shop["activeLangCodes"])
            raise bad_request(f"{where}.langCode: {fields['langCode']!r} is not a language of the shop ({active})")
        for name in ("paymentFee", "paymentVatRate", "shippingCost", "shippingVatRate", "amountPaid"):
            if name in fields:
                fields[name] = float(fields[name])
        return _OrderWrite(fields, items, addresses, send_email, process_payment)

    # ------------------------------------------------------------------ order items

    def order_items(self, order_id: int) -> list[dict[str, Any]]:
        with self._lock:
            order = self._order(order_id)
            return [self._render_item(item_id, item) for item_id, item in order.items.items()]

    def order_item(self, order_id: int, item_id: int, includes: Iterable[str] = ()) -> dict[str, Any]:
        with self._lock:
            item = self._item(self._order(order_id), item_id)
            return self._render_item(item_id, item, bundled="bundledItems" in includes)

    def add_order_item(self, order_id: int, body: Any) -> dict[str, Any]:
        """``POST /orders/{id}/items``: ``quantity`` and ``unitPrice`` are required."""
        with self._lock:
            order = self._order(order_id)
            checked = self._check_item_body(body, where=f"order {order_id} item", replace=True)
            item_id = self._set_items(order, [checked])[0]
            order.modified_at = self._now()
            return self._render_item(item_id, order.items[item_id])

    def update_order_item(self, order_id: int, item_id: int, body: Any, *, replace: bool = False) -> dict[str, Any]:
        """PATCH (the given fields) or PUT (``replace``: omitted fields back to defaults) of an item."""
        with self._lock:
            order = self._order(order_id)
            current = self._item(order, item_id)
            checked = self._check_item_body(body, where=f"order {order_id} item {item_id}", replace=replace)
            merged = {**self._item_defaults(current["sortIndex"]), **checked} if replace else {**current, **checked}
            if merged["discountType"] == "percent" and merged["discount"] > 100:
                raise bad_request(f"order {order_id} item {item_id}.discount: a percent discount above 100")
            order.items[item_id] = merged
            order.modified_at = self._now()
            return self._render_item(item_id, merged)

    def delete_order_item(self, order_id: int, item_id: int) -> None:
        with self._lock:
            order = self._order(order_id)
            self._item(order, item_id)
            del order.items[item_id]
            order.modified_at = self._now()

    def _check_item_body(self, body: Any, *, where: str, replace: bool) -> dict[str, Any]:
        checked = check_fields(
            body,
            _ITEM_RULES,
            where=where,
            required=("quantity", "unitPrice") if replace else (),
            read_only=("itemId",),
            unsupported=("bundledItems",),
        )
        for name in ("unitPrice", "vatRate", "discount"):
            if name in checked:
                checked[name] = float(checked[name])
        if checked.get("discountType", "percent") == "percent" and checked.get("discount", 0) > 100:
            raise bad_request(f"{where}.discount: a percent discount above 100")
        return checked

    def _item_defaults(self, sort_index: int) -> dict[str, Any]:
        return {
            "sku": "",
            "description": "",
            "unitSymbol": "st",
            "vatRate": float(self._shop["generalDefaultVatRate"]),
            "discount": 0.0,
            "discountType": "percent",
            "sortIndex": sort_index,
        }

    def _set_items(self, order: _Order, items: list[dict[str, Any]]) -> list[int]:
        """Append checked items with their defaults; returns the new item ids."""
        item_ids = []
        for checked in items:
            item_id = self._next_id("order_item")
            order.items[item_id] = {**self._item_defaults(len(order.items) + 1), **checked}
            item_ids.append(item_id)
        return item_ids

    @staticmethod
    def _item(order: _Order, item_id: int) -> dict[str, Any]:
        item = order.items.get(item_id)
        if item is None:
            raise not_found(f"order {order.order_id} has no item {item_id}")
        return item

    @staticmethod
    def _render_item(item_id: int, item: Mapping[str, Any], *, bundled: bool = False) -> dict[str, Any]:
        """One item; ``bundled`` adds ``bundledItems``, always empty: the sandbox has no bundle products."""
        rendered = {"itemId": item_id, **{name: item[name] for name in _ITEM_RULES}}
        if bundled:
            rendered["bundledItems"] = {"data": []}
        return rendered

    # ------------------------------------------------------------------ order addresses

    def order_addresses(self, order_id: int) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {kind: dict(address) for kind, address in self._order(order_id).addresses.items()}

    def order_address(self, order_id: int, address_type: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._address(self._order(order_id), address_type))

    def set_order_address(self, order_id: int, address_type: str, body: Any, *, replace: bool = True) -> dict[str, Any]:
        """PUT (``replace``: create or replace, omitted fields empty) or PATCH (existing only, merged)."""
        with self._lock:
            order = self._order(order_id)
            where = f"order {order_id} address {address_type!r}"
            if address_type not in ORDER_ADDRESS_TYPES:
                raise not_found(f"{where}: not an address type; use {', '.join(ORDER_ADDRESS_TYPES)}")
            current = order.addresses.get(address_type) if replace else self._address(order, address_type)
            checked = check_fields(body, _ADDRESS_RULES, where=where)
            merged = checked if replace or current is None else {**current, **checked}
            order.addresses[address_type] = _complete_address(merged)
            order.modified_at = self._now()
            return dict(order.addresses[address_type])

    def delete_order_address(self, order_id: int, address_type: str) -> None:
        with self._lock:
            order = self._order(order_id)
            self._address(order, address_type)
            del order.addresses[address_type]
            order.modified_at = self._now()

    @staticmethod
    def _address(order: _Order, address_type: str) -> dict[str, Any]:
        address = order.addresses.get(address_type)
        if address is None:
            raise not_found(f"order {order.order_id} has no {address_type!r} address")
        return address

    # ------------------------------------------------------------------ order external services

    def order_external_services(self, order_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(service) for service in self._order(order_id).external_services.values()]

    def order_external_service(self, order_id: int, service_name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._service(self._order(order_id), service_name))

    def add_order_external_service(self, order_id: int, body: Any) -> dict[str, Any]:
        """``POST /orders/{id}/external-services``: a service name the order does not have yet."""
        with self._lock:
            order = self._order(order_id)
            where = f"order {order_id} externalService"
            checked = check_fields(
                body, _EXTERNAL_SERVICE_RULES, where=where, required=("serviceName",), read_only=("readOnly",)
            )
            if checked["serviceName"] in order.external_services:
                raise bad_request(f"{where}: {checked['serviceName']!r} exists already; use PUT or PATCH")
            return self._store_service(order, checked)

    def set_order_external_service(
        self, order_id: int, service_name: str, body: Any, *, replace: bool = True
    ) -> dict[str, Any]:
        """PUT (``replace``: create or replace) or PATCH (existing only) of one external service."""
        with self._lock:
            order = self._order(order_id)
            where = f"order {order_id} externalService {service_name!r}"
            current = order.external_services.get(service_name) if replace else self._service(order, service_name)
            checked = check_fields(body, _EXTERNAL_SERVICE_RULES, where=where, read_only=("readOnly",))
            if checked.setdefault("serviceName", service_name) != service_name:
                raise bad_request(f"{where}.serviceName: differs from the service name in the path")
            merged = checked if replace or current is None else {**current, **checked}
            return self._store_service(order, merged)

    def delete_order_external_service(self, order_id: int, service_name: str) -> None:
        with self._lock:
            order = self._order(order_id)
            self._service(order, service_name)
            del order.external_services[service_name]
            order.modified_at = self._now()

    def _store_service(self, order: _Order, checked: Mapping[str, Any]) -> dict[str, Any]:
        service = {
            "serviceName": checked["serviceName"],
            "externalIdValue": checked.get("externalIdValue", ""),
            "agent": checked.get("agent", ""),
            "readOnly": False,
        }
        order.external_services[service["serviceName"]] = service
        order.modified_at = self._now()
        return dict(service)

    @staticmethod
    def _service(order: _Order, service_name: str) -> dict[str, Any]:
        service = order.external_services.get(service_name)
        if service is None:
            raise not_found(f"order {order.order_id} has no external service {service_name!r}")
        return service

    # ------------------------------------------------------------------ order rendering

    def _amounts(self, order: _Order) -> dict[str, Decimal]:
        """The computed money fields (module docstring: totals)."""
        fields = order.fields
        precision = fields["currencyPrecision"]
        base_precision = self._currencies[order.base_currency_code]["precision"]
        rate = _decimal(fields["currencyExchangeRate"])
        totals = _order_totals(order, precision)
        total = totals.net if order.total_override is None else _round(order.total_override, precision)
        to_pay = total + totals.vat + _round(order.unitemised_amount, precision)
        amounts = {"totalAmount": total, "totalVat": totals.vat, "amountToPay": to_pay}
        for name, value in list(amounts.items()):
            amounts[f"{name}InBaseCurrency"] = _round(value / rate, base_precision)
        amounts["amountPaidInBaseCurrency"] = _round(_decimal(fields["amountPaid"]) / rate, base_precision)
        return amounts

    def _render_order(self, order: _Order, includes: frozenset[str]) -> dict[str, Any]:
        fields = order.fields
        rendered: dict[str, Any] = {
            "orderId": order.order_id,
            "createdAt": format_timestamp(order.created_at),
            "modifiedAt": format_timestamp(order.modified_at),
            **fields,
            "baseCurrencyCode": order.base_currency_code,
            "shopCountryCode": order.shop_country_code,
            "hasComments": False,
            "totalWeight": round(
                sum(item["quantity"] * (self.variant_weight(item["sku"]) or 0.0) for item in order.items.values()), 3
            ),
        }
        rendered.update({name: float(value) for name, value in self._amounts(order).items()})
        payment_method = self._payment_methods.get(fields["paymentMethodId"])
        if payment_method is not None:
            rendered["paymentMethodIdCode"] = payment_method["idCode"]
            if payment_method["externalId"] is not None:
                rendered["paymentMethodExternalId"] = payment_method["externalId"]
        shipping_method = self._shipping_methods.get(fields["shippingMethodId"])
        if shipping_method is not None and shipping_method["externalId"] is not None:
            rendered["shippingMethodExternalId"] = shipping_method["externalId"]
        for name in ("customerId", "paymentMethodId", "shippingMethodId", "shippingTrackerType"):
            if rendered[name] is None:
                del rendered[name]
        if includes & {"items", "items.bundledItems"}:
            bundled = "items.bundledItems" in includes
            rendered["items"] = {
                "data": [self._render_item(item_id, item, bundled=bundled) for item_id, item in order.items.items()]
            }
        if "addresses" in includes:
            rendered["addresses"] = {"data": {kind: dict(address) for kind, address in order.addresses.items()}}
        if "externalServices" in includes:
            rendered["externalServices"] = {"data": [dict(service) for service in order.external_services.values()]}
        if "status" in includes:
            rendered["status"] = {"data": self._render_order_status(fields["statusId"])}
        customer = self._customers.get(fields["customerId"])
        if "customer" in includes and customer is not None:
            rendered["customer"] = {"data": self._render_customer(customer, frozenset())}
        return rendered
