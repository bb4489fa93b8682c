"""Deterministic shop data: the "demo" and "empty" seeds, and a catalogue generator for benchmarks.

The demo shop ("Små Äventyr", a Swedish toy and children's clothing shop) exercises what the
integration must handle: names with å/ä/ö, single-variant products, one axis (Storlek), two axes
(Färg × Storlek), EANs on some variants, VAT 25/12/6, inactive variants, a hidden product, a
customer pricelist and a EUR pricelist with every variant priced, and stock at two locations.
Catalogue timestamps are fixed in 2024, so anything a test writes is newer than the seed.

Both seeds have the order statuses (the four standard ones plus "Betald" and "Skickad"), payment
methods (Klarna, invoice, Swish), shipping methods, currencies (SEK base, EUR, NOK) and carriers;
"demo" adds four customers and ten orders (1001–1010) dated in the days before the state's clock,
each showing one case an order transfer must handle (see ``_seed_demo_sales``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starmamut_devtools.sandbox.validation import SHOP_TIMEZONE

if TYPE_CHECKING:
    from starmamut_devtools.sandbox.state import SandboxState

SEEDS: tuple[str, ...] = ("demo", "empty")

SEED_EPOCH = datetime(2024, 3, 1, 9, 0, tzinfo=SHOP_TIMEZONE)

# (attribute sv name, attribute en name, [(value sv, value en, skuSuffix), ...]) in creation order:
# value ids are assigned 1, 2, 3… across attributes in this order in a freshly seeded shop.
_ATTRIBUTES: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Färg",
        "Colour",
        (
            ("Röd", "Red", "RD"),
            ("Blå", "Blue", "BL"),
            ("Grön", "Green", "GN"),
            ("Gul", "Yellow", "GU"),
            ("Svart", "Black", "SV"),
        ),
    ),
    (
        "Storlek",
        "Size",
        tuple(
            (size, size, size)
            for size in (
                "24",
                "26",
                "28",
                "30",
                "86",
                "92",
                "98",
                "104",
                "110",
                "116",
                "122",
                "128",
                "S",
                "M",
                "L",
            )
        ),
    ),
)

COLOUR_VALUE_IDS: dict[str, int] = {name: index + 1 for index, (name, _, _) in enumerate(_ATTRIBUTES[0][2])}
SIZE_VALUE_IDS: dict[str, int] = {
    name: len(COLOUR_VALUE_IDS) + index + 1 for index, (name, _, _) in enumerate(_ATTRIBUTES[1][2])
}
_SUFFIXES: dict[int, str] = {
    value_id: suffix
    for table, (_, _, values) in zip((COLOUR_VALUE_IDS, SIZE_VALUE_IDS), _ATTRIBUTES, strict=True)
    for (name, _, suffix), value_id in zip(values, table.values(), strict=True)
}
_CLOTHING_SIZES = ("86", "92", "98", "104", "110", "116", "122", "128")

MASTER_PRICELIST_ID = 1
RESELLER_PRICELIST_ID = 2
EURO_PRICELIST_ID = 3
WEB_STOCK_LOCATION_ID = 1
STORE_STOCK_LOCATION_ID = 2

DEMO_CLIENT_ID = "demo.starmamut"
DEMO_CLIENT_SECRET = "sandbox-secret"


def apply_seed(state: SandboxState, seed: str) -> None:
    """Fill a cleared state with the named seed (one of ``SEEDS``)."""
    with _clock_at(state, SEED_EPOCH):
        _seed_shop_setup(state)
        _seed_sales_setup(state)
    if seed == "demo":
        _seed_demo_catalogue(state)
        _seed_demo_sales(state)


@contextmanager
def _clock_at(state: SandboxState, moment: datetime) -> Iterator[None]:
    previous = state.clock
    state.clock = lambda: moment
    try:
        yield
    finally:
        state.clock = previous


def _seed_shop_setup(state: SandboxState) -> None:
    state.seed_shop(
        {
            "name": "Små Äventyr",
            "idCode": "smaaventyr",
            "status": "open",
            "defaultLangCode": "sv",
            "activeLangCodes": ["sv", "en"],
            "baseCurrency": "SEK",
            "defaultCustomerCountryCode": "SE",
            "generalDefaultVatRate": 25.0,
            "shopCompanyName": "Små Äventyr AB",
            "shopAddress": "Östra Hamngatan 12",
            "shopPostalCode": "411 09",
            "shopCity": "Göteborg",
            "shopOrgNo": "556677-8899",
            "shopPhoneNo": "031-123 45 67",
            "shopVatNo": "SE556677889901",
            "shopCountryCode": "SE",
        }
    )
    for country, rate in (("SE", 25.0), ("NO", 25.0), ("DK", 25.0), ("FI", 25.5), ("DE", 19.0)):
        state.seed_vat_rate(
            {
                "countryCode": country,
                "defaultVatRate": rate,
                "fixedOrderPaymentVatRate": rate,
                "fixedOrderShippingVatRate": rate,
                "fixedOrderDiscountVatRate": rate,
            }
        )
    state.add_pricelist({"name": "Standard", "currencyCode": "SEK", "isActive": True})
    state.add_pricelist({"name": "Återförsäljare", "parentPricelistId": MASTER_PRICELIST_ID, "isActive": True})
    state.add_pricelist({"name": "Euro", "currencyCode": "EUR", "isActive": True, "region": "EU"})
    in_stock = state.seed_stock_status(
        {
            "idCode": "inStock",
            "sortIndex": 1,
            "productBuyable": True,
            "inStock": True,
            "languages": [{"langCode": "sv", "name": "I lager"}, {"langCode": "en", "name": "In stock"}],
        }
    )
    out_of_stock = state.seed_stock_status(
        {
            "idCode": "outOfStock",
            "sortIndex": 2,
            "productBuyable": False,
            "inStock": False,
            "languages": [
                {"langCode": "sv", "name": "Slut i lager"},
                {"langCode": "en", "name": "Out of stock"},
            ],
        }
    )
    state.seed_stock_status(
        {
            "idCode": "backorder",
            "sortIndex": 3,
            "productBuyable": True,
            "inStock": False,
            "languages": [
                {"langCode": "sv", "name": "Beställningsvara"},
                {"langCode": "en", "name": "Backorder"},
            ],
        }
    )
    state.set_stockout_status(in_stock, out_of_stock)
    state.seed_stock_location(
        {
            "visibility": "show_if_in_stock",
            "ecommerceStockLocation": True,
            "languages": [
                {"langCode": "sv", "name": "Webblager"},
                {"langCode": "en", "name": "Web warehouse"},
            ],
        }
    )
    state.seed_stock_location(
        {
            "visibility": "always_show_in_store",
            "ecommerceStockLocation": False,
            "languages": [
                {"langCode": "sv", "name": "Butik Göteborg"},
                {"langCode": "en", "name": "Store Gothenburg"},
            ],
        }
    )
    for attribute_sv, attribute_en, values in _ATTRIBUTES:
        attribute = state.add_attribute(
            {
                "languages": [
                    {"langCode": "sv", "name": attribute_sv},
                    {"langCode": "en", "name": attribute_en},
                ]
            }
        )
        for sort_index, (value_sv, value_en, suffix) in enumerate(values, start=1):
            created = state.add_attribute_value(
                attribute["attributeId"],
                {
                    "skuSuffix": suffix,
                    "sortIndex": sort_index,
                    "languages": [{"langCode": "sv", "name": value_sv}, {"langCode": "en", "name": value_en}],
                },
            )
            if _SUFFIXES.get(created["attributeValueId"]) != suffix:
                raise RuntimeError("attribute value ids drifted from COLOUR_VALUE_IDS/SIZE_VALUE_IDS")


def ean13(twelve_digits: str) -> str:
    """Append the GS1 check digit to 12 digits, giving a valid EAN-13."""
    if len(twelve_digits) != 12 or not twelve_digits.isdigit():
        raise ValueError(f"an EAN-13 needs 12 digits before the check digit, got {twelve_digits!r}")
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(twelve_digits))
    return twelve_digits + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class _DemoProduct:
    sku: str
    name_sv: str
    name_en: str
    price_incl_vat: float
    weight_kg: float
    vat: str = "25"
    ean_prefix: str | None = None
    colours: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    inactive: tuple[int, ...] = ()
    visibility: str = "visible"
    backorder: bool = False


_DEMO_PRODUCTS: tuple[_DemoProduct, ...] = (
    _DemoProduct("LEK-1001", "Trähäst Åke", "Wooden horse Åke", 499, 2.4, ean_prefix="735000100"),
    _DemoProduct(
        "LEK-1002",
        "Pussel Älgskogen 100 bitar",
        "Jigsaw Elk forest 100 pieces",
        149,
        0.45,
        ean_prefix="735000101",
    ),
    _DemoProduct(
        "LEK-1003",
        "Byggklossar i trä, 50 st",
        "Wooden building blocks, 50 pcs",
        349,
        1.8,
        ean_prefix="735000102",
    ),
    _DemoProduct("LEK-1004", "Mjukisdjur Björnen Örjan", "Soft toy Örjan the bear", 229, 0.3),
    _DemoProduct(
        "LEK-1005",
        "Kritor Regnbåge 12-pack",
        "Crayons Rainbow 12-pack",
        59,
        0.2,
        ean_prefix="735000104",
        inactive=(0,),
    ),
    _DemoProduct(
        "BOK-3001",
        "Sagor från skärgården",
        "Tales from the archipelago",
        189,
        0.6,
        vat="6",
        ean_prefix="978917000",
    ),
    _DemoProduct(
        "MAT-4001",
        "Chokladkaka Mjölk 100 g",
        "Milk chocolate bar 100 g",
        35,
        0.1,
        vat="12",
        ean_prefix="735000106",
    ),
    _DemoProduct("LEK-1006", "Leksaksbil Amazon kombi", "Toy car Amazon estate", 129, 0.25, visibility="hidden"),
    _DemoProduct(
        "KL-2001",
        "Gummistövlar Pöl",
        "Rubber boots Puddle",
        299,
        0.9,
        sizes=("24", "26", "28", "30"),
        ean_prefix="735000200",
    ),
    _DemoProduct(
        "KL-2002",
        "Regnjacka Skärgård",
        "Rain jacket Archipelago",
        599,
        0.5,
        sizes=("92", "104", "116", "128"),
        inactive=(3,),
    ),
    _DemoProduct("KL-2003", "Mössa Älva", "Beanie Älva", 179, 0.1, sizes=("S", "M", "L")),
    _DemoProduct(
        "KL-2101",
        "T-shirt Räven Rut",
        "T-shirt Rut the fox",
        199,
        0.15,
        colours=("Röd", "Blå"),
        sizes=("92", "104", "116"),
        inactive=(5,),
        ean_prefix="735000210",
    ),
    _DemoProduct(
        "KL-2102",
        "Overall Fjällvandring",
        "Snowsuit Mountain hike",
        899,
        1.1,
        colours=("Grön", "Gul"),
        sizes=("104", "116", "128"),
        backorder=True,
    ),
    _DemoProduct(
        "KL-2103",
        "Strumpor 3-pack Ränder",
        "Socks 3-pack Stripes",
        99,
        0.12,
        colours=("Röd", "Blå", "Gul"),
        sizes=("S", "M"),
    ),
    _DemoProduct(
        "KL-2104",
        "Tröja Ölandsull",
        "Sweater Öland wool",
        749,
        0.4,
        colours=("Svart", "Grön"),
        sizes=("104", "116"),
        ean_prefix="735000220",
    ),
)


def _variant_links(colours: Sequence[str], sizes: Sequence[str]) -> list[list[int]]:
    if colours:
        return [[COLOUR_VALUE_IDS[colour], SIZE_VALUE_IDS[size]] for colour in colours for size in sizes]
    if sizes:
        return [[SIZE_VALUE_IDS[size]] for size in sizes]
    return [[]]


def _variant_sku(base: str, links: Sequence[int]) -> str:
    return "-".join([base, *(_SUFFIXES[value_id] for value_id in links)])


def _seed_demo_catalogue(state: SandboxState) -> None:
    backorder = state.stock_status_id("backorder")
    for index, demo in enumerate(_DEMO_PRODUCTS):
        created = SEED_EPOCH + timedelta(days=index + 1)
        variants = []
        for number, links in enumerate(_variant_links(demo.colours, demo.sizes)):
            quantity = 0 if demo.backorder else (index * 7 + number * 5) % 23
            variant: dict[str, Any] = {
                "sku": _variant_sku(demo.sku, links),
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

CREATED_STATUS_ID = 1
PICKING_STATUS_ID = 2
COMPLETED_STATUS_ID = 3
CANCELED_STATUS_ID = 4
PAID_STATUS_ID = 5
SHIPPED_STATUS_ID = 6
BACKORDERED_STATUS_ID = 7
KLARNA_PAYMENT_METHOD_ID = 1
INVOICE_PAYMENT_METHOD_ID = 2
SWISH_PAYMENT_METHOD_ID = 3
POSTNORD_SHIPPING_METHOD_ID = 1
DHL_SHIPPING_METHOD_ID = 2
PICKUP_SHIPPING_METHOD_ID = 3
POSTNORD_TRACKER_TYPE = 1
CURRENCY_RATES: dict[str, float] = {"SEK": 1.0, "EUR": 0.087, "NOK": 0.98}

_ORDER_STATUSES: tuple[tuple[str | None, bool, str, str], ...] = (
    ("created", True, "Mottagen", "Received"),
    ("picking", False, "Plockas", "Picking"),
    ("completed", True, "Levererad", "Completed"),
    ("canceled", True, "Makulerad", "Canceled"),
    (None, False, "Betald", "Paid"),
    (None, True, "Skickad", "Shipped"),
    (None, True, "Restnoterad", "Backordered"),
)


def _method_languages(sv: tuple[str, str, str], en: tuple[str, str, str]) -> list[dict[str, str]]:
    return [
        {"langCode": code, "name": name, "title": title, "shortDescription": description}
        for code, (name, title, description) in (("sv", sv), ("en", en))
    ]


def _seed_sales_setup(state: SandboxState) -> None:
    for id_code, should_send_email, name_sv, name_en in _ORDER_STATUSES:
        state.seed_order_status(id_code, should_send_email, {"sv": name_sv, "en": name_en})
    payment_methods = (
        (
            {
                "idCode": "klarna",
                "validForCountries": "selected",
                "validCountriesSelected": ["SE", "NO", "FI", "DE"],
                "languages": _method_languages(
                    ("Klarna Checkout", "Klarna", "Betala med kort, faktura eller delbetalning."),
                    ("Klarna Checkout", "Klarna", "Pay by card, invoice or instalments."),
                ),
            },
            True,
        ),
        (
            {
                "idCode": "invoice",
                "fee": 29.0,
                "validForCountries": "selected",
                "validCountriesSelected": ["SE"],
                "externalId": "FAKTURA30",
                "languages": _method_languages(
                    ("Faktura", "Faktura 30 dagar", "Betala mot faktura inom 30 dagar. Fakturaavgift 29 kr."),
                    ("Invoice", "Invoice 30 days", "Pay by invoice within 30 days. Invoice fee SEK 29."),
                ),
            },
            False,
        ),
        (
            {
                "idCode": "swish",
                "validForCountries": "selected",
                "validCountriesSelected": ["SE"],
                "languages": _method_languages(
                    ("Swish", "Swish", "Betala direkt med Swish i mobilen."),
                    ("Swish", "Swish", "Pay straight away with Swish on your phone."),
                ),
            },
            False,
        ),
    )
    for method, supports_processing in payment_methods:
        state.seed_payment_method(method, supports_processing=supports_processing)
    shipping_methods = (
        {
            "externalId": "PN-MYPACK",
            "freeShippingMinItemsSubtotal": 500.0,
            "languages": _method_languages(
                ("PostNord", "PostNord MyPack Collect", "Hämta ut paketet hos ditt postombud."),
                ("PostNord", "PostNord MyPack Collect", "Collect the parcel at your service point."),
            ),
        },
        {
            "externalId": "DHL-SP",
            "validForCountries": "all",
            "languages": _method_languages(
                ("DHL", "DHL Service Point", "Leverans till närmaste DHL-ombud."),
                ("DHL", "DHL Service Point", "Delivery to the nearest DHL service point."),
            ),
        },
        {
            "isClickAndCollect": True,
            "validForCountries": "selected",
            "validCountriesSelected": ["SE"],
            "languages": _method_languages(
                ("Hämta i butik", "Hämta i butik Göteborg", "Hämta på Östra Hamngatan 12, Göteborg."),
                ("Click and collect", "Collect in store Gothenburg", "Collect at Östra Hamngatan 12."),
            ),
        },
    )
    for shipping_method in shipping_methods:
        state.seed_shipping_method(shipping_method)
    for code, rate in CURRENCY_RATES.items():
        state.seed_currency(code, rate, 2)
    for tracker_type, carrier in enumerate(("PostNord", "DHL Freight", "DHL Express", "Bring", "DB Schenker"), 1):
        state.seed_tracking_type(tracker_type, carrier)
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
    state: SandboxState,
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
    state: SandboxState,
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


def _seed_demo_sales(state: SandboxState) -> None:
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


_NOUNS: tuple[tuple[str, str], ...] = (
    ("Tröja", "Sweater"),
    ("Byxor", "Trousers"),
    ("Klänning", "Dress"),
    ("Mössa", "Beanie"),
    ("Vante", "Mitten"),
    ("Docka", "Doll"),
    ("Pussel", "Puzzle"),
    ("Bil", "Car"),
    ("Båt", "Boat"),
    ("Kloss", "Block"),
    ("Björn", "Bear"),
    ("Älg", "Elk"),
)
_ADJECTIVES: tuple[tuple[str, str], ...] = (
    ("Mjuk", "Soft"),
    ("Blå", "Blue"),
    ("Grön", "Green"),
    ("Röd", "Red"),
    ("Lätt", "Light"),
    ("Varm", "Warm"),
    ("Små", "Small"),
    ("Stor", "Big"),
    ("Söt", "Cute"),
    ("Glad", "Happy"),
)


def generate_catalogue(
    n_products: int, seed: int = 0, two_axis_share: float = 0.3, one_axis_share: float = 0.3
) -> Iterator[dict[str, Any]]:
    """Yield ``n_products`` product bodies for ``POST /products`` (or ``SandboxState.add_product``).

    Deterministic for a given ``seed``; one product at a time, so a benchmark can stream a large
    catalogue. Shares pick how many products get Färg × Storlek variants (2–3 × 2–4), how many get
    Storlek only (3–5 sizes); the rest have one variant. Links use the attribute value ids every
    seed creates (``COLOUR_VALUE_IDS``/``SIZE_VALUE_IDS``); SKUs and EANs are unique per seed.
    """
    if n_products < 0 or not 0 <= two_axis_share <= 1 or not 0 <= one_axis_share <= 1:
        raise ValueError("n_products must be >= 0 and each share between 0 and 1")
    if two_axis_share + one_axis_share > 1:
        raise ValueError("two_axis_share + one_axis_share must not exceed 1")
    rng = random.Random(seed)
    colours = list(COLOUR_VALUE_IDS)
    for index in range(1, n_products + 1):
        roll = rng.random()
        if roll < two_axis_share:
            links = _variant_links(
                sorted(rng.sample(colours, rng.randint(2, 3)), key=colours.index),
                sorted(rng.sample(_CLOTHING_SIZES, rng.randint(2, 4)), key=_CLOTHING_SIZES.index),
            )
        elif roll < two_axis_share + one_axis_share:
            links = _variant_links(
                (), sorted(rng.sample(_CLOTHING_SIZES, rng.randint(3, 5)), key=_CLOTHING_SIZES.index)
            )
        else:
            links = [[]]
        noun_sv, noun_en = rng.choice(_NOUNS)
        adjective_sv, adjective_en = rng.choice(_ADJECTIVES)
        vat = rng.choices(("25", "12", "6"), weights=(90, 5, 5))[0]
        base_sku = f"G{seed}-{index:07d}"
        weight = round(rng.uniform(0.05, 2.5), 2)
        yield {
            "visibility": "visible",
            "defaultVatRate": vat,
            "languages": [
                {"langCode": "sv", "name": f"{adjective_sv} {noun_sv.lower()} {index}"},
                {"langCode": "en", "name": f"{adjective_en} {noun_en.lower()} {index}"},
            ],
            "variants": [
                {
                    "sku": _variant_sku(base_sku, variant_links),
                    "attributeValueLinks": variant_links,
                    "ean": ean13(f"7{seed % 100:02d}{index:07d}{number:02d}"),
                    "weightInKg": weight,
                    "stockQuantity": rng.randint(0, 50),
                    "isActive": rng.random() > 0.05,
                }
                for number, variant_links in enumerate(links)
            ],
        }
