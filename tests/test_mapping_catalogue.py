"""Mamut family → staged record → desired Starweb state → the requests that differ, as pure functions.

The last test runs the catalogue checks through real Great Expectations on rows built by the mapping.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pandas as pd
import pytest

from starmamut.config import ProductFieldOwners
from starmamut.mamut.articles import MamutArticle, MamutProductFamily
from starmamut.mapping.catalogue import (
    MappingError,
    ProductState,
    VariantState,
    apply_request,
    axis_values,
    create_request,
    desired_state,
    governed_state,
    live_state,
    normalise_family,
    plan_requests,
    settled_state,
    state_from_json,
    state_to_json,
    structure_problems,
    validation_rows,
    vat_rates_by_code,
)
from starmamut.quality.catalogue import CATALOGUE_COLUMNS, catalogue_checks
from starmamut.quality.runner import validate_rows

VAT_RATES = vat_rates_by_code({25: 1, 12: 2, 6: 3, 0: 4})
VALUE_IDS = {("Färg", "Svart"): 5, ("Färg", "Grå"): 21, ("Storlek", "S"): 18, ("Storlek", "M"): 19}
MAMUT_OWNS_ALL = ProductFieldOwners(ean="mamut", weight="mamut", sku_case="mamut")


def hoodie(**main_fields: object) -> MamutProductFamily:
    fields = {
        "sku": "HD",
        "name": " Hoodie Älvsbyn ",
        "vat_code": 1,
        "variant_axes": ("Färg", "Storlek"),
        **main_fields,
    }
    main = MamutArticle(**fields)  # type: ignore[arg-type]
    variants = tuple(
        MamutArticle(
            sku=f"HD-{code}-{size}",
            name="x",
            vat_code=1,
            weight=Decimal("0.650"),
            main_sku="HD",
            variant_values=(colour, size),
            ean="7350012340018" if code == "SVA" and size == "S" else None,
        )
        for code, colour in (("SVA", "Svart"), ("GRA", "Grå"))
        for size in ("M", "S")
    )
    return MamutProductFamily(main=main, variants=variants)


def single(**fields: object) -> MamutProductFamily:
    article = {
        "sku": "MUGG",
        "name": "Kaffemugg Örebro",
        "vat_code": 3,
        "ean": " 7350012340025 ",
        "weight": Decimal("0.350"),
        **fields,
    }
    return MamutProductFamily(main=MamutArticle(**article))  # type: ignore[arg-type]


def test_a_family_becomes_a_record_with_its_variants_sorted_and_names_trimmed() -> None:
    record = normalise_family(hoodie(), vat_rates=VAT_RATES)

    assert (record["key"], record["name"], record["vat_rate"], record["axes"]) == (
        "HD",
        "Hoodie Älvsbyn",
        25.0,
        ["Färg", "Storlek"],
    )
    assert [variant["sku"] for variant in record["variants"]] == ["HD-GRA-M", "HD-GRA-S", "HD-SVA-M", "HD-SVA-S"]
    assert record["variants"][3] == {
        "sku": "HD-SVA-S",
        "ean": "7350012340018",
        "weight": "0.650",
        "active": True,
        "values": ["Svart", "S"],
    }
    assert record["active"] is True
    assert axis_values(record) == set(VALUE_IDS)


def test_a_single_article_is_a_product_with_one_variant_of_its_own_sku() -> None:
    record = normalise_family(single(), vat_rates=VAT_RATES)

    assert record["axes"] == [] and record["vat_rate"] == 6.0
    assert record["variants"] == [
        {"sku": "MUGG", "ean": "7350012340025", "weight": "0.350", "active": True, "values": []}
    ]
    assert structure_problems(record) == []


@pytest.mark.parametrize(
    ("family", "active"),
    [
        (hoodie(inactive=True), False),
        (
            MamutProductFamily(
                main=hoodie().main, variants=tuple(replace(v, inactive=True) for v in hoodie().variants)
            ),
            False,
        ),
        (
            MamutProductFamily(
                main=hoodie().main, variants=(replace(hoodie().variants[0], inactive=True), *hoodie().variants[1:])
            ),
            True,
        ),
        (single(inactive=True), False),
    ],
)
def test_a_product_is_active_while_its_main_and_at_least_one_variant_are(
    family: MamutProductFamily, active: bool
) -> None:
    assert normalise_family(family, vat_rates=VAT_RATES)["active"] is active


def test_values_follow_their_axis_when_the_first_axis_is_unnamed() -> None:
    family = hoodie(variant_axes=(None, " Storlek "))
    record = normalise_family(family, vat_rates=VAT_RATES)

    assert record["axes"] == ["Storlek"]
    assert [variant["values"] for variant in record["variants"]] == [["M"], ["S"], ["M"], ["S"]]


def test_a_main_with_axes_but_no_variants_cannot_become_a_product() -> None:
    record = normalise_family(MamutProductFamily(main=hoodie().main), vat_rates=VAT_RATES)

    assert record["variants"] == []
    assert structure_problems(record) == [
        "main article HD names variant axes (Färg × Storlek) but has no variants to sell"
    ]


def test_desired_state_links_each_variant_to_its_value_ids() -> None:
    desired = desired_state(normalise_family(hoodie(), vat_rates=VAT_RATES), value_ids=VALUE_IDS)

    assert desired.variants["hd-sva-s"] == VariantState(
        sku="HD-SVA-S", ean="7350012340018", weight=0.65, active=True, links=(5, 18)
    )
    assert (desired.name, desired.vat_rate, desired.product_id) == ("Hoodie Älvsbyn", 25.0, None)


def test_desired_state_names_the_record_and_field_it_cannot_map() -> None:
    record = normalise_family(hoodie(), vat_rates=VAT_RATES)
    with pytest.raises(MappingError, match=r"family HD: variant HD-GRA-M: field 'values'.*Grå"):
        desired_state(record, value_ids={key: value for key, value in VALUE_IDS.items() if key[1] != "Grå"})
    with pytest.raises(MappingError, match=r"family MUGG: field 'vat_code': VAT code 9"):
        desired_state(normalise_family(single(vat_code=9), vat_rates=VAT_RATES), value_ids={})


def test_a_new_product_is_created_in_one_request_with_its_variants_and_no_price() -> None:
    desired = desired_state(normalise_family(single(), vat_rates=VAT_RATES), value_ids={})

    request = create_request(desired, language="sv", visibility="visible")

    assert (request.method, request.path) == ("POST", "/products")
    assert request.body == {
        "visibility": "visible",
        "defaultVatRate": "6",
        "languages": [{"langCode": "sv", "name": "Kaffemugg Örebro"}],
        "variants": [
            {"sku": "MUGG", "attributeValueLinks": [], "isActive": True, "ean": "7350012340025", "weightInKg": 0.35}
        ],
    }
    inactive = desired_state(normalise_family(single(inactive=True), vat_rates=VAT_RATES), value_ids={})
    assert create_request(inactive, language="sv", visibility="visible").body["visibility"] == "hidden"


def pushed(desired: ProductState, product_id: int = 7) -> ProductState:
    """The state after ``desired`` was created in the shop as product 7, variant ids 100, 101, …"""
    response = {
        "productId": product_id,
        "variants": {
            "data": [
                {"variantId": 100 + index, "sku": variant.sku}
                for index, variant in enumerate(desired.variants.values())
            ]
        },
    }
    return apply_request(
        ProductState(), desired, create_request(desired, language="sv", visibility="visible"), response
    )


def plan(
    desired: ProductState,
    current: ProductState,
    retired: tuple[str, ...] = (),
    owners: ProductFieldOwners = MAMUT_OWNS_ALL,
) -> list[tuple[str, str, dict]]:
    requests = plan_requests(governed(desired, current, owners), current, language="sv", retired=retired)
    return [(request.method, request.path, request.body) for request in requests]


def governed(desired: ProductState, current: ProductState, owners: ProductFieldOwners = MAMUT_OWNS_ALL) -> ProductState:
    return governed_state(desired, current, owners=owners, default_visibility="visible")


def test_an_unchanged_product_needs_no_request() -> None:
    desired = desired_state(normalise_family(hoodie(), vat_rates=VAT_RATES), value_ids=VALUE_IDS)
    assert plan(desired, pushed(desired)) == []


def test_only_the_values_that_differ_are_sent() -> None:
    before = desired_state(normalise_family(hoodie(), vat_rates=VAT_RATES), value_ids=VALUE_IDS)
    current = pushed(before)
    family = hoodie(vat_code=2)
    variants = list(family.variants)
    variants[3] = replace(variants[3], ean=None, weight=None, variant_values=("Grå", "S"), sku="HD-SVA-S")
    variants[0] = replace(variants[0], variant_values=("Svart", "S"), sku="HD-SVA-M")
    changed = MamutProductFamily(main=replace(family.main, name="Hoodie Ny"), variants=tuple(variants))
    desired = desired_state(normalise_family(changed, vat_rates=VAT_RATES), value_ids=VALUE_IDS)

    ids = {variant.sku: variant.variant_id for variant in current.variants.values()}
    assert plan(desired, current) == [
        ("PATCH", "/products/7", {"defaultVatRate": "12"}),
        ("PATCH", "/products/7/languages/sv", {"langCode": "sv", "name": "Hoodie Ny"}),
        ("PATCH", f"/products/7/variants/{ids['HD-SVA-M']}", {"attributeValueLinks": [5, 18]}),
        (
            "PATCH",
            f"/products/7/variants/{ids['HD-SVA-S']}",
            {"ean": "", "weightInKg": 0, "attributeValueLinks": [18, 21]},
        ),
    ]


def test_deactivation_hides_the_product_and_reactivation_shows_it_as_a_new_product() -> None:
    active = desired_state(normalise_family(single(), vat_rates=VAT_RATES), value_ids={})
    inactive = desired_state(normalise_family(single(inactive=True), vat_rates=VAT_RATES), value_ids={})
    current = pushed(active)

    assert plan(inactive, current) == [
        ("PATCH", "/products/7", {"visibility": "hidden"}),
        ("PATCH", "/products/7/variants/100", {"isActive": False}),
    ]
    hidden = settled_state(_apply_all(current, inactive), inactive, ())
    assert (hidden.visibility, hidden.active) == ("hidden", False)
    assert plan(active, hidden) == [
        ("PATCH", "/products/7", {"visibility": "visible"}),
        ("PATCH", "/products/7/variants/100", {"isActive": True}),
    ]
    assert plan(inactive, replace(current, visibility="pricelists"))[0] == (
        "PATCH",
        "/products/7",
        {"visibility": "hidden", "visibilityPricelistIds": []},
    )
    hidden_by_owner = replace(current, visibility="hidden")
    assert plan(active, hidden_by_owner) == [], "a product the shop owner hid stays hidden"


def test_variants_gone_from_mamut_are_deactivated_and_the_shops_own_are_left_alone() -> None:
    desired = desired_state(normalise_family(hoodie(), vat_rates=VAT_RATES), value_ids=VALUE_IDS)
    current = pushed(desired)
    shop_only = VariantState(sku="SHOP-ONLY", variant_id=555, active=True, links=(5, 19))
    current = replace(current, variants={**current.variants, "shop-only": shop_only})
    fewer = replace(desired, variants={key: value for key, value in desired.variants.items() if key != "hd-gra-m"})

    assert plan(fewer, current, retired=("hd-gra-m",)) == [("PATCH", "/products/7/variants/100", {"isActive": False})]
    settled = settled_state(_apply_all(current, fewer, retired=("hd-gra-m",)), fewer, ("hd-gra-m",))
    assert "shop-only" not in settled.variants and settled.variants["hd-gra-m"].active is False


def test_a_new_variant_is_posted_with_its_links_and_a_missing_language_is_put() -> None:
    desired = desired_state(normalise_family(hoodie(), vat_rates=VAT_RATES), value_ids=VALUE_IDS)
    current = pushed(desired)
    current = replace(
        current, name=None, variants={key: value for key, value in current.variants.items() if key != "hd-sva-s"}
    )

    assert plan(desired, current) == [
        ("PUT", "/products/7/languages/sv", {"langCode": "sv", "name": "Hoodie Älvsbyn"}),
        (
            "POST",
            "/products/7/variants",
            {
                "sku": "HD-SVA-S",
                "attributeValueLinks": [5, 18],
                "isActive": True,
                "ean": "7350012340018",
                "weightInKg": 0.65,
            },
        ),
    ]


def test_applying_every_planned_request_reaches_the_desired_state() -> None:
    before = desired_state(normalise_family(hoodie(), vat_rates=VAT_RATES), value_ids=VALUE_IDS)
    changed = desired_state(
        normalise_family(hoodie(vat_code=3, inactive=True), vat_rates=VAT_RATES), value_ids=VALUE_IDS
    )
    after = settled_state(_apply_all(pushed(before), changed), changed, ())

    assert plan(changed, after) == []
    assert state_from_json(state_to_json(after)) == after


def test_a_shop_product_reads_as_a_state_with_empty_values_as_none() -> None:
    product = {"productId": 3, "defaultVatRate": "12", "visibility": "visible"}
    variants = [
        {"variantId": 9, "sku": "Mugg", "ean": "", "weightInKg": 0, "isActive": False, "attributeValueLinks": [19, 5]}
    ]

    state = live_state(product, variants, name="Mugg", active=True)

    assert state.variants == {
        "mugg": VariantState(sku="Mugg", variant_id=9, ean=None, weight=None, active=False, links=(5, 19))
    }
    assert (state.product_id, state.vat_rate, state.visibility) == (3, 12.0, "visible")
    desired = desired_state(
        normalise_family(single(sku="MUGG", ean=None, weight=None), vat_rates=VAT_RATES), value_ids={}
    )
    assert plan(desired, replace(state, product_id=3))[-1] == (
        "PATCH",
        "/products/3/variants/9",
        {"sku": "MUGG", "isActive": True},
    ), "an article without axes keeps links"


def test_by_default_an_empty_mamut_ean_or_weight_never_clears_the_shops_and_the_shops_sku_spelling_stays() -> None:
    shop = VariantState(sku="mugg", variant_id=9, ean="7350012340025", weight=0.4, active=True)
    current = ProductState(
        product_id=3, name="Kaffemugg Örebro", vat_rate=6.0, visibility="visible", variants={"mugg": shop}
    )
    empty = desired_state(normalise_family(single(ean=None, weight=Decimal(0)), vat_rates=VAT_RATES), value_ids={})
    assert plan(empty, current, owners=ProductFieldOwners()) == []
    assert plan(empty, current) == [("PATCH", "/products/3/variants/9", {"sku": "MUGG", "ean": "", "weightInKg": 0})]

    changed = desired_state(
        normalise_family(single(ean="7350012340018", weight=Decimal("0.5")), vat_rates=VAT_RATES), value_ids={}
    )
    assert plan(changed, current, owners=ProductFieldOwners()) == [
        ("PATCH", "/products/3/variants/9", {"ean": "7350012340018", "weightInKg": 0.5})
    ], "Mamut's values when set"


def test_fields_the_shop_owns_are_never_written_to_a_product_it_has() -> None:
    desired = desired_state(
        normalise_family(hoodie(vat_code=2, inactive=True), vat_rates=VAT_RATES), value_ids=VALUE_IDS
    )
    current = replace(
        pushed(desired_state(normalise_family(hoodie(), vat_rates=VAT_RATES), value_ids=VALUE_IDS)), name="Egen rubrik"
    )
    owners = ProductFieldOwners(name="shop", ean="shop", weight="shop", visibility="shop", variant_active="shop")

    assert plan(desired, current, owners=owners) == [("PATCH", "/products/7", {"defaultVatRate": "12"})]
    assert plan(desired, current)[:2] == [
        ("PATCH", "/products/7", {"defaultVatRate": "12", "visibility": "hidden"}),
        ("PATCH", "/products/7/languages/sv", {"langCode": "sv", "name": "Hoodie Älvsbyn"}),
    ]


def _apply_all(current: ProductState, desired: ProductState, retired: tuple[str, ...] = ()) -> ProductState:
    """``current`` after every planned request succeeded (a new variant gets id 900)."""
    target = governed(desired, current)
    for request in plan_requests(target, current, language="sv", retired=retired):
        current = apply_request(current, target, request, {"variantId": 900})
    return current


def test_catalogue_checks_fail_exactly_the_bad_rows_with_reasons() -> None:
    good = normalise_family(hoodie(), vat_rates=VAT_RATES)
    sva_m, sva_s, gra_m, _ = hoodie().variants
    twin = MamutProductFamily(
        main=replace(hoodie().main, sku="HD2", name="x" * 151),
        variants=(
            replace(sva_m, sku="hd-gra-m", main_sku="HD2", ean="7350012340017", variant_values=("Grå", "M")),
            replace(sva_s, sku="HD2 B", main_sku="HD2", variant_values=("Grå", None)),
            replace(gra_m, sku="HD2-C", main_sku="HD2", weight=Decimal(-1)),
        ),
    )
    long_names = MamutProductFamily(
        main=MamutArticle(sku="LONG", name="Lång", vat_code=9, variant_axes=("F" * 51, None)),
        variants=(
            MamutArticle(
                sku="LONG-1", name="Lång", vat_code=9, ean="12345", main_sku="LONG", variant_values=("V" * 51, None)
            ),
        ),
    )
    rows = [
        row
        for family in (hoodie(), twin, long_names)
        for row in validation_rows(normalise_family(family, vat_rates=VAT_RATES))
    ]

    report = validate_rows(
        pd.DataFrame(rows, columns=list(CATALOGUE_COLUMNS)),
        catalogue_checks(vat_codes=VAT_RATES),
        key_column="row_key",
        suite_name="catalogue",
    )

    failed = {key: [failure.check for failure in failures] for key, failures in report.failures.items()}
    assert failed == {
        "HD#0": ["sku_unique_ignoring_case"],
        "HD2#0": ["sku_allowed_characters", "name_max_length", "variant_values_complete"],
        "HD2#1": ["name_max_length", "weight_not_negative", "variant_values_distinct"],
        "HD2#2": ["sku_unique_ignoring_case", "name_max_length", "ean_check_digit", "variant_values_distinct"],
        "LONG#0": ["vat_code_known", "ean_format", "axis_1_max_length", "value_1_max_length"],
    }
    assert good["variants"][0]["sku"] == "HD-GRA-M"
    reasons = {failure.check: failure.reason for failures in report.failures.values() for failure in failures}
    assert reasons["variant_values_complete"] == "variant HD2 B has no value for Storlek"
    assert reasons["vat_code_known"] == "VAT code 9 has no VAT rate in the config (known codes: 1, 2, 3, 4)"
    assert "Starweb does not tell upper and lower case apart" in reasons["sku_unique_ignoring_case"]
    assert reasons["axis_1_max_length"] == f"variant axis name {'F' * 51!r} is 51 characters long; Starweb allows 50"
