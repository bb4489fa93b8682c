"""The Starweb client against the sandbox over real HTTP on loopback: tokens, paging, faults, pacing, secrets.

Every test's shop checks, when the test ends, that each request the client sent follows the official
OpenAPI spec.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import pickle
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from starmamut.starweb import (
    FilePacer,
    StarwebAmbiguousWrite,
    StarwebAuthError,
    StarwebClient,
    StarwebClockSkew,
    StarwebCredentials,
    StarwebError,
    StarwebIncompleteListing,
    StarwebNotFound,
    StarwebRateLimited,
    StarwebUnavailable,
)
from starmamut.starweb.client import REDACTED, backoff_delay, retry_after_seconds
from starmamut_devtools.sandbox.server import Sandbox, start_sandbox
from tests.fixtures.openapi_contract import assert_request_conforms

PER_PAGE = 3
DEMO_PRODUCT_COUNT = 15
CET = timezone(timedelta(hours=1))
# A secret with characters that URL encoding, JSON escaping and Base64 each write differently.
AWKWARD_SECRET = 'sé"cr/et+=&x y'


@pytest.fixture
def shop() -> Iterator[Sandbox]:
    """The demo shop with three items a page, so every listing spans several pages."""
    with start_sandbox(per_page=PER_PAGE) as sandbox:
        yield sandbox
        assert_all_requests_conform(sandbox)


def assert_all_requests_conform(sandbox: Sandbox) -> None:
    for recorded in sandbox.requests:
        assert_request_conforms(recorded)


def make_client(sandbox: Sandbox, **options: Any) -> StarwebClient:
    """A client with the sandbox's credentials and back-off short enough for tests."""
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_cap", 0.05)
    credentials = StarwebCredentials(sandbox.base_url, sandbox.client_id, sandbox.client_secret)
    return StarwebClient(credentials, **options)


def token_requests(sandbox: Sandbox) -> int:
    return sum(1 for recorded in sandbox.requests if recorded.path == "/token")


def demo_product_ids() -> list[int]:
    return list(range(1, DEMO_PRODUCT_COUNT + 1))


def sent_to(sandbox: Sandbox, path: str) -> list[int]:
    """Statuses answered to the requests for ``path``, in order."""
    return [recorded.status for recorded in sandbox.requests if recorded.path == path]


def awkward_client(sandbox: Sandbox, **options: Any) -> StarwebClient:
    """A client of an API user whose secret is :data:`AWKWARD_SECRET`."""
    sandbox.add_client("awkward.client", AWKWARD_SECRET)
    options.setdefault("backoff_base", 0.01)
    options.setdefault("backoff_cap", 0.05)
    return StarwebClient(StarwebCredentials(sandbox.base_url, "awkward.client", AWKWARD_SECRET), **options)


def echoed_forms(value: str) -> set[str]:
    """The ways a server may echo ``value``: raw, URL-encoded, JSON-escaped (Python's and PHP's)."""
    escaped = json.dumps(value)[1:-1]
    return {value, quote(value), quote(value, safe=""), quote_plus(value), escaped, escaped.replace("/", "\\/")}


class AuthorizationRecordingTransport(httpx.HTTPTransport):
    """The real HTTP transport, noting each Authorization header so a test knows which tokens to look for."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "Authorization" in request.headers:
            self.authorizations.add(request.headers["Authorization"])
        return super().handle_request(request)


class CountingPacer(FilePacer):
    """A real FilePacer that also counts how often the client asked it for a slot."""

    def __init__(self, directory: Path) -> None:
        super().__init__("shop:counting", per_minute=60_000, directory=directory)
        self.acquisitions = 0
        self._count_lock = threading.Lock()

    def acquire(self) -> float:
        with self._count_lock:
            self.acquisitions += 1
        return super().acquire()


# ------------------------------------------------------------------------------------------------ tokens


def test_one_token_fetch_serves_many_concurrent_calls(shop: Sandbox) -> None:
    shop.faults.latency_ms = 20  # the token fetch takes long enough for every worker thread to want one
    with make_client(shop, max_concurrency=8) as client:
        products = list(client.map_concurrent(client.get_product, demo_product_ids()))
        assert [product["productId"] for product in products] == demo_product_ids()
        assert client.stats.token_fetches == 1
    assert token_requests(shop) == 1


def test_expired_token_is_renewed_mid_iteration_without_losing_items(shop: Sandbox) -> None:
    with make_client(shop) as client:
        seen = []
        for product in client.iter_products():
            seen.append(product["productId"])
            if len(seen) == 4:  # inside page two: the next page request meets a dead token
                shop.expire_tokens()
        assert seen == demo_product_ids()
        assert client.stats.token_fetches == 2
    refused = [recorded for recorded in shop.requests if recorded.status == 401]
    assert [(recorded.path, recorded.query.get("page")) for recorded in refused] == [("/products", "3")]
    assert token_requests(shop) == 2


def test_token_is_renewed_before_it_expires() -> None:
    with start_sandbox(token_ttl_seconds=1) as sandbox, make_client(sandbox) as client:
        client.get_shop()
        time.sleep(1.0)  # past the renewal point (90 % of the lifetime), right at the expiry
        client.get_shop()
        assert [recorded.status for recorded in sandbox.requests] == [200, 200, 200, 200]
        assert token_requests(sandbox) == 2
        assert_all_requests_conform(sandbox)


def test_token_refused_twice_is_an_auth_error(shop: Sandbox) -> None:
    shop.faults.token_ttl_seconds = 0  # every token the shop issues is dead on arrival
    with make_client(shop) as client, pytest.raises(StarwebAuthError) as caught:
        client.get_shop()
    assert (caught.value.status, caught.value.error) == (401, "invalid_token")
    assert "GET /shop" in str(caught.value)
    assert token_requests(shop) == 2


# ------------------------------------------------------------------------------------------------ reads


def test_products_are_read_over_every_page(shop: Sandbox) -> None:
    with make_client(shop) as client:
        products = list(client.iter_products())
        total = client.get("/products")["meta"]["pagination"]["total"]
    assert [product["productId"] for product in products] == demo_product_ids()
    assert total == DEMO_PRODUCT_COUNT
    pages = [recorded.query.get("page") for recorded in shop.requests if recorded.path == "/products"]
    assert pages == [None, "2", "3", "4", "5", None]


def test_variants_are_read_over_pages_without_meta(shop: Sandbox) -> None:
    with start_sandbox() as one_page_shop, make_client(one_page_shop) as reference:
        expected = {
            product["productId"]: [variant["variantId"] for variant in reference.iter_variants(product["productId"])]
            for product in reference.iter_products()
            if product["hasSeveralVariants"]
        }
    # More variants than a page holds, ending on a short page.
    product_id, variant_ids = next(
        (product_id, ids) for product_id, ids in expected.items() if len(ids) > PER_PAGE and len(ids) % PER_PAGE
    )

    def variant_pages() -> list[str | None]:
        variants_path = f"/products/{product_id}/variants"
        return [recorded.query.get("page") for recorded in shop.requests if recorded.path == variants_path]

    pages_needed = -(-len(variant_ids) // PER_PAGE)
    with make_client(shop) as client:
        # Page size unknown yet: pages are read until one comes back empty.
        assert [variant["variantId"] for variant in client.iter_variants(product_id)] == variant_ids
        assert variant_pages() == [None, *(str(page) for page in range(2, pages_needed + 2))]
        shop.reset_requests()
        list(client.iter_products())  # learns the page size from meta.pagination
        assert [variant["variantId"] for variant in client.iter_variants(product_id)] == variant_ids
        # Now the short last page ends the listing without the empty read.
        full_pages = len(variant_ids) // PER_PAGE
        assert variant_pages() == [None, *(str(page) for page in range(2, full_pages + 2))]


def test_error_body_in_a_200_ends_a_listing_with_an_error(shop: Sandbox) -> None:
    with make_client(shop) as client:
        seen = []
        with pytest.raises(StarwebIncompleteListing) as caught:
            for product in client.iter_products():
                seen.append(product["productId"])
                if len(seen) == PER_PAGE:  # the answer for page two carries an error instead of data
                    shop.faults.error_200_next = 1
    assert seen == demo_product_ids()[:PER_PAGE]
    assert str(caught.value) == (
        "Starweb GET /products listing is incomplete: page 2: HTTP 200 with an error body (server_error:"
        " Internal server error, answered with HTTP 200 (fault injected by the sandbox)); stopped rather than"
        " skip records"
    )


def test_get_refuses_a_200_with_an_error_body(shop: Sandbox) -> None:
    shop.faults.error_200_next = 1
    with make_client(shop) as client, pytest.raises(StarwebError) as caught:
        client.get_shop()
    assert (caught.value.status, caught.value.error) == (200, "server_error")


def test_empty_page_before_the_last_ends_a_listing_with_an_error(shop: Sandbox) -> None:
    shop.faults.empty_page = 3
    with make_client(shop) as client:
        seen = []
        with pytest.raises(StarwebIncompleteListing, match="page 3: empty, but meta.pagination says 5 pages"):
            seen.extend(product["productId"] for product in client.iter_products())
        with pytest.raises(StarwebIncompleteListing, match="page 3: empty"):
            client.products_page(3)
    assert seen == demo_product_ids()[: 2 * PER_PAGE]


def test_fewer_items_than_the_total_end_a_listing_with_an_error(shop: Sandbox) -> None:
    shop.faults.listing_short_by = 1
    with make_client(shop) as client:
        seen = []
        with pytest.raises(StarwebIncompleteListing, match="14 items over 5 pages, but meta.pagination.total is 15"):
            seen.extend(product["productId"] for product in client.iter_products())
        early = [product["productId"] for product in itertools.islice(client.iter_products(), 4)]
    assert seen == demo_product_ids()[:-1]  # every item read was handed out before the error
    assert early == demo_product_ids()[:4]  # a caller that stops early is never refused


def test_listing_without_a_data_list_is_refused(shop: Sandbox) -> None:
    with make_client(shop) as client, pytest.raises(StarwebIncompleteListing, match="HTTP 200 without a data list"):
        list(client.iter_pages("/shop"))


def test_include_and_updated_since_reach_the_server(shop: Sandbox) -> None:
    since = datetime(2024, 3, 10, 11, 0, tzinfo=CET)
    with make_client(shop) as client:
        products = list(client.iter_products(updated_since=since, include=("primaryVariant", "languages")))
    assert 0 < len(products) < DEMO_PRODUCT_COUNT
    for product in products:
        assert datetime.fromisoformat(product["modifiedAt"]) >= since
        assert product["variants"]["data"] and product["languages"]["data"]
    first_request = next(recorded for recorded in shop.requests if recorded.path == "/products")
    assert first_request.query == {
        "updatedSince": "2024-03-10T11:00:00+01:00",
        "include": "primaryVariant,languages",
    }


def test_filter_sku_finds_one_product(shop: Sandbox) -> None:
    with make_client(shop) as client:
        products = list(client.iter_products(filter_sku="LEK-1001"))
    assert [product["productId"] for product in products] == [1]
    assert shop.requests[-1].query == {"filterSku": "LEK-1001"}


def test_naive_updated_since_is_refused_before_any_request(shop: Sandbox) -> None:
    with make_client(shop) as client, pytest.raises(ValueError, match="timezone-aware"):
        list(client.iter_products(updated_since=datetime(2024, 3, 10, 11, 0)))
    assert shop.requests == []


def test_typed_reads_return_the_spec_fields(shop: Sandbox) -> None:
    with make_client(shop) as client:
        assert client.get_shop()["name"] == "Små Äventyr"
        assert any(pricelist["isMaster"] for pricelist in client.list_pricelists())
        assert all("stockStatusId" in status for status in client.list_stock_statuses())
        assert any(location["ecommerceStockLocation"] for location in client.list_stock_locations())
        attribute_id = client.list_attributes()[0]["attributeId"]
        assert all("attributeValueId" in value for value in client.list_attribute_values(attribute_id))
        assert "SE" in {rate["countryCode"] for rate in client.list_vat_rates()}
        product = client.get_product(9, include=("primaryVariant",))
        assert product["productId"] == 9 and product["variants"]["data"][0]["sku"]


def test_connection_check_names_the_shop(shop: Sandbox) -> None:
    with make_client(shop) as client:
        assert client.test_connection() == (
            True,
            "Connected to Starweb shop 'Små Äventyr' (smaaventyr) as 'demo.starmamut'",
        )


def test_connection_check_explains_a_wrong_base_url(shop: Sandbox) -> None:
    credentials = StarwebCredentials(shop.base_url.replace("/api/v2", "/api/v9"), shop.client_id, "s3cr3t")
    with StarwebClient(credentials) as client:
        ok, message = client.test_connection()
    assert not ok
    assert message == f"No Starweb shop answers at {credentials.base_url}: check the base URL"


def test_connection_check_explains_an_unreachable_host() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        free_port = placeholder.getsockname()[1]
    credentials = StarwebCredentials(f"http://127.0.0.1:{free_port}/api/v2", "demo.starmamut", "s3cr3t")
    with StarwebClient(credentials, max_retries=1, backoff_base=0.01) as client:
        ok, message = client.test_connection()
    assert not ok
    assert message.startswith(f"Could not reach Starweb at {credentials.base_url}: ")
    assert "ConnectError" in message and "s3cr3t" not in message


# ------------------------------------------------------------------------------------------------ clock


def test_clock_check_uses_the_answers_already_received(shop: Sandbox) -> None:
    with make_client(shop) as client:
        client.get_shop()
        sent = len(shop.requests)
        client.check_clock(timedelta(seconds=5))
        assert len(shop.requests) == sent


def test_clock_check_of_a_fresh_client_reads_the_shop_once(shop: Sandbox) -> None:
    with make_client(shop) as client:
        client.check_clock(timedelta(seconds=5))
    assert [recorded.path for recorded in shop.requests] == ["/token", "/shop"]


@pytest.mark.parametrize("skew_seconds", [600, -600])
def test_clock_skew_beyond_the_allowed_names_both_clocks(shop: Sandbox, skew_seconds: int) -> None:
    shop.faults.clock_skew_seconds = skew_seconds
    with make_client(shop) as client:
        client.get_shop()
        client.check_clock(timedelta(minutes=15))
        with pytest.raises(StarwebClockSkew) as caught:
            client.check_clock(timedelta(minutes=5))
    error = caught.value
    assert abs((error.starweb_time - error.local_time).total_seconds() - skew_seconds) < 2
    assert abs((error.local_time - datetime.now(UTC)).total_seconds()) < 5
    message = str(error)
    assert message.startswith("Starweb clock check failed: ") and "more than the allowed 300 s" in message
    assert error.starweb_time.isoformat() in message
    assert error.local_time.isoformat(timespec="seconds") in message
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is StarwebClockSkew and str(copy) == str(error)


# ------------------------------------------------------------------------------------------------ writes


def test_writes_round_trip_and_a_deleted_product_is_not_found(shop: Sandbox) -> None:
    with make_client(shop) as client:
        created = client.post(
            "/products",
            {
                "visibility": "visible",
                "languages": [{"langCode": "sv", "name": "Testboll"}],
                "variants": [{"sku": "TEST-BALL-1", "stockQuantity": 3, "attributeValueLinks": []}],
            },
        )["data"]
        product_id = created["productId"]
        patched = client.patch(f"/products/{product_id}", {"moreInfoUrl": "https://example.org/ball"})
        assert patched["data"]["moreInfoUrl"] == "https://example.org/ball"
        replaced = client.put(f"/products/{product_id}", {"visibility": "hidden"})
        assert replaced["data"]["visibility"] == "hidden"
        assert client.delete(f"/products/{product_id}") is None
        with pytest.raises(StarwebNotFound) as caught:
            client.get_product(product_id)
    assert caught.value.status == 404
    assert f"GET /products/{product_id}" in str(caught.value)
    assert [(recorded.method, recorded.status) for recorded in shop.write_requests()] == [
        ("POST", 201),
        ("PATCH", 200),
        ("PUT", 200),
        ("DELETE", 204),
    ]


def test_post_is_resent_after_throttling(shop: Sandbox) -> None:
    shop.faults.fail_429_next = 1
    with make_client(shop) as client:
        created = client.post("/pricelists", {"name": "Resellers", "currencyCode": "SEK"})["data"]
        names = [pricelist["name"] for pricelist in client.list_pricelists()]
    assert names.count("Resellers") == 1 and created["name"] == "Resellers"
    assert [recorded.status for recorded in shop.write_requests()] == [429, 201]


def test_post_is_not_resent_when_the_connection_drops_after_sending(shop: Sandbox) -> None:
    shop.faults.drop_after_write = True
    shop.faults.drop_next = 1
    with make_client(shop) as client:
        with pytest.raises(StarwebAmbiguousWrite, match=r"not resent: look the object up \(by SKU or name\)") as caught:
            client.post("/pricelists", {"name": "Resellers", "currencyCode": "SEK"})
        names = [pricelist["name"] for pricelist in client.list_pricelists()]
    assert caught.value.status is None and caught.value.error == "RemoteProtocolError"
    assert isinstance(caught.value, StarwebUnavailable)  # callers that catch outages still catch it
    assert names.count("Resellers") == 1  # the shop applied it once; the client did not apply it again
    assert [recorded.method for recorded in shop.write_requests()] == ["POST"]


def test_post_timing_out_after_sending_is_not_resent(shop: Sandbox) -> None:
    shop.faults.slow_next = 1
    shop.faults.slow_ms = 1000
    with make_client(shop, timeout=0.3) as client, pytest.raises(StarwebAmbiguousWrite) as caught:
        client.post("/pricelists", {"name": "Resellers", "currencyCode": "SEK"})
    assert caught.value.error == "ReadTimeout"
    assert "the write may have been applied" in str(caught.value)
    assert client.stats.retries == 0


@pytest.mark.parametrize("status", [502, 503, 504])
def test_post_answered_by_a_gateway_error_is_not_resent(shop: Sandbox, status: int) -> None:
    shop.faults.fail_status = status
    shop.faults.fail_status_next = 1
    with make_client(shop) as client, pytest.raises(StarwebAmbiguousWrite) as caught:
        client.post("/pricelists", {"name": "Resellers", "currencyCode": "SEK"})
    assert caught.value.status == status
    assert str(caught.value).startswith(f"Starweb POST /pricelists failed (HTTP {status}): ")
    assert "the write may have been applied, so it was not resent" in str(caught.value)
    assert [recorded.status for recorded in shop.write_requests()] == [status]


@pytest.mark.parametrize(
    ("write", "answered"),
    [
        (lambda client: client.patch("/products/1", {"moreInfoUrl": "https://example.org/horse"}), 200),
        (lambda client: client.put("/products/1", {"visibility": "hidden"}), 200),
        (lambda client: client.delete("/products/2"), 204),
    ],
    ids=["PATCH", "PUT", "DELETE"],
)
def test_idempotent_writes_are_resent_after_a_gateway_error(
    shop: Sandbox, write: Callable[[StarwebClient], object], answered: int
) -> None:
    shop.faults.fail_status = 504
    shop.faults.fail_status_next = 1
    with make_client(shop) as client:
        write(client)
    assert [recorded.status for recorded in shop.write_requests()] == [504, answered]


@pytest.mark.parametrize(("fault", "status"), [("fail_500_next", 500), ("fail_status_next", 408)])
def test_post_is_resent_after_a_server_error_or_request_timeout(shop: Sandbox, fault: str, status: int) -> None:
    shop.faults.fail_status = 408
    setattr(shop.faults, fault, 1)
    with make_client(shop) as client:
        client.post("/pricelists", {"name": "Resellers", "currencyCode": "SEK"})
        names = [pricelist["name"] for pricelist in client.list_pricelists()]
    assert names.count("Resellers") == 1
    assert [recorded.status for recorded in shop.write_requests()] == [status, 201]


def test_patch_is_resent_when_the_connection_drops_after_sending(shop: Sandbox) -> None:
    shop.faults.drop_after_write = True
    shop.faults.drop_next = 1
    with make_client(shop) as client:
        patched = client.patch("/products/1", {"moreInfoUrl": "https://example.org/horse"})
    assert patched["data"]["moreInfoUrl"] == "https://example.org/horse"
    assert [recorded.status for recorded in shop.write_requests()] == [0, 200]


def test_delete_whose_answer_was_lost_counts_as_done(shop: Sandbox) -> None:
    shop.faults.drop_after_write = True
    shop.faults.drop_next = 1
    with make_client(shop) as client:
        assert client.delete("/products/2") is None
        with pytest.raises(StarwebNotFound):
            client.get_product(2)
        with pytest.raises(StarwebNotFound):  # without a lost answer, a missing entity is still an error
            client.delete("/products/2")
    assert [recorded.status for recorded in shop.write_requests()] == [0, 404, 404]


# ------------------------------------------------------------------------------------------------ faults


def test_throttling_server_errors_and_dropped_connections_are_survived(shop: Sandbox) -> None:
    shop.faults.fail_429_next = 3
    shop.faults.fail_500_next = 2
    shop.faults.drop_next = 2
    with make_client(shop, max_retries=7) as client:  # all seven faults hit the first page
        ids = [product["productId"] for product in client.iter_products()]
        stats = client.stats.as_dict()
    assert ids == demo_product_ids()
    assert stats["throttled"] == 3
    assert stats["retries"] == 7
    assert stats["requests_sent"] == len(shop.requests)
    statuses = [recorded.status for recorded in shop.requests if recorded.path == "/products"]
    assert statuses == [0, 0, 429, 429, 429, 500, 500, 200, 200, 200, 200, 200]


def test_slow_response_past_the_timeout_is_retried(shop: Sandbox) -> None:
    shop.faults.slow_next = 1
    shop.faults.slow_ms = 1000
    with make_client(shop, timeout=0.3) as client:
        ids = [product["productId"] for product in client.iter_products()]
        assert client.stats.retries == 1
    assert ids == demo_product_ids()


@pytest.mark.parametrize(
    ("fault", "expected_error", "status"),
    [
        ("fail_429_next", StarwebRateLimited, 429),
        ("fail_500_next", StarwebUnavailable, 500),
        ("drop_next", StarwebUnavailable, None),
    ],
)
def test_exhausted_retries_raise_the_matching_error(
    shop: Sandbox, fault: str, expected_error: type[StarwebError], status: int | None
) -> None:
    setattr(shop.faults, fault, 10)
    with make_client(shop, max_retries=2) as client, pytest.raises(expected_error) as caught:
        client.get_shop()
    assert type(caught.value) is expected_error
    assert caught.value.status == status
    assert "GET /shop" in str(caught.value)
    assert client.stats.retries == 2
    assert sum(1 for recorded in shop.requests if recorded.path == "/shop") == 3


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422, 501])
def test_answers_a_resend_cannot_change_are_final(shop: Sandbox, status: int) -> None:
    shop.faults.fail_status = status
    shop.faults.fail_status_next = 5
    with make_client(shop, max_retries=6) as client, pytest.raises(StarwebError) as caught:
        client.get_shop()
    assert caught.value.status == status
    assert client.stats.retries == 0
    assert sent_to(shop, "/shop") == [status]


def test_request_timeout_is_retried(shop: Sandbox) -> None:
    shop.faults.fail_status = 408
    shop.faults.fail_status_next = 2
    with make_client(shop) as client:
        assert client.get_shop()["name"] == "Små Äventyr"
        assert client.stats.retries == 2
    assert sent_to(shop, "/shop") == [408, 408, 200]


def test_endpoint_the_shop_does_not_implement_is_asked_once(shop: Sandbox) -> None:
    with make_client(shop) as client:
        with pytest.raises(StarwebError) as listing:
            client.get("/product-categories")
        with pytest.raises(StarwebError) as one_record:
            client.get("/product-categories/3")
    assert (listing.value.status, listing.value.error) == (501, "not_implemented")
    assert not listing.value.is_record_level  # the whole listing is missing, not one record
    assert one_record.value.is_record_level
    assert sent_to(shop, "/product-categories") == [501]


def test_retries_stop_when_the_next_wait_would_pass_the_time_budget(shop: Sandbox) -> None:
    shop.faults.fail_500_next = 10
    # Every wait is at least half of backoff_cap (0.5 s), so the first one already passes a 0.4 s budget.
    with make_client(shop, max_retries=9, backoff_base=1.0, backoff_cap=1.0, max_retry_seconds=0.4) as client:
        started = time.monotonic()
        with pytest.raises(StarwebUnavailable) as caught:
            client.get_shop()
        assert time.monotonic() - started < 0.4
        assert client.stats.retries == 0
    assert caught.value.status == 500
    assert sent_to(shop, "/shop") == [500]


@pytest.mark.parametrize(
    ("status", "method", "path", "record_level"),
    [
        (400, "POST", "/products", True),
        (422, "PATCH", "/products/7/variants/3", True),
        (409, "PUT", "/products/7", True),
        (404, "GET", "/products/7", True),
        (404, "GET", "/products/7/variants", True),
        (501, "DELETE", "/product-categories/3", True),
        (404, "GET", "/orders", False),
        (400, "GET", "/products", False),
        (400, "POST", "/token", False),
        (403, "PATCH", "/pricelists/1", False),
        (500, "POST", "/products", False),
        (429, "PATCH", "/products/7", False),
        (None, "POST", "/products", False),
    ],
)
def test_record_level_refusals_are_recognisable(status: int | None, method: str, path: str, record_level: bool) -> None:
    assert StarwebError(status, "error", None, method, path).is_record_level is record_level


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    later = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds("120") == 120.0
    assert 55 < (retry_after_seconds(later) or 0) <= 60
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert backoff_delay(1, 0.1, base=0.5, cap=30) == 0.1
    assert backoff_delay(1, 120.0, base=0.5, cap=30) == 30


def test_backoff_grows_exponentially_with_jitter_under_the_cap() -> None:
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)]:
        delays = {backoff_delay(failures, None, base=0.5, cap=30) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jittered, so clients throttled together do not come back together


# ------------------------------------------------------------------------------------------------ secrets


def test_bad_credentials_give_invalid_client_and_never_show_the_secret(
    shop: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-secret-7f3a9c"
    credentials = StarwebCredentials(shop.base_url, shop.client_id, secret)
    with StarwebClient(credentials) as client:
        with pytest.raises(StarwebAuthError) as caught:
            client.get_shop()
        ok, message = client.test_connection()
        client_repr = repr(client)
    error = caught.value
    assert (error.status, error.error) == (400, "invalid_client")
    assert (
        not ok and message == "Starweb refused the credentials of client 'demo.starmamut': Client authentication failed"
    )
    texts = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        message,
        client_repr,
        repr(credentials),
        str(credentials),
        caplog.text,
    ]
    assert all(secret not in text for text in texts)
    assert token_requests(shop) == 2  # one per call: a refused client id is not retried


def test_tokens_never_reach_errors_or_logs(shop: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = AuthorizationRecordingTransport()
    errors: list[StarwebError] = []
    with make_client(shop, transport=transport, max_retries=1) as client:
        list(client.iter_products())
        with pytest.raises(StarwebNotFound) as not_found:
            client.get_product(999_999)
        errors.append(not_found.value)
        shop.faults.drop_next = 5
        with pytest.raises(StarwebUnavailable) as dropped:
            client.get_shop()
        errors.append(dropped.value)
        shop.faults.drop_next = 0
        shop.expire_tokens()
        client.get_shop()
    tokens = {authorization.removeprefix("Bearer ") for authorization in transport.authorizations}
    assert len(tokens) == 2
    for error in errors:  # no httpx exception (its request holds the Authorization header) rides along
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    texts = [caplog.text] + [text for error in errors for text in (str(error), repr(error))]
    texts += ["".join(traceback.format_exception(error)) for error in errors]
    for token in tokens:
        assert all(token not in text for text in texts)
    assert shop.client_secret not in caplog.text


def test_echoed_requests_never_show_the_secret_or_token_in_any_form(
    shop: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = AuthorizationRecordingTransport()
    with awkward_client(shop, transport=transport) as client:
        shop.faults.echo_request_next = 1  # echoes the token request (form body), which is then resent
        client.get_shop()
        shop.faults.echo_request_next = 1  # echoes a /shop request (Authorization header), then resent
        client.get_shop()
        client_repr = repr(client)
    shop.faults.echo_request_next = 5
    with awkward_client(shop, max_retries=1) as client, pytest.raises(StarwebUnavailable) as caught:
        client.get_shop()
    error = caught.value
    assert (error.method, error.path) == ("POST", "/token")
    assert "client_id=awkward.client&client_secret=" + REDACTED in str(error)  # the echo did arrive
    (token,) = {authorization.removeprefix("Bearer ") for authorization in transport.authorizations}
    texts = [str(error), repr(error), "".join(traceback.format_exception(error)), client_repr, caplog.text]
    assert f'"Authorization": "Bearer {REDACTED}"' in caplog.text  # the echoed /shop request was logged
    for form in echoed_forms(AWKWARD_SECRET) | {token}:
        assert all(form not in text for text in texts), form


def test_scrubber_removes_secrets_in_every_echoed_form(shop: Sandbox) -> None:
    """Forms the sandbox cannot echo: Basic credentials, PHP's escaped slashes, lower-case escapes."""
    with awkward_client(shop) as client:
        client.get_shop()
        (token,) = {recorded_token for recorded_token in client._issued_tokens}
        basic = base64.b64encode(f"awkward.client:{AWKWARD_SECRET}".encode()).decode()
        forms = echoed_forms(AWKWARD_SECRET) | {quote_plus(AWKWARD_SECRET).lower(), f"Basic {basic}", token}
        for form in forms:
            scrubbed = client._scrub(f"echo: {form} end")
            assert form not in scrubbed and REDACTED in scrubbed, form


def test_credentials_repr_hides_the_secret() -> None:
    credentials = StarwebCredentials("https://demo.starweb.se/api/v2", "partner.app", "top-secret")
    assert "top-secret" not in repr(credentials) and "top-secret" not in str(credentials)
    assert "partner.app" in repr(credentials)


def test_errors_survive_pickling_between_processes() -> None:
    error = StarwebNotFound(404, "not_found", "Product 7 not found", "GET", "/products/7")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is StarwebNotFound
    assert (copy.status, copy.error, copy.error_description, copy.method, copy.path) == (
        404,
        "not_found",
        "Product 7 not found",
        "GET",
        "/products/7",
    )
    assert str(copy) == "Starweb GET /products/7 failed (HTTP 404): not_found: Product 7 not found"


# ------------------------------------------------------------------------------------------------ concurrency


def test_map_concurrent_keeps_order_and_overlaps_calls(shop: Sandbox) -> None:
    shop.faults.latency_ms = 30
    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()
    ids = list(reversed(demo_product_ids()))

    with make_client(shop, max_concurrency=4) as client:

        def fetch(product_id: int) -> int:
            nonlocal in_flight, most_in_flight
            with lock:
                in_flight += 1
                most_in_flight = max(most_in_flight, in_flight)
            try:
                return client.get_product(product_id)["productId"]
            finally:
                with lock:
                    in_flight -= 1

        assert list(client.map_concurrent(fetch, ids)) == ids
    assert 2 <= most_in_flight <= 4


def test_map_concurrent_pulls_items_lazily_over_a_long_input(shop: Sandbox) -> None:
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for number in range(100_000):
            pulled += 1
            yield number

    with make_client(shop, max_concurrency=4) as client:
        results = client.map_concurrent(lambda number: number * 2, items())
        for position, doubled in enumerate(results):
            assert doubled == position * 2
            assert pulled <= position + 1 + 4  # never more than max_concurrency ahead of the consumer
    assert pulled == 100_000


def test_map_concurrent_raises_at_the_failing_item_and_stops_pulling(shop: Sandbox) -> None:
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for number in range(1000):
            pulled += 1
            yield number

    def fail_on_five(number: int) -> int:
        if number == 5:
            raise ValueError("item 5 is bad")
        return number

    delivered = []
    with make_client(shop, max_concurrency=4) as client, pytest.raises(ValueError, match="item 5"):
        for result in client.map_concurrent(fail_on_five, items()):
            delivered.append(result)
    assert delivered == [0, 1, 2, 3, 4]
    assert pulled <= 10


# ------------------------------------------------------------------------------------------------ pacing


def test_every_request_waits_for_the_pacer_including_token_and_retries(shop: Sandbox, tmp_path: Path) -> None:
    shop.faults.fail_429_next = 2
    shop.faults.fail_500_next = 1
    pacer = CountingPacer(tmp_path)
    with make_client(shop, pacer=pacer) as client:
        list(client.iter_products())
        assert pacer.acquisitions == client.stats.requests_sent == len(shop.requests) == 9


def test_pacer_keeps_the_client_under_the_shop_limit(tmp_path: Path) -> None:
    """The shop allows 4 requests per 0.2 s (20/s): a 12/s pacer stays under it, raw concurrency does not."""
    calls = demo_product_ids() + demo_product_ids()[:5]

    def run(pacer: FilePacer | None) -> tuple[list[int], int]:
        with start_sandbox(rate_limit_per_minute=4) as sandbox:
            sandbox.faults.rate_limit_window_seconds = 0.2
            # Back-off up to the window length and a high cap: on a loaded CI machine eight unpaced threads must
            # still all get through eventually; the assertion is about refusals, not about giving up.
            with make_client(
                sandbox, pacer=pacer, max_concurrency=8, max_retries=60, backoff_base=0.05, backoff_cap=0.2
            ) as client:
                fetched = [product["productId"] for product in client.map_concurrent(client.get_product, calls)]
            refused = sum(1 for recorded in sandbox.requests if recorded.status == 429)
            assert_all_requests_conform(sandbox)
        return fetched, refused

    unpaced, refused_unpaced = run(None)
    paced, refused_paced = run(FilePacer("shop:limit", per_minute=720, directory=tmp_path))
    assert unpaced == paced == calls
    assert refused_unpaced > 0
    assert refused_paced == 0
