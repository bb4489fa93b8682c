"""Pure mapping of Starweb products to Mamut article families (no I/O).

Two steps, so staging holds something a person can read: ``normalise_product`` turns the API's nested shapes
into a flat, stable record (what is staged and hashed), and ``family_from_record`` turns that record into the
Mamut rows. Only fields that are mapped go into the record, so an edit to an unmapped field (a description,
say) does not count as a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starmamut.mamut.articles import MamutArticle, MamutProductFamily


class MappingError(ValueError):
    """A record cannot be mapped; the message names the record and the field."""


@dataclass(frozen=True)
class AttributeValue:
    """One value of a shop-wide variant attribute, e.g. axis 'Färg', value 'Röd'."""

    attribute_id: int
    axis: str
    value: str


def children(parent: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """An included child collection, whether the API wrapped it in ``{"data": [...]}`` or not."""
    value = parent.get(key)
    if value is None:
        return []
    if isinstance(value, Mapping):
        value = value.get("data", [])
    if not isinstance(value, list | tuple) or not all(isinstance(item, Mapping) for item in value):
        raise MappingError(f"field '{key}': expected a list of objects, got {str(value)[:60]!r}")
    return list(value)


def language_name(languages: Iterable[Mapping[str, Any]], language: str) -> str | None:
    for entry in languages:
        if entry.get("langCode") == language:
            name = entry.get("name")
            return name.strip() if isinstance(name, str) and name.strip() else None
    return None


def normalise_product(
    product: Mapping[str, Any],
    variants: Iterable[Mapping[str, Any]],
    *,
    language: str,
    master_pricelist_id: int,
    shop_vat_rate: float,
    attribute_values: Mapping[int, AttributeValue],
) -> dict[str, Any]:
    """The staged record of one Starweb product and all its variants."""
    variant_records = []
    axes_by_id: dict[int, str] = {}
    for variant in variants:
        values = sorted(
            (
                attribute_values[value_id]
                for value_id in variant.get("attributeValueLinks") or []
                if value_id in attribute_values
            ),
            key=lambda value: value.attribute_id,
        )
        for value in values:
            axes_by_id[value.attribute_id] = value.axis
        master_price = next(
            (
                price.get("priceExVat")
                for price in children(variant, "prices")
                if price.get("pricelistId") == master_pricelist_id
            ),
            None,
        )
        variant_records.append(
            {
                "variant_id": variant.get("variantId"),
                "sku": variant.get("sku"),
                "ean": variant.get("ean") or None,
                "weight": variant.get("weightInKg"),
                "price": master_price,
                "active": variant.get("isActive") is not False,
                "values": {value.axis: value.value for value in values},
            }
        )
    vat_rate = product.get("defaultVatRate")
    if vat_rate not in (None, "") and (isinstance(vat_rate, bool) or not isinstance(vat_rate, int | float | str)):
        raise MappingError(f"field 'defaultVatRate': {vat_rate!r} is not a number")
    try:
        vat_rate = float(vat_rate) if vat_rate not in (None, "") else float(shop_vat_rate)
    except ValueError:
        raise MappingError(f"field 'defaultVatRate': {vat_rate!r} is not a number") from None
    return {
        "product_id": product["productId"],
        "name": language_name(children(product, "languages"), language),
        "vat_rate": vat_rate,
        "axes": [axes_by_id[attribute_id] for attribute_id in sorted(axes_by_id)],
        "variants": sorted(variant_records, key=lambda record: record["variant_id"] or 0),
    }


def content_hash(record: Mapping[str, Any]) -> str:
    """A stable digest of a staged record: equal records, equal hashes, whatever the key order."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def validation_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per variant in the shape the product checks expect."""
    return [
        {
            "row_key": f"{record['product_id']}:{variant['variant_id']}",
            "product_key": str(record["product_id"]),
            "sku": variant["sku"],
            "name": record["name"],
            "price": None if variant["price"] is None else float(variant["price"]),
            "vat_rate": record["vat_rate"],
            "axis_count": len(record["axes"]),
            "ean": variant["ean"],
        }
        for variant in record["variants"]
    ]


def family_from_record(
    record: Mapping[str, Any], *, vat_codes: Mapping[float, int], main_sku_template: str
) -> MamutProductFamily:
    """The Mamut rows for one validated product record."""
    product_id = record["product_id"]
    try:
        vat_code = vat_codes[float(record["vat_rate"])]
    except KeyError:
        raise MappingError(
            f"product {product_id}: field 'vat_rate': {record['vat_rate']} % has no Mamut VAT code in the config"
        ) from None
    variants = record["variants"]
    if not variants:
        raise MappingError(f"product {product_id}: field 'variants': a product needs at least one variant")
    name = record["name"]
    axes = list(record["axes"])
    if len(variants) == 1 and not axes:
        only = variants[0]
        return MamutProductFamily(main=_article(only, name=name, vat_code=vat_code))
    main = MamutArticle(
        sku=main_sku_template.format(product_id=product_id),
        name=name,
        vat_code=vat_code,
        inactive=not any(variant["active"] for variant in variants),
        variant_axes=_pair(axes),
    )
    return MamutProductFamily(
        main=main,
        variants=tuple(
            _article(
                variant,
                name=_variant_name(name, [variant["values"].get(axis) for axis in axes]),
                vat_code=vat_code,
                main_sku=main.sku,
                variant_values=_pair([variant["values"].get(axis) for axis in axes]),
            )
            for variant in variants
        ),
    )


def _article(variant: Mapping[str, Any], *, name: str, vat_code: int, **variant_fields: Any) -> MamutArticle:
    return MamutArticle(
        sku=variant["sku"],
        name=name,
        vat_code=vat_code,
        price_out=_decimal(variant["price"], "0.0001"),
        ean=variant["ean"],
        weight=_decimal(variant["weight"], "0.001"),
        inactive=not variant["active"],
        **variant_fields,
    )


def _variant_name(name: str, values: list[str | None]) -> str:
    shown = [value for value in values if value]
    return f"{name} ({', '.join(shown)})" if shown else name


def _pair(items: list[str | None]) -> tuple[str | None, str | None]:
    padded = [*items, None, None]
    return padded[0], padded[1]


def _decimal(value: Any, quantum: str) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal(quantum))
