"""The sandbox behaves like a Starweb shop where the integration depends on it.

Pagination, incremental reads, tokens, rate limits, injected faults, UTF-8, SKU rules, stock and
price bookkeeping, the admin endpoints, the seeds, the catalogue generator and the CLI.
"""

from __future__ import annotations

import email.utils
import json
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from starmamut_devtools.sandbox import Sandbox, SandboxState, generate_catalogue, start_sandbox
from starmamut_devtools.sandbox.demo_data import (
    COLOUR_VALUE_IDS,
    EURO_PRICELIST_ID,
    MASTER_PRICELIST_ID,
    SIZE_VALUE_IDS,
    STORE_STOCK_LOCATION_ID,
    WEB_STOCK_LOCATION_ID,
    ean13,
)
from starmamut_devtools.sandbox.errors import ApiError
from starmamut_devtools.sandbox.spec_operations import SPEC_OPERATIONS
from starmamut_devtools.sandbox.validation import format_timestamp
from tests.fixtures.openapi_contract import spec_path
from tests.fixtures.sandbox import fetch_token

REPO_ROOT = Path(__file__).resolve().parent.parent


def _ids(sandbox: Sandbox, sku: str) -> tuple[int, int]:
    found = sandbox.state.find_variant(sku)
    assert found is not None, sku
    return found


def _all_product_ids(client: httpx.Client, params: dict[str, str] | None = None) -> list[int]:
    """Walk every page the way a client should: until current_page reaches total_pages."""
    ids: list[int] = []
    page = 1
    while True:
        body = client.get("/products", params={**(params or {}), "page": str(page)}).json()
        ids += [product["productId"] for product in body["data"]]
        if page >= body["meta"]["pagination"]["total_pages"]:
            return ids
        page += 1


# ---------------------------------------------------------------- pagination and filters


def test_pagination_totals_and_pages_cover_every_product_once() -> None:
    with start_sandbox(per_page=4) as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(sandbox, client)}"
        first = client.get("/products").json()["meta"]["pagination"]
        last = client.get("/products", params={"page": "4"}).json()
        beyond = client.get("/products", params={"page": "5"}).json()
        assert first == {"current_page": 1, "per_page": 4, "total": 15, "count": 4, "total_pages": 4}
        assert last["meta"]["pagination"]["count"] == 3
        assert beyond["data"] == [] and beyond["meta"]["pagination"]["total"] == 15
        ascending = _all_product_ids(client)
        assert ascending == sorted(sandbox.state.product_ids())
        assert _all_product_ids(client, {"sortOrder": "DESC"}) == ascending[::-1]


def test_variants_are_paged_by_the_same_page_size() -> None:
    with start_sandbox(per_page=4) as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(sandbox, client)}"
        product_id, _ = _ids(sandbox, "KL-2101-RD-92")
        pages = [
            client.get(f"/products/{product_id}/variants", params={"page": str(n)}).json()["data"] for n in (1, 2, 3)
        ]
        assert [len(page) for page in pages] == [4, 2, 0]


def test_updated_since_finds_exactly_the_products_written_to(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    since = format_timestamp(sandbox.state.clock())
    touched = {}
    writes = {
        "LEK-1002": ("PUT", "/variants/{v}/prices/1", {"pricelistId": 1, "priceExVat": 99.0}),
        "LEK-1003": ("PATCH", "/variants/{v}/stocks/1", {"stockQuantity": 7}),
        "KL-2001-24": ("PATCH", "/languages/en", {"langCode": "en", "name": "Rubber boots"}),
        "KL-2003-S": ("PATCH", "/variants/{v}", {"ean": "7350009990006"}),
        "KL-2104-SV-104": ("PATCH", "", {"visibility": "hidden"}),
    }
    for sku, (method, suffix, body) in writes.items():
        product_id, variant_id = _ids(sandbox, sku)
        response = sandbox_api.request(method, f"/products/{product_id}{suffix.format(v=variant_id)}", json=body)
        assert response.status_code == 200, response.text
        touched[product_id] = sku
    found = sandbox_api.get("/products", params={"updatedSince": since}).json()
    assert sorted(product["productId"] for product in found["data"]) == sorted(touched)
    assert all(product["modifiedAt"] >= since for product in found["data"])
    assert found["meta"]["pagination"]["total"] == len(touched)


def test_created_since_sku_and_visibility_filters(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    created = sandbox_api.get("/products", params={"createdSince": "2024-03-14T09:00:00+01:00"}).json()["data"]
    assert [product["createdAt"][:10] for product in created] == ["2024-03-14", "2024-03-15", "2024-03-16"]
    by_sku = sandbox_api.get("/products", params={"filterSku": "kl-2101-bl-92"}).json()
    assert [product["productId"] for product in by_sku["data"]] == [_ids(sandbox, "KL-2101-BL-92")[0]]
    visible = sandbox_api.get("/products", params={"filterVisible": "true"}).json()["meta"]["pagination"]
    assert visible["total"] == 14  # the toy car is hidden
    assert sandbox_api.get("/products", params={"filterSku": "KL 2101"}).status_code == 400


def test_unencoded_plus_in_a_timestamp_is_a_clear_400(sandbox: Sandbox) -> None:
    token = fetch_token(sandbox)
    response = httpx.get(
        sandbox.base_url + "/products?updatedSince=2024-03-10T00:00:00+01:00",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert "URL-encode" in response.json()["error_description"]


def test_primary_variant_include_embeds_one_variant_with_prices(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    product_id, variant_id = _ids(sandbox, "KL-2101-RD-92")
    product = sandbox_api.get(
        f"/products/{product_id}", params={"include": "primaryVariant.prices,primaryVariant.attributeValues"}
    ).json()["data"]
    (variant,) = product["variants"]["data"]
    assert product["hasSeveralVariants"] is True
    assert variant["variantId"] == variant_id
    assert [price["pricelistId"] for price in variant["prices"]] == [1, 2, 3]
    assert [value["attributeValueId"] for value in variant["attributeValues"]] == variant["attributeValueLinks"]


# ---------------------------------------------------------------- tokens and rate limit


def test_expired_tokens_get_401_invalid_token_until_a_new_token_is_fetched(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.base_url) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(sandbox, client)}"
        assert client.get("/shop").status_code == 200
        sandbox.expire_tokens()
        expired = client.get("/shop")
        assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"
        client.headers["Authorization"] = f"Bearer {fetch_token(sandbox, client)}"
        assert client.get("/shop").status_code == 200


def test_tokens_expire_after_their_lifetime() -> None:
    with start_sandbox(token_ttl_seconds=1) as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        response = client.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
            },
        )
        assert response.json()["expires_in"] == 1
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        assert client.get("/shop").status_code == 200
        time.sleep(1.05)
        assert client.get("/shop").json()["error"] == "invalid_token"


def test_token_endpoint_refuses_bad_credentials_and_grants(sandbox: Sandbox) -> None:
    def token(**form: str) -> httpx.Response:
        return httpx.post(sandbox.base_url + "/token", data=form)

    assert token(grant_type="client_credentials", client_id="demo.starmamut", client_secret="nope").json() == {
        "error": "invalid_client",
        "error_description": "Client authentication failed",
    }
    assert token(grant_type="password", client_id="demo.starmamut").json()["error"] == "unsupported_grant_type"
    as_json = httpx.post(sandbox.base_url + "/token", json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    assert httpx.get(sandbox.base_url + "/shop").json()["error"] == "invalid_token"
    assert all(
        request.body.get("client_secret") in (None, "<redacted>")
        for request in sandbox.requests
        if isinstance(request.body, dict)
    )


def test_rate_limit_is_a_sliding_window_per_api_user(sandbox: Sandbox) -> None:
    sandbox.faults.rate_limit_per_minute = 3
    sandbox.faults.rate_limit_window_seconds = 1.0
    sandbox.add_client("other.shop", "other-secret")
    with httpx.Client(base_url=sandbox.base_url) as demo, httpx.Client(base_url=sandbox.base_url) as other:
        demo.headers["Authorization"] = f"Bearer {fetch_token(sandbox, demo)}"
        other_token = other.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "other.shop",
                "client_secret": "other-secret",
            },
        ).json()["access_token"]
        other.headers["Authorization"] = f"Bearer {other_token}"
        assert [demo.get("/shop").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert demo.get("/shop").json() == {
            "error": "Too Many Requests",
            "error_description": "Rate limit of 3 requests per minute exceeded",
        }
        assert other.get("/shop").status_code == 200
        assert fetch_token(sandbox, demo)  # /token is not rate limited
        time.sleep(1.05)
        assert demo.get("/shop").status_code == 200


# ---------------------------------------------------------------- faults


def test_fail_429_and_500_hit_the_next_api_requests_but_not_token(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    sandbox.faults.fail_429_next = 2
    sandbox.faults.fail_500_next = 1
    assert fetch_token(sandbox)
    statuses = [sandbox_api.get("/shop").status_code for _ in range(4)]
    assert statuses == [429, 429, 500, 200]
    assert (sandbox.faults.fail_429_next, sandbox.faults.fail_500_next) == (0, 0)
    assert [request.status for request in sandbox.requests if request.path == "/shop"] == statuses


def test_dropped_connection_sends_no_bytes(sandbox: Sandbox) -> None:
    token = fetch_token(sandbox)
    sandbox.faults.drop_next = 1
    address = urlsplit(sandbox.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as raw:
        raw.sendall(f"GET /api/v2/shop HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        assert raw.recv(1024) == b""
    assert sandbox.requests[-1].status == 0
    with httpx.Client(base_url=sandbox.base_url) as client:
        sandbox.faults.drop_next = 1
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/shop", headers={"Authorization": f"Bearer {token}"})
        assert client.get("/shop", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("applied", [False, True], ids=["dropped-before-write", "dropped-after-write"])
def test_dropped_write_is_applied_only_with_drop_after_write(
    applied: bool, sandbox: Sandbox, sandbox_api: httpx.Client
) -> None:
    product_id, variant_id = _ids(sandbox, "LEK-1001")
    sandbox.faults.drop_next = 1
    sandbox.faults.drop_after_write = applied
    with pytest.raises(httpx.RemoteProtocolError):
        sandbox_api.patch(f"/products/{product_id}/variants/{variant_id}/prices/1", json={"priceExVat": 1.0})
    price = sandbox.state.price(product_id, variant_id, MASTER_PRICELIST_ID)["priceExVat"]
    assert (price == 1.0) is applied
    assert [request.status for request in sandbox.write_requests()] == [0]


def test_slow_and_latency_delay_answers(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    sandbox.faults.slow_next = 1
    sandbox.faults.slow_ms = 1000
    with pytest.raises(httpx.ReadTimeout):
        sandbox_api.get("/shop", timeout=0.2)
    assert sandbox_api.get("/shop").status_code == 200
    sandbox.faults.latency_ms = 120
    started = time.monotonic()
    sandbox_api.get("/shop")
    assert time.monotonic() - started >= 0.12


def test_fail_status_and_error_200_answer_in_the_error_shape(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    sandbox.faults.fail_status = 408
    sandbox.faults.fail_status_next = 1
    sandbox.faults.error_200_next = 1
    timed_out, error_200, normal = (sandbox_api.get("/shop") for _ in range(3))
    assert timed_out.status_code == 408
    assert timed_out.json() == {
        "error": "request_timeout",
        "error_description": "Request Timeout (fault injected by the sandbox)",
    }
    assert error_200.status_code == 200 and set(error_200.json()) == {"error", "error_description"}
    assert normal.json()["data"]["name"] == "Små Äventyr"
    assert httpx.post(f"{sandbox.admin_url}/faults", json={"fail_status": 299}).status_code == 400


def test_echo_fault_puts_the_token_request_into_the_error_body(sandbox: Sandbox) -> None:
    sandbox.add_client("echo.client", 'sé"cret+/=&x y')
    sandbox.faults.echo_request_next = 1
    form = {"grant_type": "client_credentials", "client_id": "echo.client", "client_secret": 'sé"cret+/=&x y'}
    echoed = httpx.post(sandbox.base_url + "/token", data=form)
    assert echoed.status_code == 500 and echoed.json()["error"] == "server_error"
    request = json.loads(echoed.json()["error_description"].partition("; request: ")[2])
    assert request["method"] == "POST" and request["path"] == "/api/v2/token"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert "client_secret=s%C3%A9%22cret%2B%2F%3D%26x+y" in request["body"]
    assert request["parsed_body"]["client_secret"] == 'sé"cret+/=&x y'
    assert httpx.post(sandbox.base_url + "/token", data=form).status_code == 200  # one echo, then tokens again
    assert sandbox.requests[0].body["client_secret"] == "<redacted>"


def test_listing_faults_empty_a_page_or_shorten_the_last_one() -> None:
    with start_sandbox(per_page=4) as sandbox, httpx.Client(base_url=sandbox.base_url) as client:
        client.headers["Authorization"] = f"Bearer {fetch_token(sandbox, client)}"
        sandbox.faults.empty_page = 2
        sandbox.faults.listing_short_by = 2
        pages = [client.get("/products", params={"page": str(page)}).json() for page in (1, 2, 3, 4)]
        assert [len(page["data"]) for page in pages] == [4, 0, 4, 1]
        assert all(page["meta"]["pagination"]["total"] == 15 for page in pages)
        assert pages[1]["meta"]["pagination"]["count"] == 4  # meta as the shop computed it
        assert len(client.get("/pricelists").json()["data"]) == 3  # listings without meta are left alone


def test_answers_carry_an_rfc_7231_date_that_clock_skew_moves(sandbox: Sandbox) -> None:
    def date_offset(response: httpx.Response) -> float:
        """Seconds the answer's Date header is ahead of this machine's clock (Date counts whole seconds)."""
        date = response.headers["Date"]
        assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", date), date
        return email.utils.parsedate_to_datetime(date).timestamp() - time.time()

    assert -2 < date_offset(httpx.get(f"{sandbox.admin_url}/health")) <= 0
    assert httpx.post(f"{sandbox.admin_url}/faults", json={"clock_skew_seconds": -3600}).status_code == 200
    assert -3602 < date_offset(httpx.get(f"{sandbox.admin_url}/health")) <= -3600
    assert -3602 < date_offset(httpx.post(sandbox.base_url + "/token", data={})) <= -3600  # errors too


def test_unimplemented_spec_operations_answer_501(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    not_implemented = sandbox_api.get("/media-files")
    assert not_implemented.status_code == 501
    assert not_implemented.json() == {
        "error": "not_implemented",
        "error_description": "the sandbox does not implement GET /media-files",
    }
    other_method = sandbox_api.patch("/pricelists/1", json={"name": "Bas"})  # the spec has it, the sandbox not
    assert other_method.status_code == 501
    assert other_method.json()["error_description"] == "the sandbox does not implement PATCH /pricelists/{pricelistId}"
    assert sandbox_api.post("/shop", json={}).status_code == 405  # not in the spec either
    assert sandbox_api.get("/products/abc").status_code == 404  # implemented; the id is not a number
    assert sandbox_api.get("/no-such-thing").status_code == 404


def test_spec_operations_table_is_the_spec() -> None:
    spec = json.loads(spec_path().read_text(encoding="utf-8"))
    from_spec = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    in_table = {(method, path) for path, methods in SPEC_OPERATIONS.items() for method in methods.split()}
    assert in_table == from_spec


# ---------------------------------------------------------------- data rules


def test_utf8_survives_a_round_trip(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    name = "Åsas ärtiga örngott – ÅÄÖ åäö ü €"
    created = sandbox_api.post(
        "/products",
        json={
            "languages": [{"langCode": "sv", "name": name}],
            "variants": [{"sku": "UTF-1", "attributeValueLinks": []}],
        },
    )
    assert created.status_code == 201
    product_id = created.json()["data"]["productId"]
    fetched = sandbox_api.get(f"/products/{product_id}/languages/sv")
    assert fetched.json()["data"]["name"] == name
    assert name.encode("utf-8") in fetched.content
    assert fetched.headers["content-type"] == "application/json; charset=utf-8"
    assert fetched.json()["data"]["permalink"] == "asas-artiga-orngott-aao-aao-u"


def test_skus_are_unique_across_the_shop(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    product_id, variant_id = _ids(sandbox, "KL-2002-92")
    duplicate = sandbox_api.post(
        f"/products/{product_id}/variants",
        json={"sku": "lek-1001", "attributeValueLinks": [SIZE_VALUE_IDS["98"]]},
    )
    assert duplicate.status_code == 400
    assert "'lek-1001' is already used by variant" in duplicate.json()["error_description"]
    renamed = sandbox_api.patch(f"/products/{product_id}/variants/{variant_id}", json={"sku": "KL-2101-RD-92"})
    assert renamed.status_code == 400
    twice = sandbox_api.post(
        "/products",
        json={
            "variants": [
                {"sku": "TWIN", "attributeValueLinks": [SIZE_VALUE_IDS["92"]]},
                {"sku": "twin", "attributeValueLinks": [SIZE_VALUE_IDS["98"]]},
            ]
        },
    )
    assert twice.status_code == 400 and "appears twice" in twice.json()["error_description"]
    owner_id, _ = _ids(sandbox, "LEK-1001")
    assert sandbox_api.delete(f"/products/{owner_id}").status_code == 204
    reused = sandbox_api.post(
        f"/products/{product_id}/variants",
        json={"sku": "LEK-1001", "attributeValueLinks": [SIZE_VALUE_IDS["98"]]},
    )
    assert reused.status_code == 201


def test_variant_structure_rules(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    single_id, _ = _ids(sandbox, "LEK-1004")
    no_links = sandbox_api.post(
        f"/products/{single_id}/variants", json={"sku": "LEK-1004-B", "attributeValueLinks": []}
    )
    assert "required when the product has several variants" in no_links.json()["error_description"]
    product_id, _ = _ids(sandbox, "KL-2101-RD-92")
    same = sandbox_api.post(
        f"/products/{product_id}/variants",
        json={"sku": "KL-2101-X", "attributeValueLinks": [COLOUR_VALUE_IDS["Röd"], SIZE_VALUE_IDS["92"]]},
    )
    assert "same attribute values" in same.json()["error_description"]
    two_colours = sandbox_api.post(
        f"/products/{product_id}/variants",
        json={"sku": "KL-2101-Y", "attributeValueLinks": [COLOUR_VALUE_IDS["Röd"], COLOUR_VALUE_IDS["Blå"]]},
    )
    assert "two values of the same attribute" in two_colours.json()["error_description"]
    unknown = sandbox_api.post(f"/products/{product_id}/variants", json={"sku": "Z", "attributeValueLinks": [999]})
    assert unknown.json()["error_description"].endswith("no attribute value 999")


def test_bad_bodies_get_400_naming_the_field(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    product_id, variant_id = _ids(sandbox, "LEK-1001")
    cases = [
        (b"{not json", "application/json", "not valid JSON"),
        (b'{"ean": 7350001000004}', "application/json", "variant 1.ean: expected a string"),
        (b'{"colour": "red"}', "application/json", "unknown field 'colour'"),
        (b'{"ean": "1"}', "text/plain", "Content-Type must be application/json"),
    ]
    for content, content_type, message in cases:
        response = sandbox_api.patch(
            f"/products/{product_id}/variants/{variant_id}",
            content=content,
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 400
        assert message.replace("variant 1", f"variant {variant_id}") in response.json()["error_description"]


def test_put_product_replaces_variants_by_sku(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    product_id, kept_id = _ids(sandbox, "KL-2003-S")
    replaced = sandbox_api.put(
        f"/products/{product_id}",
        json={
            "visibility": "visible",
            "variants": [
                {"sku": "KL-2003-S", "attributeValueLinks": [SIZE_VALUE_IDS["S"]], "stockQuantity": 9},
                {"sku": "KL-2003-XL", "attributeValueLinks": [SIZE_VALUE_IDS["L"]]},
            ],
        },
    )
    assert replaced.status_code == 200
    variants = replaced.json()["data"]["variants"]["data"]
    assert [variant["sku"] for variant in variants] == ["KL-2003-S", "KL-2003-XL"]
    assert variants[0]["variantId"] == kept_id and variants[0]["stockQuantity"] == 9
    assert sandbox.state.find_variant("KL-2003-M") is None
    assert sandbox.state.languages(product_id)[0]["name"] == "Mössa Älva"  # languages were not sent: kept


def test_web_stock_and_variant_stock_are_one_value(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    product_id, variant_id = _ids(sandbox, "LEK-1002")
    base = f"/products/{product_id}/variants/{variant_id}"
    in_stock, out_of_stock = (
        sandbox.state.stock_status_id("inStock"),
        sandbox.state.stock_status_id("outOfStock"),
    )
    sandbox_api.put(f"{base}/stocks/{WEB_STOCK_LOCATION_ID}", json={"stockStatusId": in_stock, "stockQuantity": 12})
    assert sandbox_api.get(base).json()["data"]["stockQuantity"] == 12
    sandbox_api.patch(base, json={"stockQuantity": 0})
    web = sandbox_api.get(f"{base}/stocks/{WEB_STOCK_LOCATION_ID}").json()["data"]
    assert (web["stockQuantity"], web["stockStatusId"]) == (0, out_of_stock)
    store = sandbox_api.put(
        f"{base}/stocks/{STORE_STOCK_LOCATION_ID}",
        json={"stockStatusId": out_of_stock, "stockQuantity": 0, "shelfSpace": "B7"},
    )
    assert store.status_code == 200
    restocked = sandbox_api.patch(f"{base}/stocks/{STORE_STOCK_LOCATION_ID}", json={"stockQuantity": 3}).json()
    assert restocked["data"] == {
        "stockLocationId": STORE_STOCK_LOCATION_ID,
        "stockStatusId": in_stock,
        "stockQuantity": 3,
        "shelfSpace": "B7",
    }
    assert sandbox_api.get(base).json()["data"]["stockQuantity"] == 0  # the store is not the web stock


def test_backorder_status_survives_running_out(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    product_id, variant_id = _ids(sandbox, "KL-2102-GN-104")
    variant = sandbox_api.patch(f"/products/{product_id}/variants/{variant_id}", json={"stockQuantity": -2})
    assert variant.json()["data"]["stockStatusId"] == sandbox.state.stock_status_id("backorder")


def test_new_pricelist_prices_every_variant_at_zero_and_master_is_protected(
    sandbox: Sandbox, sandbox_api: httpx.Client
) -> None:
    created = sandbox_api.post("/pricelists", json={"name": "Kund Öst", "parentPricelistId": MASTER_PRICELIST_ID})
    pricelist = created.json()["data"]
    assert (pricelist["currencyCode"], pricelist["isCustomerPricelist"], pricelist["isMaster"]) == (
        "SEK",
        True,
        False,
    )
    product_id, variant_id = _ids(sandbox, "KL-2104-SV-104")
    price = sandbox_api.get(f"/products/{product_id}/variants/{variant_id}/prices/{pricelist['pricelistId']}")
    assert price.json()["data"]["priceExVat"] == 0.0
    assert sandbox_api.delete(f"/pricelists/{MASTER_PRICELIST_ID}").status_code == 403
    assert sandbox_api.delete(f"/pricelists/{pricelist['pricelistId']}").status_code == 204
    assert (
        sandbox_api.get(f"/products/{product_id}/variants/{variant_id}/prices").json()["data"][-1]["pricelistId"]
        == EURO_PRICELIST_ID
    )


def test_python_api_writes_like_the_http_api(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    created = sandbox.state.add_product(next(generate_catalogue(1, seed=3, two_axis_share=1.0, one_axis_share=0)))
    product_id = created["productId"]
    over_http = sandbox_api.get(f"/products/{product_id}").json()["data"]
    assert over_http["hasSeveralVariants"] is True
    original = over_http["modifiedAt"]
    later = sandbox.state.clock() + timedelta(hours=1)
    sandbox.state.clock = lambda: later
    sandbox.state.update_product(product_id, {"visibility": "hidden"})
    assert sandbox_api.get(f"/products/{product_id}").json()["data"]["modifiedAt"] == format_timestamp(later)
    assert format_timestamp(later) > original
    with pytest.raises(ApiError) as refused:
        sandbox.state.add_product(
            {"variants": [{"sku": created["variants"]["data"][0]["sku"], "attributeValueLinks": []}]}
        )
    assert refused.value.status == 400


def test_concurrent_requests_are_all_answered_and_recorded(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    token = sandbox_api.headers["Authorization"]
    statuses: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": token}) as client:
            statuses.extend(
                client.get("/products", params={"include": "primaryVariant"}).status_code for _ in range(10)
            )

    sandbox.reset_requests()
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 60
    assert len(sandbox.requests) == 60


def test_a_failing_handler_answers_500_error_model(
    sandbox: Sandbox, sandbox_api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_shop() -> dict[str, object]:
        raise RuntimeError("bug in the sandbox")

    monkeypatch.setattr(sandbox.state, "shop", broken_shop)
    response = sandbox_api.get("/shop")
    assert response.status_code == 500
    assert response.json() == {"error": "server_error", "error_description": "Internal sandbox error"}
    assert sandbox_api.get("/vat-rates").status_code == 200


# ---------------------------------------------------------------- admin endpoints


def test_admin_endpoints_control_a_sandbox_from_outside(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    admin = sandbox.admin_url
    assert httpx.get(f"{admin}/health").json() == {"status": "ok", "seed": "demo", "products": 15}
    product_id, _ = _ids(sandbox, "LEK-1001")
    assert sandbox_api.delete(f"/products/{product_id}").status_code == 204

    logged = httpx.get(f"{admin}/requests").json()["data"]
    assert [(entry["method"], entry["path"], entry["status"]) for entry in logged][-1] == (
        "DELETE",
        f"/products/{product_id}",
        204,
    )
    assert logged[0]["body"]["client_secret"] == "<redacted>"

    set_faults = httpx.post(f"{admin}/faults", json={"fail_500_next": 1, "latency_ms": 5})
    assert set_faults.json()["fail_500_next"] == 1 and sandbox.faults.latency_ms == 5
    assert httpx.post(f"{admin}/faults", json={"fail_500_nxt": 1}).status_code == 400
    assert httpx.post(f"{admin}/faults", json={"drop_next": -1}).status_code == 400
    assert sandbox_api.get("/shop").status_code == 500

    sandbox.faults.fail_429_next = 3
    reset = httpx.post(f"{admin}/reset", json={"seed": "empty"})
    assert reset.json() == {"seed": "empty"}
    assert (sandbox.faults.fail_429_next, sandbox.faults.latency_ms) == (0, 0)
    assert httpx.get(f"{admin}/requests").json()["data"] == []
    assert sandbox_api.get("/products").json()["meta"]["pagination"]["total"] == 0
    assert httpx.post(f"{admin}/reset", json={"seed": "huge"}).status_code == 400
    assert httpx.post(f"{admin}/reset").json() == {"seed": "empty"}
    assert httpx.delete(f"{admin}/requests").status_code == 204
    assert httpx.get(f"{admin}/nothing").status_code == 404


def test_write_requests_leave_out_reads_and_token(sandbox: Sandbox, sandbox_api: httpx.Client) -> None:
    product_id, variant_id = _ids(sandbox, "LEK-1001")
    sandbox_api.get(f"/products/{product_id}")
    sandbox_api.patch(f"/products/{product_id}/variants/{variant_id}", json={"mpn": "M-1"})
    (write,) = sandbox.write_requests()
    assert (write.method, write.path, write.body, write.status, write.client_id) == (
        "PATCH",
        f"/products/{product_id}/variants/{variant_id}",
        {"mpn": "M-1"},
        200,
        "demo.starmamut",
    )
    sandbox.reset_requests()
    assert sandbox.requests == []


# ---------------------------------------------------------------- seeds and generator


def test_demo_seed_is_a_swedish_shop_with_every_variant_priced_everywhere() -> None:
    state = SandboxState("demo")
    assert state.shop()["baseCurrency"] == "SEK" and state.shop()["activeLangCodes"] == ["sv", "en"]
    assert [pricelist["name"] for pricelist in state.pricelists()] == ["Standard", "Återförsäljare", "Euro"]
    assert {status["idCode"] for status in state.stock_statuses()} == {"inStock", "outOfStock", "backorder"}
    assert [location["languages"]["data"][0]["name"] for location in state.stock_locations()] == [
        "Webblager",
        "Butik Göteborg",
    ]
    products = [state.product(product_id, ["languages"]) for product_id in state.product_ids()]
    names = [product["languages"]["data"][0]["name"] for product in products]
    assert len(products) == 15 and any(set(name) & set("åäöÅÄÖ") for name in names)
    assert {product["defaultVatRate"] for product in products} == {"25", "12", "6"}
    variant_counts = [len(state.list_variants(product["productId"])) for product in products]
    assert {1, 3, 4, 6} <= set(variant_counts)
    variants = [
        variant for product in products for variant in state.list_variants(product["productId"], includes=["prices"])
    ]
    assert any(not variant["isActive"] for variant in variants)
    assert all(
        len(variant["prices"]) == 3 and all(price["priceExVat"] > 0 for price in variant["prices"])
        for variant in variants
    )
    eans = [variant["ean"] for variant in variants if variant["ean"]]
    assert eans and all(len(ean) == 13 and ean13(ean[:12]) == ean for ean in eans)
    assert SandboxState("demo").product(12, ["primaryVariant.prices"]) == state.product(12, ["primaryVariant.prices"])


def test_empty_seed_has_the_shop_setup_but_no_products() -> None:
    state = SandboxState("empty")
    assert state.product_ids() == []
    assert len(state.pricelists()) == 3 and len(state.attributes()) == 2
    assert len(state.attribute_values(2)) == len(SIZE_VALUE_IDS)


def test_generated_catalogue_is_deterministic_and_loads() -> None:
    first = list(generate_catalogue(60, seed=4))
    assert first == list(generate_catalogue(60, seed=4))
    assert first != list(generate_catalogue(60, seed=5))
    state = SandboxState("empty")
    for product in first:
        state.add_product(product)
    assert len(state.product_ids()) == 60
    links = [len(product["variants"][0]["attributeValueLinks"]) for product in first]
    assert {0, 1, 2} == set(links)
    assert {
        len(product["variants"][0]["attributeValueLinks"])
        for product in generate_catalogue(20, seed=1, two_axis_share=1.0, one_axis_share=0.0)
    } == {2}
    with pytest.raises(ValueError):
        next(generate_catalogue(1, two_axis_share=0.7, one_axis_share=0.7))


def test_unknown_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sandbox seed"):
        start_sandbox(seed="huge")


# ---------------------------------------------------------------- command line


def test_module_serves_in_the_foreground_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "starmamut_devtools.sandbox", "--port", "0", "--seed", "empty", "--rate-limit", "1000"],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": f"{REPO_ROOT / 'include'}:{REPO_ROOT / 'devtools'}", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+/api/v2)", first_line)
        assert match, first_line
        base_url = match[1]
        assert httpx.get(base_url.replace("/api/v2", "/_sandbox/health"), timeout=5).json()["products"] == 0
        credentials = process.stdout.readline() + process.stdout.readline()
        token = httpx.post(
            base_url + "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "demo.starmamut",
                "client_secret": "sandbox-secret",
            },
        ).json()["access_token"]
        assert "client_id=demo.starmamut" in credentials
        shop = httpx.get(base_url + "/shop", headers={"Authorization": f"Bearer {token}"}).json()
        assert shop["data"]["name"] == "Små Äventyr"
        assert (
            json.loads(httpx.get(base_url.replace("/api/v2", "/_sandbox/faults")).text)["rate_limit_per_minute"] == 1000
        )
    finally:
        process.terminate()
        output, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    assert "stopped" in output and token not in output + errors
