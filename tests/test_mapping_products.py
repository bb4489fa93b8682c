"""Starweb product → staged record → Mamut article family, as pure functions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from starmamut.mapping.products import (
    AttributeValue,
    MappingError,
    content_hash,
    family_from_record,
    normalise_product,
    validation_rows,
)

VALUES = {
    11: AttributeValue(attribute_id=1, axis="Färg", value="Röd"),
    12: AttributeValue(attribute_id=1, axis="Färg", value="Blå"),
    21: AttributeValue(attribute_id=2, axis="Storlek", value="M"),
}
VAT_CODES = {25.0: 1, 12.0: 2, 6.0: 3}


def product(**fields):
    return {
        "productId": 7,
        "defaultVatRate": "25",
        "hasSeveralVariants": True,
        "languages": {"data": [{"langCode": "en", "name": "T-shirt"}, {"langCode": "sv", "name": "Tröja åäö"}]},
        **fields,
    }


def variant(variant_id, sku, links, price, **fields):
    return {
        "variantId": variant_id,
        "sku": sku,
        "attributeValueLinks": links,
        "isActive": True,
        "prices": [{"pricelistId": 1, "priceExVat": price}, {"pricelistId": 2, "priceExVat": price / 2}],
        **fields,
    }


def normalise(prod, variants, **kwargs):
    return normalise_product(
        prod, variants, language="sv", master_pricelist_id=1, shop_vat_rate=25.0, attribute_values=VALUES, **kwargs
    )


def test_two_axis_product_becomes_main_plus_variants() -> None:
    record = normalise(
        product(),
        [
            variant(2, "TR-BLA-M", [21, 12], 99.5, ean="7350000000019"),
            variant(1, "TR-ROD-M", [11, 21], 100.0, isActive=False),
        ],
    )
    assert record["name"] == "Tröja åäö"
    assert record["axes"] == ["Färg", "Storlek"]
    assert [v["sku"] for v in record["variants"]] == ["TR-ROD-M", "TR-BLA-M"]
    family = family_from_record(record, vat_codes=VAT_CODES, main_sku_template="SW-{product_id}")
    assert family.main.sku == "SW-7"
    assert family.main.variant_axes == ("Färg", "Storlek")
    assert family.main.inactive is False
    red, blue = family.variants
    assert (red.sku, red.main_sku, red.variant_values, red.inactive) == ("TR-ROD-M", "SW-7", ("Röd", "M"), True)
    assert red.name == "Tröja åäö (Röd, M)"
    assert blue.price_out == Decimal("99.5000") and blue.ean == "7350000000019" and blue.vat_code == 1


def test_single_variant_product_is_one_article_with_the_variant_sku() -> None:
    record = normalise(
        product(hasSeveralVariants=False, defaultVatRate=None), [variant(5, "BOK-1", [], 149.0, weightInKg=0.45)]
    )
    family = family_from_record(record, vat_codes=VAT_CODES, main_sku_template="SW-{product_id}")
    assert family.variants == ()
    assert family.main.sku == "BOK-1"
    assert family.main.weight == Decimal("0.450")
    assert record["vat_rate"] == 25.0  # null defaultVatRate falls back to the shop's rate


def test_validation_rows_carry_axis_count_and_master_price() -> None:
    record = normalise(product(), [variant(1, "A", [11, 21], 10.0)])
    assert validation_rows(record) == [
        {
            "row_key": "7:1",
            "product_key": "7",
            "sku": "A",
            "name": "Tröja åäö",
            "price": 10.0,
            "vat_rate": 25.0,
            "axis_count": 2,
            "ean": None,
        }
    ]


def test_missing_shop_language_name_is_none_for_the_checks() -> None:
    record = normalise(
        product(languages={"data": [{"langCode": "en", "name": "Only English"}]}), [variant(1, "A", [], 1.0)]
    )
    assert record["name"] is None


def test_content_hash_ignores_key_order_and_unmapped_fields() -> None:
    first = normalise(product(), [variant(1, "A", [11], 10.0)])
    second = normalise(
        product(moreInfoUrl="https://example.org", modifiedAt="2026-11-27T10:00:00+01:00"),
        [variant(1, "A", [11], 10.0, mpn="X")],
    )
    assert content_hash(first) == content_hash(dict(reversed(list(second.items()))))
    changed = normalise(product(), [variant(1, "A", [11], 10.5)])
    assert content_hash(changed) != content_hash(first)


def test_unknown_vat_rate_names_product_and_field() -> None:
    record = normalise(product(defaultVatRate="21"), [variant(1, "A", [], 1.0)])
    with pytest.raises(MappingError, match=r"product 7: field 'vat_rate': 21.0 %"):
        family_from_record(record, vat_codes=VAT_CODES, main_sku_template="SW-{product_id}")
