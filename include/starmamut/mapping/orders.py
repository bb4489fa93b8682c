"""Pure mapping of Starweb orders (with their customer) to Mamut documents (no I/O).

``normalise_order`` flattens the API's nested order into the staged record; ``order_check_row`` derives what
the quality checks need (totals reconciliation, addresses, quantities); ``mamut_order`` and ``mamut_customer``
build what the repository writes.

Money as the spec's OrderModel defines it (its example: totalAmount 622.4 + totalVat 155.6 = amountToPay 778):
item ``unitPrice``, ``shippingCost``, ``paymentFee`` and an ``amount`` discount are ex VAT; ``totalAmount`` is
the rows ex VAT, ``totalVat`` their VAT and ``amountToPay`` = totalAmount + totalVat, all in the order's
currency. ``currencyExchangeRate`` is order currency per 1 unit of the shop's base currency (1 SEK = 0.0868 EUR).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starmamut.mamut.documents import (
    ExchangeRateConvention,
    MamutAddress,
    MamutCustomer,
    MamutOrder,
    MamutOrderLine,
)
from starmamut.mapping.products import MappingError, children

INVOICE_ADDRESS_TYPES = ("customerInvoice", "originalInvoice", "paymentMethodInvoice")
DELIVERY_ADDRESS_TYPES = ("customerDelivery", "originalDelivery", "paymentMethodDelivery")
CENT = Decimal("0.01")


def _included(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    """An included single object, wrapped in ``{"data": {...}}`` or not."""
    value = parent.get(key) or {}
    if isinstance(value, Mapping) and isinstance(value.get("data"), Mapping):
        value = value["data"]
    return dict(value) if isinstance(value, Mapping) else {}


def _address(addresses: Mapping[str, Any], types: tuple[str, ...]) -> dict[str, Any] | None:
    for address_type in types:
        address = addresses.get(address_type)
        if isinstance(address, Mapping) and any(address.get(field) for field in ("address", "city", "postalCode")):
            return {
                "company": address.get("companyName") or None,
                "first_name": address.get("firstName") or None,
                "last_name": address.get("lastName") or None,
                "street": address.get("address") or None,
                "zip": address.get("postalCode") or None,
                "city": address.get("city") or None,
                "country": address.get("countryCode") or None,
                "phone": address.get("phoneNo") or address.get("mobilePhoneNo") or None,
                "reference": address.get("reference") or address.get("attention") or None,
            }
    return None


def normalise_order(order: Mapping[str, Any]) -> dict[str, Any]:
    """The staged record of one Starweb order: what the checks and the Mamut mapping need, nothing else."""
    _require_numbers(order)
    customer = _included(order, "customer")
    addresses = _included(order, "addresses")
    return {
        "order_id": order["orderId"],
        "created_at": order.get("createdAt"),
        "status_id": order.get("statusId"),
        "currency": order.get("currencyCode"),
        "base_currency": order.get("baseCurrencyCode"),
        "currency_precision": order.get("currencyPrecision"),
        "exchange_rate": order.get("currencyExchangeRate"),
        "discount_code": order.get("discountCode") or None,
        "customer": {
            "starweb_id": order.get("customerId"),
            "type": customer.get("type") or ("company" if order.get("originalCustomerVatNo") else "person"),
            "email": (order.get("originalCustomerEmail") or customer.get("email") or "").strip() or None,
            "org_no": order.get("originalCustomerNationalIdNo") or customer.get("nationalIdNo") or None,
            "vat_no": order.get("originalCustomerVatNo") or customer.get("vatNo") or None,
        },
        "invoice_address": _address(addresses, INVOICE_ADDRESS_TYPES),
        "delivery_address": _address(addresses, DELIVERY_ADDRESS_TYPES),
        "lines": [
            {
                "sku": item.get("sku") or None,
                "description": item.get("description") or item.get("sku") or "",
                "quantity": item.get("quantity"),
                "unit_price": item.get("unitPrice"),
                "vat_rate": item.get("vatRate"),
                "discount": item.get("discount") or 0,
                "discount_type": item.get("discountType") or "percent",
            }
            for item in sorted(
                children(order, "items"), key=lambda item: (item.get("sortIndex") or 0, item.get("itemId") or 0)
            )
        ],
        "shipping": {
            "name": order.get("shippingMethodName"),
            "cost": order.get("shippingCost") or 0,
            "vat_rate": order.get("shippingVatRate") or 0,
        },
        "payment_fee": {
            "name": order.get("paymentMethodName"),
            "fee": order.get("paymentFee") or 0,
            "vat_rate": order.get("paymentVatRate") or 0,
        },
        "total_amount": order.get("totalAmount"),
        "total_vat": order.get("totalVat"),
        "amount_to_pay": order.get("amountToPay"),
    }


ORDER_NUMBERS = (
    "shippingCost",
    "shippingVatRate",
    "paymentFee",
    "paymentVatRate",
    "totalAmount",
    "totalVat",
    "amountToPay",
    "currencyExchangeRate",
)
ORDER_TEXTS = (
    "createdAt",
    "currencyCode",
    "originalCustomerEmail",
    "originalCustomerNationalIdNo",
    "originalCustomerVatNo",
)
ITEM_NUMBERS = ("quantity", "unitPrice", "vatRate", "discount")


def _require_numbers(order: Mapping[str, Any]) -> None:
    """Every amount the mapping reads is a JSON number (or absent): a shop that sends ``"12,50"`` gets the order
    quarantined with the field named, instead of a parse error somewhere in the batch."""

    def check(value: Any, field: str) -> None:
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value != value
            or value in (float("inf"), float("-inf"))
        ):
            raise MappingError(f"order {order.get('orderId')}: field '{field}': {value!r} is not a number")

    for field in ORDER_NUMBERS:
        check(order.get(field), field)
    for field in ORDER_TEXTS:
        if order.get(field) is not None and not isinstance(order[field], str):
            raise MappingError(f"order {order.get('orderId')}: field '{field}': {order[field]!r} is not a text")
    try:
        datetime.fromisoformat(order.get("createdAt") or "")
    except ValueError:
        raise MappingError(
            f"order {order.get('orderId')}: field 'createdAt': {order.get('createdAt')!r} is not a date and time"
        ) from None
    items = order.get("items")
    rows = items.get("data") if isinstance(items, Mapping) else items
    if rows is not None and not isinstance(rows, list):
        raise MappingError(f"order {order.get('orderId')}: field 'items': {rows!r:.80} is not a list")
    for index, item in enumerate(rows or []):
        if not isinstance(item, Mapping):
            raise MappingError(f"order {order.get('orderId')}: field 'items[{index}]': {item!r:.80} is not an object")
    for index, item in enumerate(children(order, "items")):
        for field in ITEM_NUMBERS:
            check(item.get(field), f"items[{index}].{field}")


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def line_net(line: Mapping[str, Any]) -> Decimal:
    """A line's amount ex VAT after its discount (an amount discount applies to the whole row)."""
    gross = _money(line["quantity"]) * _money(line["unit_price"])
    discount = _money(line["discount"])
    if line["discount_type"] == "amount":
        return gross - discount
    return gross * (1 - discount / 100)


@dataclass(frozen=True)
class OrderSums:
    """What an order's rows (items after discount, shipping, payment fee) add up to, in the order's currency."""

    net: Decimal  # ex VAT: should be totalAmount
    vat: Decimal  # should be totalVat
    rows: int  # charged rows: every item line, shipping and fee when not zero

    @property
    def gross(self) -> Decimal:
        """Incl. VAT: should be amountToPay."""
        return self.net + self.vat


def _charged_rows(record: Mapping[str, Any]) -> Iterator[tuple[Decimal, Decimal]]:
    """(amount ex VAT, VAT rate in percent) of each item line, and of shipping and fee when charged."""
    for line in record["lines"]:
        yield line_net(line), _money(line["vat_rate"])
    for charge, amount_key in ((record["shipping"], "cost"), (record["payment_fee"], "fee")):
        if _money(charge[amount_key]):
            yield _money(charge[amount_key]), _money(charge["vat_rate"])


def order_sums(record: Mapping[str, Any]) -> OrderSums:
    """The rows' sums ex VAT and of VAT (unrounded: the shop rounds per row, the tolerance allows for that)."""
    net = vat = Decimal(0)
    rows = 0
    for amount, rate in _charged_rows(record):
        net += amount
        vat += amount * rate / 100
        rows += 1
    return OrderSums(net=net, vat=vat, rows=rows)


def _tolerance(record: Mapping[str, Any], tolerance_per_line: float, rows: int) -> Decimal:
    """How far each total may be off: per charged row the configured tolerance, but at least one unit of the
    order currency's last decimal, since the shop rounds every row (to whole units in a currency without decimals).
    """
    per_row = Decimal(str(tolerance_per_line))
    if record.get("currency_precision") is not None:
        per_row = max(per_row, Decimal(1).scaleb(-int(record["currency_precision"])))
    return per_row * max(rows, 1)


def _excess(expected: Decimal, actual: Any, tolerance: Decimal) -> float:
    """How far ``actual`` is off ``expected`` beyond the tolerance (> 0: it does not reconcile; missing: inf)."""
    if actual is None:
        return float("inf")
    return float(abs(_money(actual) - expected) - tolerance)


def order_check_row(
    record: Mapping[str, Any],
    *,
    tolerance_per_line: float,
    known_skus: Collection[str],
    known_currencies: Collection[str],
) -> dict[str, Any]:
    """One row for the order checks; an ``*_excess`` > 0 means that total does not reconcile with the rows.

    ``unitemised`` is what amountToPay holds beyond totalAmount + totalVat: an amount the spec does not model
    (a gift card, a rounding), which no order row shows.
    """
    lines = record["lines"]
    sums = order_sums(record)
    tolerance = _tolerance(record, tolerance_per_line, sums.rows)
    total_amount, total_vat, amount_to_pay = (record.get(key) for key in ("total_amount", "total_vat", "amount_to_pay"))
    given = (total_amount, total_vat, amount_to_pay)
    unitemised = None if None in given else _money(amount_to_pay) - _money(total_amount) - _money(total_vat)
    unknown = sorted({line["sku"] or "" for line in lines if line["sku"] not in known_skus})
    return {
        "row_key": str(record["order_id"]),
        "tolerance": float(tolerance),
        "net_sum": float(sums.net),
        "total_amount": None if total_amount is None else float(total_amount),
        "net_excess": _excess(sums.net, total_amount, tolerance),
        "vat_sum": float(sums.vat),
        "total_vat": None if total_vat is None else float(total_vat),
        "vat_excess": _excess(sums.vat, total_vat, tolerance),
        "gross_sum": float(sums.gross),
        "amount_to_pay": None if amount_to_pay is None else float(amount_to_pay),
        "gross_excess": _excess(sums.gross, amount_to_pay, tolerance),
        "unitemised": None if unitemised is None else float(unitemised),
        "has_invoice_address": record["invoice_address"] is not None,
        "has_delivery_address": record["delivery_address"] is not None,
        "currency": record["currency"],
        "currency_known": record["currency"] in known_currencies,
        "line_count": len(lines),
        "min_quantity": min((float(line["quantity"] or 0) for line in lines), default=None),
        "email": record["customer"]["email"],
        "unknown_skus": ", ".join(unknown) or None,
    }


def mamut_customer(record: Mapping[str, Any], *, shop_id: str) -> MamutCustomer:
    """The buyer as a Mamut customer; a company buyer is named by the company, a person by first and last name."""
    customer = record["customer"]
    invoice = record["invoice_address"]
    if invoice is None:
        raise MappingError(f"order {record['order_id']}: field 'invoice_address': the order has no invoice address")
    person = " ".join(part for part in (invoice["first_name"], invoice["last_name"]) if part)
    is_company = customer["type"] == "company" or bool(invoice["company"])
    name = (invoice["company"] if is_company and invoice["company"] else person) or customer["email"] or ""
    if not name:
        raise MappingError(f"order {record['order_id']}: field 'customer.name': no company, person or e-mail")
    starweb_id = customer["starweb_id"]
    return MamutCustomer(
        name=name,
        is_company=is_company,
        email=customer["email"],
        phone=invoice["phone"],
        org_no=customer["org_no"],
        vat_no=customer["vat_no"],
        first_name=invoice["first_name"],
        last_name=invoice["last_name"],
        invoice_address=_mamut_address(invoice),
        delivery_address=_mamut_address(record["delivery_address"]) if record["delivery_address"] else None,
        external_id=f"{shop_id}:{starweb_id}" if starweb_id else None,
        starweb_customer_id=int(starweb_id) if starweb_id else None,
    )


def mamut_order(
    record: Mapping[str, Any],
    *,
    shop_id: str,
    document: str,
    vat_codes: Mapping[float, int],
    known_skus: Collection[str],
    shipping_sku: str,
    payment_fee_sku: str,
    rates: ExchangeRateConvention,
) -> MamutOrder:
    """The Mamut order (or invoice): item lines, an amount discount as its own negative line, shipping and fee,
    with the order's own invoice and delivery address and its amountToPay as the total incl. VAT."""
    order_id = record["order_id"]

    def vat_code(rate: Any, field: str) -> int:
        try:
            return vat_codes[float(rate or 0)]
        except KeyError:
            raise MappingError(f"order {order_id}: field '{field}': VAT rate {rate} % has no Mamut VAT code") from None

    lines: list[MamutOrderLine] = []
    for index, line in enumerate(record["lines"]):
        code = vat_code(line["vat_rate"], f"lines[{index}].vat_rate")
        known = line["sku"] in known_skus
        percent = line["discount_type"] != "amount"
        lines.append(
            MamutOrderLine(
                sku=line["sku"] if known else None,
                description=line["description"] if known else f"{line['sku'] or ''} {line['description']}".strip(),
                quantity=_money(line["quantity"]),
                unit_price=_money(line["unit_price"]),
                discount_pct=_money(line["discount"]) if percent else Decimal(0),
                vat_code=code,
            )
        )
        if not percent and _money(line["discount"]):
            lines.append(
                MamutOrderLine(
                    sku=None,
                    description=f"Rabatt {line['sku'] or line['description']}",
                    quantity=Decimal(1),
                    unit_price=-_money(line["discount"]),
                    discount_pct=Decimal(0),
                    vat_code=code,
                )
            )
    for charge, amount_key, sku, field in (
        (record["shipping"], "cost", shipping_sku, "shipping"),
        (record["payment_fee"], "fee", payment_fee_sku, "payment_fee"),
    ):
        if _money(charge[amount_key]):
            lines.append(
                MamutOrderLine(
                    sku=sku,
                    description=charge["name"] or sku,
                    quantity=Decimal(1),
                    unit_price=_money(charge[amount_key]),
                    discount_pct=Decimal(0),
                    vat_code=vat_code(charge["vat_rate"], f"{field}.vat_rate"),
                )
            )
    invoice = record["invoice_address"] or {}
    delivery = record["delivery_address"] or invoice
    reference = f"Starweb {order_id}" + (f" · rabattkod {record['discount_code']}" if record["discount_code"] else "")
    return MamutOrder(
        external_id=f"{shop_id}:{order_id}",
        document=document,  # type: ignore[arg-type]
        currency=record["currency"],
        exchange_rate=_exchange_rate(record, rates),
        order_date=_order_date(record["created_at"]),
        reference=reference,
        your_reference=delivery.get("reference") or invoice.get("reference"),
        lines=tuple(lines),
        total_incl_vat=_money(record["amount_to_pay"]).quantize(CENT, rounding=ROUND_HALF_UP),
        invoice_address=_mamut_address(record["invoice_address"]) if record["invoice_address"] else None,
        delivery_address=_mamut_address(record["delivery_address"]) if record["delivery_address"] else None,
    )


def _exchange_rate(record: Mapping[str, Any], rates: ExchangeRateConvention) -> Decimal:
    """Starweb's rate in Mamut's form; 1 for an order in the shop's base currency, whatever the form."""
    if record["currency"] == record.get("base_currency"):
        return Decimal(1)
    rate = _money(record["exchange_rate"])
    if not rate > 0:
        raise MappingError(
            f"order {record['order_id']}: field 'currencyExchangeRate': an order in "
            f"{record['currency']} needs a positive exchange rate, got {record['exchange_rate']!r}"
        )
    return rates.from_starweb(rate)


def _mamut_address(address: Mapping[str, Any]) -> MamutAddress:
    person = " ".join(part for part in (address["first_name"], address["last_name"]) if part)
    return MamutAddress(
        name=address["company"] or person or None,
        street=address["street"],
        zip_code=address["zip"],
        city=address["city"],
        country=address["country"],
    )


def _order_date(created_at: str | None) -> date:
    if not created_at:
        raise MappingError("order: field 'createdAt': missing")
    return datetime.fromisoformat(created_at).date()
