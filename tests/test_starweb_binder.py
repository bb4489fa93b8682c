"""The SKU binder against the sandbox over loopback, with a real staging store: requests are counted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from starmamut.config import Settings
from starmamut.jobs.common import JobContext, RunParams, variant_ref
from starmamut.services.binder import FILTER_LOOKUP_LIMIT, VARIANT, bind_variants_by_sku
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient, StarwebCredentials
from starmamut_devtools.sandbox import Sandbox, start_sandbox

SETTINGS = Settings.model_validate(
    {
        "version": 1,
        "mamut": {"vat_codes": {25: 1}},
        "shops": {"demo": {"name": "Demo", "flow": "erp", "starweb_conn_id": "unused"}},
    }
)


def no_mamut() -> Any:
    raise AssertionError("the binder never reads Mamut")


@pytest.fixture
def bind(staging_store: StagingStore) -> Callable[..., Any]:
    """Call the binder on a sandbox with a fresh client; returns (links, requests that call sent)."""

    def call(sandbox: Sandbox, skus: list[str], **params: Any) -> tuple[dict[str, Any], list[Any]]:
        ctx = JobContext(
            settings=SETTINGS,
            shop=SETTINGS.shop("demo"),
            store=staging_store,
            open_starweb=lambda: pytest.fail("the binder takes the caller's client"),
            open_mamut=no_mamut,
            params=RunParams.from_mapping(params),
        )
        sent_before = len(sandbox.requests)
        credentials = StarwebCredentials(sandbox.base_url, sandbox.client_id, sandbox.client_secret)
        with StarwebClient(credentials, max_concurrency=4) as client:
            links = bind_variants_by_sku(ctx, client, skus)
        return links, sandbox.requests[sent_before:]

    return call


def shop_skus(sandbox: Sandbox) -> dict[str, tuple[int, int]]:
    """Every SKU of the sandbox shop with its (productId, variantId)."""
    return {
        variant["sku"]: (product_id, variant["variantId"])
        for product_id in sandbox.state.product_ids()
        for variant in sandbox.state.list_variants(product_id)
    }


@pytest.fixture
def paged_sandbox() -> Iterator[Sandbox]:
    """The demo shop served five products a page, so listing it takes several pages."""
    with start_sandbox(seed="demo", per_page=5) as running:
        yield running


def test_few_skus_are_looked_up_one_request_each_and_bound_ones_cost_nothing(bind, sandbox, staging_store) -> None:
    skus = shop_skus(sandbox)
    wanted = ["LEK-1001", "KL-2101-RD-92", "KL-2101-BL-116", "NOT-IN-SHOP"]

    links, sent = bind(sandbox, wanted)

    assert set(links) == {"LEK-1001", "KL-2101-RD-92", "KL-2101-BL-116"}
    for sku, link in links.items():
        product_id, variant_id = skus[sku]
        assert (link.entity, link.key, link.starweb_id, link.sku) == (
            VARIANT,
            str(variant_id),
            variant_ref(product_id, variant_id),
            sku,
        )
    assert staging_store.find_link_by_sku("demo", VARIANT, "KL-2101-BL-116") is not None
    lookups = [request for request in sent if request.path == "/products"]
    assert sorted(request.query["filterSku"] for request in lookups) == sorted(wanted)
    assert all(request.method == "GET" for request in sent if request.path != "/token")

    again, sent_again = bind(sandbox, wanted[:3])
    assert sent_again == []
    assert {sku: link.starweb_id for sku, link in again.items()} == {
        sku: link.starweb_id for sku, link in links.items()
    }


def test_many_skus_list_the_catalogue_once(bind, paged_sandbox, staging_store) -> None:
    skus = shop_skus(paged_sandbox)
    wanted = [*skus, *(f"MISSING-{number}" for number in range(5))]
    assert len(wanted) > FILTER_LOOKUP_LIMIT

    links, sent = bind(paged_sandbox, wanted)

    assert {sku: link.starweb_id for sku, link in links.items()} == {
        sku: variant_ref(*ref) for sku, ref in skus.items()
    }
    pages = [request.query.get("page", "1") for request in sent if request.path == "/products"]
    product_count = len(paged_sandbox.state.product_ids())
    assert sorted(pages) == [str(page) for page in range(1, -(-product_count // 5) + 1)]
    assert not any("filterSku" in request.query for request in sent)
    listed = [request.path for request in sent if request.path.endswith("/variants")]
    several = {
        f"/products/{pid}/variants"
        for pid in paged_sandbox.state.product_ids()
        if len(paged_sandbox.state.list_variants(pid)) > 1
    }
    assert set(listed) == several
    assert len(staging_store.get_links("demo", VARIANT)) == len(skus)

    _, sent_again = bind(paged_sandbox, wanted)
    searched = sorted(request.query.get("filterSku", "") for request in sent_again if request.path != "/token")
    assert searched == sorted(wanted[-5:]), "only the SKUs the shop lacks are searched again, one request each"


def test_skus_match_without_regard_to_letter_case(bind, sandbox) -> None:
    links, _ = bind(sandbox, ["lek-1002"])

    product_id, variant_id = shop_skus(sandbox)["LEK-1002"]
    assert links["lek-1002"].starweb_id == variant_ref(product_id, variant_id)
    assert links["lek-1002"].sku == "lek-1002"


def test_a_dry_run_returns_the_links_without_recording_them(bind, sandbox, staging_store) -> None:
    links, sent = bind(sandbox, ["LEK-1003"], dry_run=True)

    assert links["LEK-1003"].synced_at is None
    assert staging_store.get_links("demo", VARIANT) == {}
    assert [request.method for request in sent] == ["POST", "GET"]  # the token, then the lookup


def test_a_variant_found_again_keeps_the_mamut_key_its_earlier_link_had(bind, sandbox, staging_store) -> None:
    product_id, variant_id = shop_skus(sandbox)["LEK-1004"]
    staging_store.upsert_link(
        "demo",
        VARIANT,
        str(variant_id),
        starweb_id=variant_ref(product_id, variant_id),
        mamut_key="42",
        sku="LEK-1004-OLD",
        content_hash=None,
    )

    links, sent = bind(sandbox, ["LEK-1004"])

    assert len(sent) == 2
    assert (links["LEK-1004"].mamut_key, links["LEK-1004"].key) == ("42", str(variant_id))
    assert staging_store.get_links("demo", VARIANT)[str(variant_id)].sku == "LEK-1004"


def test_a_sku_the_sku_filter_cannot_express_is_found_by_listing(bind, sandbox) -> None:
    product = sandbox.state.add_product(
        {
            "languages": [{"langCode": "sv", "name": "Mellanslag"}],
            "variants": [{"sku": "MED MELLANSLAG", "attributeValueLinks": []}],
        }
    )

    links, sent = bind(sandbox, ["MED MELLANSLAG"])

    assert links["MED MELLANSLAG"].starweb_id.startswith(f"{product['productId']}:")
    assert not any("filterSku" in request.query for request in sent)
    assert [request.query.get("page", "1") for request in sent if request.path == "/products"] == ["1"]
