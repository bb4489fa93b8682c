"""The seeds a sandbox shop starts from and resets to, and :class:`SandboxState`, the shop that loads them.

:class:`~starmamut_devtools.sandbox.state.ShopState` is the shop's rules, empty; :class:`SandboxState` adds a
named seed: "empty" (the shop's set-up: settings, VAT, pricelists, stock statuses and locations, attributes,
order statuses, payment and shipping methods, currencies, carriers) or "demo" (that plus the demo catalogue,
customers and orders). The literal data comes from ``seed_data/*.json`` through
:mod:`~starmamut_devtools.sandbox.demo_data`; this module writes it through the shop's public methods, so the
seed obeys the rules a client's writes do. The demo orders stay code: each is one case an order transfer must
handle, priced from the catalogue and dated relative to the shop's clock.

Imports go one way, state → seeds: the state knows nothing of seeds, and the data knows nothing of the state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from starmamut_devtools.sandbox.demo_data import (
    BACKORDERED_STATUS_ID,
    CANCELED_STATUS_ID,
    COMPLETED_STATUS_ID,
    CREATED_STATUS_ID,
    CURRENCY_RATES,
    DHL_SHIPPING_METHOD_ID,
    EURO_PRICELIST_ID,
    INVOICE_PAYMENT_METHOD_ID,
    KLARNA_PAYMENT_METHOD_ID,
    MASTER_PRICELIST_ID,
    PAID_STATUS_ID,
    PICKING_STATUS_ID,
    PICKUP_SHIPPING_METHOD_ID,
    POSTNORD_SHIPPING_METHOD_ID,
    POSTNORD_TRACKER_TYPE,
    RESELLER_PRICELIST_ID,
    SEED_EPOCH,
    SEEDS,
    SHIPPED_STATUS_ID,
    SKU_SUFFIXES,
    STORE_STOCK_LOCATION_ID,
    SWISH_PAYMENT_METHOD_ID,
    demo_products,
    ean13,
    seed_data,
    variant_links,
    variant_sku,
)
from starmamut_devtools.sandbox.state import ShopState


class SandboxState(ShopState):
    """The sandbox shop: :class:`ShopState` started from, and reset to, one of :data:`SEEDS`. Thread-safe."""

    def __init__(self, seed: str = "demo", *, per_page: int = 100, clock: Callable[[], datetime] | None = None):
        super().__init__(per_page=per_page, clock=clock)
        self.seed = seed
        self.reset(seed)

    def reset(self, seed: str) -> None:
        """Drop everything and load the named seed ("demo" or "empty"); an unknown name changes nothing."""
        if seed not in SEEDS:
            raise ValueError(f"unknown sandbox seed {seed!r}; choose one of {', '.join(SEEDS)}")
        with self._lock:
            self.clear()
            apply_seed(self, seed)
            self.seed = seed


def apply_seed(state: ShopState, seed: str) -> None:
    """Fill a cleared state with the named seed (one of ``SEEDS``)."""
    with _clock_at(state, SEED_EPOCH):
        _seed_shop_setup(state)
        _seed_sales_setup(state)
    if seed == "demo":
        _seed_demo_catalogue(state)
        _seed_demo_sales(state)


@contextmanager
def _clock_at(state: ShopState, moment: datetime) -> Iterator[None]:
    previous = state.clock
    state.clock = lambda: moment
    try:
        yield
    finally:
        state.clock = previous


def _seed_shop_setup(state: ShopState) -> None:
    data = seed_data("shop")
    state.seed_shop(data["shop"])
    for country, rate in data["vatRates"].items():
        state.seed_vat_rate(
            {
                "countryCode": country,
                "defaultVatRate": rate,
                "fixedOrderPaymentVatRate": rate,
                "fixedOrderShippingVatRate": rate,
                "fixedOrderDiscountVatRate": rate,
            }
        )
    for pricelist in data["pricelists"]:
        state.add_pricelist(pricelist)
    status_ids = {status["idCode"]: state.seed_stock_status(status) for status in data["stockStatuses"]}
    state.set_stockout_status(status_ids["inStock"], status_ids["outOfStock"])
    for location in data["stockLocations"]:
        state.seed_stock_location(location)
    for attribute in data["attributes"]:
        created_attribute = state.add_attribute({"languages": attribute["languages"]})
        for sort_index, value in enumerate(attribute["values"], start=1):
            created = state.add_attribute_value(
                created_attribute["attributeId"],
                {
                    "skuSuffix": value["skuSuffix"],
                    "sortIndex": sort_index,
                    "languages": [{"langCode": "sv", "name": value["sv"]}, {"langCode": "en", "name": value["en"]}],
                },
            )
            if SKU_SUFFIXES.get(created["attributeValueId"]) != value["skuSuffix"]:
                raise RuntimeError("attribute value ids drifted from COLOUR_VALUE_IDS/SIZE_VALUE_IDS")


def _seed_demo_catalogue(state: ShopState) -> None:
    backorder = state.stock_status_id("backorder")
    for index, demo in enumerate(demo_products()):
        created = SEED_EPOCH + timedelta(days=index + 1)
        variants = []
        for number, links in enumerate(variant_links(demo.colours, demo.sizes)):
            quantity = 0 if demo.backorder else (index * 7 + number * 5) % 23
            variant: dict[str, Any] = {
                "sku": variant_sku(demo.sku, links),
                "attributeValueLinks": links,
                "isActive": number not in demo.inactive,
                "sortIndex": number + 1,
                "weightInKg": demo.weight_kg,
                "stockQuantity": quantity,
                "costPrice": f"{demo.price_incl_vat * 0.35:.2f}",
            }
            if demo.backorder:
                variant["stockStatusId"] = backorder
            if demo.ean_prefix is not None:
                variant["ean"] = ean13(f"{demo.ean_prefix}{number:03d}")
            variants.append(variant)
        with _clock_at(state, created):
            product = state.add_product(
                {
                    "visibility": demo.visibility,
                    "defaultVatRate": demo.vat,
                    "languages": [
                        {
                            "langCode": "sv",
                            "name": demo.name_sv,
                            "shortDescription": f"{demo.name_sv} från Små Äventyr.",
                        },
                        {
                            "langCode": "en",
                            "name": demo.name_en,
                            "shortDescription": f"{demo.name_en} from Små Äventyr.",
                        },
                    ],
                    "vatRates": [{"countryCode": "SE", "vatRate": float(demo.vat)}],
                    "variants": variants,
                }
            )
        price_ex_vat = round(demo.price_incl_vat / (1 + float(demo.vat) / 100), 2)
        with _clock_at(state, created + timedelta(hours=2)):
            for number, variant in enumerate(product["variants"]["data"]):
                product_id, variant_id = product["productId"], variant["variantId"]
                state.set_price(product_id, variant_id, MASTER_PRICELIST_ID, {"priceExVat": price_ex_vat})
                state.set_price(
                    product_id,
                    variant_id,
                    RESELLER_PRICELIST_ID,
                    {"priceExVat": round(price_ex_vat * 0.7, 2)},
                )
                state.set_price(
                    product_id, variant_id, EURO_PRICELIST_ID, {"priceExVat": round(price_ex_vat / 11.5, 2)}
                )
                if index % 4 == 0:
                    state.set_stock(
                        product_id,
                        variant_id,
                        STORE_STOCK_LOCATION_ID,
                        {
                            "stockStatusId": variant["stockStatusId"],
                            "stockQuantity": number + 2,
                            "shelfSpace": f"A{index}-{number}",
                        },
                    )


# ---------------------------------------------------------------- sales set-up and demo orders
#
# Both seeds get the order statuses, payment and shipping methods, currencies and carriers; "demo" also
# gets customers and orders. Order timestamps are relative to the state's clock at seeding time (the
# newest order is five hours old), so "recent orders" filters find them whatever day the demo runs.
#
# Every order carries four addresses: ``original*`` is what the buyer entered at checkout and
# ``customer*`` the order's current address (equal unless edited: order 1004's delivery address was
# changed after checkout); Klarna orders also carry ``paymentMethod*``, the addresses Klarna returned.


def _seed_sales_setup(state: ShopState) -> None:
    data = seed_data("sales_setup")
    for status in data["orderStatuses"]:
        state.seed_order_status(status["idCode"], status["shouldSendEmail"], status["names"])
    for payment in data["paymentMethods"]:
        state.seed_payment_method(payment["method"], supports_processing=payment["supportsProcessing"])
    for shipping_method in data["shippingMethods"]:
        state.seed_shipping_method(shipping_method)
    for currency in data["currencies"]:
        state.seed_currency(currency["code"], currency["rate"], currency["decimals"])
    for tracking_type in data["trackingTypes"]:
        state.seed_tracking_type(tracking_type["trackerType"], tracking_type["carrier"])
    seeded = [status["statusId"] for status in state.order_statuses()]
    expected = [CREATED_STATUS_ID, PICKING_STATUS_ID, COMPLETED_STATUS_ID, CANCELED_STATUS_ID]
    if seeded != [*expected, PAID_STATUS_ID, SHIPPED_STATUS_ID, BACKORDERED_STATUS_ID]:
        raise RuntimeError("order status ids drifted from the *_STATUS_ID constants")


def _address(
    first: str, last: str, street: str, postal_code: str, city: str, country: str, **extra: str
) -> dict[str, str]:
    return {
        "firstName": first,
        "lastName": last,
        "address": street,
        "postalCode": postal_code,
        "city": city,
        "countryCode": country,
        **extra,
    }


def _order_addresses(
    invoice: dict[str, str], delivery: dict[str, str] | None = None, *, klarna: bool = False
) -> dict[str, dict[str, str]]:
    """The address set a checkout leaves (see the block comment above)."""
    delivery = delivery or invoice
    addresses = {
        "customerInvoice": invoice,
        "customerDelivery": delivery,
        "originalInvoice": invoice,
        "originalDelivery": delivery,
    }
    if klarna:
        addresses |= {"paymentMethodInvoice": invoice, "paymentMethodDelivery": delivery}
    return addresses


def _line(
    state: ShopState,
    sku: str,
    quantity: int,
    *,
    pricelist_id: int = MASTER_PRICELIST_ID,
    exchange_rate: float = 1.0,
    vat_rate: float | None = None,
    **discount: Any,
) -> dict[str, Any]:
    """An order item priced from the catalogue (ex VAT, converted with ``exchange_rate``)."""
    found = state.find_variant(sku)
    if found is None:
        raise RuntimeError(f"demo order uses unknown SKU {sku}")
    product = state.product(found[0], ["languages"])
    price = state.price(found[0], found[1], pricelist_id)["priceExVat"]
    return {
        "sku": sku,
        "description": product["languages"]["data"][0]["name"],
        "quantity": quantity,
        "unitSymbol": "st",
        "unitPrice": round(price * exchange_rate, 2),
        "vatRate": float(product["defaultVatRate"]) if vat_rate is None else vat_rate,
        **discount,
    }


def _place_order(
    state: ShopState,
    at: datetime,
    body: dict[str, Any],
    *,
    paid_at_checkout: bool = False,
    handled_after: timedelta | None = None,
) -> int:
    """Create an order at ``at``; Swish pays the total at once; ``handled_after`` moves its modifiedAt."""
    with _clock_at(state, at):
        order = state.add_order({"createdAt": at.isoformat(), **body})
        if paid_at_checkout:
            state.update_order(order["orderId"], {"amountPaid": order["amountToPay"]})
    if handled_after is not None:
        with _clock_at(state, at + handled_after):
            state.update_order(order["orderId"], {"isRead": True})
    return order["orderId"]


def _seed_demo_sales(state: ShopState) -> None:
    now = state.clock().replace(microsecond=0)
    asa = _address("Åsa", "Ekström", "Järntorget 4", "413 04", "Göteborg", "SE", mobilePhoneNo="070-123 45 67")
    company_invoice = _address(
        "Karin",
        "Sjöberg",
        "Stora Gatan 18",
        "722 12",
        "Västerås",
        "SE",
        companyName="Lekhörnan i Västerås AB",
        attention="Ekonomiavdelningen",
        phoneNo="021-12 34 56",
    )
    company_delivery = _address(
        "Karin", "Sjöberg", "Köpmangatan 3", "722 15", "Västerås", "SE", companyName="Lekhörnan butik"
    )
    norwegian = _address("Åse", "Bråthen", "Storgata 7", "0155", "Oslo", "NO", mobilePhoneNo="+47 912 34 567")
    goran = _address("Göran", "Ström", "Björkvägen 11", "903 31", "Umeå", "SE", mobilePhoneNo="073-555 12 34")
    with _clock_at(state, now - timedelta(days=40)):
        asa_id = state.add_customer(
            {
                "type": "person",
                "email": "asa.ekstrom@example.se",
                "nationalIdNo": "19850312-1234",
                "addresses": {"invoice": asa, "delivery": asa},
            }
        )["customerId"]
    with _clock_at(state, now - timedelta(days=60)):
        company_id = state.add_customer(
            {
                "type": "company",
                "email": "inkop@lekhornan.example.se",
                "nationalIdNo": "556677-8899",
                "vatNo": "SE556677889901",
                "pricelistId": RESELLER_PRICELIST_ID,
                "addresses": {"invoice": company_invoice, "delivery": company_delivery},
            },
            approved=True,
            external_services={"Fortnox": "1042"},
        )["customerId"]
    with _clock_at(state, now - timedelta(days=20)):
        norwegian_id = state.add_customer(
            {
                "type": "person",
                "email": "ase.brathen@example.no",
                "addresses": {"invoice": norwegian, "delivery": norwegian},
            }
        )["customerId"]
    with _clock_at(state, now - timedelta(days=3)):
        goran_id = state.add_customer(
            {"email": "goran.strom@example.se", "addresses": {"invoice": goran, "delivery": goran}},
            has_account=False,
        )["customerId"]
    klarna = {"paymentMethodId": KLARNA_PAYMENT_METHOD_ID, "paymentMethodName": "Klarna Checkout"}
    swish = {"paymentMethodId": SWISH_PAYMENT_METHOD_ID, "paymentMethodName": "Swish"}
    invoice = {
        "paymentMethodId": INVOICE_PAYMENT_METHOD_ID,
        "paymentMethodName": "Faktura",
        "paymentFee": 29.0,
        "paymentVatRate": 25.0,
    }
    postnord = {"shippingMethodId": POSTNORD_SHIPPING_METHOD_ID, "shippingMethodName": "PostNord", "shippingCost": 49.0}
    dhl = {"shippingMethodId": DHL_SHIPPING_METHOD_ID, "shippingMethodName": "DHL", "shippingCost": 149.0}
    pickup = {"shippingMethodId": PICKUP_SHIPPING_METHOD_ID, "shippingMethodName": "Hämta i butik"}
    nok = CURRENCY_RATES["NOK"]
    # 1001: private buyer, SEK, three VAT rates, delivered and captured.
    first = _place_order(
        state,
        now - timedelta(days=9, hours=3),
        {
            "customerId": asa_id,
            "statusId": COMPLETED_STATUS_ID,
            **klarna,
            **postnord,
            "paymentStatus": "reserved",
            "paymentReference": "KCO-7f3a9c21",
            "originalCustomerEmail": "asa.ekstrom@example.se",
            "originalCustomerNationalIdNo": "19850312-1234",
            "items": [_line(state, "LEK-1001", 1), _line(state, "BOK-3001", 2), _line(state, "MAT-4001", 3)],
            "addresses": _order_addresses(asa, klarna=True),
        },
    )
    with _clock_at(state, now - timedelta(days=7)):
        captured = state.order(first)["amountToPay"]
        state.update_order(first, {"paymentStatus": "captured", "amountPaid": captured, "isRead": True})
    # 1002: company (B2B) on reseller prices, invoice with fee, separate delivery address; the
    # warehouse booked the DHL shipment in nShift (an order external service).
    b2b = _place_order(
        state,
        now - timedelta(days=8),
        {
            "customerId": company_id,
            "statusId": PICKING_STATUS_ID,
            **invoice,
            **dhl,
            "originalCustomerEmail": "inkop@lekhornan.example.se",
            "originalCustomerNationalIdNo": "556677-8899",
            "originalCustomerVatNo": "SE556677889901",
            "customInfo1": "Inköpsorder 4711",
            "items": [
                _line(state, sku, quantity, pricelist_id=RESELLER_PRICELIST_ID)
                for sku, quantity in (("KL-2101-RD-92", 10), ("KL-2101-BL-104", 10), ("KL-2001-28", 6))
            ],
            "addresses": _order_addresses(
                {**company_invoice, "reference": "Inköpsorder 4711"}, {**company_delivery, "reference": "Butiken"}
            ),
        },
        handled_after=timedelta(days=1, hours=2),
    )
    with _clock_at(state, now - timedelta(days=6, hours=22)):
        state.add_order_external_service(b2b, {"serviceName": "nShift", "externalIdValue": "SHP-55012", "agent": "DHL"})
    # 1003: guest from Finland paying in EUR (Finnish VAT 25.5 %), payment reserved.
    aino = _address("Aino", "Mäkelä", "Mannerheimintie 5", "00100", "Helsinki", "FI")
    _place_order(
        state,
        now - timedelta(days=6, hours=5),
        {
            "statusId": CREATED_STATUS_ID,
            **klarna,
            "shippingMethodId": DHL_SHIPPING_METHOD_ID,
            "shippingMethodName": "DHL",
            "shippingCost": 9.9,
            "shippingVatRate": 25.5,
            "currencyCode": "EUR",
            "langCode": "en",
            "paymentStatus": "reserved",
            "paymentReference": "KCO-19be0d44",
            "originalCustomerEmail": "aino.makela@example.fi",
            "items": [
                _line(state, "LEK-1002", 1, pricelist_id=EURO_PRICELIST_ID, vat_rate=25.5),
                _line(state, "KL-2003-M", 2, pricelist_id=EURO_PRICELIST_ID, vat_rate=25.5),
            ],
            "addresses": _order_addresses(aino, klarna=True),
        },
    )
    # 1004: the private buyer again (returning customer): discount code, a percent and an amount line
    # discount, shipped with a tracking number; she changed the delivery address after checkout.
    _place_order(
        state,
        now - timedelta(days=5, hours=2),
        {
            "customerId": asa_id,
            "statusId": SHIPPED_STATUS_ID,
            **swish,
            **postnord,
            "discountCode": "SOMMAR10",
            "paymentStatus": "paid",
            "paymentReference": "SWISH-3F2A19",
            "shippingTrackingNo": "00370712345678901234",
            "shippingTrackerType": POSTNORD_TRACKER_TYPE,
            "originalCustomerEmail": "asa.ekstrom@example.se",
            "items": [
                _line(state, "KL-2104-SV-104", 1, discount=10.0, discountType="percent"),
                _line(state, "LEK-1004", 2, discount=50.0, discountType="amount"),
                _line(state, "KL-2103-RD-S", 3),
            ],
            "addresses": {
                **_order_addresses(asa),
                "customerDelivery": _address(
                    "Åsa", "Ekström", "Sommarstugevägen 2", "452 97", "Strömstad", "SE", careOf="Familjen Öhman"
                ),
            },
        },
        paid_at_checkout=True,
        handled_after=timedelta(days=1),
    )
    # 1005: export to Norway in NOK without VAT (lines and shipping at 0 %).
    _place_order(
        state,
        now - timedelta(days=4),
        {
            "customerId": norwegian_id,
            "statusId": CREATED_STATUS_ID,
            **klarna,
            **postnord,
            "shippingCost": 99.0,
            "shippingVatRate": 0.0,
            "currencyCode": "NOK",
            "langCode": "en",
            "paymentStatus": "reserved",
            "paymentReference": "KCO-5d0e7b88",
            "originalCustomerEmail": "ase.brathen@example.no",
            "items": [
                _line(state, "KL-2102-GN-116", 1, exchange_rate=nok, vat_rate=0.0),
                _line(state, "KL-2002-104", 1, exchange_rate=nok, vat_rate=0.0),
            ],
            "addresses": _order_addresses(norwegian, klarna=True),
        },
    )
    # 1006: guest checkout in SEK: the buyer exists only in the addresses and originalCustomerEmail.
    marta = _address("Märta", "Lindqvist", "Ågatan 21", "582 22", "Linköping", "SE", phoneNo="013-24 68 10")
    _place_order(
        state,
        now - timedelta(days=3, hours=6),
        {
            "statusId": CREATED_STATUS_ID,
            **swish,
            **postnord,
            "paymentStatus": "paid",
            "paymentReference": "SWISH-88C1D0",
            "originalCustomerEmail": "marta.lindqvist@example.se",
            "items": [_line(state, "LEK-1003", 1), _line(state, "MAT-4001", 5)],
            "addresses": _order_addresses(marta),
        },
        paid_at_checkout=True,
    )
    # 1007: payment step not completed (listed only with includeNonCompletePayments=true).
    _place_order(
        state,
        now - timedelta(days=2, hours=4),
        {
            "customerId": goran_id,
            "statusId": CREATED_STATUS_ID,
            **klarna,
            **postnord,
            "isComplete": False,
            "paymentStatus": "pending",
            "originalCustomerEmail": "goran.strom@example.se",
            "items": [_line(state, "KL-2001-30", 1)],
            "addresses": _order_addresses(goran, klarna=True),
        },
    )
    # 1008: canceled; the reserved Klarna payment was cancelled with it.
    bjorn = _address("Björn", "Åkesson", "Västra Vägen 9", "222 21", "Lund", "SE")
    _place_order(
        state,
        now - timedelta(days=2),
        {
            "statusId": CANCELED_STATUS_ID,
            **klarna,
            **pickup,
            "paymentStatus": "cancelled",
            "paymentReference": "KCO-a61c3f02",
            "originalCustomerEmail": "bjorn.akesson@example.se",
            "internalComment": "Kunden ångrade köpet i telefon.",
            "items": [_line(state, "LEK-1006", 2)],
            "addresses": _order_addresses(bjorn, klarna=True),
        },
        handled_after=timedelta(hours=5),
    )
    # 1009: in the custom status "Betald", collected in store.
    lena = _address("Lena", "Öst", "Kungsgatan 40", "411 19", "Göteborg", "SE")
    _place_order(
        state,
        now - timedelta(days=1),
        {
            "statusId": PAID_STATUS_ID,
            **swish,
            **pickup,
            "paymentStatus": "paid",
            "paymentReference": "SWISH-41AA7E",
            "originalCustomerEmail": "lena.ost@example.se",
            "items": [_line(state, "KL-2003-S", 1), _line(state, "KL-2103-BL-M", 2)],
            "addresses": _order_addresses(lena),
        },
        paid_at_checkout=True,
        handled_after=timedelta(hours=2),
    )
    # 1010: the company again, a small top-up order on invoice.
    _place_order(
        state,
        now - timedelta(hours=5),
        {
            "customerId": company_id,
            "statusId": CREATED_STATUS_ID,
            **invoice,
            **dhl,
            "originalCustomerEmail": "inkop@lekhornan.example.se",
            "originalCustomerNationalIdNo": "556677-8899",
            "originalCustomerVatNo": "SE556677889901",
            "items": [_line(state, "LEK-1002", 12, pricelist_id=RESELLER_PRICELIST_ID)],
            "addresses": _order_addresses(company_invoice, company_delivery),
        },
    )
