"""products_to_starweb end to end at job level: Mamut's demo catalogue over ODBC, the sandbox over loopback.

What the shop must show is derived from Mamut through the catalogue reader, never written down by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from starmamut.config import Settings
from starmamut.failpoints import SimulatedCrash
from starmamut.jobs import products_to_starweb
from starmamut.jobs.common import JobContext, variant_ref
from starmamut.mamut.articles import MamutArticle, MamutProductFamily
from starmamut.mamut.catalogue import CatalogueReader
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.products import ProductRepository
from starmamut.mamut.schema_map import SchemaMap
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebAmbiguousWrite
from starmamut_devtools.sandbox import Sandbox
from starmamut_devtools.sandbox.demo_data import SIZE_VALUE_IDS, ean13
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.mamut import MAMUT_BACKENDS, fresh_mock_database
from tests.fixtures.openapi_contract import assert_request_conforms
from tests.fixtures.populated_shop import PopulatedShop, add, populate, snapshot, variant_body

VAT_CODES = {25: 1, 12: 2, 6: 3, 0: 4}
SETTINGS = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": VAT_CODES},
    "shops": {
        "demo": {
            "name": "Demo",
            "flow": "erp",
            "starweb_conn_id": "unused",
            "products_to_starweb": {"new_product_visibility": "visible", "quarantine_threshold": 0.9},
        }
    },
}
VAT_RATES = {code: float(rate) for rate, code in VAT_CODES.items()}


@pytest.fixture(params=MAMUT_BACKENDS)
def mamut(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MamutGateway]:
    """Mamut's demo catalogue on each backend."""
    with fresh_mock_database(request.param, tmp_path, seed="demo") as odbc:
        gateway = MamutGateway(odbc, SchemaMap.load())
        try:
            yield gateway
        finally:
            gateway.close()


@pytest.fixture
def make_ctx(sandbox: Sandbox, mamut: MamutGateway, staging_store: StagingStore) -> Callable[..., JobContext]:
    settings = Settings.model_validate(SETTINGS)

    def make(**params: Any) -> JobContext:
        return sandbox_job_context(settings, sandbox, staging_store, mamut, params)

    return make


def families(gateway: MamutGateway) -> dict[str, MamutProductFamily]:
    return {snapshot.family.main.sku: snapshot.family for snapshot in CatalogueReader(gateway).iter_families()}


def save(gateway: MamutGateway, family: MamutProductFamily) -> None:
    """Write a family as a Mamut user would (EDITDATE moves, so the next run reads it)."""
    ProductRepository(gateway).upsert_family(family, update_price=True, now=datetime.now(UTC))


def edit(gateway: MamutGateway, main_sku: str, change: Callable[[MamutProductFamily], MamutProductFamily]) -> None:
    save(gateway, change(families(gateway)[main_sku]))


def edit_variant(gateway: MamutGateway, sku: str, **fields: Any) -> None:
    main_sku = next(key for key, family in families(gateway).items() if sku in family.skus)
    edit(
        gateway,
        main_sku,
        lambda family: replace(
            family,
            variants=tuple(
                replace(variant, **fields) if variant.sku == sku else variant for variant in family.variants
            ),
        ),
    )


def product_of(sandbox: Sandbox, sku: str) -> int:
    found = sandbox.state.find_variant(sku)
    assert found is not None, f"SKU {sku} is not in the shop"
    return found[0]


def variant_of(sandbox: Sandbox, sku: str) -> dict[str, Any]:
    product_id, variant_id = sandbox.state.find_variant(sku) or (0, 0)
    return sandbox.state.variant(product_id, variant_id, ["attributeValues.attribute"])


def axis_values(variant: dict[str, Any]) -> dict[str, str]:
    """A shop variant's values as {axis name: value name} in Swedish."""

    def swedish(entity: dict[str, Any]) -> str:
        return next(entry["name"] for entry in entity["languages"]["data"] if entry["langCode"] == "sv")

    return {swedish(value["attribute"]["data"]): swedish(value) for value in variant["attributeValues"]}


def assert_shop_matches_mamut(sandbox: Sandbox, gateway: MamutGateway) -> None:
    """Every Mamut family is one shop product with Mamut's name, VAT, SKUs, EANs, weights, activity and values."""
    for key, family in families(gateway).items():
        articles = family.variants or (family.main,)
        product_id = product_of(sandbox, articles[0].sku)
        product = sandbox.state.product(product_id)
        active = not family.main.inactive and any(not article.inactive for article in articles)
        assert sandbox.state.language(product_id, "sv")["name"] == family.main.name, key
        assert float(product["defaultVatRate"]) == VAT_RATES[family.main.vat_code], key
        assert product["visibility"] == ("visible" if active else "hidden"), key
        assert {article.sku for article in articles} <= {v["sku"] for v in sandbox.state.list_variants(product_id)}
        axes = [axis for axis in family.main.variant_axes if axis]
        for article in articles:
            variant = variant_of(sandbox, article.sku)
            assert product_of(sandbox, article.sku) == product_id, article.sku
            # The spec's PATCH cannot send null: a cleared EAN is "" and a cleared weight 0 in the shop.
            assert (variant["ean"] or None) == article.ean, article.sku
            assert (variant["weightInKg"] or None) == (float(article.weight) if article.weight else None), article.sku
            assert variant["isActive"] is not article.inactive, article.sku
            assert axis_values(variant) == dict(zip(axes, article.variant_values, strict=False)), article.sku


def writes(sandbox: Sandbox, since: int = 0) -> list[tuple[str, str, Any]]:
    return sorted((request.method, request.path, request.body) for request in sandbox.write_requests()[since:])


def test_the_demo_catalogue_becomes_shop_products_and_a_second_run_sends_nothing(
    make_ctx, sandbox, mamut, staging_store
) -> None:
    products_before = len(sandbox.state.product_ids())
    mamut_families = families(mamut)

    result = products_to_starweb.run(make_ctx())

    assert (result["read"], result["loaded"], result["quarantined"], result["failed"]) == (
        len(mamut_families),
        len(mamut_families),
        0,
        0,
    )
    assert len(sandbox.state.product_ids()) == products_before + len(mamut_families)
    assert_shop_matches_mamut(sandbox, mamut)
    assert result["requests"] == len(sandbox.requests), "every request is reported"
    assert result["write_requests"] == len(sandbox.write_requests()) == len(mamut_families) + 1  # + value "Grå"
    links = staging_store.get_links("demo", "article")
    assert {key: int(link.starweb_id) for key, link in links.items()} == {
        key: product_of(sandbox, (family.variants or (family.main,))[0].sku) for key, family in mamut_families.items()
    }
    ts_l = sandbox.state.find_variant("TS-BAS-L")
    assert staging_store.find_link_by_sku("demo", "variant", "TS-BAS-L").starweb_id == variant_ref(*ts_l)
    prices = sandbox.state.prices(*ts_l)
    assert {price["priceExVat"] for price in prices} == {0.0}, "a new variant waits for the price job"

    sent_before = len(sandbox.requests)
    again = products_to_starweb.run(make_ctx())
    assert (again["changed"], again["unchanged"], again["requests"]) == (0, len(mamut_families), 0)
    assert len(sandbox.requests) == sent_before


def test_products_already_in_the_shop_are_linked_by_sku_not_duplicated(make_ctx, sandbox, mamut, staging_store) -> None:
    state = sandbox.state
    book = state.add_product(
        {
            "visibility": "hidden",
            "defaultVatRate": "25",
            "languages": [{"langCode": "sv", "name": "Gammal kokbok"}],
            "variants": [{"sku": "BOK-SKANE", "attributeValueLinks": [], "weightInKg": 2.0}],
        }
    )
    products_before = len(state.product_ids())

    result = products_to_starweb.run(make_ctx())

    assert result["loaded"] == len(families(mamut)) and result["failed"] == 0
    assert len(state.product_ids()) == products_before + len(families(mamut)) - 1
    assert product_of(sandbox, "BOK-SKANE") == book["productId"]
    assert state.product(book["productId"])["visibility"] == "hidden", "the shop decides an active one's visibility"
    assert state.language(book["productId"], "sv")["name"] == "Kokbok Smaker från Skåne"
    assert variant_of(sandbox, "BOK-SKANE")["weightInKg"] == 0.9
    assert staging_store.get_links("demo", "article")["BOK-SKANE"].starweb_id == str(book["productId"])


def test_skus_spread_over_two_shop_products_are_quarantined_and_the_rest_loads(
    make_ctx, sandbox, mamut, staging_store
) -> None:
    for sku in ("TS-BAS-S", "TS-BAS-M"):
        sandbox.state.add_product(
            {"languages": [{"langCode": "sv", "name": sku}], "variants": [{"sku": sku, "attributeValueLinks": []}]}
        )

    result = products_to_starweb.run(make_ctx())

    assert (result["failed"], result["loaded"]) == (1, len(families(mamut)) - 1)
    entry = next(entry for entry in staging_store.open_quarantine("demo", "article") if entry.key == "TS-BAS")
    assert entry.reasons[0]["check"] == "sku_conflict"
    reason = entry.reasons[0]["reason"]
    assert "Mamut family TS-BAS has its SKUs on 2 shop products" in reason and "one family split" in reason
    for sku in ("TS-BAS-M", "TS-BAS-S"):
        assert f"shop product {product_of(sandbox, sku)} ({sku})" in reason
    assert sandbox.state.find_variant("TS-BAS-L") is None


def test_an_article_changed_in_mamut_sends_only_the_values_that_changed(make_ctx, sandbox, mamut) -> None:
    products_to_starweb.run(make_ctx())
    sent = len(sandbox.write_requests())
    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, name="Kaffemugg Örebro XL")))
    edit_variant(mamut, "TS-BAS-M", weight=Decimal("0.200"))

    result = products_to_starweb.run(make_ctx())

    mugg = product_of(sandbox, "MUGG-ORE")
    ts_m = sandbox.state.find_variant("TS-BAS-M")
    assert writes(sandbox, sent) == sorted(
        [
            ("PATCH", f"/products/{mugg}/languages/sv", {"langCode": "sv", "name": "Kaffemugg Örebro XL"}),
            ("PATCH", f"/products/{ts_m[0]}/variants/{ts_m[1]}", {"weightInKg": 0.2}),
        ]
    )
    assert (result["changed"], result["loaded"], result["write_requests"]) == (2, 2, 2)
    assert result["unchanged"] == len(families(mamut)) - 2
    assert_shop_matches_mamut(sandbox, mamut)


def test_deactivated_articles_become_inactive_variants_and_hidden_products_never_deleted(
    make_ctx, sandbox, mamut
) -> None:
    products_to_starweb.run(make_ctx())
    products = len(sandbox.state.product_ids())
    edit_variant(mamut, "TS-BAS-M", inactive=True)
    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, inactive=True)))

    products_to_starweb.run(make_ctx())

    assert len(sandbox.state.product_ids()) == products
    assert variant_of(sandbox, "TS-BAS-M")["isActive"] is False
    assert sandbox.state.product(product_of(sandbox, "TS-BAS-M"))["visibility"] == "visible"
    assert sandbox.state.product(product_of(sandbox, "MUGG-ORE"))["visibility"] == "hidden"
    assert variant_of(sandbox, "MUGG-ORE")["isActive"] is False
    assert_shop_matches_mamut(sandbox, mamut)

    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, inactive=False)))
    products_to_starweb.run(make_ctx())
    assert sandbox.state.product(product_of(sandbox, "MUGG-ORE"))["visibility"] == "visible"
    assert_shop_matches_mamut(sandbox, mamut)


def test_an_update_the_shop_refuses_after_a_hand_change_is_retried_against_the_shop(make_ctx, sandbox, mamut) -> None:
    products_to_starweb.run(make_ctx())
    mugg = product_of(sandbox, "MUGG-ORE")
    sandbox.state.update_product(mugg, {"visibility": "pricelists", "visibilityPricelistIds": [2]})
    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, inactive=True)))
    sent = len(sandbox.requests)

    result = products_to_starweb.run(make_ctx())

    assert (result["loaded"], result["failed"]) == (1, 0)
    refused = [(r.method, r.path, r.status) for r in sandbox.requests[sent:] if r.method == "PATCH" and r.status == 400]
    assert refused == [("PATCH", f"/products/{mugg}", 400)], "the ledger still said 'visible'"
    assert sandbox.state.product(mugg)["visibility"] == "hidden"
    assert_shop_matches_mamut(sandbox, mamut)
    for request in sandbox.requests[sent:]:
        assert_request_conforms(request)


def test_failing_checks_quarantine_with_reasons_the_rest_loads_and_a_fix_loads_next_run(
    make_ctx, sandbox, mamut, staging_store
) -> None:
    save(mamut, MamutProductFamily(main=MamutArticle(sku="BAD SKU!", name="Felaktig", vat_code=1)))
    save(mamut, MamutProductFamily(main=MamutArticle(sku="MOMS-9", name="Okänd moms", vat_code=9)))

    result = products_to_starweb.run(make_ctx())

    quarantined = {entry.key: entry for entry in staging_store.open_quarantine("demo", "article")}
    assert set(quarantined) == {"BAD SKU!", "MOMS-9"}
    assert "'BAD SKU!' has characters other than" in quarantined["BAD SKU!"].reasons[0]["reason"]
    assert quarantined["MOMS-9"].reasons[0]["reason"].startswith("VAT code 9 has no VAT rate in the config")
    assert (result["quarantined"], result["loaded"]) == (2, len(families(mamut)) - 2)
    assert sandbox.state.find_variant("MOMS-9") is None

    edit(mamut, "MOMS-9", lambda family: replace(family, main=replace(family.main, vat_code=2)))
    fixed = products_to_starweb.run(make_ctx())

    assert fixed["quarantined"] == 1 and [entry.key for entry in staging_store.open_quarantine("demo", "article")] == [
        "BAD SKU!"
    ]
    assert sandbox.state.product(product_of(sandbox, "MOMS-9"))["defaultVatRate"] == "12"


def test_a_dry_run_sends_no_write_and_reports_the_requests_it_would_send(
    make_ctx, sandbox, mamut, staging_store
) -> None:
    result = products_to_starweb.run(make_ctx(dry_run=True))

    assert sandbox.write_requests() == []
    assert result["would_create_products"] == len(families(mamut))
    assert result["would_write_requests"] == len(families(mamut)) + 1  # the value "Grå" is new to the shop
    assert staging_store.get_links("demo", "article") == {} and staging_store.get_links("demo", "variant") == {}
    assert staging_store.get_watermark("demo", products_to_starweb.JOB) is None

    ctx = make_ctx(dry_run=True)
    extracted = products_to_starweb.extract(ctx)
    products_to_starweb.validate(ctx, extracted["batch_id"])
    loaded = products_to_starweb.load(ctx, extracted["batch_id"])
    assert "POST /product-attributes/1/values" in " ".join(loaded["planned"])
    assert sum(line.startswith("POST /products {") for line in loaded["planned"]) == len(families(mamut))


def test_a_crash_between_create_and_link_is_healed_by_the_retry_without_duplicates(
    make_ctx, sandbox, mamut, staging_store, monkeypatch
) -> None:
    products_before = len(sandbox.state.product_ids())
    ctx = make_ctx()
    extracted = products_to_starweb.extract(ctx)
    validated = products_to_starweb.validate(ctx, extracted["batch_id"])
    monkeypatch.setenv("STARMAMUT_FAILPOINT", "products_to_starweb.after_starweb_create")
    with pytest.raises(SimulatedCrash):
        products_to_starweb.load(ctx, extracted["batch_id"])
    created = [request for request in sandbox.write_requests() if request.path == "/products"]
    assert created and len(staging_store.get_links("demo", "article")) < len(created)
    monkeypatch.delenv("STARMAMUT_FAILPOINT")

    loaded = products_to_starweb.load(ctx, extracted["batch_id"])  # the Airflow retry of the load task
    products_to_starweb.report(ctx, extracted["batch_id"], extracted, validated, loaded)

    assert loaded["failed"] == 0
    assert len(sandbox.state.product_ids()) == products_before + len(families(mamut))
    assert len([request for request in sandbox.write_requests() if request.path == "/products"]) == len(families(mamut))
    assert len(staging_store.get_links("demo", "article")) == len(families(mamut))
    assert_shop_matches_mamut(sandbox, mamut)
    assert products_to_starweb.run(make_ctx())["changed"] == 0


def test_a_created_family_records_its_product_and_variant_links_in_one_staging_write_not_one_per_variant(
    make_ctx, sandbox, mamut, staging_store, monkeypatch
) -> None:
    calls: list[list[tuple[str, str]]] = []  # each link write: the (entity, key) it carries
    upsert_links = staging_store.upsert_links

    def refused_upsert_link(shop: str, entity: str, key: str, **fields: Any) -> None:
        raise AssertionError(f"upsert_link({entity!r}, {key!r}): one transaction per link")

    def counting_upsert_links(links: Any) -> None:
        links = list(links)
        calls.append([(link.entity, link.key) for link in links])
        upsert_links(links)

    monkeypatch.setattr(staging_store, "upsert_link", refused_upsert_link)
    monkeypatch.setattr(staging_store, "upsert_links", counting_upsert_links)
    mamut_families = families(mamut)
    assert len(mamut_families["TS-BAS"].variants) >= 3

    result = products_to_starweb.run(make_ctx())

    assert result["loaded"] == len(mamut_families) and result["failed"] == 0
    assert len(calls) == len(mamut_families), "one link write per family"
    for key, family in mamut_families.items():
        (written,) = [call for call in calls if ("article", key) in call]
        variant_ids = {
            str(sandbox.state.find_variant(article.sku)[1]) for article in (family.variants or (family.main,))
        }
        assert sorted(written) == sorted([("article", key), *(("variant", v) for v in variant_ids)]), key
    assert staging_store.get_links("demo", "variant")[
        str(sandbox.state.find_variant("TS-BAS-L")[1])
    ].starweb_id == variant_ref(*sandbox.state.find_variant("TS-BAS-L"))


def test_full_refresh_and_a_sku_resync_put_back_values_changed_in_the_shop_by_hand(make_ctx, sandbox, mamut) -> None:
    products_to_starweb.run(make_ctx())
    mugg, book = product_of(sandbox, "MUGG-ORE"), product_of(sandbox, "BOK-SKANE")
    sandbox.state.update_language(mugg, "sv", {"name": "Ändrad för hand"})
    sandbox.state.update_product(book, {"defaultVatRate": "25"})
    ts_l, kasse = sandbox.state.find_variant("TS-BAS-L"), sandbox.state.find_variant("KASSE-ARE")
    sandbox.state.update_variant(*ts_l, {"isActive": False})
    sandbox.state.update_variant(*kasse, {"ean": "7350000000017"})
    sent = len(sandbox.write_requests())

    assert products_to_starweb.run(make_ctx())["write_requests"] == 0, "nothing changed in Mamut"
    products_to_starweb.run(make_ctx(skus=["MUGG-ORE"]))
    assert writes(sandbox, sent) == [
        ("PATCH", f"/products/{mugg}/languages/sv", {"langCode": "sv", "name": "Kaffemugg Örebro"})
    ]

    refreshed = products_to_starweb.run(make_ctx(full_refresh=True))

    assert writes(sandbox, sent + 1) == sorted(
        [
            ("PATCH", f"/products/{book}", {"defaultVatRate": "6"}),
            ("PATCH", f"/products/{ts_l[0]}/variants/{ts_l[1]}", {"isActive": True}),
            ("PATCH", f"/products/{kasse[0]}/variants/{kasse[1]}", {"ean": "7350012340025"}),
        ]
    )
    assert refreshed["changed"] == len(families(mamut))
    assert_shop_matches_mamut(sandbox, mamut)


def test_a_product_deleted_in_the_shop_is_created_again_when_mamut_changes_it(
    make_ctx, sandbox, mamut, staging_store
) -> None:
    products_to_starweb.run(make_ctx())
    old_ref = variant_ref(*sandbox.state.find_variant("HD-ALV-SVA-S"))
    sandbox.state.delete_product(product_of(sandbox, "HD-ALV-SVA-S"))
    edit(mamut, "HD-ALV", lambda family: replace(family, main=replace(family.main, name="Hoodie Älvsbyn 2")))

    result = products_to_starweb.run(make_ctx())

    assert (result["loaded"], result["failed"]) == (1, 0)
    assert_shop_matches_mamut(sandbox, mamut)
    assert staging_store.get_links("demo", "article")["HD-ALV"].starweb_id == str(product_of(sandbox, "HD-ALV-SVA-S"))
    old_link = staging_store.get_links("demo", "variant")[old_ref.split(":")[1]]
    assert old_link.retired_at is not None, "the deleted variant's link is retired, not left to mislead"
    assert staging_store.find_link_by_sku("demo", "variant", "HD-ALV-SVA-S").starweb_id == variant_ref(
        *sandbox.state.find_variant("HD-ALV-SVA-S")
    )


def test_every_request_the_job_sends_follows_the_starweb_spec(make_ctx, sandbox, mamut) -> None:
    products_to_starweb.run(make_ctx())
    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, name="Mugg", vat_code=2)))
    edit(mamut, "KASSE-ARE", lambda family: replace(family, main=replace(family.main, inactive=True)))
    edit_variant(mamut, "TS-BAS-M", ean="7350012340049", weight=Decimal("0.200"))
    edit(
        mamut,
        "TS-BAS",
        lambda family: replace(
            family,
            variants=(*family.variants, replace(family.variants[0], sku="TS-BAS-XL", variant_values=("XL", None))),
        ),
    )
    save(
        mamut,
        MamutProductFamily(
            main=MamutArticle(sku="MOSSA", name="Mössa", vat_code=1, variant_axes=("Material", None)),
            variants=(
                MamutArticle(
                    sku="MOSSA-ULL", name="Mössa ull", vat_code=1, main_sku="MOSSA", variant_values=("Ull", None)
                ),
            ),
        ),
    )
    products_to_starweb.run(make_ctx())
    products_to_starweb.run(make_ctx(full_refresh=True))

    kinds = {
        (request.method, request.path.split("/")[1], request.path.split("/")[-1].isdigit())
        for request in sandbox.write_requests()
    }
    assert {
        ("POST", "products", False),
        ("PATCH", "products", True),
        ("PATCH", "products", False),
        ("POST", "product-attributes", False),
    } <= kinds
    assert {request.path.rsplit("/", 1)[-1] for request in sandbox.write_requests()} >= {"sv", "variants", "values"}
    for request in sandbox.requests:
        assert_request_conforms(request)
    assert_shop_matches_mamut(sandbox, mamut)


# ------------------------------------------------------------------------------- a shop that already has products


@pytest.fixture
def shop(sandbox: Sandbox) -> PopulatedShop:
    """The sandbox holding what a real shop holds when Mamut is connected (tests/fixtures/populated_shop.py)."""
    return populate(sandbox.state)


def held(store: StagingStore) -> dict[str, dict[str, str]]:
    """Open quarantine entries of Mamut families: their first reason's check and text."""
    return {entry.key: entry.reasons[0] for entry in store.open_quarantine("demo", "article")}


def test_a_family_that_differs_from_the_shop_product_holding_its_skus_is_a_conflict_and_nothing_is_written(
    make_ctx, sandbox, mamut, staging_store, shop
) -> None:
    save(mamut, MamutProductFamily(main=MamutArticle(sku="OVERALL-92", name="Overall 92", vat_code=1)))
    before = snapshot(sandbox.state)

    result = products_to_starweb.run(make_ctx())

    conflicts = {key: reason for key, reason in held(staging_store).items() if reason["check"] == "sku_conflict"}
    assert set(conflicts) == {"OVERALL-92", "TS-BAS", "HD-ALV"}
    overall = conflicts["OVERALL-92"]["reason"]
    assert overall.startswith(
        f"Mamut family OVERALL-92 has SKUs OVERALL-92; shop product {shop.overall} has OVERALL-104, OVERALL-110"
    )
    assert "a different variant structure (only the shop product has OVERALL-104" in overall
    tshirt = conflicts["TS-BAS"]["reason"]
    assert (
        f"Mamut family TS-BAS has SKUs TS-BAS-L, TS-BAS-M, TS-BAS-S; shop product {shop.tshirt} has TS-BAS-128, "
        "TS-BAS-M, TS-BAS-S: a different variant structure (only the shop product has TS-BAS-128; only the "
        "Mamut family has TS-BAS-L)"
    ) == tshirt
    assert (
        "attribute axes Färg × Storlek in the Mamut family, Färg × Material × Storlek on the shop product"
        in conflicts["HD-ALV"]["reason"]
    )
    after = snapshot(sandbox.state)
    assert {product: after[product] for product in before if product not in shop.clean_matches} == {
        product: state for product, state in before.items() if product not in shop.clean_matches
    }
    assert result["conflicts"] == 3 and result["failed"] == 3
    assert staging_store.find_links_by_sku("demo", "article", ["OVERALL-92", "TS-BAS", "HD-ALV"]) == {}

    sandbox.state.delete_variant(shop.tshirt, sandbox.state.find_variant("TS-BAS-128")[1])
    sandbox.state.add_variant(shop.tshirt, {"sku": "TS-BAS-L", "attributeValueLinks": [SIZE_VALUE_IDS["L"]]})
    healed = products_to_starweb.run(make_ctx())

    assert "TS-BAS" not in held(staging_store), "SKUs fixed in the shop: the next run takes the product over"
    assert healed["conflicts"] == 2
    assert staging_store.get_links("demo", "article")["TS-BAS"].starweb_id == str(shop.tshirt)
    assert sandbox.state.language(shop.tshirt, "sv")["name"] == "T-shirt Basic"


@pytest.mark.parametrize("on_conflict", ["link_and_skip", "overwrite", "report_only"])
def test_on_conflict_links_overwrites_or_only_lists_a_family_that_differs_from_its_shop_product(
    make_ctx, sandbox, mamut, staging_store, shop, on_conflict
) -> None:
    save(mamut, MamutProductFamily(main=MamutArticle(sku="OVERALL-92", name="Overall 92", vat_code=1)))
    products_to_starweb.run(make_ctx())
    before = snapshot(sandbox.state)[shop.overall]
    sent = len(sandbox.write_requests())

    result = products_to_starweb.run(make_ctx(on_conflict=on_conflict, skus=["OVERALL-92"]))

    after = snapshot(sandbox.state)[shop.overall]
    link = staging_store.get_links("demo", "article").get("OVERALL-92")
    assert ("OVERALL-92" in held(staging_store)) is (on_conflict == "report_only"), "the entry stays until settled"
    assert (result["conflicts"], result["failed"]) == (int(on_conflict == "report_only"), 0)
    if on_conflict == "overwrite":
        assert writes(sandbox, sent) == [
            ("PATCH", f"/products/{shop.overall}/languages/sv", {"langCode": "sv", "name": "Overall 92"})
        ]
        assert after["variants"] == before["variants"], "the variants keep their values, links and active flags"
        assert link is not None and link.starweb_id == str(shop.overall)
    else:
        assert writes(sandbox, sent) == [] and after == before
        assert (link is not None and link.starweb_id == str(shop.overall)) is (on_conflict == "link_and_skip")
    if on_conflict != "report_only":
        assert products_to_starweb.run(make_ctx())["conflicts"] == 2, "TS-BAS and HD-ALV, no longer OVERALL-92"
        assert "OVERALL-92" not in held(staging_store)


def test_an_empty_mamut_ean_or_weight_never_clears_the_shops(make_ctx, sandbox, mamut, shop) -> None:
    products_to_starweb.run(make_ctx())
    sent = len(sandbox.write_requests())
    products_to_starweb.run(make_ctx(full_refresh=True))

    assert writes(sandbox, sent) == [], "a full refresh finds nothing to put back either"
    presentkort = variant_of(sandbox, "PRESENTKORT-500")
    assert (presentkort["ean"], presentkort["weightInKg"]) == (ean13("735009990100"), 0.02)
    assert sandbox.state.product(shop.presentkort)["defaultVatRate"] == "0", "what Mamut has is written"


def test_a_sku_the_shop_spells_in_other_letter_case_keeps_the_shops_spelling(
    make_ctx, sandbox, mamut, shop, staging_store
) -> None:
    products_to_starweb.run(make_ctx())

    assert [variant["sku"] for variant in sandbox.state.list_variants(shop.mugg)] == ["mugg-ore"]
    assert staging_store.find_link_by_sku("demo", "variant", "MUGG-ORE").starweb_id == variant_ref(
        *sandbox.state.find_variant("mugg-ore")
    ), "the id map holds Mamut's spelling, which the other jobs look up"
    sent = len(sandbox.write_requests())
    assert products_to_starweb.run(make_ctx(full_refresh=True))["write_requests"] == 0
    assert writes(sandbox, sent) == []


def test_a_write_starweb_refuses_quarantines_that_family_naming_it_and_the_field_and_the_batch_goes_on(
    make_ctx, sandbox, mamut, staging_store
) -> None:
    products_to_starweb.run(make_ctx())
    tshirt = product_of(sandbox, "TS-BAS-S")
    sandbox.state.add_variant(tshirt, {"sku": "EGEN-86", "attributeValueLinks": [SIZE_VALUE_IDS["86"]]})
    edit(
        mamut,
        "TS-BAS",
        lambda family: replace(
            family,
            variants=(*family.variants, replace(family.variants[0], sku="TS-BAS-86", variant_values=("86", None))),
        ),
    )
    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, name="Kaffemugg Örebro XL")))

    result = products_to_starweb.run(make_ctx())

    reason = held(staging_store)["TS-BAS"]
    assert reason["check"] == "starweb_rejected"
    assert reason["reason"].startswith(
        f"Mamut family TS-BAS: Starweb refused variant TS-BAS-86 (POST /products/"
        f"{tshirt}/variants, field(s) sku, attributeValueLinks, isActive, "
    )
    assert "another variant has the same attribute values" in reason["reason"]
    assert (result["failed"], result["loaded"]) == (1, 1), "the batch goes on"
    assert sandbox.state.language(product_of(sandbox, "MUGG-ORE"), "sv")["name"] == "Kaffemugg Örebro XL"


def test_a_product_post_whose_answer_was_lost_is_looked_up_by_sku_before_it_is_sent_again(
    make_ctx, sandbox, mamut, staging_store, monkeypatch
) -> None:
    post = StarwebClient.post
    lost: list[str] = []

    def post_losing_the_first_answer(client: StarwebClient, path: str, json: Any) -> dict[str, Any]:
        answer = post(client, path, json)
        if path == "/products" and not lost:
            lost.append(json["variants"][0]["sku"])
            raise StarwebAmbiguousWrite(504, "gateway_timeout", None, "POST", path)
        return answer

    monkeypatch.setattr(StarwebClient, "post", post_losing_the_first_answer)
    products_before = len(sandbox.state.product_ids())

    result = products_to_starweb.run(make_ctx())

    assert lost and (result["loaded"], result["failed"]) == (len(families(mamut)), 0)
    assert len(sandbox.state.product_ids()) == products_before + len(families(mamut)), "nothing created twice"
    assert len([request for request in sandbox.write_requests() if request.path == "/products"]) == len(families(mamut))
    assert staging_store.find_link_by_sku("demo", "variant", lost[0]).starweb_id == variant_ref(
        *sandbox.state.find_variant(lost[0])
    )
    assert_shop_matches_mamut(sandbox, mamut)
    assert products_to_starweb.run(make_ctx())["changed"] == 0


def test_a_mamut_catalogue_pushed_into_a_shop_with_products_changes_only_the_clean_matches(
    make_ctx, sandbox, mamut, staging_store, shop
) -> None:
    save(mamut, MamutProductFamily(main=MamutArticle(sku="OVERALL-92", name="Overall 92", vat_code=1)))
    save(mamut, MamutProductFamily(main=MamutArticle(sku="kasse-are", name="Tygkasse liten", vat_code=1)))
    add(sandbox.state, "Tygkasse", [variant_body("KASSE-ARE", [], weightInKg=0.1)])  # both Mamut articles' SKU
    before = snapshot(sandbox.state)

    ctx = make_ctx(dry_run=True)
    extracted = products_to_starweb.extract(ctx)
    validated = products_to_starweb.validate(ctx, extracted["batch_id"])
    dry = products_to_starweb.load(ctx, extracted["batch_id"])  # the load task's result, as the UI shows it

    assert sandbox.write_requests() == [] and snapshot(sandbox.state) == before
    assert sorted(line.split(":")[0] for line in dry["conflict_reasons"]) == ["HD-ALV", "OVERALL-92", "TS-BAS"]
    assert validated["quarantined"] == 2, "KASSE-ARE and kasse-are: one shop SKU on two Mamut articles"
    assert held(staging_store) == {}, "a dry run quarantines nothing"

    result = products_to_starweb.run(make_ctx())

    after = snapshot(sandbox.state)
    assert {product: after[product] for product in before if product not in shop.clean_matches} == {
        product: state for product, state in before.items() if product not in shop.clean_matches
    }, "no product but the clean matches changed at all"
    (created,) = set(after) - set(before)
    assert created == product_of(sandbox, "BOK-SKANE"), "only the family the shop does not have is created"
    mugg = sandbox.state.find_variant("mugg-ore")
    book = next(request.body for request in sandbox.write_requests() if request.path == "/products")
    assert writes(sandbox) == sorted(
        [
            ("POST", "/products", book),
            ("PATCH", f"/products/{shop.mugg}/languages/sv", {"langCode": "sv", "name": "Kaffemugg Örebro"}),
            ("PATCH", f"/products/{mugg[0]}/variants/{mugg[1]}", {"weightInKg": 0.35}),
            ("PATCH", f"/products/{shop.presentkort}", {"defaultVatRate": "0"}),
        ]
    ), "the clean matches got exactly Mamut's name, weight and VAT rate"
    assert set(held(staging_store)) == {"OVERALL-92", "TS-BAS", "HD-ALV", "KASSE-ARE", "kasse-are"}
    assert {key for key, reason in held(staging_store).items() if reason["check"] == "sku_conflict"} == set(
        line.split(":")[0] for line in dry["conflict_reasons"]
    ), "the dry run showed what the run held back"
    assert (result["loaded"], result["conflicts"], result["failed"], result["quarantined"]) == (3, 3, 3, 2)
    for request in sandbox.requests:
        assert_request_conforms(request)
