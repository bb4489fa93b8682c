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
from starmamut.sandbox import Sandbox
from starmamut.sandbox.demo_data import SIZE_VALUE_IDS
from starmamut.staging.store import StagingStore
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.mamut import MAMUT_BACKENDS, fresh_mock_database
from tests.fixtures.openapi_contract import assert_request_conforms

VAT_CODES = {25: 1, 12: 2, 6: 3, 0: 4}
SETTINGS = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": VAT_CODES},
    "shops": {"demo": {"name": "Demo", "flow": "erp", "starweb_conn_id": "unused",
                       "products_to_starweb": {"new_product_visibility": "visible", "quarantine_threshold": 0.9}}},
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
    edit(gateway, main_sku, lambda family: replace(family, variants=tuple(
        replace(variant, **fields) if variant.sku == sku else variant for variant in family.variants)))


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


def test_the_demo_catalogue_becomes_shop_products_and_a_second_run_sends_nothing(make_ctx, sandbox, mamut,
                                                                                 staging_store) -> None:
    products_before = len(sandbox.state.product_ids())
    mamut_families = families(mamut)

    result = products_to_starweb.run(make_ctx())

    assert (result["read"], result["loaded"], result["quarantined"], result["failed"]) == (
        len(mamut_families), len(mamut_families), 0, 0)
    assert len(sandbox.state.product_ids()) == products_before + len(mamut_families)
    assert_shop_matches_mamut(sandbox, mamut)
    assert result["requests"] == len(sandbox.requests), "every request is reported"
    assert result["write_requests"] == len(sandbox.write_requests()) == len(mamut_families) + 1  # + value "Grå"
    links = staging_store.get_links("demo", "article")
    assert {key: int(link.starweb_id) for key, link in links.items()} == {
        key: product_of(sandbox, (family.variants or (family.main,))[0].sku) for key, family in mamut_families.items()}
    ts_l = sandbox.state.find_variant("TS-BAS-L")
    assert staging_store.find_link_by_sku("demo", "variant", "TS-BAS-L").starweb_id == variant_ref(*ts_l)
    prices = sandbox.state.prices(*ts_l)
    assert {price["priceExVat"] for price in prices} == {0.0}, "a new variant waits for the price job"

    sent_before = len(sandbox.requests)
    again = products_to_starweb.run(make_ctx())
    assert (again["changed"], again["unchanged"], again["requests"]) == (0, len(mamut_families), 0)
    assert len(sandbox.requests) == sent_before


def test_products_already_in_the_shop_are_linked_by_sku_not_duplicated(make_ctx, sandbox, mamut,
                                                                       staging_store) -> None:
    state = sandbox.state
    book = state.add_product({"visibility": "visible", "defaultVatRate": "25",
                              "languages": [{"langCode": "sv", "name": "Gammal kokbok"}],
                              "variants": [{"sku": "bok-skane", "attributeValueLinks": [], "weightInKg": 2.0}]})
    tshirt = state.add_product({"visibility": "hidden", "languages": [{"langCode": "sv", "name": "T-shirt"}],
                                "variants": [{"sku": size_sku, "attributeValueLinks": [SIZE_VALUE_IDS[size]]}
                                             for size_sku, size in (("TS-BAS-S", "S"), ("TS-BAS-M", "M"),
                                                                    ("SHOP-OWN-86", "86"))]})
    products_before = len(state.product_ids())
    ids_before = {variant["sku"]: variant["variantId"] for variant in state.list_variants(tshirt["productId"])}

    result = products_to_starweb.run(make_ctx())

    assert result["loaded"] == len(families(mamut)) and result["failed"] == 0
    assert len(state.product_ids()) == products_before + len(families(mamut)) - 2
    assert product_of(sandbox, "BOK-SKANE") == book["productId"]
    assert variant_of(sandbox, "BOK-SKANE")["sku"] == "BOK-SKANE"  # Mamut's spelling wins
    assert product_of(sandbox, "TS-BAS-L") == tshirt["productId"]
    ids_after = {variant["sku"]: variant["variantId"] for variant in state.list_variants(tshirt["productId"])}
    assert {sku: ids_after[sku] for sku in ids_before} == ids_before
    assert variant_of(sandbox, "SHOP-OWN-86")["isActive"] is True, "a variant Mamut never had is left alone"
    assert state.product(tshirt["productId"])["visibility"] == "hidden", "the shop decides an active one's visibility"
    assert state.language(book["productId"], "sv")["name"] == "Kokbok Smaker från Skåne"
    assert variant_of(sandbox, "BOK-SKANE")["weightInKg"] == 0.9
    assert staging_store.get_links("demo", "article")["TS-BAS"].starweb_id == str(tshirt["productId"])


def test_skus_spread_over_two_shop_products_are_quarantined_and_the_rest_loads(make_ctx, sandbox, mamut,
                                                                              staging_store) -> None:
    for sku in ("TS-BAS-S", "TS-BAS-M"):
        sandbox.state.add_product({"languages": [{"langCode": "sv", "name": sku}],
                                   "variants": [{"sku": sku, "attributeValueLinks": []}]})

    result = products_to_starweb.run(make_ctx())

    assert (result["failed"], result["loaded"]) == (1, len(families(mamut)) - 1)
    entry = next(entry for entry in staging_store.open_quarantine("demo", "article") if entry.key == "TS-BAS")
    assert entry.reasons[0]["check"] == "starweb_conflict"
    assert "TS-BAS-M, TS-BAS-S" in entry.reasons[0]["reason"] and "different Starweb products" in entry.reasons[0][
        "reason"]
    assert sandbox.state.find_variant("TS-BAS-L") is None


def test_an_article_changed_in_mamut_sends_only_the_values_that_changed(make_ctx, sandbox, mamut) -> None:
    products_to_starweb.run(make_ctx())
    sent = len(sandbox.write_requests())
    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, name="Kaffemugg Örebro XL")))
    edit_variant(mamut, "TS-BAS-M", weight=Decimal("0.200"))

    result = products_to_starweb.run(make_ctx())

    mugg = product_of(sandbox, "MUGG-ORE")
    ts_m = sandbox.state.find_variant("TS-BAS-M")
    assert writes(sandbox, sent) == sorted([
        ("PATCH", f"/products/{mugg}/languages/sv", {"langCode": "sv", "name": "Kaffemugg Örebro XL"}),
        ("PATCH", f"/products/{ts_m[0]}/variants/{ts_m[1]}", {"weightInKg": 0.2}),
    ])
    assert (result["changed"], result["loaded"], result["write_requests"]) == (2, 2, 2)
    assert result["unchanged"] == len(families(mamut)) - 2
    assert_shop_matches_mamut(sandbox, mamut)


def test_deactivated_articles_become_inactive_variants_and_hidden_products_never_deleted(make_ctx, sandbox,
                                                                                        mamut) -> None:
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


def test_an_update_the_shop_refuses_after_a_hand_change_is_retried_against_the_shop(make_ctx, sandbox,
                                                                                    mamut) -> None:
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


def test_failing_checks_quarantine_with_reasons_the_rest_loads_and_a_fix_loads_next_run(make_ctx, sandbox, mamut,
                                                                                        staging_store) -> None:
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
        "BAD SKU!"]
    assert sandbox.state.product(product_of(sandbox, "MOMS-9"))["defaultVatRate"] == "12"


def test_a_dry_run_sends_no_write_and_reports_the_requests_it_would_send(make_ctx, sandbox, mamut,
                                                                         staging_store) -> None:
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


def test_a_crash_between_create_and_link_is_healed_by_the_retry_without_duplicates(make_ctx, sandbox, mamut,
                                                                                   staging_store,
                                                                                   monkeypatch) -> None:
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

    assert loaded["quarantined_on_load"] == 0
    assert len(sandbox.state.product_ids()) == products_before + len(families(mamut))
    assert len([request for request in sandbox.write_requests() if request.path == "/products"]) == len(
        families(mamut))
    assert len(staging_store.get_links("demo", "article")) == len(families(mamut))
    assert_shop_matches_mamut(sandbox, mamut)
    assert products_to_starweb.run(make_ctx())["changed"] == 0


def test_full_refresh_and_a_sku_resync_put_back_values_changed_in_the_shop_by_hand(make_ctx, sandbox,
                                                                                   mamut) -> None:
    products_to_starweb.run(make_ctx())
    mugg, book = product_of(sandbox, "MUGG-ORE"), product_of(sandbox, "BOK-SKANE")
    sandbox.state.update_language(mugg, "sv", {"name": "Ändrad för hand"})
    sandbox.state.update_product(book, {"defaultVatRate": "25"})
    ts_l = sandbox.state.find_variant("TS-BAS-L")
    sandbox.state.update_variant(*ts_l, {"isActive": False, "ean": "7350000000017"})
    sent = len(sandbox.write_requests())

    assert products_to_starweb.run(make_ctx())["write_requests"] == 0, "nothing changed in Mamut"
    products_to_starweb.run(make_ctx(skus=["MUGG-ORE"]))
    assert writes(sandbox, sent) == [
        ("PATCH", f"/products/{mugg}/languages/sv", {"langCode": "sv", "name": "Kaffemugg Örebro"})]

    refreshed = products_to_starweb.run(make_ctx(full_refresh=True))

    assert writes(sandbox, sent + 1) == sorted([
        ("PATCH", f"/products/{book}", {"defaultVatRate": "6"}),
        ("PATCH", f"/products/{ts_l[0]}/variants/{ts_l[1]}", {"ean": "", "isActive": True}),
    ])
    assert refreshed["changed"] == len(families(mamut))
    assert_shop_matches_mamut(sandbox, mamut)


def test_a_product_deleted_in_the_shop_is_created_again_when_mamut_changes_it(make_ctx, sandbox, mamut,
                                                                             staging_store) -> None:
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
        *sandbox.state.find_variant("HD-ALV-SVA-S"))


def test_every_request_the_job_sends_follows_the_starweb_spec(make_ctx, sandbox, mamut) -> None:
    products_to_starweb.run(make_ctx())
    edit(mamut, "MUGG-ORE", lambda family: replace(family, main=replace(family.main, name="Mugg", vat_code=2)))
    edit(mamut, "KASSE-ARE", lambda family: replace(family, main=replace(family.main, inactive=True)))
    edit_variant(mamut, "TS-BAS-M", ean="7350012340049", weight=None)
    edit(mamut, "TS-BAS", lambda family: replace(family, variants=(*family.variants, replace(
        family.variants[0], sku="TS-BAS-XL", variant_values=("XL", None)))))
    save(mamut, MamutProductFamily(
        main=MamutArticle(sku="MOSSA", name="Mössa", vat_code=1, variant_axes=("Material", None)),
        variants=(MamutArticle(sku="MOSSA-ULL", name="Mössa ull", vat_code=1, main_sku="MOSSA",
                               variant_values=("Ull", None)),)))
    products_to_starweb.run(make_ctx())
    products_to_starweb.run(make_ctx(full_refresh=True))

    kinds = {(request.method, request.path.split("/")[1], request.path.split("/")[-1].isdigit())
             for request in sandbox.write_requests()}
    assert {("POST", "products", False), ("PATCH", "products", True), ("PATCH", "products", False),
            ("POST", "product-attributes", False)} <= kinds
    assert {request.path.rsplit("/", 1)[-1] for request in sandbox.write_requests()} >= {"sv", "variants", "values"}
    for request in sandbox.requests:
        assert_request_conforms(request)
    assert_shop_matches_mamut(sandbox, mamut)
