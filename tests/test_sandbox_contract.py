"""Every sandbox endpoint, with its includes and error cases, answers as Starweb's OpenAPI spec says.

The demo seed's ids are fixed: orders 1001–1010, customers 101–104, order statuses 1–7 (5–7 custom,
7 unused), payment methods 1–3, shipping methods 1–3; order 1001's items are 1–3.

Each case runs against a fresh demo shop through a client whose response hook validates every
response against the (narrowly patched) spec; cases whose request is meant to follow the spec also
have the recorded request validated. A final check proves every registered route has a case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from starmamut_devtools.sandbox import Sandbox, generate_catalogue
from starmamut_devtools.sandbox.demo_data import SIZE_VALUE_IDS
from starmamut_devtools.sandbox.server import build_router
from tests.fixtures.openapi_contract import (
    assert_exchange_conforms,
    assert_request_conforms,
    assert_response_conforms,
    load_patched_spec,
)
from tests.fixtures.sandbox import fetch_token


@dataclass(frozen=True)
class Case:
    """One call: ``path`` may name demo ids as ``{p1}``/``{v1}`` etc. (see ``demo_ids``)."""

    name: str
    method: str
    path: str
    status: int
    params: dict[str, str] | None = None
    json: Any = None
    request_follows_spec: bool = True


_NEW_PRODUCT = next(generate_catalogue(1, seed=7, two_axis_share=1.0, one_axis_share=0.0))
_PRODUCT_PUT = {
    "visibility": "visible",
    "defaultVatRate": "25",
    "languages": [{"langCode": "sv", "name": "Trähäst Åke"}, {"langCode": "en", "name": "Wooden horse"}],
    "vatRates": [{"countryCode": "SE", "vatRate": 25}],
    "variants": [{"sku": "LEK-1001", "attributeValueLinks": [], "ean": "7350001000004", "stockQuantity": 3}],
}

CASES: tuple[Case, ...] = (
    Case("shop", "GET", "/shop", 200),
    Case("vat-rates", "GET", "/vat-rates", 200),
    Case("vat-rate", "GET", "/vat-rates/SE", 200),
    Case("vat-rate unknown", "GET", "/vat-rates/XX", 404),
    Case("pricelists", "GET", "/pricelists", 200),
    Case("pricelist", "GET", "/pricelists/1", 200),
    Case("pricelist unknown", "GET", "/pricelists/99", 404),
    Case("pricelist create", "POST", "/pricelists", 201, json={"name": "Kampanj", "currencyCode": "SEK"}),
    Case("pricelist create child", "POST", "/pricelists", 201, json={"name": "Kund AB", "parentPricelistId": 1}),
    Case(
        "pricelist create without currency",
        "POST",
        "/pricelists",
        400,
        json={"name": "X"},
        request_follows_spec=False,
    ),
    Case("pricelist delete master", "DELETE", "/pricelists/1", 403),
    Case("pricelist delete", "DELETE", "/pricelists/3", 204),
    Case("stock statuses", "GET", "/product-stock-statuses", 200),
    Case("stock status", "GET", "/product-stock-statuses/1", 200),
    Case("stock status unknown", "GET", "/product-stock-statuses/99", 404),
    Case("stock locations", "GET", "/stock-locations", 200),
    Case("stock location", "GET", "/stock-locations/2", 200),
    Case("stock location unknown", "GET", "/stock-locations/99", 404),
    Case("attributes", "GET", "/product-attributes", 200),
    Case(
        "attribute create",
        "POST",
        "/product-attributes",
        201,
        json={"externalId": "MAT", "languages": [{"langCode": "sv", "name": "Material"}]},
    ),
    Case(
        "attribute create bad language",
        "POST",
        "/product-attributes",
        400,
        json={"languages": [{"langCode": "xx", "name": "Material"}]},
    ),
    Case("attribute", "GET", "/product-attributes/1", 200),
    Case("attribute unknown", "GET", "/product-attributes/99", 404),
    Case("attribute values", "GET", "/product-attributes/2/values", 200),
    Case(
        "attribute values with attribute",
        "GET",
        "/product-attributes/1/values",
        200,
        params={"include": "attribute"},
    ),
    Case("attribute values of unknown attribute", "GET", "/product-attributes/99/values", 404),
    Case(
        "attribute value create",
        "POST",
        "/product-attributes/1/values",
        201,
        json={"skuSuffix": "VI", "sortIndex": 6, "languages": [{"langCode": "sv", "name": "Vit"}]},
    ),
    Case("attribute value", "GET", "/product-attributes/1/values/2", 200, params={"include": "attribute"}),
    Case("attribute value of another attribute", "GET", "/product-attributes/2/values/1", 404),
    Case("products", "GET", "/products", 200),
    *(
        Case(f"products include {include}", "GET", "/products", 200, params={"include": include})
        for include in (
            "languages",
            "vatRates",
            "primaryVariant",
            "primaryVariant.prices",
            "primaryVariant.attributeValues",
            "languages,vatRates,primaryVariant.prices,primaryVariant.attributeValues",
        )
    ),
    Case("products page beyond the end", "GET", "/products", 200, params={"page": "2"}),
    Case("products updatedSince", "GET", "/products", 200, params={"updatedSince": "2024-03-10T00:00:00+01:00"}),
    Case("products createdSince", "GET", "/products", 200, params={"createdSince": "2024-03-10T09:00:00+01:00"}),
    Case("products filterSku", "GET", "/products", 200, params={"filterSku": "KL-2101-RD-92"}),
    Case("products sorted", "GET", "/products", 200, params={"sortBy": "productId", "sortOrder": "DESC"}),
    Case("products visible", "GET", "/products", 200, params={"filterVisible": "true"}),
    Case("products unsupported include", "GET", "/products", 400, params={"include": "tags"}),
    Case("products unknown include", "GET", "/products", 400, params={"include": "bogus"}),
    Case("products bad timestamp", "GET", "/products", 400, params={"updatedSince": "yesterday"}),
    Case("products page 0", "GET", "/products", 400, params={"page": "0"}, request_follows_spec=False),
    Case("product create", "POST", "/products", 201, json=_NEW_PRODUCT),
    Case(
        "product create duplicate SKU",
        "POST",
        "/products",
        400,
        json={"variants": [{"sku": "lek-1001", "attributeValueLinks": []}]},
    ),
    Case("product create unknown field", "POST", "/products", 400, json={"name": "Trähäst"}),
    Case(
        "product",
        "GET",
        "/products/{p1}",
        200,
        params={"include": "languages,primaryVariant.prices,vatRates"},
    ),
    Case("product unknown", "GET", "/products/999", 404),
    Case("product patch", "PATCH", "/products/{p1}", 200, json={"visibility": "hidden", "defaultVatRate": "12"}),
    Case(
        "product patch wrong type",
        "PATCH",
        "/products/{p1}",
        400,
        json={"visibility": 3},
        request_follows_spec=False,
    ),
    Case("product patch unknown", "PATCH", "/products/999", 404, json={"visibility": "hidden"}),
    Case("product put", "PUT", "/products/{p1}", 200, json=_PRODUCT_PUT),
    Case("product delete", "DELETE", "/products/{p1}", 204),
    Case("product delete unknown", "DELETE", "/products/999", 404),
    Case("variants", "GET", "/products/{pt}/variants", 200),
    Case(
        "variants with includes",
        "GET",
        "/products/{pt}/variants",
        200,
        params={"include": "prices,attributeValues,attributeValues.attribute"},
    ),
    Case("variants page 2", "GET", "/products/{pt}/variants", 200, params={"page": "2"}),
    Case("variants of unknown product", "GET", "/products/999/variants", 404),
    Case(
        "variant create",
        "POST",
        "/products/{po}/variants",
        201,
        json={"sku": "KL-2002-98", "attributeValueLinks": [SIZE_VALUE_IDS["98"]], "stockQuantity": 4},
    ),
    Case(
        "variant create duplicate SKU",
        "POST",
        "/products/{po}/variants",
        400,
        json={"sku": "KL-2101-RD-92", "attributeValueLinks": [SIZE_VALUE_IDS["98"]]},
    ),
    Case(
        "variant create without links",
        "POST",
        "/products/{po}/variants",
        400,
        json={"sku": "KL-2002-X", "attributeValueLinks": []},
    ),
    Case("variant", "GET", "/products/{pt}/variants/{vt}", 200, params={"include": "prices,attributeValues"}),
    Case("variant unknown", "GET", "/products/{pt}/variants/{v1}", 404),
    Case(
        "variant patch",
        "PATCH",
        "/products/{pt}/variants/{vt}",
        200,
        json={"stockQuantity": 5, "ean": "7350002100004", "isActive": False},
    ),
    Case(
        "variant put",
        "PUT",
        "/products/{pt}/variants/{vt}",
        200,
        json={"sku": "KL-2101-RD-92", "attributeValueLinks": [1, SIZE_VALUE_IDS["92"]], "weightInKg": 0.2},
    ),
    Case("variant delete", "DELETE", "/products/{pt}/variants/{vt}", 204),
    Case("languages", "GET", "/products/{p1}/languages", 200),
    Case(
        "language create",
        "POST",
        "/products/{p1}/languages",
        201,
        json={"langCode": "de", "name": "Holzpferd"},
    ),
    Case(
        "language create existing",
        "POST",
        "/products/{p1}/languages",
        400,
        json={"langCode": "sv", "name": "x"},
    ),
    Case("language", "GET", "/products/{p1}/languages/en", 200),
    Case("language missing", "GET", "/products/{p1}/languages/fi", 404),
    Case(
        "language put",
        "PUT",
        "/products/{p1}/languages/en",
        200,
        json={"langCode": "en", "name": "Wooden horse Åke", "longDescription": "Hand made in Dalarna."},
    ),
    Case(
        "language patch",
        "PATCH",
        "/products/{p1}/languages/sv",
        200,
        json={"langCode": "sv", "name": "Trähäst Åke II"},
    ),
    Case(
        "language patch missing",
        "PATCH",
        "/products/{p1}/languages/fi",
        404,
        json={"langCode": "fi", "name": "Puuhevonen"},
    ),
    Case("prices", "GET", "/products/{p1}/variants/{v1}/prices", 200),
    Case("price", "GET", "/products/{p1}/variants/{v1}/prices/2", 200),
    Case("price unknown pricelist", "GET", "/products/{p1}/variants/{v1}/prices/99", 404),
    Case(
        "price put",
        "PUT",
        "/products/{p1}/variants/{v1}/prices/1",
        200,
        json={"pricelistId": 1, "priceExVat": 100.0},
    ),
    Case(
        "price patch",
        "PATCH",
        "/products/{p1}/variants/{v1}/prices/3",
        200,
        json={"pricelistId": 3, "specialPriceExVat": 9.5},
    ),
    Case(
        "price put other pricelist",
        "PUT",
        "/products/{p1}/variants/{v1}/prices/1",
        400,
        json={"pricelistId": 2, "priceExVat": 100.0},
    ),
    Case("stocks", "GET", "/products/{p1}/variants/{v1}/stocks", 200),
    Case("stock", "GET", "/products/{p1}/variants/{v1}/stocks/2", 200),
    Case("stock missing", "GET", "/products/{p2}/variants/{v2}/stocks/2", 404),
    Case(
        "stock put",
        "PUT",
        "/products/{p2}/variants/{v2}/stocks/2",
        200,
        json={"stockStatusId": 1, "stockQuantity": 4, "shelfSpace": "B2"},
    ),
    Case(
        "stock put incomplete",
        "PUT",
        "/products/{p2}/variants/{v2}/stocks/2",
        400,
        json={"stockQuantity": 4},
        request_follows_spec=False,
    ),
    Case("stock patch", "PATCH", "/products/{p1}/variants/{v1}/stocks/1", 200, json={"stockQuantity": 0}),
    Case(
        "stock patch missing",
        "PATCH",
        "/products/{p2}/variants/{v2}/stocks/2",
        404,
        json={"stockQuantity": 1},
    ),
)


_ADDRESS = {
    "firstName": "Östen",
    "lastName": "Åberg",
    "address": "Storgatan 1",
    "postalCode": "111 22",
    "city": "Stockholm",
    "countryCode": "SE",
}
_NEW_ORDER = {
    "customerId": 101,
    "statusId": 1,
    "paymentMethodId": 1,
    "paymentMethodName": "Klarna Checkout",
    "shippingMethodId": 1,
    "shippingMethodName": "PostNord",
    "shippingCost": 49.0,
    "shippingVatRate": 25,
    "currencyCode": "SEK",
    "langCode": "sv",
    "paymentStatus": "reserved",
    "originalCustomerEmail": "asa.ekstrom@example.se",
    "onOrderStatusChangeSendEmail": False,
    "items": [{"sku": "LEK-1001", "description": "Trähäst Åke", "quantity": 1, "unitPrice": 399.2, "vatRate": 25}],
    "addresses": {"customerInvoice": _ADDRESS, "customerDelivery": _ADDRESS},
}
_GUEST_ORDER = {name: value for name, value in _NEW_ORDER.items() if name != "customerId"}
_NEW_STATUS = {"shouldSendEmail": True, "languages": {"data": [{"langCode": "sv", "name": "Väntar på leverantör"}]}}
_NEW_ITEM = {"sku": "KL-2003-S", "description": "Mössa Älva", "quantity": 2, "unitPrice": 143.2, "vatRate": 25}

SALES_CASES: tuple[Case, ...] = (
    Case("currencies", "GET", "/currencies", 200),
    Case("currency", "GET", "/currencies/EUR", 200),
    Case("currency in lower case", "GET", "/currencies/sek", 200),
    Case("currency unknown", "GET", "/currencies/XXX", 404),
    Case("payment methods", "GET", "/payment-methods", 200),
    Case("payment method", "GET", "/payment-methods/2", 200),
    Case("payment method unknown", "GET", "/payment-methods/99", 404),
    Case("shipping methods", "GET", "/shipping-methods", 200),
    Case("shipping method", "GET", "/shipping-methods/3", 200),
    Case("shipping method unknown", "GET", "/shipping-methods/99", 404),
    Case("shipping tracking types", "GET", "/shipping-tracking-types", 200),
    Case("order statuses", "GET", "/order-statuses", 200),
    Case("order status standard", "GET", "/order-statuses/1", 200),
    Case("order status custom", "GET", "/order-statuses/5", 200),
    Case("order status unknown", "GET", "/order-statuses/99", 404),
    Case("order status create", "POST", "/order-statuses", 201, json=_NEW_STATUS),
    Case("order status create without name", "POST", "/order-statuses", 400, json={"shouldSendEmail": True}),
    Case(
        "order status create with idCode",
        "POST",
        "/order-statuses",
        400,
        json={**_NEW_STATUS, "idCode": "created"},
        request_follows_spec=False,
    ),
    Case("order status patch custom", "PATCH", "/order-statuses/5", 200, json={"shouldSendEmail": True}),
    Case("order status patch standard", "PATCH", "/order-statuses/1", 403, json={"shouldSendEmail": False}),
    Case("order status patch unknown", "PATCH", "/order-statuses/99", 404, json={"shouldSendEmail": False}),
    Case("order status put custom", "PUT", "/order-statuses/6", 200, json=_NEW_STATUS),
    Case("order status put standard", "PUT", "/order-statuses/3", 403, json=_NEW_STATUS),
    Case("order status delete", "DELETE", "/order-statuses/7", 204),
    Case("order status delete standard", "DELETE", "/order-statuses/4", 403),
    Case("order status delete in use", "DELETE", "/order-statuses/5", 403),
    Case("order status delete unknown", "DELETE", "/order-statuses/99", 404),
    Case("customers", "GET", "/customers", 200),
    Case(
        "customers with includes",
        "GET",
        "/customers",
        200,
        params={"include": "addresses,externalServices", "includeWithoutAccount": "true"},
    ),
    Case(
        "customers since",
        "GET",
        "/customers",
        200,
        params={"createdSince": "2024-01-01T00:00:00+01:00", "updatedSince": "2024-01-01T00:00:00+01:00"},
    ),
    Case("customers sorted", "GET", "/customers", 200, params={"sortBy": "customerId", "sortOrder": "ASC"}),
    Case("customers page beyond the end", "GET", "/customers", 200, params={"page": "3"}),
    Case("customers unsupported include", "GET", "/customers", 400, params={"include": "tags"}),
    Case("customers bad timestamp", "GET", "/customers", 400, params={"updatedSince": "igår"}),
    Case(
        "customer create",
        "POST",
        "/customers",
        201,
        json={
            "type": "company",
            "email": "order@snickarglädje.example.se",
            "nationalIdNo": "559900-1234",
            "vatNo": "SE559900123401",
            "externalId": "K-20001",
            "externalIdType": "Mamut",
            "addresses": {"invoice": {**_ADDRESS, "companyName": "Snickarglädje AB"}},
        },
    ),
    Case("customer create duplicate e-mail", "POST", "/customers", 400, json={"email": "ASA.ekstrom@example.se"}),
    Case(
        "customer create read-only field",
        "POST",
        "/customers",
        400,
        json={"customerId": 5, "email": "x@example.se"},
        request_follows_spec=False,
    ),
    Case("customer", "GET", "/customers/102", 200, params={"include": "addresses,externalServices"}),
    Case("customer without account", "GET", "/customers/104", 200),
    Case("customer unknown", "GET", "/customers/999", 404),
    Case("customer patch", "PATCH", "/customers/101", 200, json={"customInfo1": "Stamkund", "externalId": "K-1"}),
    Case("customer patch bad pricelist", "PATCH", "/customers/101", 400, json={"pricelistId": 99}),
    Case("customer patch unknown", "PATCH", "/customers/999", 404, json={"customInfo1": "x"}),
    Case(
        "customer put",
        "PUT",
        "/customers/103",
        200,
        json={"type": "person", "email": "ase.brathen@example.no", "addresses": {"invoice": _ADDRESS}},
    ),
    Case("customer delete", "DELETE", "/customers/101", 204),
    Case("customer delete unknown", "DELETE", "/customers/999", 404),
    Case("customer addresses", "GET", "/customers/102/addresses", 200),
    Case("customer addresses of unknown customer", "GET", "/customers/999/addresses", 404),
    Case("customer address", "GET", "/customers/102/addresses/delivery", 200),
    Case("customer address of unknown customer", "GET", "/customers/999/addresses/invoice", 404),
    Case("customer external services", "GET", "/customers/102/external-services", 200),
    Case("customer external service", "GET", "/customers/102/external-services/Fortnox", 200),
    Case("customer external service missing", "GET", "/customers/101/external-services/Fortnox", 404),
    Case("orders", "GET", "/orders", 200),
    *(
        Case(f"orders include {include}", "GET", "/orders", 200, params={"include": include})
        for include in (
            "items",
            "addresses",
            "customer",
            "status",
            "externalServices",
            "items,addresses,customer,status,externalServices",
        )
    ),
    Case(
        "orders filtered",
        "GET",
        "/orders",
        200,
        params={
            "ordersCreatedAfter": "2024-01-01T00:00:00+01:00",
            "ordersCreatedBefore": "2099-01-01T00:00:00+01:00",
            "statusFilter": "1",
            "filterPaymentMethodId": "1",
            "filterShippingMethodId": "1",
            "includeNonCompletePayments": "true",
            "filterQuery": "Åsa",
        },
    ),
    *(
        Case(f"orders sorted by {sort_by}", "GET", "/orders", 200, params={"sortBy": sort_by, "sortOrder": "ASC"})
        for sort_by in ("modifiedAt", "customer", "totalAmount")
    ),
    Case("orders page beyond the end", "GET", "/orders", 200, params={"page": "2"}),
    Case("orders with bundled items", "GET", "/orders", 200, params={"include": "items.bundledItems"}),
    Case("orders unknown include", "GET", "/orders", 400, params={"include": "comments"}),
    Case("orders unknown sort", "GET", "/orders", 400, params={"sortBy": "sku"}, request_follows_spec=False),
    Case("orders status filter 0", "GET", "/orders", 400, params={"statusFilter": "0"}, request_follows_spec=False),
    Case("orders bad timestamp", "GET", "/orders", 400, params={"ordersCreatedAfter": "2024-13-01"}),
    Case("order create", "POST", "/orders", 201, json=_NEW_ORDER),
    Case("order create guest", "POST", "/orders", 201, json=_GUEST_ORDER),
    Case(
        "order create null customer",
        "POST",
        "/orders",
        400,
        json={**_GUEST_ORDER, "customerId": None},
        request_follows_spec=False,
    ),
    Case("order create unknown status", "POST", "/orders", 400, json={**_NEW_ORDER, "statusId": 99}),
    Case(
        "order create with totals",
        "POST",
        "/orders",
        400,
        json={**_NEW_ORDER, "totalAmount": 1.0},
        request_follows_spec=False,
    ),
    Case(
        "order",
        "GET",
        "/orders/1001",
        200,
        params={"include": "items,addresses,customer,status,externalServices"},
    ),
    Case("order guest with customer include", "GET", "/orders/1006", 200, params={"include": "customer"}),
    Case("order unknown", "GET", "/orders/999", 404),
    Case(
        "order patch status change",
        "PATCH",
        "/orders/1003",
        200,
        json={
            "statusId": 3,
            "onOrderStatusChangeSendEmail": False,
            "onOrderStatusChangeProcessPayment": True,
            "shippingTrackingNo": "00370798765432101234",
            "shippingTrackerType": 1,
        },
    ),
    Case(
        "order patch write-back",
        "PATCH",
        "/orders/1002",
        200,
        json={"externalId": "20045", "externalIdType": "Mamut", "internalComment": "Överförd till Mamut"},
    ),
    Case("order patch unknown status", "PATCH", "/orders/1003", 400, json={"statusId": 99}),
    Case("order patch unknown", "PATCH", "/orders/999", 404, json={"statusId": 1}),
    Case("order put", "PUT", "/orders/1005", 200, json={"statusId": 2, "currencyCode": "NOK"}),
    Case(
        "order put without status", "PUT", "/orders/1005", 400, json={"currencyCode": "NOK"}, request_follows_spec=False
    ),
    Case("order delete", "DELETE", "/orders/1010", 204),
    Case("order delete unknown", "DELETE", "/orders/999", 404),
    Case("order items", "GET", "/orders/1001/items", 200),
    Case("order items of unknown order", "GET", "/orders/999/items", 404),
    Case("order item create", "POST", "/orders/1001/items", 201, json=_NEW_ITEM),
    Case("order item create without price", "POST", "/orders/1001/items", 400, json={"sku": "X", "quantity": 1}),
    Case("order item", "GET", "/orders/1001/items/1", 200),
    Case("order item with bundled items", "GET", "/orders/1001/items/1", 200, params={"include": "bundledItems"}),
    Case("order item of another order", "GET", "/orders/1002/items/1", 404),
    Case("order item patch", "PATCH", "/orders/1001/items/2", 200, json={"quantity": 3, "discount": 5}),
    Case("order item put", "PUT", "/orders/1001/items/1", 200, json=_NEW_ITEM),
    Case(
        "order item patch bad discount",
        "PATCH",
        "/orders/1001/items/2",
        400,
        json={"discount": 120, "discountType": "percent"},
    ),
    Case("order item delete", "DELETE", "/orders/1001/items/3", 204),
    Case("order item delete unknown", "DELETE", "/orders/1001/items/99", 404),
    Case("order addresses", "GET", "/orders/1001/addresses", 200),
    Case("order addresses of unknown order", "GET", "/orders/999/addresses", 404),
    Case("order address", "GET", "/orders/1004/addresses/customerDelivery", 200),
    Case("order address missing", "GET", "/orders/1006/addresses/paymentMethodInvoice", 404),
    Case("order address put", "PUT", "/orders/1006/addresses/customerDelivery", 200, json=_ADDRESS),
    Case(
        "order address put bad country",
        "PUT",
        "/orders/1006/addresses/customerDelivery",
        400,
        json={**_ADDRESS, "countryCode": "se"},
    ),
    Case("order address patch", "PATCH", "/orders/1001/addresses/customerInvoice", 200, json={"careOf": "Öhman"}),
    Case(
        "order address patch missing", "PATCH", "/orders/1006/addresses/paymentMethodDelivery", 404, json={"city": "X"}
    ),
    Case("order address delete", "DELETE", "/orders/1001/addresses/paymentMethodDelivery", 204),
    Case("order address delete missing", "DELETE", "/orders/1006/addresses/paymentMethodDelivery", 404),
    Case("order external services", "GET", "/orders/1002/external-services", 200),
    Case("order external services of unknown order", "GET", "/orders/999/external-services", 404),
    Case(
        "order external service create",
        "POST",
        "/orders/1001/external-services",
        201,
        json={"serviceName": "Mamut", "externalIdValue": "20045"},
    ),
    Case(
        "order external service create existing",
        "POST",
        "/orders/1002/external-services",
        400,
        json={"serviceName": "nShift", "externalIdValue": "X"},
    ),
    Case("order external service", "GET", "/orders/1002/external-services/nShift", 200),
    Case("order external service missing", "GET", "/orders/1002/external-services/Fortnox", 404),
    Case(
        "order external service put",
        "PUT",
        "/orders/1001/external-services/Mamut",
        200,
        json={"serviceName": "Mamut", "externalIdValue": "20046"},
    ),
    Case(
        "order external service patch",
        "PATCH",
        "/orders/1002/external-services/nShift",
        200,
        json={"externalIdValue": "SHP-55013"},
    ),
    Case(
        "order external service patch missing",
        "PATCH",
        "/orders/1001/external-services/Fortnox",
        404,
        json={"externalIdValue": "1"},
    ),
    Case("order external service delete", "DELETE", "/orders/1002/external-services/nShift", 204),
    Case("order external service delete missing", "DELETE", "/orders/1001/external-services/nShift", 404),
)
ALL_CASES = CASES + SALES_CASES


@pytest.fixture
def demo_ids(sandbox: Sandbox) -> dict[str, int]:
    """Ids of demo products used by the cases, looked up by SKU rather than hard-coded."""
    ids: dict[str, int] = {}
    for key, sku in (("1", "LEK-1001"), ("2", "LEK-1002"), ("t", "KL-2101-RD-92"), ("o", "KL-2002-92")):
        found = sandbox.state.find_variant(sku)
        assert found is not None, sku
        ids[f"p{key}"], ids[f"v{key}"] = found
    return ids


@pytest.fixture
def checked_api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """A client whose every response is validated against the spec as it arrives."""

    def validate(response: httpx.Response) -> None:
        assert_exchange_conforms(response, check_request=False)

    with httpx.Client(base_url=sandbox.base_url, timeout=10, event_hooks={"response": [validate]}) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(sandbox, client)}"
        yield client


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.name for case in ALL_CASES])
def test_endpoint_answers_as_the_spec_says(
    case: Case, sandbox: Sandbox, checked_api: httpx.Client, demo_ids: dict[str, int]
) -> None:
    sandbox.reset_requests()
    response = checked_api.request(case.method, case.path.format(**demo_ids), params=case.params, json=case.json)
    assert response.status_code == case.status, response.text
    if case.status >= 400:
        assert set(response.json()) == {"error", "error_description"}
    if case.request_follows_spec:
        (recorded,) = sandbox.requests
        assert_request_conforms(recorded)


def test_every_route_has_a_contract_case() -> None:
    router = build_router()
    ids = {"p1": 1, "v1": 1, "p2": 2, "v2": 2, "pt": 12, "vt": 20, "po": 10, "vo": 14}
    covered = {router.resolve(case.method, case.path.format(**ids))[0] for case in ALL_CASES}
    missing = [f"{route.method} {route.pattern}" for route in router.routes if route.handler not in covered]
    assert missing == []


def test_order_totals_are_the_spec_examples_arithmetic(checked_api: httpx.Client) -> None:
    """OrderModel's example: totalAmount 622.4 (ex VAT) + totalVat 155.6 = amountToPay 778. An order built from the
    spec's own example fields (shippingCost and paymentFee 23.2, every VAT rate 25 %) gets exactly those totals."""
    schemas = load_patched_spec()["components"]["schemas"]
    order, item = schemas["OrderModel"]["properties"], schemas["OrderItemModel"]["properties"]
    example = {
        name: order[name]["example"]
        for name in (
            "totalAmount",
            "totalVat",
            "amountToPay",
            "shippingCost",
            "shippingVatRate",
            "paymentFee",
            "paymentVatRate",
        )
    }
    assert (example["totalAmount"], example["totalVat"], example["amountToPay"]) == (622.4, 155.6, 778)
    items_net = round(example["totalAmount"] - example["shippingCost"] - example["paymentFee"], 2)
    body = {
        **_NEW_ORDER,
        **{name: example[name] for name in ("shippingCost", "shippingVatRate", "paymentFee", "paymentVatRate")},
        "items": [{"sku": "LEK-1001", "quantity": 1, "unitPrice": items_net, "vatRate": item["vatRate"]["example"]}],
    }

    created = checked_api.post("/orders", json=body).json()["data"]

    totals = (created["totalAmount"], created["totalVat"], created["amountToPay"])
    assert totals == (example["totalAmount"], example["totalVat"], example["amountToPay"])
    assert created["totalAmount"] + created["totalVat"] == created["amountToPay"]


def test_token_responses_follow_the_spec(sandbox: Sandbox) -> None:
    good = httpx.post(
        sandbox.base_url + "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
    )
    bad = httpx.post(
        sandbox.base_url + "/token",
        data={"grant_type": "client_credentials", "client_id": sandbox.client_id, "client_secret": "wrong"},
    )
    assert (good.status_code, bad.status_code) == (200, 400)
    assert bad.json()["error"] == "invalid_client"
    for response in (good, bad):
        assert_exchange_conforms(response)
    for recorded in sandbox.requests:
        assert recorded.content_type == "application/x-www-form-urlencoded"
        assert_request_conforms(recorded)


def test_auth_rate_limit_and_fault_errors_follow_the_spec(sandbox: Sandbox, checked_api: httpx.Client) -> None:
    rejected = httpx.get(sandbox.base_url + "/shop", headers={"Authorization": "Bearer not-a-token"})
    assert rejected.status_code == 401
    assert rejected.json()["error"] == "invalid_token"
    assert_exchange_conforms(rejected)

    sandbox.faults.fail_429_next = 1
    sandbox.faults.fail_500_next = 1
    assert checked_api.get("/products").status_code == 429
    assert checked_api.get("/products").status_code == 500
    sandbox.faults.rate_limit_per_minute = 1
    assert checked_api.get("/shop").status_code == 200
    limited = checked_api.get("/shop")
    assert limited.status_code == 429
    assert limited.json()["error"] == "Too Many Requests"


def test_checker_rejects_what_the_spec_forbids(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    """The contract helpers can fail: a wrapped ``prices`` list and a read-only field in a request."""
    url = f"{sandbox.base_url}/products/1/variants"
    wrong_shape = b'{"data": [{"variantId": 1, "sku": "A", "attributeValueLinks": [], "prices": {"data": []}}]}'
    with pytest.raises(AssertionError, match="prices"):
        assert_response_conforms("GET", url, 200, {"content-type": "application/json"}, wrong_shape)

    sandbox.reset_requests()
    sandbox_api.post("/product-attributes", json={"attributeId": 5, "languages": []})
    (recorded,) = sandbox.requests
    with pytest.raises(AssertionError, match="read-only"):
        assert_request_conforms(recorded)
