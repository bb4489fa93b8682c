"""Handlers for the shop set-up and catalogue endpoints: thin translations from HTTP to SandboxState."""

from __future__ import annotations

import re

from starmamut_devtools.sandbox.errors import bad_request
from starmamut_devtools.sandbox.router import (
    ApiRequest,
    ApiResponse,
    Router,
    data_response,
    deleted_response,
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
    SandboxState,
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
_PRICE_INCLUDES = ("volumePrices",)
_FILTER_SKU_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


# ---------------------------------------------------------------- shop-wide


def get_shop(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.shop())


def list_vat_rates(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.vat_rates())


def get_vat_rate(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.vat_rate(request.path_params["countryCode"]))


def list_pricelists(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.pricelists())


def create_pricelist(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_pricelist(request.body), 201)


def get_pricelist(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.pricelist(request.path_params["pricelistId"]))


def delete_pricelist(state: SandboxState, request: ApiRequest) -> ApiResponse:
    state.delete_pricelist(request.path_params["pricelistId"])
    return deleted_response()


def list_stock_statuses(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.stock_statuses())


def get_stock_status(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.stock_status(request.path_params["stockStatusId"]))


def list_stock_locations(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.stock_locations())


def get_stock_location(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.stock_location(request.path_params["stockLocationId"]))


def list_attributes(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.attributes())


def create_attribute(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_attribute(request.body), 201)


def get_attribute(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.attribute(request.path_params["attributeId"]))


def list_attribute_values(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, ATTRIBUTE_VALUE_INCLUDES)
    attribute_id = request.path_params["attributeId"]
    return data_response(state.attribute_values(attribute_id, include_attribute="attribute" in includes))


def create_attribute_value(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_attribute_value(request.path_params["attributeId"], request.body), 201)


def get_attribute_value(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, ATTRIBUTE_VALUE_INCLUDES)
    params = request.path_params
    value = state.attribute_value(
        params["attributeId"], params["attributeValueId"], include_attribute="attribute" in includes
    )
    return data_response(value)


# ---------------------------------------------------------------- products


def list_products(state: SandboxState, request: ApiRequest) -> ApiResponse:
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
        includes=query_includes(request, PRODUCT_INCLUDES, _UNSUPPORTED_PRODUCT_INCLUDES),
    )
    page = state.list_products(query)
    return ApiResponse(200, {"data": page.items, "meta": {"pagination": page.pagination}})


def create_product(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_product(request.body), 201)


def get_product(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, PRODUCT_INCLUDES, _UNSUPPORTED_PRODUCT_INCLUDES)
    return data_response(state.product(request.path_params["productId"], includes))


def patch_product(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.update_product(request.path_params["productId"], request.body))


def put_product(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.replace_product(request.path_params["productId"], request.body))


def delete_product(state: SandboxState, request: ApiRequest) -> ApiResponse:
    state.delete_product(request.path_params["productId"])
    return deleted_response()


# ---------------------------------------------------------------- variants


def list_variants(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, VARIANT_INCLUDES)
    return data_response(
        state.list_variants(request.path_params["productId"], page=query_page(request), includes=includes)
    )


def create_variant(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_variant(request.path_params["productId"], request.body), 201)


def get_variant(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, VARIANT_INCLUDES)
    params = request.path_params
    return data_response(state.variant(params["productId"], params["variantId"], includes))


def patch_variant(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.update_variant(params["productId"], params["variantId"], request.body))


def put_variant(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.replace_variant(params["productId"], params["variantId"], request.body))


def delete_variant(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    state.delete_variant(params["productId"], params["variantId"])
    return deleted_response()


# ---------------------------------------------------------------- languages


def list_languages(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.languages(request.path_params["productId"]))


def create_language(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_language(request.path_params["productId"], request.body), 201)


def get_language(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.language(params["productId"], params["langCode"]))


def put_language(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.put_language(params["productId"], params["langCode"], request.body))


def patch_language(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.update_language(params["productId"], params["langCode"], request.body))


# ---------------------------------------------------------------- prices and stock


def list_prices(state: SandboxState, request: ApiRequest) -> ApiResponse:
    volume = "volumePrices" in query_includes(request, _PRICE_INCLUDES)
    params = request.path_params
    return data_response(state.prices(params["productId"], params["variantId"], volume=volume))


def get_price(state: SandboxState, request: ApiRequest) -> ApiResponse:
    volume = "volumePrices" in query_includes(request, _PRICE_INCLUDES)
    params = request.path_params
    return data_response(state.price(params["productId"], params["variantId"], params["pricelistId"], volume=volume))


def put_price(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.set_price(params["productId"], params["variantId"], params["pricelistId"], request.body))


def patch_price(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    price = state.set_price(
        params["productId"], params["variantId"], params["pricelistId"], request.body, replace=False
    )
    return data_response(price)


def list_stocks(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.stocks(params["productId"], params["variantId"]))


def get_stock(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.stock(params["productId"], params["variantId"], params["stockLocationId"]))


def put_stock(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(
        state.set_stock(params["productId"], params["variantId"], params["stockLocationId"], request.body)
    )


def patch_stock(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    stock = state.set_stock(
        params["productId"], params["variantId"], params["stockLocationId"], request.body, replace=False
    )
    return data_response(stock)


def register(router: Router) -> None:
    """Add every shop set-up and catalogue route."""
    product = "/products/{productId:int}"
    variant = product + "/variants/{variantId:int}"
    routes = (
        ("GET", "/shop", get_shop),
        ("GET", "/vat-rates", list_vat_rates),
        ("GET", "/vat-rates/{countryCode}", get_vat_rate),
        ("GET", "/pricelists", list_pricelists),
        ("POST", "/pricelists", create_pricelist),
        ("GET", "/pricelists/{pricelistId:int}", get_pricelist),
        ("DELETE", "/pricelists/{pricelistId:int}", delete_pricelist),
        ("GET", "/product-stock-statuses", list_stock_statuses),
        ("GET", "/product-stock-statuses/{stockStatusId:int}", get_stock_status),
        ("GET", "/stock-locations", list_stock_locations),
        ("GET", "/stock-locations/{stockLocationId:int}", get_stock_location),
        ("GET", "/product-attributes", list_attributes),
        ("POST", "/product-attributes", create_attribute),
        ("GET", "/product-attributes/{attributeId:int}", get_attribute),
        ("GET", "/product-attributes/{attributeId:int}/values", list_attribute_values),
        ("POST", "/product-attributes/{attributeId:int}/values", create_attribute_value),
        ("GET", "/product-attributes/{attributeId:int}/values/{attributeValueId:int}", get_attribute_value),
        ("GET", "/products", list_products),
        ("POST", "/products", create_product),
        ("GET", product, get_product),
        ("PATCH", product, patch_product),
        ("PUT", product, put_product),
        ("DELETE", product, delete_product),
        ("GET", product + "/variants", list_variants),
        ("POST", product + "/variants", create_variant),
        ("GET", variant, get_variant),
        ("PATCH", variant, patch_variant),
        ("PUT", variant, put_variant),
        ("DELETE", variant, delete_variant),
        ("GET", product + "/languages", list_languages),
        ("POST", product + "/languages", create_language),
        ("GET", product + "/languages/{langCode}", get_language),
        ("PUT", product + "/languages/{langCode}", put_language),
        ("PATCH", product + "/languages/{langCode}", patch_language),
        ("GET", variant + "/prices", list_prices),
        ("GET", variant + "/prices/{pricelistId:int}", get_price),
        ("PUT", variant + "/prices/{pricelistId:int}", put_price),
        ("PATCH", variant + "/prices/{pricelistId:int}", patch_price),
        ("GET", variant + "/stocks", list_stocks),
        ("GET", variant + "/stocks/{stockLocationId:int}", get_stock),
        ("PUT", variant + "/stocks/{stockLocationId:int}", put_stock),
        ("PATCH", variant + "/stocks/{stockLocationId:int}", patch_stock),
    )
    for method, pattern, handler in routes:
        router.add(method, pattern, handler)
