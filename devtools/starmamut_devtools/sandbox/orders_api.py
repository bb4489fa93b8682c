"""Handlers for orders, customers, order statuses and the payment/shipping/currency lookups.

Thin translations from HTTP to :class:`~starmamut_devtools.sandbox.state.SandboxState`; every rule lives there.
"""

from __future__ import annotations

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
from starmamut_devtools.sandbox.sales_state import (
    CUSTOMER_INCLUDES,
    ORDER_INCLUDES,
    ORDER_ITEM_INCLUDES,
    ORDER_SORT_FIELDS,
)
from starmamut_devtools.sandbox.state import CustomerQuery, OrderQuery, Page, SandboxState

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


# ---------------------------------------------------------------- lookups


def list_currencies(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.currencies())


def get_currency(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.currency(request.path_params["currencyCode"]))


def list_payment_methods(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.payment_methods())


def get_payment_method(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.payment_method(request.path_params["paymentMethodId"]))


def list_shipping_methods(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.shipping_methods())


def get_shipping_method(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.shipping_method(request.path_params["shippingMethodId"]))


def list_tracking_types(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.shipping_tracking_types())


# ---------------------------------------------------------------- order statuses


def list_order_statuses(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.order_statuses())


def create_order_status(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_order_status(request.body), 201)


def get_order_status(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.order_status(request.path_params["orderStatusId"]))


def patch_order_status(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.update_order_status(request.path_params["orderStatusId"], request.body))


def put_order_status(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.update_order_status(request.path_params["orderStatusId"], request.body, replace=True))


def delete_order_status(state: SandboxState, request: ApiRequest) -> ApiResponse:
    state.delete_order_status(request.path_params["orderStatusId"])
    return deleted_response()


# ---------------------------------------------------------------- customers


def list_customers(state: SandboxState, request: ApiRequest) -> ApiResponse:
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


def create_customer(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_customer(request.body), 201)


def get_customer(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, CUSTOMER_INCLUDES, _UNSUPPORTED_CUSTOMER_INCLUDES)
    return data_response(state.customer(request.path_params["customerId"], includes))


def patch_customer(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.update_customer(request.path_params["customerId"], request.body))


def put_customer(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.replace_customer(request.path_params["customerId"], request.body))


def delete_customer(state: SandboxState, request: ApiRequest) -> ApiResponse:
    state.delete_customer(request.path_params["customerId"])
    return deleted_response()


def list_customer_addresses(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.customer_addresses(request.path_params["customerId"]))


def get_customer_address(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.customer_address(params["customerId"], params["addressType"]))


def list_customer_services(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.customer_external_services(request.path_params["customerId"]))


def get_customer_service(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.customer_external_service(params["customerId"], params["serviceName"]))


# ---------------------------------------------------------------- orders


def list_orders(state: SandboxState, request: ApiRequest) -> ApiResponse:
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


def create_order(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_order(request.body), 201)


def get_order(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, ORDER_INCLUDES)
    return data_response(state.order(request.path_params["orderId"], includes))


def patch_order(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.update_order(request.path_params["orderId"], request.body))


def put_order(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.replace_order(request.path_params["orderId"], request.body))


def delete_order(state: SandboxState, request: ApiRequest) -> ApiResponse:
    state.delete_order(request.path_params["orderId"])
    return deleted_response()


def list_items(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.order_items(request.path_params["orderId"]))


def create_item(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_order_item(request.path_params["orderId"], request.body), 201)


def get_item(state: SandboxState, request: ApiRequest) -> ApiResponse:
    includes = query_includes(request, ORDER_ITEM_INCLUDES)
    params = request.path_params
    return data_response(state.order_item(params["orderId"], params["orderItemId"], includes))


def patch_item(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.update_order_item(params["orderId"], params["orderItemId"], request.body))


def put_item(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.update_order_item(params["orderId"], params["orderItemId"], request.body, replace=True))


def delete_item(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    state.delete_order_item(params["orderId"], params["orderItemId"])
    return deleted_response()


def list_order_addresses(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.order_addresses(request.path_params["orderId"]))


def get_order_address(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.order_address(params["orderId"], params["addressType"]))


def put_order_address(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.set_order_address(params["orderId"], params["addressType"], request.body))


def patch_order_address(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.set_order_address(params["orderId"], params["addressType"], request.body, replace=False))


def delete_order_address(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    state.delete_order_address(params["orderId"], params["addressType"])
    return deleted_response()


def list_order_services(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.order_external_services(request.path_params["orderId"]))


def create_order_service(state: SandboxState, request: ApiRequest) -> ApiResponse:
    return data_response(state.add_order_external_service(request.path_params["orderId"], request.body), 201)


def get_order_service(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.order_external_service(params["orderId"], params["serviceName"]))


def put_order_service(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    return data_response(state.set_order_external_service(params["orderId"], params["serviceName"], request.body))


def patch_order_service(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    service = state.set_order_external_service(params["orderId"], params["serviceName"], request.body, replace=False)
    return data_response(service)


def delete_order_service(state: SandboxState, request: ApiRequest) -> ApiResponse:
    params = request.path_params
    state.delete_order_external_service(params["orderId"], params["serviceName"])
    return deleted_response()


def register(router: Router) -> None:
    """Add every order, customer, order status and lookup route."""
    status = "/order-statuses/{orderStatusId:int}"
    customer = "/customers/{customerId:int}"
    order = "/orders/{orderId:int}"
    routes = (
        ("GET", "/currencies", list_currencies),
        ("GET", "/currencies/{currencyCode}", get_currency),
        ("GET", "/payment-methods", list_payment_methods),
        ("GET", "/payment-methods/{paymentMethodId:int}", get_payment_method),
        ("GET", "/shipping-methods", list_shipping_methods),
        ("GET", "/shipping-methods/{shippingMethodId:int}", get_shipping_method),
        ("GET", "/shipping-tracking-types", list_tracking_types),
        ("GET", "/order-statuses", list_order_statuses),
        ("POST", "/order-statuses", create_order_status),
        ("GET", status, get_order_status),
        ("PATCH", status, patch_order_status),
        ("PUT", status, put_order_status),
        ("DELETE", status, delete_order_status),
        ("GET", "/customers", list_customers),
        ("POST", "/customers", create_customer),
        ("GET", customer, get_customer),
        ("PATCH", customer, patch_customer),
        ("PUT", customer, put_customer),
        ("DELETE", customer, delete_customer),
        ("GET", customer + "/addresses", list_customer_addresses),
        ("GET", customer + "/addresses/{addressType}", get_customer_address),
        ("GET", customer + "/external-services", list_customer_services),
        ("GET", customer + "/external-services/{serviceName}", get_customer_service),
        ("GET", "/orders", list_orders),
        ("POST", "/orders", create_order),
        ("GET", order, get_order),
        ("PATCH", order, patch_order),
        ("PUT", order, put_order),
        ("DELETE", order, delete_order),
        ("GET", order + "/items", list_items),
        ("POST", order + "/items", create_item),
        ("GET", order + "/items/{orderItemId:int}", get_item),
        ("PATCH", order + "/items/{orderItemId:int}", patch_item),
        ("PUT", order + "/items/{orderItemId:int}", put_item),
        ("DELETE", order + "/items/{orderItemId:int}", delete_item),
        ("GET", order + "/addresses", list_order_addresses),
        ("GET", order + "/addresses/{addressType}", get_order_address),
        ("PUT", order + "/addresses/{addressType}", put_order_address),
        ("PATCH", order + "/addresses/{addressType}", patch_order_address),
        ("DELETE", order + "/addresses/{addressType}", delete_order_address),
        ("GET", order + "/external-services", list_order_services),
        ("POST", order + "/external-services", create_order_service),
        ("GET", order + "/external-services/{serviceName}", get_order_service),
        ("PUT", order + "/external-services/{serviceName}", put_order_service),
        ("PATCH", order + "/external-services/{serviceName}", patch_order_service),
        ("DELETE", order + "/external-services/{serviceName}", delete_order_service),
    )
    for method, pattern, handler in routes:
        router.add(method, pattern, handler)
