"""Pure mapping of Starweb orders (with their customer) to Mamut documents (no I/O).

``normalise_order`` flattens the API's nested order into the staged record; ``order_check_row`` derives what
the quality checks need (totals reconciliation, addresses, quantities); ``mamut_order`` and ``mamut_customer``
build what the repository writes. Starweb item prices are ex VAT; ``totalAmount`` includes VAT (inferred,
see ../shared/reference/starweb-api.md §3.5).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starmamut.mamut.documents import MamutAddress, MamutCustomer, MamutOrder, MamutOrderLine
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
    customer = _included(order, "customer")
    addresses = _included(order, "addresses")
    return {
        "order_id": order["orderId"],
        "created_at": order.get("createdAt"),
        "status_id": order.get("statusId"),
        "currency": order.get("currencyCode"),
        "exchange_rate": order.get("currencyExchangeRate") or 1,
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
            for item in sorted(children(order, "items"), key=lambda item: (item.get("sortIndex") or 0,
                                                                            item.get("itemId") or 0))
        ],
        "shipping": {"name": order.get("shippingMethodName"), "cost": order.get("shippingCost") or 0,
                     "vat_rate": order.get("shippingVatRate") or 0},
        "payment_fee": {"name": order.get("paymentMethodName"), "fee": order.get("paymentFee") or 0,
                        "vat_rate": order.get("paymentVatRate") or 0},
        "total_amount": order.get("totalAmount"),
    }


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0))


def line_net(line: Mapping[str, Any]) -> Decimal:
    """A line's amount ex VAT after its discount (an amount discount applies to the whole row)."""
    gross = _money(line["quantity"]) * _money(line["unit_price"])
    discount = _money(line["discount"])
    if line["discount_type"] == "amount":
        return gross - discount
    return gross * (1 - discount / 100)


def computed_total(record: Mapping[str, Any]) -> Decimal:
    """Lines, shipping and payment fee with their VAT: what the order total should be."""
    total = sum((line_net(line) * (1 + _money(line["vat_rate"]) / 100) for line in record["lines"]), Decimal(0))
    for charge, amount_key in ((record["shipping"], "cost"), (record["payment_fee"], "fee")):
        total += _money(charge[amount_key]) * (1 + _money(charge["vat_rate"]) / 100)
    return total


def order_check_row(record: Mapping[str, Any], *, tolerance_per_line: float, known_skus: Collection[str],
                    known_currencies: Collection[str]) -> dict[str, Any]:
    """One row for the order checks; ``total_excess`` > 0 means the totals do not reconcile."""
    lines = record["lines"]
    charged_lines = len(lines) + sum(1 for charge in (record["shipping"]["cost"], record["payment_fee"]["fee"])
                                     if charge)
    difference = abs(computed_total(record) - _money(record["total_amount"]))
    tolerance = Decimal(str(tolerance_per_line)) * max(charged_lines, 1)
    unknown = sorted({line["sku"] or "" for line in lines if line["sku"] not in known_skus})
    return {
        "row_key": str(record["order_id"]),
        "total_amount": None if record["total_amount"] is None else float(record["total_amount"]),
        "total_difference": float(difference),
        "total_excess": float(difference - tolerance),
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


def mamut_order(record: Mapping[str, Any], *, shop_id: str, document: str, vat_codes: Mapping[float, int],
                known_skus: Collection[str], shipping_sku: str, payment_fee_sku: str) -> MamutOrder:
    """The Mamut order (or invoice): item lines, an amount discount as its own negative line, shipping and fee."""
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
        lines.append(MamutOrderLine(
            sku=line["sku"] if known else None,
            description=line["description"] if known else f"{line['sku'] or ''} {line['description']}".strip(),
            quantity=_money(line["quantity"]),
            unit_price=_money(line["unit_price"]),
            discount_pct=_money(line["discount"]) if percent else Decimal(0),
            vat_code=code,
        ))
        if not percent and _money(line["discount"]):
            lines.append(MamutOrderLine(sku=None, description=f"Rabatt {line['sku'] or line['description']}",
                                        quantity=Decimal(1), unit_price=-_money(line["discount"]),
                                        discount_pct=Decimal(0), vat_code=code))
    for charge, amount_key, sku, field in ((record["shipping"], "cost", shipping_sku, "shipping"),
                                           (record["payment_fee"], "fee", payment_fee_sku, "payment_fee")):
        if _money(charge[amount_key]):
            lines.append(MamutOrderLine(sku=sku, description=charge["name"] or sku, quantity=Decimal(1),
                                        unit_price=_money(charge[amount_key]), discount_pct=Decimal(0),
                                        vat_code=vat_code(charge["vat_rate"], f"{field}.vat_rate")))
    invoice = record["invoice_address"] or {}
    delivery = record["delivery_address"] or invoice
    reference = f"Starweb {order_id}" + (f" · rabattkod {record['discount_code']}" if record["discount_code"] else "")
    return MamutOrder(
        external_id=f"{shop_id}:{order_id}",
        document=document,  # type: ignore[arg-type]
        currency=record["currency"],
        exchange_rate=_money(record["exchange_rate"]),
        order_date=_order_date(record["created_at"]),
        reference=reference,
        your_reference=delivery.get("reference") or invoice.get("reference"),
        lines=tuple(lines),
        total_incl_vat=_money(record["total_amount"]).quantize(CENT, rounding=ROUND_HALF_UP),
    )


def _mamut_address(address: Mapping[str, Any]) -> MamutAddress:
    person = " ".join(part for part in (address["first_name"], address["last_name"]) if part)
    return MamutAddress(name=address["company"] or person or None, street=address["street"], zip_code=address["zip"],
                        city=address["city"], country=address["country"])


def _order_date(created_at: str | None) -> date:
    if not created_at:
        raise MappingError("order: field 'createdAt': missing")
    return datetime.fromisoformat(created_at).date()
