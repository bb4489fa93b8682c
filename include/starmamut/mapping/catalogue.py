"""Pure mapping of Mamut article families to Starweb products (flow ``erp``): no I/O.

Three steps, so staging holds something a person can read and every write is explained:

1. ``normalise_family`` turns a Mamut family into a flat record in Mamut's own terms (article numbers,
   names, axis and value names): this is what is staged, hashed and validated.
2. ``desired_state`` turns a record into the :class:`ProductState` the shop should have, once the axis
   and value names are resolved to Starweb attribute value ids.
3. ``governed_state`` narrows the desired state to what the job may change on an existing product (the shop's
   ``field_owners``: fields the shop owns, and empty Mamut values, keep the shop's value); ``plan_requests``
   compares it with the current one (what was last pushed, or what the shop shows) and returns only the
   requests that change something; ``apply_request`` advances the current state by one successful request,
   so a partly failed product records exactly what reached the shop.

Prices and stock are not this mapping's business: a new variant gets no price (the shop starts it at 0)
and the price and stock jobs fill it in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from starmamut.config import MamutOwned, ProductFieldOwners
from starmamut.mamut.articles import MamutArticle, MamutProductFamily
from starmamut.mapping.products import children

# Starweb's limits on what this job writes (ProductLanguageModel.name, attribute and value names, sku).
PRODUCT_NAME_MAX_LENGTH = 150
ATTRIBUTE_NAME_MAX_LENGTH = 50
STARWEB_SKU_MAX_LENGTH = 40

Visibility = Literal["hidden", "visible"]
RequestKind = Literal["new_product", "product", "language", "variant", "new_variant", "attribute"]


@dataclass(frozen=True)
class VariantState:
    """One Starweb variant as far as this job governs it (``variant_id`` is None until it exists)."""

    sku: str
    variant_id: int | None = None
    ean: str | None = None
    weight: float | None = None
    active: bool = True
    links: tuple[int, ...] = ()  # attribute value ids, sorted


@dataclass(frozen=True)
class ProductState:
    """One Starweb product as far as this job governs it, its variants keyed by case-folded SKU.

    ``active`` is Mamut's side as last pushed (whether this job hid the product because its articles were
    deactivated); the shop has no such field, so a state read from the shop keeps the last pushed one.
    """

    product_id: int | None = None
    name: str | None = None
    vat_rate: float | None = None
    visibility: str | None = None  # in a desired state: None until governed_state decides it
    active: bool = True
    variants: dict[str, VariantState] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedRequest:
    """A write the shop needs, with what it is for (``sku`` names the variant of variant requests)."""

    kind: RequestKind
    method: str
    path: str
    body: dict[str, Any]
    sku: str | None = None

    def describe(self) -> str:
        return f"{self.method} {self.path} {json.dumps(self.body, ensure_ascii=False, sort_keys=True)}"


class MappingError(ValueError):
    """A record cannot be mapped; the message names the record and the field."""


def sku_key(sku: str) -> str:
    """Starweb compares SKUs without regard to letter case, so states are keyed by the folded SKU."""
    return sku.casefold()


def vat_rates_by_code(vat_codes: Mapping[float, int]) -> dict[int, float]:
    """The config maps rate → Mamut VAT code; reading Mamut needs the reverse."""
    return {code: float(rate) for rate, code in vat_codes.items()}


# ----------------------------------------------------------------------------------------------------- step 1


def normalise_family(family: MamutProductFamily, *, vat_rates: Mapping[int, float]) -> dict[str, Any]:
    """The staged record of one Mamut family: a single article is a product with one variant of its own sku.

    ``vat_rate`` is None when the article's VAT code has no rate in the config (validation reports it).
    Variants are sorted by sku, so the record (and its hash) does not depend on the order Mamut returns them.
    """
    main = family.main
    positions = [index for index, axis in enumerate(main.variant_axes) if axis and axis.strip()]
    axes = [str(main.variant_axes[index]).strip() for index in positions]
    if family.variants:
        variants = [
            _variant_record(variant, values=[variant.variant_values[index] for index in positions])
            for variant in sorted(family.variants, key=lambda article: article.sku)
        ]
        active = not main.inactive and any(variant["active"] for variant in variants)
    else:
        variants = [] if axes else [_variant_record(main, values=[])]
        active = not main.inactive
    return {
        "key": main.sku,
        "name": main.name.strip() if main.name else None,
        "vat_code": main.vat_code,
        "vat_rate": vat_rates.get(main.vat_code),
        "active": active,
        "axes": axes,
        "variants": variants,
    }


def _variant_record(article: MamutArticle, *, values: list[str | None]) -> dict[str, Any]:
    return {
        "sku": article.sku,
        "ean": article.ean.strip() if article.ean and article.ean.strip() else None,
        "weight": None if article.weight is None else str(article.weight),
        "active": not article.inactive,
        "values": [value.strip() if value and value.strip() else None for value in values],
    }


def validation_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per Starweb variant the record becomes, in the shape the catalogue checks expect."""
    axes = record["axes"]
    several = len(record["variants"]) > 1
    rows = []
    for index, variant in enumerate(record["variants"]):
        values = variant["values"]
        missing = [axis for axis, value in zip(axes, values, strict=True) if not value]
        if several and not axes:
            missing = ["(the main article names no variant axis)"]
        sku = variant["sku"]
        rows.append(
            {
                "row_key": f"{record['key']}#{index}",
                "product_key": record["key"],
                "sku": sku,
                "sku_folded": sku_key(sku) if isinstance(sku, str) else None,
                "name": record["name"],
                "vat_code": record["vat_code"],
                "ean": variant["ean"],
                "weight": None if variant["weight"] is None else float(variant["weight"]),
                "missing_axes": ", ".join(missing) or None,
                "combination": "|".join([record["key"], *(value or "" for value in values)]) if axes else None,
                "axis_1": axes[0] if len(axes) > 0 else None,
                "axis_2": axes[1] if len(axes) > 1 else None,
                "value_1": values[0] if len(values) > 0 else None,
                "value_2": values[1] if len(values) > 1 else None,
            }
        )
    return rows


def structure_problems(record: Mapping[str, Any]) -> list[str]:
    """Why a record cannot become a Starweb product at all (checked beside the row checks)."""
    if not record["variants"]:
        axes = " × ".join(record["axes"])
        return [f"main article {record['key']} names variant axes ({axes}) but has no variants to sell"]
    return []


# ----------------------------------------------------------------------------------------------------- step 2


def axis_values(record: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The (axis, value) names a record links its variants to."""
    return {
        (axis, value)
        for variant in record["variants"]
        for axis, value in zip(record["axes"], variant["values"], strict=True)
        if value
    }


def desired_state(record: Mapping[str, Any], *, value_ids: Mapping[tuple[str, str], int]) -> ProductState:
    """What the shop should show for a validated record, attribute values resolved to their ids."""
    if record["vat_rate"] is None:
        raise MappingError(
            f"family {record['key']}: field 'vat_code': VAT code {record['vat_code']} has no rate in the config"
        )
    variants = {}
    for variant in record["variants"]:
        try:
            links = tuple(
                sorted(
                    value_ids[(axis, value)]
                    for axis, value in zip(record["axes"], variant["values"], strict=True)
                    if value
                )
            )
        except KeyError as missing:
            raise MappingError(
                f"family {record['key']}: variant {variant['sku']}: field 'values': "
                f"no Starweb attribute value for {missing.args[0]}"
            ) from None
        variants[sku_key(variant["sku"])] = VariantState(
            sku=variant["sku"],
            ean=variant["ean"],
            weight=None if variant["weight"] is None else float(Decimal(variant["weight"])),
            active=variant["active"],
            links=links,
        )
    return ProductState(
        name=record["name"], vat_rate=float(record["vat_rate"]), active=record["active"], variants=variants
    )


# ----------------------------------------------------------------------------------------------------- step 3


def create_request(desired: ProductState, *, language: str, visibility: Visibility) -> PlannedRequest:
    """``POST /products`` with the product's name, VAT rate and every variant inline."""
    body: dict[str, Any] = {
        "visibility": visibility if desired.active else "hidden",
        "defaultVatRate": vat_rate_text(desired.vat_rate),
        "languages": [{"langCode": language, "name": desired.name}],
        "variants": [_variant_body(variant, new=True) for variant in desired.variants.values()],
    }
    return PlannedRequest("new_product", "POST", "/products", body)


def governed_state(
    desired: ProductState, current: ProductState, *, owners: ProductFieldOwners, default_visibility: Visibility
) -> ProductState:
    """What the job may make of ``current``, an existing product: ``desired`` with each field the shop owns, and
    each empty Mamut value that must not clear the shop's (``mamut_if_set``), kept as ``current`` has it.

    Visibility, when Mamut owns it: hidden while every article is inactive, shown as a new product would be
    once one is active again, else as the shop has it (an owner may hide an active product). A family without
    axes (a single article) leaves a variant's attribute links as they are. A variant the product lacks is new
    and takes every value Mamut has.
    """
    if owners.visibility == "shop":
        visibility = current.visibility
    elif not desired.active:
        visibility = "hidden"
    elif not current.active:
        visibility = default_visibility
    else:
        visibility = current.visibility
    variants = {}
    for key, variant in desired.variants.items():
        shop = current.variants.get(key)
        variants[key] = (
            variant
            if shop is None
            else replace(
                variant,
                sku=shop.sku if owners.sku_case == "shop" else variant.sku,
                ean=_owned(variant.ean, shop.ean, owners.ean),
                weight=_owned(variant.weight, shop.weight, owners.weight),
                active=shop.active if owners.variant_active == "shop" else variant.active,
                links=variant.links or shop.links,
            )
        )
    name = current.name if owners.name == "shop" and current.name is not None else desired.name
    return replace(desired, name=name, visibility=visibility, variants=variants)


def _owned(mamut: Any, shop: Any, owner: MamutOwned) -> Any:
    """The value to aim for: Mamut's, unless the shop owns the field or Mamut's is empty under ``mamut_if_set``."""
    return shop if owner == "shop" or (owner == "mamut_if_set" and not mamut) else mamut


def plan_requests(
    desired: ProductState,
    current: ProductState,
    *,
    language: str,
    retired: Iterable[str] = (),
) -> list[PlannedRequest]:
    """The requests that turn ``current`` into ``desired`` (a :func:`governed_state`) for an existing product,
    and nothing else.

    ``retired`` are the folded SKUs this job once pushed for the family and Mamut no longer lists: they are
    deactivated, never deleted. Variants of the shop's own that Mamut never had are left alone.
    """
    if current.product_id is None:
        raise ValueError("plan_requests needs the current state of an existing product; use create_request")
    product_path = f"/products/{current.product_id}"
    requests: list[PlannedRequest] = []
    product_fields: dict[str, Any] = {}
    if current.vat_rate != desired.vat_rate:
        product_fields["defaultVatRate"] = vat_rate_text(desired.vat_rate)
    if desired.visibility is not None and desired.visibility != current.visibility:
        product_fields["visibility"] = desired.visibility
    if "visibility" in product_fields and current.visibility == "pricelists":
        product_fields["visibilityPricelistIds"] = []  # Starweb allows the list only with "pricelists"
    if product_fields:
        requests.append(PlannedRequest("product", "PATCH", product_path, product_fields))
    if desired.name != current.name:
        # PATCH keeps the descriptions the shop wrote; PUT creates a language the product lacks.
        method = "PUT" if current.name is None else "PATCH"
        requests.append(
            PlannedRequest(
                "language", method, f"{product_path}/languages/{language}", {"langCode": language, "name": desired.name}
            )
        )
    for key, variant in desired.variants.items():
        existing = current.variants.get(key)
        if existing is None or existing.variant_id is None:
            requests.append(
                PlannedRequest(
                    "new_variant", "POST", f"{product_path}/variants", _variant_body(variant, new=True), sku=variant.sku
                )
            )
            continue
        changes = _variant_changes(variant, existing)
        if changes:
            requests.append(
                PlannedRequest(
                    "variant", "PATCH", f"{product_path}/variants/{existing.variant_id}", changes, sku=variant.sku
                )
            )
    for key in retired:
        existing = current.variants.get(key)
        if key not in desired.variants and existing is not None and existing.variant_id is not None and existing.active:
            requests.append(
                PlannedRequest(
                    "variant",
                    "PATCH",
                    f"{product_path}/variants/{existing.variant_id}",
                    {"isActive": False},
                    sku=existing.sku,
                )
            )
    return requests


def apply_request(
    current: ProductState, desired: ProductState, request: PlannedRequest, response: Mapping[str, Any]
) -> ProductState:
    """The state after ``request`` succeeded with ``response`` (the ``data`` of Starweb's answer)."""
    if request.kind == "new_product":
        ids = {sku_key(variant["sku"]): variant["variantId"] for variant in children(response, "variants")}
        return replace(
            desired,
            product_id=response["productId"],
            visibility=request.body["visibility"],
            variants={key: replace(variant, variant_id=ids.get(key)) for key, variant in desired.variants.items()},
        )
    if request.kind == "product":
        return replace(
            current, vat_rate=desired.vat_rate, visibility=request.body.get("visibility", current.visibility)
        )
    if request.kind == "language":
        return replace(current, name=desired.name)
    assert request.sku is not None
    key = sku_key(request.sku)
    variants = dict(current.variants)
    if request.kind == "new_variant":
        variants[key] = replace(desired.variants[key], variant_id=response["variantId"])
    elif key in desired.variants:
        variants[key] = replace(desired.variants[key], variant_id=current.variants[key].variant_id)
    else:
        variants[key] = replace(current.variants[key], active=False)
    return replace(current, variants=variants)


def settled_state(current: ProductState, desired: ProductState, retired: Iterable[str]) -> ProductState:
    """What to remember once every planned request succeeded: the family's variants (retired ones
    included, so they stay deactivated) and no variant of the shop's own."""
    keep = {key for key in (*desired.variants, *retired) if key in current.variants}
    return replace(current, active=desired.active, variants={key: current.variants[key] for key in sorted(keep)})


def _variant_body(variant: VariantState, *, new: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"sku": variant.sku, "attributeValueLinks": list(variant.links), "isActive": variant.active}
    if variant.ean is not None:
        body["ean"] = variant.ean
    if variant.weight is not None:
        body["weightInKg"] = variant.weight
    return body


def _variant_changes(desired: VariantState, current: VariantState) -> dict[str, Any]:
    """The PATCH body for the fields that differ. The spec's PATCH model has no nullable fields, so an EAN or
    weight Mamut owns outright (``field_owners``) is cleared as "" and 0 (both read back as "none")."""
    changes: dict[str, Any] = {}
    if desired.sku != current.sku:
        changes["sku"] = desired.sku
    if desired.ean != current.ean:
        changes["ean"] = desired.ean or ""
    if desired.weight != current.weight:
        changes["weightInKg"] = desired.weight or 0
    if desired.active != current.active:
        changes["isActive"] = desired.active
    if desired.links != current.links:
        changes["attributeValueLinks"] = list(desired.links)
    return changes


def vat_rate_text(rate: float | None) -> str | None:
    """Starweb's ``defaultVatRate`` is a string: 25 rather than 25.0."""
    return None if rate is None else f"{rate:g}"


# ----------------------------------------------------------------------------------------------------- reading


def live_variant(variant: Mapping[str, Any]) -> VariantState:
    """A Starweb variant as a state; an empty EAN and a zero weight mean "none", as this job writes them."""
    weight = variant.get("weightInKg")
    return VariantState(
        sku=variant["sku"],
        variant_id=variant["variantId"],
        ean=variant.get("ean") or None,
        weight=float(weight) if weight else None,
        active=variant.get("isActive") is not False,
        links=tuple(sorted(variant.get("attributeValueLinks") or ())),
    )


def live_state(
    product: Mapping[str, Any], variants: Iterable[Mapping[str, Any]], *, name: str | None, active: bool
) -> ProductState:
    """A product as the shop shows it now; ``active`` is carried over from what was last pushed."""
    rate = product.get("defaultVatRate")
    states = (live_variant(variant) for variant in variants)
    return ProductState(
        product_id=product["productId"],
        name=name,
        vat_rate=float(rate) if rate not in (None, "") else None,
        visibility=product.get("visibility"),
        active=active,
        variants={sku_key(state.sku): state for state in states},
    )


def state_to_json(state: ProductState) -> str:
    """The ledger's text for a state (what was last pushed), stable for equal states."""
    return json.dumps(
        {
            "product_id": state.product_id,
            "name": state.name,
            "vat_rate": state.vat_rate,
            "visibility": state.visibility,
            "active": state.active,
            "variants": [
                {
                    "sku": v.sku,
                    "variant_id": v.variant_id,
                    "ean": v.ean,
                    "weight": v.weight,
                    "active": v.active,
                    "links": list(v.links),
                }
                for v in state.variants.values()
            ],
        },
        ensure_ascii=False,
        sort_keys=True,
    )


def state_from_json(text: str) -> ProductState:
    data = json.loads(text)
    variants = (
        VariantState(
            sku=v["sku"],
            variant_id=v["variant_id"],
            ean=v["ean"],
            weight=v["weight"],
            active=v["active"],
            links=tuple(v["links"]),
        )
        for v in data["variants"]
    )
    return ProductState(
        product_id=data["product_id"],
        name=data["name"],
        vat_rate=data["vat_rate"],
        visibility=data["visibility"],
        active=data["active"],
        variants={sku_key(v.sku): v for v in variants},
    )
