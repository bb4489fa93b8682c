"""Routes of the shop set-up and catalogue endpoints: a table of thin translations from HTTP to ShopState.

Every route but the product listing is one :class:`~starmamut_devtools.sandbox.router.StateCall`; the rules
live in the state.
"""

from __future__ import annotations

import re
from typing import Any

from starmamut_devtools.sandbox.errors import bad_request
from starmamut_devtools.sandbox.router import (
    ApiRequest,
    ApiResponse,
    Router,
    RouteTable,
    StateCall,
    query_bool,
    query_choice,
    query_includes,
    query_page,
    query_timestamp,
)
from starmamut_devtools.sandbox.state import (
    ATTRIBUTE_VALUE_INCLUDES,
    PRODUCT_INCLUDES,
    VARIANT_INCLUDES,
    ProductQuery,
    ShopState,
)

# Includes the spec lists for /products that the sandbox does not model: asking for one gets a
# 400 saying so, rather than an empty or invented child.
_UNSUPPORTED_PRODUCT_INCLUDES = (
    "attributes",
    "mediaFiles",
    "categories",
    "unit",
    "metaData",
    "bundledProducts",
    "bundledProducts.prices",
    "tags",
)
_PRODUCT_INCLUDES = (PRODUCT_INCLUDES, _UNSUPPORTED_PRODUCT_INCLUDES)
_PRICE_INCLUDES = ("volumePrices",)
_FILTER_SKU_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


def list_products(state: ShopState, request: ApiRequest) -> ApiResponse:
    filter_sku = request.query.get("filterSku")
    if filter_sku is not None and not _FILTER_SKU_PATTERN.fullmatch(filter_sku):
        raise bad_request(f"filterSku: {filter_sku!r} does not match {_FILTER_SKU_PATTERN.pattern}")
    query_choice(request, "sortBy", ("productId",))
    query = ProductQuery(
        page=query_page(request),
        created_since=query_timestamp(request, "createdSince"),
        updated_since=query_timestamp(request, "updatedSince"),
        filter_sku=filter_sku,
        filter_visible=query_bool(request, "filterVisible"),
        descending=query_choice(request, "sortOrder", ("ASC", "DESC")) == "DESC",
        includes=query_includes(request, *_PRODUCT_INCLUDES),
    )
    page = state.list_products(query)
    return ApiResponse(200, {"data": page.items, "meta": {"pagination": page.pagination}})


def _attribute_options(request: ApiRequest) -> dict[str, Any]:
    return {"include_attribute": "attribute" in query_includes(request, ATTRIBUTE_VALUE_INCLUDES)}


def _variant_list_options(request: ApiRequest) -> dict[str, Any]:
    return {"includes": query_includes(request, VARIANT_INCLUDES), "page": query_page(request)}


def _price_options(request: ApiRequest) -> dict[str, Any]:
    return {"volume": "volumePrices" in query_includes(request, _PRICE_INCLUDES)}


_ATTRIBUTE = "/product-attributes/{attributeId:int}"
_PRODUCT = "/products/{productId:int}"
_VARIANT = _PRODUCT + "/variants/{variantId:int}"
_LANGUAGE = _PRODUCT + "/languages/{langCode}"
_PRICE = _VARIANT + "/prices/{pricelistId:int}"
_STOCK = _VARIANT + "/stocks/{stockLocationId:int}"

ROUTES: RouteTable = (
    # shop-wide
    ("GET", "/shop", StateCall("shop")),
    ("GET", "/vat-rates", StateCall("vat_rates")),
    ("GET", "/vat-rates/{countryCode}", StateCall("vat_rate")),
    ("GET", "/pricelists", StateCall("pricelists")),
    ("POST", "/pricelists", StateCall("add_pricelist", body=True, status=201)),
    ("GET", "/pricelists/{pricelistId:int}", StateCall("pricelist")),
    ("DELETE", "/pricelists/{pricelistId:int}", StateCall("delete_pricelist", status=204)),
    ("GET", "/product-stock-statuses", StateCall("stock_statuses")),
    ("GET", "/product-stock-statuses/{stockStatusId:int}", StateCall("stock_status")),
    ("GET", "/stock-locations", StateCall("stock_locations")),
    ("GET", "/stock-locations/{stockLocationId:int}", StateCall("stock_location")),
    ("GET", "/product-attributes", StateCall("attributes")),
    ("POST", "/product-attributes", StateCall("add_attribute", body=True, status=201)),
    ("GET", _ATTRIBUTE, StateCall("attribute")),
    ("GET", _ATTRIBUTE + "/values", StateCall("attribute_values", options=_attribute_options)),
    ("POST", _ATTRIBUTE + "/values", StateCall("add_attribute_value", body=True, status=201)),
    ("GET", _ATTRIBUTE + "/values/{attributeValueId:int}", StateCall("attribute_value", options=_attribute_options)),
    # products
    ("GET", "/products", list_products),
    ("POST", "/products", StateCall("add_product", body=True, status=201)),
    ("GET", _PRODUCT, StateCall("product", includes=_PRODUCT_INCLUDES)),
    ("PATCH", _PRODUCT, StateCall("update_product", body=True)),
    ("PUT", _PRODUCT, StateCall("replace_product", body=True)),
    ("DELETE", _PRODUCT, StateCall("delete_product", status=204)),
    # variants
    ("GET", _PRODUCT + "/variants", StateCall("list_variants", options=_variant_list_options)),
    ("POST", _PRODUCT + "/variants", StateCall("add_variant", body=True, status=201)),
    ("GET", _VARIANT, StateCall("variant", includes=(VARIANT_INCLUDES, ()))),
    ("PATCH", _VARIANT, StateCall("update_variant", body=True)),
    ("PUT", _VARIANT, StateCall("replace_variant", body=True)),
    ("DELETE", _VARIANT, StateCall("delete_variant", status=204)),
    # languages
    ("GET", _PRODUCT + "/languages", StateCall("languages")),
    ("POST", _PRODUCT + "/languages", StateCall("add_language", body=True, status=201)),
    ("GET", _LANGUAGE, StateCall("language")),
    ("PUT", _LANGUAGE, StateCall("put_language", body=True)),
    ("PATCH", _LANGUAGE, StateCall("update_language", body=True)),
    # prices and stock
    ("GET", _VARIANT + "/prices", StateCall("prices", options=_price_options)),
    ("GET", _PRICE, StateCall("price", options=_price_options)),
    ("PUT", _PRICE, StateCall("set_price", body=True)),
    ("PATCH", _PRICE, StateCall("set_price", body=True, fixed={"replace": False})),
    ("GET", _VARIANT + "/stocks", StateCall("stocks")),
    ("GET", _STOCK, StateCall("stock")),
    ("PUT", _STOCK, StateCall("set_stock", body=True)),
    ("PATCH", _STOCK, StateCall("set_stock", body=True, fixed={"replace": False})),
)


def register(router: Router) -> None:
    """Add every shop set-up and catalogue route."""
    router.add_table(ROUTES)
