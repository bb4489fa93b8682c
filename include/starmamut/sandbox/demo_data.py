"""Deterministic shop data: the "demo" and "empty" seeds, and a catalogue generator for benchmarks.

The demo shop ("Små Äventyr", a Swedish toy and children's clothing shop) exercises what the
integration must handle: names with å/ä/ö, single-variant products, one axis (Storlek), two axes
(Färg × Storlek), EANs on some variants, VAT 25/12/6, inactive variants, a hidden product, a
customer pricelist and a EUR pricelist with every variant priced, and stock at two locations.
All seeded timestamps are fixed in 2024, so anything a test writes is newer than the seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starmamut.sandbox.validation import SHOP_TIMEZONE

if TYPE_CHECKING:
    from starmamut.sandbox.state import SandboxState

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
    if seed == "demo":
        _seed_demo_catalogue(state)


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
    state.add_pricelist(
        {"name": "Återförsäljare", "parentPricelistId": MASTER_PRICELIST_ID, "isActive": True}
    )
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
    _DemoProduct(
        "LEK-1006", "Leksaksbil Amazon kombi", "Toy car Amazon estate", 129, 0.25, visibility="hidden"
    ),
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
