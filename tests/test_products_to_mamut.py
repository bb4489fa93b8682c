"""products_to_mamut end to end at job level: sandbox over loopback, Mamut mock over ODBC, real staging.

The expected Mamut content is derived from the sandbox's own catalogue, not written down by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from starmamut.config import Settings
from starmamut.failpoints import SimulatedCrash
from starmamut.jobs import products_to_mamut
from starmamut.jobs.common import JobContext
from starmamut.mamut.products import ProductRepository
from starmamut.staging.store import StagingStore
from tests.fixtures.jobs import sandbox_job_context

SETTINGS = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1, 12: 2, 6: 3, 0: 4}},
    "shops": {
        "demo": {
            "name": "Demo",
            "flow": "ecom",
            "starweb_conn_id": "unused",
            "products_to_mamut": {"quarantine_threshold": 0.9},
        }
    },
}


def expected_mamut_skus(sandbox: Any) -> set[str]:
    """Every variant SKU, plus the main article of each product with several variants or variant axes."""
    skus: set[str] = set()
    for product_id in sandbox.state.product_ids():
        variants = sandbox.state.list_variants(product_id)
        skus.update(variant["sku"] for variant in variants)
        if len(variants) > 1 or any(variant.get("attributeValueLinks") for variant in variants):
            skus.add(f"SW-{product_id}")
    return skus


def mamut_rows(gateway: Any) -> dict[str, dict[str, Any]]:
    rows = list(ProductRepository(gateway).iter_articles())
    assert len(rows) == len({row["sku"] for row in rows}), "an article number occurs twice in Mamut"
    return {row["sku"]: row for row in rows}


@pytest.fixture
def make_ctx(sandbox: Any, mamut_db: Any, staging_store: StagingStore) -> Iterator[Callable[..., JobContext]]:
    settings = Settings.model_validate(SETTINGS)

    def make(**params: Any) -> JobContext:
        return sandbox_job_context(settings, sandbox, staging_store, mamut_db.gateway, params)

    yield make


def test_first_run_loads_everything_and_second_run_changes_nothing(make_ctx, sandbox, mamut_db, staging_store):
    first = products_to_mamut.run(make_ctx())
    products = len(sandbox.state.product_ids())
    assert (first["read"], first["loaded"], first["quarantined"], first["unchanged"]) == (products, products, 0, 0)
    rows = mamut_rows(mamut_db.gateway)
    assert set(rows) == expected_mamut_skus(sandbox)
    assert first["created_articles"] == len(rows)
    two_axis = [row for row in rows.values() if row["variant_axis_2"]]
    assert two_axis, "the demo shop has products with two variant axes"
    variants_of_first = [r for r in rows.values() if r["main_product_key"] == two_axis[0]["product_key"]]
    assert all(r["variant_value_1"] and r["variant_value_2"] for r in variants_of_first)
    assert any(ch in "".join(rows[s]["name"] for s in rows) for ch in "åäö")

    second = products_to_mamut.run(make_ctx())
    assert (second["changed"], second["loaded"], second["unchanged"]) == (0, 0, second["read"])
    assert mamut_rows(mamut_db.gateway) == rows  # not even an edit date moved


def test_an_edited_product_is_the_only_one_updated(make_ctx, sandbox, mamut_db):
    products_to_mamut.run(make_ctx())
    before = mamut_rows(mamut_db.gateway)
    product_id = sandbox.state.product_ids()[0]
    sandbox.state.update_language(product_id, "sv", {"name": "Omdöpt produkt åäö"})

    result = products_to_mamut.run(make_ctx())

    assert (result["changed"], result["loaded"]) == (1, 1)
    after = mamut_rows(mamut_db.gateway)
    changed = {sku for sku in after if after[sku] != before[sku]}
    touched = {v["sku"] for v in sandbox.state.list_variants(product_id)} | {f"SW-{product_id}"}
    assert changed and changed <= touched
    assert all(after[sku]["name"].startswith("Omdöpt produkt åäö") for sku in changed)


def _variant(sku: str, links: list[int]) -> dict[str, Any]:
    return {"sku": sku, "attributeValueLinks": links}


def _axis_values(sandbox: Any, count: int) -> list[int]:
    """One value id from each of `count` different attributes (creating a third axis when needed)."""
    state = sandbox.state
    while len(state.attributes()) < count:
        attribute = state.add_attribute({"languages": [{"langCode": "sv", "name": "Material"}]})
        state.add_attribute_value(
            attribute["attributeId"], {"skuSuffix": "-BOM", "languages": [{"langCode": "sv", "name": "Bomull"}]}
        )
    return [state.attribute_values(a["attributeId"])[0]["attributeValueId"] for a in state.attributes()[:count]]


def test_bad_products_are_quarantined_with_reasons_then_load_once_fixed(make_ctx, sandbox, mamut_db, staging_store):
    state = sandbox.state
    two, three = _axis_values(sandbox, 2), _axis_values(sandbox, 3)
    bad_sku = state.add_product(
        {"languages": [{"langCode": "sv", "name": "Felaktig"}], "variants": [_variant("BAD SKU!", [])]}
    )
    no_name = state.add_product(
        {"languages": [{"langCode": "en", "name": "English only"}], "variants": [_variant("NO-SV-NAME", [])]}
    )
    three_axes = state.add_product(
        {"languages": [{"langCode": "sv", "name": "Tre axlar"}], "variants": [_variant("THREE-AX-1", three)]}
    )

    result = products_to_mamut.run(make_ctx())

    quarantined = {entry.key: entry for entry in staging_store.open_quarantine("demo", "product")}
    assert set(quarantined) == {str(bad_sku["productId"]), str(no_name["productId"]), str(three_axes["productId"])}
    assert result["quarantined"] == 3
    assert result["loaded"] == len(state.product_ids()) - 3
    reasons = {key: " ".join(r["reason"] for r in entry.reasons) for key, entry in quarantined.items()}
    assert "BAD SKU!" in reasons[str(bad_sku["productId"])]
    assert "name" in reasons[str(no_name["productId"])].lower()
    assert "axes" in reasons[str(three_axes["productId"])]
    rows = mamut_rows(mamut_db.gateway)
    assert not {"BAD SKU!", "NO-SV-NAME", "THREE-AX-1"} & set(rows)

    bad_variant = state.list_variants(bad_sku["productId"])[0]
    state.update_variant(bad_sku["productId"], bad_variant["variantId"], {"sku": "GOOD-SKU"})
    state.put_language(no_name["productId"], "sv", {"langCode": "sv", "name": "Nu på svenska"})
    axes_variant = state.list_variants(three_axes["productId"])[0]
    state.update_variant(three_axes["productId"], axes_variant["variantId"], {"attributeValueLinks": two})

    fixed = products_to_mamut.run(make_ctx())

    assert fixed["quarantined"] == 0 and fixed["loaded"] == 3
    assert staging_store.open_quarantine("demo", "product") == []
    assert {"GOOD-SKU", "NO-SV-NAME", "THREE-AX-1"} <= set(mamut_rows(mamut_db.gateway))


def test_crash_after_mamut_commit_then_retry_leaves_no_duplicate_and_no_gap(
    make_ctx, sandbox, mamut_db, staging_store, monkeypatch
):
    ctx = make_ctx()
    extracted = products_to_mamut.extract(ctx)
    validated = products_to_mamut.validate(ctx, extracted["batch_id"])
    monkeypatch.setenv("STARMAMUT_FAILPOINT", "products_to_mamut.after_mamut_commit@3")
    with pytest.raises(SimulatedCrash):
        products_to_mamut.load(ctx, extracted["batch_id"])
    assert len(staging_store.get_links("demo", "product")) == 2  # the third commit's link was never written
    monkeypatch.delenv("STARMAMUT_FAILPOINT")

    loaded = products_to_mamut.load(ctx, extracted["batch_id"])  # the Airflow retry of the load task
    products_to_mamut.report(ctx, extracted["batch_id"], extracted, validated, loaded)

    assert set(mamut_rows(mamut_db.gateway)) == expected_mamut_skus(sandbox)
    assert len(staging_store.get_links("demo", "product")) == len(sandbox.state.product_ids())
    assert loaded["loaded"] == len(sandbox.state.product_ids()) - 2
    again = products_to_mamut.run(make_ctx())
    assert again["changed"] == 0


def test_429_bursts_5xx_drops_and_an_expired_token_lose_nothing(make_ctx, sandbox, mamut_db):
    sandbox.faults.fail_429_next = 3  # with the 500 and the drop: 5 failures in a row, within the retry cap
    sandbox.faults.fail_500_next = 1
    sandbox.faults.drop_next = 1
    expired = threading.Event()

    def expire_midway() -> None:
        while not expired.is_set():
            if len(sandbox.requests) >= 8:
                sandbox.expire_tokens()
                expired.set()
            threading.Event().wait(0.005)

    watcher = threading.Thread(target=expire_midway, daemon=True)
    watcher.start()
    result = products_to_mamut.run(make_ctx())
    expired.set()
    watcher.join()

    statuses = [request.status for request in sandbox.requests]
    assert statuses.count(429) >= 3 and statuses.count(500) >= 1 and 401 in statuses
    assert result["loaded"] == len(sandbox.state.product_ids())
    assert set(mamut_rows(mamut_db.gateway)) == expected_mamut_skus(sandbox)


def test_dry_run_reports_what_it_would_write_and_writes_nothing(make_ctx, sandbox, mamut_db, staging_store):
    result = products_to_mamut.run(make_ctx(dry_run=True))
    assert mamut_rows(mamut_db.gateway) == {}
    assert result["would_create_articles"] == len(expected_mamut_skus(sandbox))
    assert result["loaded"] == 0
    assert staging_store.get_links("demo", "product") == {}
    assert staging_store.get_watermark("demo", products_to_mamut.JOB) is None


def test_full_refresh_rewrites_a_product_changed_in_mamut_by_hand(make_ctx, sandbox, mamut_db):
    products_to_mamut.run(make_ctx())
    sku = sorted(mamut_rows(mamut_db.gateway))[0]
    with mamut_db.gateway.transaction() as tx:
        tx.update("product", {"name": "Ändrad för hand"}, {"sku": sku})
    assert products_to_mamut.run(make_ctx())["changed"] == 0  # nothing changed in the shop
    refreshed = products_to_mamut.run(make_ctx(full_refresh=True))
    assert refreshed["changed"] == len(sandbox.state.product_ids())
    assert mamut_rows(mamut_db.gateway)[sku]["name"] != "Ändrad för hand"


def test_extract_uses_the_minimum_number_of_requests(make_ctx, sandbox):
    """Token, 5 reference reads, one product page, one variant listing per product with several variants."""
    several = sum(1 for pid in sandbox.state.product_ids() if len(sandbox.state.list_variants(pid)) > 1)
    result = products_to_mamut.run(make_ctx())
    assert result["requests"] == 1 + 5 + 1 + several
    assert len(sandbox.requests) == result["requests"]


def test_variant_links_address_the_variant_under_its_product(make_ctx, sandbox, staging_store):
    products_to_mamut.run(make_ctx())
    links = staging_store.get_links("demo", "variant")
    product_id = sandbox.state.product_ids()[0]
    variant = sandbox.state.list_variants(product_id)[0]
    link = links[str(variant["variantId"])]
    assert (link.starweb_id, link.sku) == (f"{product_id}:{variant['variantId']}", variant["sku"])
    assert link.mamut_key is not None
