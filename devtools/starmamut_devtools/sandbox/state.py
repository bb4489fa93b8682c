"""The sandbox shop's data and every rule that governs writing it, behind one lock.

This module holds the shop set-up and the catalogue; orders, customers, order statuses and the
payment/shipping/currency lookups live in :mod:`starmamut_devtools.sandbox.sales_state`, mixed into
:class:`ShopState` so that one object (one lock, one clock) is the whole shop. The shop starts empty: the seeds
and :class:`~starmamut_devtools.sandbox.seeds.SandboxState`, the shop that loads one, live in
:mod:`starmamut_devtools.sandbox.seeds`.

HTTP handlers and tests go through the same public methods, so a product a test adds with
``add_product`` is checked, stored and timestamped exactly as one POSTed to ``/products``.
Methods take and return JSON-shaped dicts in the spec's field names; validation failures raise
:class:`~starmamut_devtools.sandbox.errors.ApiError` (400/403/404) before anything is changed.

Modelling choices (where the spec is silent; each is inferred, not documented by Starweb):

* Every variant has a price row in every pricelist (``priceExVat`` 0 until set), so PUT and PATCH
  of ``/prices/{pricelistId}`` always address an existing row; an unknown pricelist is a 404.
* A variant's ``stockQuantity``/``stockStatusId`` *are* its stock at the e-commerce stock location
  ("Webblager"): writing either view changes the other. Other locations hold stock only after a PUT.
* When a write changes a quantity without naming ``stockStatusId``, the status follows the stock
  rules: quantity > 0 gives the ``inStock`` status; quantity <= 0 moves an in-stock status to its
  ``stockoutNewStatusId`` (else ``outOfStock``) and leaves other statuses (e.g. backorder) alone.
* SKUs are unique across the shop, compared case-insensitively (as a MySQL collation would).
* ``updatedSince``/``createdSince`` are inclusive and compare at whole seconds, the precision of
  the timestamps the API returns.
* POST and PUT of a product answer with all its variants under ``variants.data`` (so the caller
  learns the new variant ids); PATCH answers with the bare product. PUT resets the product's own
  fields to their defaults where omitted and replaces ``languages``/``vatRates``/``variants`` only
  when given (variants matched by SKU: kept ids for known SKUs, new ones created, the rest deleted).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starmamut_devtools.sandbox.errors import ApiError, bad_request, forbidden, not_found
from starmamut_devtools.sandbox.paging import Page
from starmamut_devtools.sandbox.sales_state import (
    FIRST_CUSTOMER_ID,
    FIRST_ORDER_ID,
    CustomerQuery,
    OrderQuery,
    SalesState,
    StatusChange,
)
from starmamut_devtools.sandbox.validation import (
    EXTERNAL_ID_RULES,
    SHOP_TIMEZONE,
    FieldRule,
    check_decimal_string,
    check_fields,
    check_list_of_objects,
    format_timestamp,
    parse_timestamp,
)

LANG_CODES: tuple[str, ...] = ("sv", "en", "ar", "no", "da", "fi", "de", "fr", "es")

PRODUCT_INCLUDES = frozenset(
    {"languages", "vatRates", "primaryVariant", "primaryVariant.prices", "primaryVariant.attributeValues"}
)
VARIANT_INCLUDES = frozenset({"prices", "attributeValues", "attributeValues.attribute"})
ATTRIBUTE_VALUE_INCLUDES = frozenset({"attribute"})

_PRODUCT_RULES: dict[str, FieldRule] = {
    **EXTERNAL_ID_RULES,
    "createdAt": FieldRule("str"),
    "defaultVatRate": FieldRule("str", nullable=True),
    "visibility": FieldRule("str", choices=("hidden", "visible", "pricelists")),
    "visibilityPricelistIds": FieldRule("int_list", nullable=True),
    "moreInfoUrl": FieldRule("str", nullable=True, max_length=255),
    "manufacturerId": FieldRule("int", nullable=True),
    "unitId": FieldRule("int", nullable=True),
    "sortIndex": FieldRule("int", nullable=True, minimum=1, maximum=10000),
    "type": FieldRule("str", choices=("basic", "bundle")),
    "isBackInStockWatchable": FieldRule("bool"),
    "bundleUseManualPrice": FieldRule("bool", nullable=True),
    "accounting": FieldRule("int", nullable=True, minimum=100, maximum=9999),
    "variants": FieldRule("list"),
    "bundledProducts": FieldRule("list", nullable=True),
    "mediaFiles": FieldRule("list"),
    "languages": FieldRule("list"),
    "vatRates": FieldRule("list"),
    "categories": FieldRule("list"),
    "metaData": FieldRule("list"),
}
_PRODUCT_PATCH_RULES = {name: rule for name, rule in _PRODUCT_RULES.items() if name != "variants"}
_PRODUCT_CHILDREN = ("variants", "languages", "vatRates")
_UNSUPPORTED_PRODUCT_CHILDREN = ("bundledProducts", "mediaFiles", "categories", "metaData")
_PRODUCT_DEFAULTS: dict[str, Any] = {
    "externalId": None,
    "externalIdType": None,
    "defaultVatRate": None,
    "visibility": "hidden",
    "visibilityPricelistIds": [],
    "moreInfoUrl": "",
    "manufacturerId": None,
    "unitId": None,
    "sortIndex": None,
    "type": "basic",
    "isBackInStockWatchable": True,
    "accounting": None,
}

_VARIANT_RULES: dict[str, FieldRule] = {
    "sku": FieldRule("str", min_length=1, max_length=40),
    **EXTERNAL_ID_RULES,
    "isActive": FieldRule("bool", nullable=True),
    "sortIndex": FieldRule("int", nullable=True),
    "stockStatusId": FieldRule("int", nullable=True),
    "stockQuantity": FieldRule("int", nullable=True, minimum=-100_000_000, maximum=100_000_000),
    "weightInKg": FieldRule("num", nullable=True, minimum=0),
    "costPrice": FieldRule("str", nullable=True),
    "ean": FieldRule("str", nullable=True, max_length=20),
    "mpn": FieldRule("str", nullable=True, max_length=40),
    "imageFileId": FieldRule("int", nullable=True),
    "attributeValueLinks": FieldRule("int_list", nullable=True),
    "volumePricingInheritancePricelistIds": FieldRule("int_list", nullable=True),
}
_VARIANT_DEFAULTS: dict[str, Any] = {
    "externalId": None,
    "externalIdType": None,
    "isActive": True,
    "sortIndex": None,
    "weightInKg": None,
    "costPrice": None,
    "ean": None,
    "mpn": None,
    "imageFileId": None,
    "attributeValueLinks": [],
    "volumePricingInheritancePricelistIds": None,
}
_VARIANT_STOCK_FIELDS = ("stockStatusId", "stockQuantity")

_LANGUAGE_RULES: dict[str, FieldRule] = {
    "langCode": FieldRule("str", choices=LANG_CODES),
    "name": FieldRule("str", min_length=1, max_length=150),
    "shortDescription": FieldRule("str", max_length=65535),
    "longDescription": FieldRule("str", max_length=65535),
    "permalink": FieldRule("str", max_length=128),
    "pageTitle": FieldRule("str", max_length=90),
    "pageMetaDescription": FieldRule("str", max_length=278),
}
_LANGUAGE_TEXT_FIELDS = ("shortDescription", "longDescription", "pageTitle", "pageMetaDescription")

_VAT_RATE_RULES: dict[str, FieldRule] = {
    "countryCode": FieldRule("str", pattern="[A-Z]{2}"),
    "vatRate": FieldRule("num", minimum=0, maximum=100),
}

_PRICE_RULES: dict[str, FieldRule] = {
    "pricelistId": FieldRule("int"),
    "externalId": FieldRule("str", nullable=True, max_length=40),
    "externalIdType": FieldRule("str", nullable=True, max_length=255),
    "priceExVat": FieldRule("num", minimum=0),
    "specialPriceExVat": FieldRule("num", nullable=True, minimum=0),
}
_VOLUME_PRICE_RULES: dict[str, FieldRule] = {
    "pricelistId": FieldRule("int"),
    "quantity": FieldRule("num", minimum=2),
    "priceExVat": FieldRule("num", minimum=0),
}
_PRICE_DEFAULTS: dict[str, Any] = {
    "externalId": None,
    "externalIdType": None,
    "priceExVat": 0.0,
    "specialPriceExVat": None,
}

_STOCK_RULES: dict[str, FieldRule] = {
    "stockStatusId": FieldRule("int"),
    "stockQuantity": FieldRule("num", minimum=-100_000_000, maximum=100_000_000),
    "shelfSpace": FieldRule("str", max_length=255),
}

_PRICELIST_RULES: dict[str, FieldRule] = {
    "name": FieldRule("str", min_length=1, max_length=30),
    **EXTERNAL_ID_RULES,
    "currencyCode": FieldRule("str", pattern="[A-Z]{3}"),
    "parentPricelistId": FieldRule("int"),
    "isActive": FieldRule("bool"),
    "region": FieldRule("str", choices=("all", "EU", "non-EU", "selected")),
    "countryCodes": FieldRule("str", pattern="([a-zA-Z]{2})(,[a-zA-Z]{2})*"),
    "pricesInclVatByDefault": FieldRule("bool"),
    "inputAdminProductPricesInclVat": FieldRule("bool"),
}

_NAME_LANGUAGE_RULES: dict[str, FieldRule] = {
    "langCode": FieldRule("str", choices=LANG_CODES),
    "name": FieldRule("str", min_length=1, max_length=50),
}
_ATTRIBUTE_RULES: dict[str, FieldRule] = {**EXTERNAL_ID_RULES, "languages": FieldRule("list")}
_ATTRIBUTE_VALUE_RULES: dict[str, FieldRule] = {
    **EXTERNAL_ID_RULES,
    "skuSuffix": FieldRule("str", max_length=40),
    "sortIndex": FieldRule("int", minimum=0),
    "languages": FieldRule("list"),
}


def _stockholm_now() -> datetime:
    return datetime.now(SHOP_TIMEZONE).replace(microsecond=0)


@dataclass
class _Variant:
    variant_id: int
    fields: dict[str, Any]
    prices: dict[int, dict[str, Any]] = field(default_factory=dict)
    volume_prices: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # pricelist -> breaks
    stocks: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Product:
    product_id: int
    fields: dict[str, Any]
    created_at: datetime
    modified_at: datetime
    languages: dict[str, dict[str, Any]] = field(default_factory=dict)
    vat_rates: dict[str, float] = field(default_factory=dict)
    variants: dict[int, _Variant] = field(default_factory=dict)


@dataclass(frozen=True)
class ProductQuery:
    """The filters, sorting and includes of ``GET /products``."""

    page: int = 1
    created_since: datetime | None = None
    updated_since: datetime | None = None
    filter_sku: str | None = None
    filter_visible: bool | None = None
    descending: bool = False
    includes: frozenset[str] = frozenset()


def slugify(text: str) -> str:
    """A permalink the way shops build them: lower case, å/ä→a, ö→o, other runs of symbols → '-'."""
    folded = text.lower().translate(str.maketrans({"å": "a", "ä": "a", "ö": "o", "é": "e", "ü": "u"}))
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:128]


class ShopState(SalesState):
    """The shop: settings, pricelists, stock setup, attributes, the catalogue, and (mixed in) sales. Thread-safe.

    It starts empty; :class:`~starmamut_devtools.sandbox.seeds.SandboxState` is this shop with a seed loaded.
    """

    def __init__(self, *, per_page: int = 100, clock: Callable[[], datetime] | None = None):
        self._lock = threading.RLock()
        self.per_page = per_page
        self.clock: Callable[[], datetime] = clock or _stockholm_now
        self.clear()

    # ------------------------------------------------------------------ set-up

    def clear(self) -> None:
        """Drop everything: no settings, no catalogue, no sales (a seed fills the shop again)."""
        with self._lock:
            self._shop: dict[str, Any] = {}
            self._vat_rates: dict[str, dict[str, Any]] = {}
            self._pricelists: dict[int, dict[str, Any]] = {}
            self._stock_statuses: dict[int, dict[str, Any]] = {}
            self._stock_locations: dict[int, dict[str, Any]] = {}
            self._attributes: dict[int, dict[str, Any]] = {}
            self._attribute_values: dict[int, dict[str, Any]] = {}
            self._products: dict[int, _Product] = {}
            self._sku_index: dict[str, tuple[int, int]] = {}
            self._ids: dict[str, Iterator[int]] = {
                "order": itertools.count(FIRST_ORDER_ID),
                "customer": itertools.count(FIRST_CUSTOMER_ID),
            }
            self._reset_sales()

    def _next_id(self, entity: str) -> int:
        return next(self._ids.setdefault(entity, itertools.count(1)))

    def _page(self, matching: Sequence[Any], page: int, render: Callable[[Any], dict[str, Any]]) -> Page:
        """Cut page ``page`` of ``per_page`` from the filtered, sorted ``matching`` and render only that page."""
        start = (page - 1) * self.per_page
        items = [render(entity) for entity in matching[start : start + self.per_page]]
        total = len(matching)
        return Page(
            items=items,
            pagination={
                "current_page": page,
                "per_page": self.per_page,
                "total": total,
                "count": len(items),
                "total_pages": max(1, -(-total // self.per_page)),
            },
        )

    def seed_shop(self, shop: dict[str, Any]) -> None:
        """Set the ``/shop`` resource (read-only over the API)."""
        with self._lock:
            self._shop = dict(shop)

    def seed_vat_rate(self, vat_rate: dict[str, Any]) -> None:
        """Add a country to ``/vat-rates`` (read-only over the API)."""
        with self._lock:
            self._vat_rates[vat_rate["countryCode"]] = dict(vat_rate)

    def seed_stock_status(self, status: dict[str, Any]) -> int:
        """Add a stock status (``idCode``, ``inStock``, ``productBuyable``, ``languages``); returns its id."""
        with self._lock:
            status_id = self._next_id("stock_status")
            self._stock_statuses[status_id] = {
                "idCode": status.get("idCode"),
                "sortIndex": status.get("sortIndex", status_id),
                "stockoutNewStatusId": status.get("stockoutNewStatusId"),
                "productBuyable": status.get("productBuyable", True),
                "inStock": status.get("inStock", False),
                "languages": [dict(language) for language in status.get("languages", [])],
            }
            return status_id

    def set_stockout_status(self, status_id: int, stockout_status_id: int) -> None:
        """Link a status to the one it turns into when stock runs out (both must exist)."""
        with self._lock:
            self._require(self._stock_statuses, status_id, "stock status")
            self._require(self._stock_statuses, stockout_status_id, "stock status")
            self._stock_statuses[status_id]["stockoutNewStatusId"] = stockout_status_id

    def seed_stock_location(self, location: dict[str, Any]) -> int:
        """Add a stock location; exactly one may have ``ecommerceStockLocation`` true. Returns its id."""
        with self._lock:
            if location.get("ecommerceStockLocation") and self._ecommerce_location_id(required=False):
                raise bad_request("stock location: only one location can be the e-commerce stock location")
            location_id = self._next_id("stock_location")
            self._stock_locations[location_id] = {
                "externalId": location.get("externalId"),
                "externalIdType": location.get("externalIdType"),
                "visibility": location.get("visibility", "show_if_in_stock"),
                "sortIndex": location.get("sortIndex", location_id),
                "ecommerceStockLocation": bool(location.get("ecommerceStockLocation", False)),
                "languages": [dict(language) for language in location.get("languages", [])],
            }
            return location_id

    # ------------------------------------------------------------------ shop-wide reads

    def shop(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._shop, activeLangCodes=list(self._shop.get("activeLangCodes", [])))

    def vat_rates(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(rate) for rate in self._vat_rates.values()]

    def vat_rate(self, country_code: str) -> dict[str, Any]:
        with self._lock:
            rate = self._vat_rates.get(country_code.upper())
            if rate is None:
                raise not_found(f"no VAT rates for country {country_code!r}")
            return dict(rate)

    def stock_statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_stock_status(status_id) for status_id in self._stock_statuses]

    def stock_status(self, status_id: int) -> dict[str, Any]:
        with self._lock:
            self._require(self._stock_statuses, status_id, "stock status")
            return self._render_stock_status(status_id)

    def stock_status_id(self, id_code: str) -> int:
        """The id of the standard status with this ``idCode`` (e.g. ``inStock``)."""
        with self._lock:
            for status_id, status in self._stock_statuses.items():
                if status["idCode"] == id_code:
                    return status_id
            raise not_found(f"no stock status with idCode {id_code!r}")

    def stock_locations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_stock_location(location_id) for location_id in self._stock_locations]

    def stock_location(self, location_id: int) -> dict[str, Any]:
        with self._lock:
            self._require(self._stock_locations, location_id, "stock location")
            return self._render_stock_location(location_id)

    def _render_stock_status(self, status_id: int) -> dict[str, Any]:
        status = self._stock_statuses[status_id]
        rendered = {"stockStatusId": status_id, **status}
        if rendered["idCode"] is None:
            del rendered["idCode"]
        rendered["languages"] = {"data": [dict(language) for language in status["languages"]]}
        return rendered

    def _render_stock_location(self, location_id: int) -> dict[str, Any]:
        location = self._stock_locations[location_id]
        return {
            "stockLocationId": location_id,
            **location,
            "languages": {"data": [dict(language) for language in location["languages"]]},
        }

    def _ecommerce_location_id(self, *, required: bool = True) -> int | None:
        for location_id, location in self._stock_locations.items():
            if location["ecommerceStockLocation"]:
                return location_id
        if required:
            raise RuntimeError("the sandbox shop has no e-commerce stock location; seed one first")
        return None

    # ------------------------------------------------------------------ pricelists

    def pricelists(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_pricelist(pricelist_id) for pricelist_id in self._pricelists]

    def pricelist(self, pricelist_id: int) -> dict[str, Any]:
        with self._lock:
            self._require(self._pricelists, pricelist_id, "pricelist")
            return self._render_pricelist(pricelist_id)

    def add_pricelist(self, body: Any) -> dict[str, Any]:
        """Create a pricelist (``POST /pricelists``); the first one a shop gets becomes its master.

        Either ``currencyCode`` or ``parentPricelistId`` is required; a child (customer) pricelist
        inherits its parent's currency. Every variant gets a 0-priced row in the new list.
        """
        with self._lock:
            fields = check_fields(body, _PRICELIST_RULES, where="pricelist", required=("name",))
            parent_id = fields.get("parentPricelistId")
            if parent_id is not None:
                parent = self._pricelists.get(parent_id)
                if parent is None:
                    raise bad_request(f"pricelist.parentPricelistId: no pricelist {parent_id}")
                currency = fields.get("currencyCode", parent["currencyCode"])
                if currency != parent["currencyCode"]:
                    raise bad_request("pricelist.currencyCode: must equal the parent pricelist's currency")
            elif "currencyCode" in fields:
                currency = fields["currencyCode"]
            else:
                raise bad_request("pricelist: either 'currencyCode' or 'parentPricelistId' is required")
            pricelist_id = self._next_id("pricelist")
            country_codes = fields.get("countryCodes")
            self._pricelists[pricelist_id] = {
                "externalId": fields.get("externalId"),
                "externalIdType": fields.get("externalIdType"),
                "name": fields["name"],
                "isMaster": not self._pricelists,
                "isActive": fields.get("isActive", False),
                "region": fields.get("region", "all"),
                "countryCodes": country_codes.upper().split(",") if country_codes else [],
                "currencyCode": currency,
                "parentPricelistId": parent_id,
                "isCustomerPricelist": parent_id is not None,
                "isCountryPricelist": fields.get("region", "all") != "all",
            }
            for product in self._products.values():
                for variant in product.variants.values():
                    variant.prices[pricelist_id] = dict(_PRICE_DEFAULTS)
            return self._render_pricelist(pricelist_id)

    def delete_pricelist(self, pricelist_id: int) -> None:
        """Delete a pricelist and its prices; the master and parents of other lists are 403."""
        with self._lock:
            pricelist = self._require(self._pricelists, pricelist_id, "pricelist")
            if pricelist["isMaster"]:
                raise forbidden(f"pricelist {pricelist_id} is the master pricelist and cannot be deleted")
            children = [pid for pid, other in self._pricelists.items() if other["parentPricelistId"] == pricelist_id]
            if children:
                raise forbidden(f"pricelist {pricelist_id} is the parent of pricelist {children[0]}")
            del self._pricelists[pricelist_id]
            for product in self._products.values():
                for variant in product.variants.values():
                    variant.prices.pop(pricelist_id, None)

    def _render_pricelist(self, pricelist_id: int) -> dict[str, Any]:
        pricelist = self._pricelists[pricelist_id]
        return {"pricelistId": pricelist_id, **pricelist, "countryCodes": list(pricelist["countryCodes"])}

    # ------------------------------------------------------------------ attributes

    def attributes(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render_attribute(attribute_id) for attribute_id in self._attributes]

    def attribute(self, attribute_id: int) -> dict[str, Any]:
        with self._lock:
            self._require(self._attributes, attribute_id, "product attribute")
            return self._render_attribute(attribute_id)

    def add_attribute(self, body: Any) -> dict[str, Any]:
        """Create a variant axis such as Färg or Storlek (``POST /product-attributes``)."""
        with self._lock:
            fields = check_fields(body, _ATTRIBUTE_RULES, where="productAttribute")
            languages = self._check_name_languages(fields.get("languages", []), "productAttribute.languages")
            attribute_id = self._next_id("attribute")
            self._attributes[attribute_id] = {
                "externalId": fields.get("externalId"),
                "externalIdType": fields.get("externalIdType"),
                "languages": languages,
            }
            return self._render_attribute(attribute_id)

    def attribute_values(self, attribute_id: int, *, include_attribute: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            self._require(self._attributes, attribute_id, "product attribute")
            return [
                self._render_attribute_value(value_id, include_attribute=include_attribute)
                for value_id, value in self._attribute_values.items()
                if value["attributeId"] == attribute_id
            ]

    def attribute_value(self, attribute_id: int, value_id: int, *, include_attribute: bool = False) -> dict[str, Any]:
        with self._lock:
            self._require(self._attributes, attribute_id, "product attribute")
            value = self._attribute_values.get(value_id)
            if value is None or value["attributeId"] != attribute_id:
                raise not_found(f"product attribute {attribute_id} has no value {value_id}")
            return self._render_attribute_value(value_id, include_attribute=include_attribute)

    def add_attribute_value(self, attribute_id: int, body: Any) -> dict[str, Any]:
        """Create a value of an attribute, e.g. "Röd" with skuSuffix "-RD" (``POST …/values``)."""
        with self._lock:
            self._require(self._attributes, attribute_id, "product attribute")
            fields = check_fields(body, _ATTRIBUTE_VALUE_RULES, where="attributeValue")
            languages = self._check_name_languages(fields.get("languages", []), "attributeValue.languages")
            value_id = self._next_id("attribute_value")
            self._attribute_values[value_id] = {
                "attributeId": attribute_id,
                "externalId": fields.get("externalId"),
                "externalIdType": fields.get("externalIdType"),
                "skuSuffix": fields.get("skuSuffix", ""),
                "sortIndex": fields.get("sortIndex", 0),
                "languages": languages,
            }
            return self._render_attribute_value(value_id, include_attribute=False)

    def _check_name_languages(self, languages: Any, where: str) -> list[dict[str, Any]]:
        checked = [
            check_fields(language, _NAME_LANGUAGE_RULES, where=f"{where}[{index}]", required=("langCode", "name"))
            for index, language in enumerate(check_list_of_objects(languages, where))
        ]
        codes = [language["langCode"] for language in checked]
        if len(set(codes)) != len(codes):
            raise bad_request(f"{where}: a langCode appears twice")
        return checked

    def _render_attribute(self, attribute_id: int) -> dict[str, Any]:
        attribute = self._attributes[attribute_id]
        return {
            "attributeId": attribute_id,
            "externalId": attribute["externalId"],
            "externalIdType": attribute["externalIdType"],
            "languages": {"data": [dict(language) for language in attribute["languages"]]},
        }

    def _render_attribute_value(self, value_id: int, *, include_attribute: bool) -> dict[str, Any]:
        value = self._attribute_values[value_id]
        rendered: dict[str, Any] = {
            "attributeValueId": value_id,
            "externalId": value["externalId"],
            "externalIdType": value["externalIdType"],
            "skuSuffix": value["skuSuffix"],
            "sortIndex": value["sortIndex"],
            "languages": {"data": [dict(language) for language in value["languages"]]},
        }
        if include_attribute:
            rendered["attribute"] = {"data": self._render_attribute(value["attributeId"])}
        return rendered

    # ------------------------------------------------------------------ products: reads

    def list_products(self, query: ProductQuery) -> Page:
        """``GET /products``: filter, sort by productId, cut one page of ``per_page``."""
        with self._lock:
            # Ids only grow and a dict keeps insertion order, so the products are already in productId order:
            # a listing of a large catalogue costs a copy, not a sort, under the lock every request shares.
            filtered = (query.filter_sku, query.created_since, query.updated_since) != (
                None,
                None,
                None,
            ) or query.filter_visible
            matching = [product for product in self._products.values() if not filtered or self._matches(product, query)]
            if query.descending:
                matching.reverse()
            return self._page(matching, query.page, lambda product: self._render_product(product, query.includes))

    def _matches(self, product: _Product, query: ProductQuery) -> bool:
        if query.created_since is not None and product.created_at < query.created_since:
            return False
        if query.updated_since is not None and product.modified_at < query.updated_since:
            return False
        if query.filter_visible and product.fields["visibility"] != "visible":
            return False
        if query.filter_sku is not None:
            owner = self._sku_index.get(query.filter_sku.casefold())
            return owner is not None and owner[0] == product.product_id
        return True

    def product(self, product_id: int, includes: Iterable[str] = ()) -> dict[str, Any]:
        with self._lock:
            return self._render_product(self._product(product_id), frozenset(includes))

    def product_ids(self) -> list[int]:
        """Every product id, ascending (for tests and benchmarks)."""
        with self._lock:
            return sorted(self._products)

    def find_variant(self, sku: str) -> tuple[int, int] | None:
        """``(productId, variantId)`` of the variant with this SKU, or None."""
        with self._lock:
            return self._sku_index.get(sku.casefold())

    def variant_weight(self, sku: str) -> float | None:
        """``weightInKg`` of the variant with this SKU (None if unknown or unset): order weights use it."""
        with self._lock:
            found = self._sku_index.get(sku.casefold())
            if found is None:
                return None
            return self._products[found[0]].variants[found[1]].fields["weightInKg"]

    def _product(self, product_id: int) -> _Product:
        product = self._products.get(product_id)
        if product is None:
            raise not_found(f"no product {product_id}")
        return product

    def _variant(self, product_id: int, variant_id: int) -> tuple[_Product, _Variant]:
        product = self._product(product_id)
        variant = product.variants.get(variant_id)
        if variant is None:
            raise not_found(f"product {product_id} has no variant {variant_id}")
        return product, variant

    def _render_product(
        self, product: _Product, includes: frozenset[str], *, all_variants: bool = False
    ) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "productId": product.product_id,
            **product.fields,
            "visibilityPricelistIds": list(product.fields["visibilityPricelistIds"]),
            "createdAt": format_timestamp(product.created_at),
            "modifiedAt": format_timestamp(product.modified_at),
            "hasSeveralVariants": len(product.variants) > 1,
        }
        if "languages" in includes:
            primary = product.languages.get(self._shop.get("defaultLangCode", "sv")) or next(
                iter(product.languages.values()), None
            )
            slim_fields = ("langCode", "name", "shortDescription", "permalink")
            rendered["languages"] = {"data": [] if primary is None else [{name: primary[name] for name in slim_fields}]}
        if "vatRates" in includes:
            rendered["vatRates"] = {
                "data": [{"countryCode": code, "vatRate": rate} for code, rate in product.vat_rates.items()]
            }
        if all_variants:
            rendered["variants"] = {"data": [self._render_variant(variant) for variant in product.variants.values()]}
        elif includes & {"primaryVariant", "primaryVariant.prices", "primaryVariant.attributeValues"}:
            primary_variant = min(
                product.variants.values(),
                key=lambda variant: (
                    variant.fields["sortIndex"] is None,
                    variant.fields["sortIndex"] or 0,
                    variant.variant_id,
                ),
                default=None,
            )
            rendered["variants"] = {
                "data": []
                if primary_variant is None
                else [
                    self._render_variant(
                        primary_variant,
                        with_prices="primaryVariant.prices" in includes,
                        with_attribute_values="primaryVariant.attributeValues" in includes,
                    )
                ]
            }
        return rendered

    def _render_variant(
        self,
        variant: _Variant,
        *,
        with_prices: bool = False,
        with_attribute_values: bool = False,
        with_attributes: bool = False,
    ) -> dict[str, Any]:
        fields = variant.fields
        stock = variant.stocks[self._ecommerce_location_id()]
        rendered: dict[str, Any] = {
            "variantId": variant.variant_id,
            "sku": fields["sku"],
            "externalId": fields["externalId"],
            "externalIdType": fields["externalIdType"],
            "isActive": fields["isActive"],
            "sortIndex": fields["sortIndex"],
            "stockStatusId": stock["stockStatusId"],
            "stockQuantity": round(stock["stockQuantity"]),
            "weightInKg": fields["weightInKg"],
            "costPrice": fields["costPrice"],
            "ean": fields["ean"],
            "mpn": fields["mpn"],
            "imageFileId": fields["imageFileId"],
            "attributeValueLinks": list(fields["attributeValueLinks"]),
            "volumePricingInheritancePricelistIds": None
            if fields["volumePricingInheritancePricelistIds"] is None
            else list(fields["volumePricingInheritancePricelistIds"]),
        }
        if with_prices:
            rendered["prices"] = [self._render_price(variant, pricelist_id) for pricelist_id in sorted(variant.prices)]
        if with_attribute_values or with_attributes:
            rendered["attributeValues"] = [
                self._render_attribute_value(value_id, include_attribute=with_attributes)
                for value_id in fields["attributeValueLinks"]
            ]
        return rendered

    # ------------------------------------------------------------------ products: writes

    def add_product(self, body: Any) -> dict[str, Any]:
        """Create a product with its inline variants, languages and VAT rates (``POST /products``)."""
        with self._lock:
            fields, children = self._check_product_body(body, where="product", patch=False)
            variant_bodies = [
                self._check_variant_body(variant, where=f"product.variants[{index}]", patch=False)
                for index, variant in enumerate(children.get("variants", []))
            ]
            self._check_variant_set(None, variant_bodies, where="product.variants", indexed=True)
            now = self.clock()
            created_at = fields.pop("createdAt", now)
            product = _Product(self._next_id("product"), {**_PRODUCT_DEFAULTS, **fields}, created_at, now)
            product.languages = {language["langCode"]: language for language in children.get("languages", [])}
            product.vat_rates = {rate["countryCode"]: rate["vatRate"] for rate in children.get("vatRates", [])}
            self._products[product.product_id] = product
            for variant_body in variant_bodies:
                self._insert_variant(product, variant_body)
            return self._render_product(product, frozenset(), all_variants=True)

    def update_product(self, product_id: int, body: Any) -> dict[str, Any]:
        """``PATCH /products/{id}``: change the given fields; upsert the given languages and VAT rates."""
        with self._lock:
            product = self._product(product_id)
            fields, children = self._check_product_body(body, where=f"product {product_id}", patch=True)
            merged = {**product.fields, **fields}
            self._check_visibility(merged, where=f"product {product_id}")
            if "createdAt" in merged:
                product.created_at = merged.pop("createdAt")
            product.fields = merged
            for language in children.get("languages", []):
                product.languages[language["langCode"]] = language
            for rate in children.get("vatRates", []):
                product.vat_rates[rate["countryCode"]] = rate["vatRate"]
            self._touch(product)
            return self._render_product(product, frozenset())

    def replace_product(self, product_id: int, body: Any) -> dict[str, Any]:
        """``PUT /products/{id}``: own fields reset to defaults where omitted; given children replaced."""
        with self._lock:
            product = self._product(product_id)
            where = f"product {product_id}"
            fields, children = self._check_product_body(body, where=where, patch=False)
            plan: list[tuple[_Variant | None, dict[str, Any]]] = []
            if "variants" in children:
                by_sku = {variant.fields["sku"].casefold(): variant for variant in product.variants.values()}
                for index, variant_body in enumerate(children["variants"]):
                    checked = self._check_variant_body(variant_body, where=f"{where}.variants[{index}]", patch=False)
                    plan.append((by_sku.get(checked["sku"].casefold()), checked))
                self._check_variant_set(
                    product,
                    [body for _, body in plan],
                    where=f"{where}.variants",
                    drop_others=True,
                    indexed=True,
                )
            if "createdAt" in fields:
                product.created_at = fields.pop("createdAt")
            product.fields = {**_PRODUCT_DEFAULTS, **fields}
            if "languages" in children:
                product.languages = {language["langCode"]: language for language in children["languages"]}
            if "vatRates" in children:
                product.vat_rates = {rate["countryCode"]: rate["vatRate"] for rate in children["vatRates"]}
            if "variants" in children:
                kept = {variant.variant_id for variant, _ in plan if variant is not None}
                for variant_id in [vid for vid in product.variants if vid not in kept]:
                    self._remove_variant(product, variant_id)
                for existing, variant_body in plan:
                    if existing is None:
                        self._insert_variant(product, variant_body)
                    else:
                        self._write_variant(existing, variant_body, replace=True)
            self._touch(product)
            return self._render_product(product, frozenset(), all_variants=True)

    def delete_product(self, product_id: int) -> None:
        """``DELETE /products/{id}``: the product and its variants, prices and stock go."""
        with self._lock:
            product = self._product(product_id)
            for variant_id in list(product.variants):
                self._remove_variant(product, variant_id)
            del self._products[product_id]

    def _check_product_body(
        self, body: Any, *, where: str, patch: bool
    ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        """Split a product body into its own checked fields and its checked children."""
        fields = check_fields(body, _PRODUCT_PATCH_RULES if patch else _PRODUCT_RULES, where=where)
        for name in _UNSUPPORTED_PRODUCT_CHILDREN:
            if fields.pop(name, None):
                raise bad_request(f"{where}.{name}: not supported by the sandbox (send an empty list)")
        fields.pop("bundleUseManualPrice", None)
        children: dict[str, list[dict[str, Any]]] = {}
        for name in _PRODUCT_CHILDREN:
            if name in fields:
                children[name] = check_list_of_objects(fields.pop(name), f"{where}.{name}")
        if fields.get("type") == "bundle":
            raise bad_request(f"{where}.type: bundles are not supported by the sandbox")
        if "createdAt" in fields:
            fields["createdAt"] = parse_timestamp(fields["createdAt"], f"{where}.createdAt")
        if fields.get("defaultVatRate") is not None:
            check_decimal_string(fields["defaultVatRate"], f"{where}.defaultVatRate", minimum=0, maximum=100)
        if "moreInfoUrl" in fields and fields["moreInfoUrl"] is None:
            fields["moreInfoUrl"] = ""
        if "visibilityPricelistIds" in fields and fields["visibilityPricelistIds"] is None:
            fields["visibilityPricelistIds"] = []
        if not patch:
            self._check_visibility({**_PRODUCT_DEFAULTS, **fields}, where=where)
        if "languages" in children:
            children["languages"] = self._check_product_languages(children["languages"], f"{where}.languages")
        if "vatRates" in children:
            children["vatRates"] = self._check_vat_rates(children["vatRates"], f"{where}.vatRates")
        return fields, children

    def _check_visibility(self, fields: dict[str, Any], *, where: str) -> None:
        pricelist_ids = fields["visibilityPricelistIds"]
        if fields["visibility"] == "pricelists" and not pricelist_ids:
            raise bad_request(f"{where}.visibilityPricelistIds: required when visibility is 'pricelists'")
        if fields["visibility"] != "pricelists" and pricelist_ids:
            raise bad_request(f"{where}.visibilityPricelistIds: only allowed when visibility is 'pricelists'")
        for pricelist_id in pricelist_ids:
            if pricelist_id not in self._pricelists:
                raise bad_request(f"{where}.visibilityPricelistIds: no pricelist {pricelist_id}")

    def _check_product_languages(self, languages: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        checked = [
            self._complete_language(
                check_fields(language, _LANGUAGE_RULES, where=f"{where}[{index}]", required=("langCode", "name"))
            )
            for index, language in enumerate(languages)
        ]
        codes = [language["langCode"] for language in checked]
        if len(set(codes)) != len(codes):
            raise bad_request(f"{where}: a langCode appears twice")
        return checked

    @staticmethod
    def _complete_language(language: dict[str, Any]) -> dict[str, Any]:
        completed = {"langCode": language["langCode"], "name": language["name"]}
        for name in _LANGUAGE_TEXT_FIELDS:
            completed[name] = language.get(name, "")
        completed["permalink"] = language.get("permalink") or slugify(language["name"])
        return completed

    @staticmethod
    def _check_vat_rates(rates: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        checked = [
            check_fields(rate, _VAT_RATE_RULES, where=f"{where}[{index}]", required=("countryCode", "vatRate"))
            for index, rate in enumerate(rates)
        ]
        for rate in checked:
            rate["vatRate"] = float(rate["vatRate"])
        return checked

    def _touch(self, product: _Product) -> None:
        product.modified_at = self.clock()

    # ------------------------------------------------------------------ variants

    def list_variants(self, product_id: int, *, page: int = 1, includes: Iterable[str] = ()) -> list[dict[str, Any]]:
        """``GET /products/{id}/variants``: one page of ``per_page`` variants (the spec gives no meta)."""
        with self._lock:
            product = self._product(product_id)
            wanted = frozenset(includes)
            variants = list(product.variants.values())[(page - 1) * self.per_page : page * self.per_page]
            return [self._render_variant_with(variant, wanted) for variant in variants]

    def variant(self, product_id: int, variant_id: int, includes: Iterable[str] = ()) -> dict[str, Any]:
        with self._lock:
            _, variant = self._variant(product_id, variant_id)
            return self._render_variant_with(variant, frozenset(includes))

    def _render_variant_with(self, variant: _Variant, includes: frozenset[str]) -> dict[str, Any]:
        return self._render_variant(
            variant,
            with_prices="prices" in includes,
            with_attribute_values="attributeValues" in includes,
            with_attributes="attributeValues.attribute" in includes,
        )

    def add_variant(self, product_id: int, body: Any) -> dict[str, Any]:
        """``POST /products/{id}/variants``: a new variant priced 0 in every pricelist."""
        with self._lock:
            product = self._product(product_id)
            checked = self._check_variant_body(body, where=f"product {product_id} variant", patch=False)
            self._check_variant_set(product, [checked], where=f"product {product_id} variant")
            variant = self._insert_variant(product, checked)
            self._touch(product)
            return self._render_variant(variant)

    def update_variant(self, product_id: int, variant_id: int, body: Any) -> dict[str, Any]:
        """``PATCH /products/{id}/variants/{vid}``: change the given fields only."""
        return self._change_variant(product_id, variant_id, body, replace=False)

    def replace_variant(self, product_id: int, variant_id: int, body: Any) -> dict[str, Any]:
        """``PUT /products/{id}/variants/{vid}``: omitted fields go back to their defaults."""
        return self._change_variant(product_id, variant_id, body, replace=True)

    def delete_variant(self, product_id: int, variant_id: int) -> None:
        with self._lock:
            product, _ = self._variant(product_id, variant_id)
            self._remove_variant(product, variant_id)
            self._touch(product)

    def _change_variant(self, product_id: int, variant_id: int, body: Any, *, replace: bool) -> dict[str, Any]:
        with self._lock:
            product, variant = self._variant(product_id, variant_id)
            where = f"product {product_id} variant {variant_id}"
            checked = self._check_variant_body(body, where=where, patch=not replace)
            merged = checked if replace else {**variant.fields, **checked}
            self._check_variant_set(product, [merged], where=where, replacing={variant_id})
            self._write_variant(variant, checked, replace=replace)
            self._touch(product)
            return self._render_variant(variant)

    def _check_variant_body(self, body: Any, *, where: str, patch: bool) -> dict[str, Any]:
        required = () if patch else ("sku", "attributeValueLinks")
        fields = check_fields(body, _VARIANT_RULES, where=where, required=required)
        if "sku" in fields and fields["sku"] is None:
            raise bad_request(f"{where}.sku: must not be null")
        if fields.get("attributeValueLinks") is None and "attributeValueLinks" in fields:
            fields["attributeValueLinks"] = []
        if fields.get("isActive", True) is None:
            fields["isActive"] = True
        if fields.get("costPrice") is not None:
            check_decimal_string(fields["costPrice"], f"{where}.costPrice", minimum=0)
        if fields.get("stockStatusId") is not None and fields["stockStatusId"] not in self._stock_statuses:
            raise bad_request(f"{where}.stockStatusId: no stock status {fields['stockStatusId']}")
        for pricelist_id in fields.get("volumePricingInheritancePricelistIds") or []:
            if pricelist_id not in self._pricelists:
                raise bad_request(f"{where}.volumePricingInheritancePricelistIds: no pricelist {pricelist_id}")
        links = fields.get("attributeValueLinks") or []
        for value_id in links:
            if value_id not in self._attribute_values:
                raise bad_request(f"{where}.attributeValueLinks: no attribute value {value_id}")
        attributes = [self._attribute_values[value_id]["attributeId"] for value_id in links]
        if len(set(attributes)) != len(attributes):
            raise bad_request(f"{where}.attributeValueLinks: two values of the same attribute")
        return fields

    def _check_variant_set(
        self,
        product: _Product | None,
        incoming: list[dict[str, Any]],
        *,
        where: str,
        replacing: Iterable[int] = (),
        drop_others: bool = False,
        indexed: bool = False,
    ) -> None:
        """SKUs unique shop-wide; with several variants each needs links and a distinct combination.

        ``incoming`` are the variants being written; ``replacing`` the ids they overwrite (their old
        SKUs and combinations stop counting); ``drop_others`` means every other variant is deleted;
        ``indexed`` labels errors ``where[i]`` (inline variants of a product body).
        """
        skus = [body["sku"].casefold() for body in incoming if "sku" in body]
        if len(set(skus)) != len(skus):
            raise bad_request(f"{where}: the same SKU appears twice")
        own_ids = set(product.variants) if product is not None else set()
        leaving = own_ids if drop_others else set(replacing)
        for index, body in enumerate(incoming):
            if "sku" not in body:
                continue
            owner = self._sku_index.get(body["sku"].casefold())
            if owner is not None and not (
                product is not None and owner[0] == product.product_id and owner[1] in leaving
            ):
                label = f"{where}[{index}]" if indexed else where
                used_by = f"variant {owner[1]} of product {owner[0]}"
                raise bad_request(f"{label}.sku: {body['sku']!r} is already used by {used_by}")
        remaining = (
            []
            if product is None
            else [
                variant.fields["attributeValueLinks"]
                for variant_id, variant in product.variants.items()
                if variant_id not in leaving
            ]
        )
        link_sets = remaining + [body.get("attributeValueLinks", []) for body in incoming]
        if len(link_sets) > 1:
            if any(not links for links in link_sets):
                raise bad_request(f"{where}.attributeValueLinks: required when the product has several variants")
            combinations = [frozenset(links) for links in link_sets]
            if len(set(combinations)) != len(combinations):
                raise bad_request(f"{where}.attributeValueLinks: another variant has the same attribute values")

    def _insert_variant(self, product: _Product, checked: dict[str, Any]) -> _Variant:
        variant = _Variant(self._next_id("variant"), {})
        variant.prices = {pricelist_id: dict(_PRICE_DEFAULTS) for pricelist_id in self._pricelists}
        variant.stocks[self._ecommerce_location_id()] = {
            "stockStatusId": 0,
            "stockQuantity": 0.0,
            "shelfSpace": "",
        }
        self._write_variant(variant, checked, replace=True)
        product.variants[variant.variant_id] = variant
        self._sku_index[variant.fields["sku"].casefold()] = (product.product_id, variant.variant_id)
        return variant

    def _write_variant(self, variant: _Variant, checked: dict[str, Any], *, replace: bool) -> None:
        """Store checked fields; the stock pair goes to the e-commerce location's stock row."""
        product_id = self._sku_index.pop(variant.fields["sku"].casefold())[0] if variant.fields else None
        own = {name: value for name, value in checked.items() if name not in _VARIANT_STOCK_FIELDS}
        variant.fields = {**_VARIANT_DEFAULTS, **own} if replace else {**variant.fields, **own}
        if product_id is not None:
            self._sku_index[variant.fields["sku"].casefold()] = (product_id, variant.variant_id)
        stock = variant.stocks[self._ecommerce_location_id()]
        quantity = checked.get("stockQuantity")
        if quantity is None and replace:
            quantity = 0
        if quantity is not None:
            stock["stockQuantity"] = float(quantity)
        if checked.get("stockStatusId") is not None:
            stock["stockStatusId"] = checked["stockStatusId"]
        elif quantity is not None or not stock["stockStatusId"]:
            stock["stockStatusId"] = self._status_for(stock["stockQuantity"], stock["stockStatusId"])

    def _remove_variant(self, product: _Product, variant_id: int) -> None:
        variant = product.variants.pop(variant_id)
        del self._sku_index[variant.fields["sku"].casefold()]

    def _status_for(self, quantity: float, current_status_id: int) -> int:
        """The stock status rules applied when a quantity changes without an explicit status."""
        if quantity > 0:
            return self.stock_status_id("inStock")
        current = self._stock_statuses.get(current_status_id)
        if current is not None and not current["inStock"]:
            return current_status_id
        if current is not None and current["stockoutNewStatusId"] is not None:
            return current["stockoutNewStatusId"]
        return self.stock_status_id("outOfStock")

    # ------------------------------------------------------------------ languages

    def languages(self, product_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(language) for language in self._product(product_id).languages.values()]

    def language(self, product_id: int, lang_code: str) -> dict[str, Any]:
        with self._lock:
            language = self._product(product_id).languages.get(lang_code)
            if language is None:
                raise not_found(f"product {product_id} has no language {lang_code!r}")
            return dict(language)

    def add_language(self, product_id: int, body: Any) -> dict[str, Any]:
        """``POST /products/{id}/languages``: a language the product does not have yet."""
        with self._lock:
            product = self._product(product_id)
            where = f"product {product_id} language"
            language = self._check_product_languages([body], where)[0]
            if language["langCode"] in product.languages:
                raise bad_request(f"{where}: {language['langCode']!r} exists already; use PUT or PATCH")
            product.languages[language["langCode"]] = language
            self._touch(product)
            return dict(language)

    def put_language(self, product_id: int, lang_code: str, body: Any) -> dict[str, Any]:
        """``PUT /products/{id}/languages/{lang}``: create or replace; omitted texts become empty."""
        return self._write_language(product_id, lang_code, body, replace=True)

    def update_language(self, product_id: int, lang_code: str, body: Any) -> dict[str, Any]:
        """``PATCH /products/{id}/languages/{lang}``: change the given texts of an existing language."""
        return self._write_language(product_id, lang_code, body, replace=False)

    def _write_language(self, product_id: int, lang_code: str, body: Any, *, replace: bool) -> dict[str, Any]:
        with self._lock:
            product = self._product(product_id)
            where = f"product {product_id} language {lang_code!r}"
            if lang_code not in LANG_CODES:
                raise not_found(f"{where}: not a language code Starweb knows")
            current = product.languages.get(lang_code)
            if current is None and not replace:
                raise not_found(f"product {product_id} has no language {lang_code!r}")
            fields = check_fields(body, _LANGUAGE_RULES, where=where, required=("name",) if replace else ())
            if fields.setdefault("langCode", lang_code) != lang_code:
                raise bad_request(f"{where}.langCode: differs from the language in the path")
            merged = fields if replace or current is None else {**current, **fields}
            language = self._complete_language(merged)
            product.languages[lang_code] = language
            self._touch(product)
            return dict(language)

    # ------------------------------------------------------------------ prices

    def prices(self, product_id: int, variant_id: int, *, volume: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            _, variant = self._variant(product_id, variant_id)
            return [self._render_price(variant, pricelist_id, volume=volume) for pricelist_id in sorted(variant.prices)]

    def price(self, product_id: int, variant_id: int, pricelist_id: int, *, volume: bool = False) -> dict[str, Any]:
        with self._lock:
            _, variant = self._variant(product_id, variant_id)
            self._require(self._pricelists, pricelist_id, "pricelist")
            return self._render_price(variant, pricelist_id, volume=volume)

    def set_price(
        self, product_id: int, variant_id: int, pricelist_id: int, body: Any, *, replace: bool = True
    ) -> dict[str, Any]:
        """PUT (``replace``) or PATCH of ``…/prices/{pricelistId}``; prices are ex VAT."""
        with self._lock:
            product, variant = self._variant(product_id, variant_id)
            self._require(self._pricelists, pricelist_id, "pricelist")
            where = f"product {product_id} variant {variant_id} price {pricelist_id}"
            volume = body.get("volumePrices") if isinstance(body, dict) else None
            if volume is not None:  # a copy without it: the recorded request keeps the body as sent
                body = {name: value for name, value in body.items() if name != "volumePrices"}
            fields = check_fields(body, _PRICE_RULES, where=where)
            if fields.pop("pricelistId", pricelist_id) != pricelist_id:
                raise bad_request(f"{where}.pricelistId: differs from the pricelist in the path")
            breaks = None if volume is None else self._check_volume_prices(volume, pricelist_id, where)
            for name in ("priceExVat", "specialPriceExVat"):
                if fields.get(name) is not None:
                    fields[name] = float(fields[name])
            current = variant.prices[pricelist_id]
            variant.prices[pricelist_id] = {**_PRICE_DEFAULTS, **fields} if replace else {**current, **fields}
            if breaks is not None:  # given: replaces the breaks; omitted: they stay (they are a sub-resource)
                variant.volume_prices[pricelist_id] = breaks
            self._touch(product)
            return self._render_price(variant, pricelist_id, volume=breaks is not None)

    @staticmethod
    def _check_volume_prices(volume: Any, pricelist_id: int, where: str) -> list[dict[str, Any]]:
        """Quantity breaks as ``{"data": [...]}`` or a plain list; quantities unique and above 1."""
        items = volume.get("data") if isinstance(volume, dict) else volume
        if not isinstance(items, list):
            raise bad_request(f"{where}.volumePrices: expected a list of volume prices")
        breaks: dict[float, dict[str, Any]] = {}
        for index, item in enumerate(items):
            fields = check_fields(item, _VOLUME_PRICE_RULES, where=f"{where}.volumePrices[{index}]")
            if fields.get("pricelistId", pricelist_id) != pricelist_id:
                raise bad_request(f"{where}.volumePrices[{index}].pricelistId: differs from the pricelist in the path")
            quantity = float(fields["quantity"])
            if quantity in breaks:
                raise bad_request(f"{where}.volumePrices[{index}].quantity: {quantity:g} occurs twice")
            breaks[quantity] = {
                "pricelistId": pricelist_id,
                "quantity": quantity,
                "priceExVat": float(fields["priceExVat"]),
            }
        return [breaks[quantity] for quantity in sorted(breaks)]

    @staticmethod
    def _render_price(variant: _Variant, pricelist_id: int, *, volume: bool = False) -> dict[str, Any]:
        rendered = {"pricelistId": pricelist_id, **variant.prices[pricelist_id]}
        if volume:
            rendered["volumePrices"] = {"data": list(variant.volume_prices.get(pricelist_id, []))}
        return rendered

    # ------------------------------------------------------------------ stocks

    def stocks(self, product_id: int, variant_id: int) -> list[dict[str, Any]]:
        with self._lock:
            _, variant = self._variant(product_id, variant_id)
            return [self._render_stock(variant, location_id) for location_id in sorted(variant.stocks)]

    def stock(self, product_id: int, variant_id: int, location_id: int) -> dict[str, Any]:
        with self._lock:
            _, variant = self._variant(product_id, variant_id)
            self._require(self._stock_locations, location_id, "stock location")
            if location_id not in variant.stocks:
                raise not_found(f"variant {variant_id} has no stock at location {location_id}")
            return self._render_stock(variant, location_id)

    def set_stock(
        self, product_id: int, variant_id: int, location_id: int, body: Any, *, replace: bool = True
    ) -> dict[str, Any]:
        """PUT (``replace``: create or replace) or PATCH (existing row only) of ``…/stocks/{locationId}``.

        A PATCH that changes the quantity without a ``stockStatusId`` gets the status from the rules.
        """
        with self._lock:
            product, variant = self._variant(product_id, variant_id)
            self._require(self._stock_locations, location_id, "stock location")
            where = f"product {product_id} variant {variant_id} stock {location_id}"
            required = ("stockStatusId", "stockQuantity") if replace else ()
            fields = check_fields(body, _STOCK_RULES, where=where, required=required)
            if fields.get("stockStatusId") is not None and fields["stockStatusId"] not in self._stock_statuses:
                raise bad_request(f"{where}.stockStatusId: no stock status {fields['stockStatusId']}")
            current = variant.stocks.get(location_id)
            if current is None and not replace:
                raise not_found(f"variant {variant_id} has no stock at location {location_id}; PUT creates it")
            if "stockQuantity" in fields:
                fields["stockQuantity"] = float(fields["stockQuantity"])
            if replace or current is None:
                row = {"shelfSpace": "", **fields}
            else:
                row = {**current, **fields}
                if "stockQuantity" in fields and "stockStatusId" not in fields:
                    row["stockStatusId"] = self._status_for(row["stockQuantity"], current["stockStatusId"])
            variant.stocks[location_id] = row
            self._touch(product)
            return self._render_stock(variant, location_id)

    @staticmethod
    def _render_stock(variant: _Variant, location_id: int) -> dict[str, Any]:
        return {"stockLocationId": location_id, **variant.stocks[location_id]}

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _require(table: dict[int, dict[str, Any]], entity_id: int, name: str) -> dict[str, Any]:
        entity = table.get(entity_id)
        if entity is None:
            raise not_found(f"no {name} {entity_id}")
        return entity


__all__ = [
    "ApiError",
    "CustomerQuery",
    "OrderQuery",
    "Page",
    "ProductQuery",
    "ShopState",
    "StatusChange",
    "slugify",
]
