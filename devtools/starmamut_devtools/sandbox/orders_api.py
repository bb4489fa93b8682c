"""Routes of orders, customers, order statuses and the payment/shipping/currency lookups.

A table of thin translations from HTTP to :class:`~starmamut_devtools.sandbox.state.ShopState`; every rule
lives there. Every route but the customer and order listings is one
:class:`~starmamut_devtools.sandbox.router.StateCall`.
"""

from __future__ import annotations

from starmamut_devtools.sandbox.errors import bad_request
from starmamut_devtools.sandbox.paging import Page
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
from starmamut_devtools.sandbox.sales_state import (
    CUSTOMER_INCLUDES,
    ORDER_INCLUDES,
    ORDER_ITEM_INCLUDES,
    ORDER_SORT_FIELDS,
)
from starmamut_devtools.sandbox.state import CustomerQuery, OrderQuery, ShopState

# Customer tags are not modelled: asking for them is a 400 saying so, not an invented empty child.
_UNSUPPORTED_CUSTOMER_INCLUDES = ("tags",)


def _paged(page: Page) -> ApiResponse:
    return ApiResponse(200, {"data": page.items, "meta": {"pagination": page.pagination}})


def _query_id(request: ApiRequest, name: str) -> int | None:
    """An optional id filter such as ``statusFilter``: an integer >= 1."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise bad_request(f"{name}: expected an integer >= 1, got {raw!r}")
    return int(raw)


def list_customers(state: ShopState, request: ApiRequest) -> ApiResponse:
    query_choice(request, "sortBy", ("customerId",))
    query = CustomerQuery(
        page=query_page(request),
        created_since=query_timestamp(request, "createdSince"),
        updated_since=query_timestamp(request, "updatedSince"),
        include_without_account=bool(query_bool(request, "includeWithoutAccount")),
        descending=query_choice(request, "sortOrder", ("ASC", "DESC")) != "ASC",
        includes=query_includes(request, CUSTOMER_INCLUDES, _UNSUPPORTED_CUSTOMER_INCLUDES),
    )
    return _paged(state.list_customers(query))


def list_orders(state: ShopState, request: ApiRequest) -> ApiResponse:
    query = OrderQuery(
        page=query_page(request),
        created_after=query_timestamp(request, "ordersCreatedAfter"),
        created_before=query_timestamp(request, "ordersCreatedBefore"),
        status_id=_query_id(request, "statusFilter"),
        payment_method_id=_query_id(request, "filterPaymentMethodId"),
        shipping_method_id=_query_id(request, "filterShippingMethodId"),
        include_non_complete=bool(query_bool(request, "includeNonCompletePayments")),
        text=request.query.get("filterQuery") or None,
        sort_by=query_choice(request, "sortBy", ORDER_SORT_FIELDS) or "orderId",
        descending=query_choice(request, "sortOrder", ("ASC", "DESC")) != "ASC",
        includes=query_includes(request, ORDER_INCLUDES),
    )
    return _paged(state.list_orders(query))


_CUSTOMER_INCLUDES = (CUSTOMER_INCLUDES, _UNSUPPORTED_CUSTOMER_INCLUDES)
_STATUS = "/order-statuses/{orderStatusId:int}"
_CUSTOMER = "/customers/{customerId:int}"
_ORDER = "/orders/{orderId:int}"
_ITEM = _ORDER + "/items/{orderItemId:int}"
_ORDER_ADDRESS = _ORDER + "/addresses/{addressType}"
_ORDER_SERVICE = _ORDER + "/external-services/{serviceName}"
_PARTIAL = {"replace": False}
_WHOLE = {"replace": True}

ROUTES: RouteTable = (
    # lookups
    ("GET", "/currencies", StateCall("currencies")),
    ("GET", "/currencies/{currencyCode}", StateCall("currency")),
    ("GET", "/payment-methods", StateCall("payment_methods")),
    ("GET", "/payment-methods/{paymentMethodId:int}", StateCall("payment_method")),
    ("GET", "/shipping-methods", StateCall("shipping_methods")),
    ("GET", "/shipping-methods/{shippingMethodId:int}", StateCall("shipping_method")),
    ("GET", "/shipping-tracking-types", StateCall("shipping_tracking_types")),
    # order statuses
    ("GET", "/order-statuses", StateCall("order_statuses")),
    ("POST", "/order-statuses", StateCall("add_order_status", body=True, status=201)),
    ("GET", _STATUS, StateCall("order_status")),
    ("PATCH", _STATUS, StateCall("update_order_status", body=True)),
    ("PUT", _STATUS, StateCall("update_order_status", body=True, fixed=_WHOLE)),
    ("DELETE", _STATUS, StateCall("delete_order_status", status=204)),
    # customers
    ("GET", "/customers", list_customers),
    ("POST", "/customers", StateCall("add_customer", body=True, status=201)),
    ("GET", _CUSTOMER, StateCall("customer", includes=_CUSTOMER_INCLUDES)),
    ("PATCH", _CUSTOMER, StateCall("update_customer", body=True)),
    ("PUT", _CUSTOMER, StateCall("replace_customer", body=True)),
    ("DELETE", _CUSTOMER, StateCall("delete_customer", status=204)),
    ("GET", _CUSTOMER + "/addresses", StateCall("customer_addresses")),
    ("GET", _CUSTOMER + "/addresses/{addressType}", StateCall("customer_address")),
    ("GET", _CUSTOMER + "/external-services", StateCall("customer_external_services")),
    ("GET", _CUSTOMER + "/external-services/{serviceName}", StateCall("customer_external_service")),
    # orders
    ("GET", "/orders", list_orders),
    ("POST", "/orders", StateCall("add_order", body=True, status=201)),
    ("GET", _ORDER, StateCall("order", includes=(ORDER_INCLUDES, ()))),
    ("PATCH", _ORDER, StateCall("update_order", body=True)),
    ("PUT", _ORDER, StateCall("replace_order", body=True)),
    ("DELETE", _ORDER, StateCall("delete_order", status=204)),
    ("GET", _ORDER + "/items", StateCall("order_items")),
    ("POST", _ORDER + "/items", StateCall("add_order_item", body=True, status=201)),
    ("GET", _ITEM, StateCall("order_item", includes=(ORDER_ITEM_INCLUDES, ()))),
    ("PATCH", _ITEM, StateCall("update_order_item", body=True)),
    ("PUT", _ITEM, StateCall("update_order_item", body=True, fixed=_WHOLE)),
    ("DELETE", _ITEM, StateCall("delete_order_item", status=204)),
    ("GET", _ORDER + "/addresses", StateCall("order_addresses")),
    ("GET", _ORDER_ADDRESS, StateCall("order_address")),
    ("PUT", _ORDER_ADDRESS, StateCall("set_order_address", body=True)),
    ("PATCH", _ORDER_ADDRESS, StateCall("set_order_address", body=True, fixed=_PARTIAL)),
    ("DELETE", _ORDER_ADDRESS, StateCall("delete_order_address", status=204)),
    ("GET", _ORDER + "/external-services", StateCall("order_external_services")),
    ("POST", _ORDER + "/external-services", StateCall("add_order_external_service", body=True, status=201)),
    ("GET", _ORDER_SERVICE, StateCall("order_external_service")),
    ("PUT", _ORDER_SERVICE, StateCall("set_order_external_service", body=True)),
    ("PATCH", _ORDER_SERVICE, StateCall("set_order_external_service", body=True, fixed=_PARTIAL)),
    ("DELETE", _ORDER_SERVICE, StateCall("delete_order_external_service", status=204)),
)


def register(router: Router) -> None:
    """Add every order, customer, order status and lookup route."""
    router.add_table(ROUTES)
