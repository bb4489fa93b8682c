"""Deterministic shop data: the seeds' literal data, the ids a seeded shop has, and a catalogue generator.

The literal data lives in JSON beside this module (``seed_data/``): ``shop.json`` (the shop's settings, VAT
rates, pricelists, stock statuses and locations, the Färg and Storlek attributes), ``sales_setup.json`` (order
statuses, payment and shipping methods, currencies, carriers) and ``demo_catalogue.json`` (the demo seed's
products). :mod:`starmamut_devtools.sandbox.seeds` writes them into a shop; this module only reads them, so it
depends on no part of the shop's state.

The demo shop ("Små Äventyr", a Swedish toy and children's clothing shop) exercises what the
integration must handle: names with å/ä/ö, single-variant products, one axis (Storlek), two axes
(Färg × Storlek), EANs on some variants, VAT 25/12/6, inactive variants, a hidden product, a
customer pricelist and a EUR pricelist with every variant priced, and stock at two locations.
Catalogue timestamps are fixed in 2024, so anything a test writes is newer than the seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from starmamut_devtools.sandbox.validation import SHOP_TIMEZONE

SEEDS: tuple[str, ...] = ("demo", "empty")

SEED_EPOCH = datetime(2024, 3, 1, 9, 0, tzinfo=SHOP_TIMEZONE)

SEED_DATA = Path(__file__).with_name("seed_data")


def seed_data(name: str) -> Any:
    """A fresh parse of ``seed_data/<name>.json``: the shop may keep and change what it is given."""
    return json.loads(_seed_text(name))


@cache
def _seed_text(name: str) -> str:
    return (SEED_DATA / f"{name}.json").read_text(encoding="utf-8")


# Attributes and their values in creation order (shop.json): value ids are assigned 1, 2, 3… across attributes
# in this order in a freshly seeded shop, Färg's first.
_COLOURS, _SIZES = ([value["sv"] for value in attribute["values"]] for attribute in seed_data("shop")["attributes"])
COLOUR_VALUE_IDS: dict[str, int] = {name: index + 1 for index, name in enumerate(_COLOURS)}
SIZE_VALUE_IDS: dict[str, int] = {name: len(COLOUR_VALUE_IDS) + index + 1 for index, name in enumerate(_SIZES)}
SKU_SUFFIXES: dict[int, str] = dict(
    enumerate((value["skuSuffix"] for attribute in seed_data("shop")["attributes"] for value in attribute["values"]), 1)
)
_CLOTHING_SIZES = ("86", "92", "98", "104", "110", "116", "122", "128")

MASTER_PRICELIST_ID = 1
RESELLER_PRICELIST_ID = 2
EURO_PRICELIST_ID = 3
WEB_STOCK_LOCATION_ID = 1
STORE_STOCK_LOCATION_ID = 2

DEMO_CLIENT_ID = "demo.starmamut"
DEMO_CLIENT_SECRET = "sandbox-secret"

# Ids in the order sales_setup.json creates them (seeds.py checks they have not drifted).
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
CURRENCY_RATES: dict[str, float] = {
    currency["code"]: currency["rate"] for currency in seed_data("sales_setup")["currencies"]
}


def ean13(twelve_digits: str) -> str:
    """Append the GS1 check digit to 12 digits, giving a valid EAN-13."""
    if len(twelve_digits) != 12 or not twelve_digits.isdigit():
        raise ValueError(f"an EAN-13 needs 12 digits before the check digit, got {twelve_digits!r}")
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(twelve_digits))
    return twelve_digits + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class DemoProduct:
    """One product of the demo catalogue: its variants are every Färg × Storlek (or Storlek) combination given;
    ``inactive`` lists variant positions created inactive, ``backorder`` gives every variant the backorder
    status and no stock."""

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


def demo_products() -> tuple[DemoProduct, ...]:
    """The demo seed's products (demo_catalogue.json), in creation order."""
    return tuple(
        DemoProduct(**{name: tuple(value) if isinstance(value, list) else value for name, value in product.items()})
        for product in seed_data("demo_catalogue")["products"]
    )


def variant_links(colours: Sequence[str], sizes: Sequence[str]) -> list[list[int]]:
    if colours:
        return [[COLOUR_VALUE_IDS[colour], SIZE_VALUE_IDS[size]] for colour in colours for size in sizes]
    if sizes:
        return [[SIZE_VALUE_IDS[size]] for size in sizes]
    return [[]]


def variant_sku(base: str, links: Sequence[int]) -> str:
    return "-".join([base, *(SKU_SUFFIXES[value_id] for value_id in links)])


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
            links = variant_links(
                sorted(rng.sample(colours, rng.randint(2, 3)), key=colours.index),
                sorted(rng.sample(_CLOTHING_SIZES, rng.randint(2, 4)), key=_CLOTHING_SIZES.index),
            )
        elif roll < two_axis_share + one_axis_share:
            links = variant_links((), sorted(rng.sample(_CLOTHING_SIZES, rng.randint(3, 5)), key=_CLOTHING_SIZES.index))
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
                    "sku": variant_sku(base_sku, variant_links),
                    "attributeValueLinks": variant_links,
                    "ean": ean13(f"7{seed % 100:02d}{index:07d}{number:02d}"),
                    "weightInKg": weight,
                    "stockQuantity": rng.randint(0, 50),
                    "isActive": rng.random() > 0.05,
                }
                for number, variant_links in enumerate(links)
            ],
        }
