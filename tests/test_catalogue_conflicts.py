"""The one judgement of SKU conflicts every product loader shares, as pure functions.

A shop that lists one SKU on two products cannot be built in the sandbox (it refuses a SKU twice, as Starweb is
documented to), so that case is shown here; the job tests show the others against a populated shop.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from starmamut.catalogue_conflicts import MAMUT_TO_SHOP, SHOP_TO_MAMUT, SkuConflict, check_structure, locate
from starmamut.mapping.catalogue import sku_key
from starmamut.staging.store import SkuHolder


def holders(*pairs: tuple[str, str]) -> dict[str, list[SkuHolder]]:
    """``(holder, sku)`` pairs as the staging index gives them: by folded SKU."""
    index: dict[str, list[SkuHolder]] = {}
    for key, sku in pairs:
        index.setdefault(sku_key(sku), []).append(SkuHolder(key=key, sku=sku, sku_key=sku_key(sku)))
    return index


def located(skus: Iterable[str], targets: dict[str, list[SkuHolder]], **options: object) -> str | None:
    return locate("TS-BAS", list(skus), targets=targets, sides=MAMUT_TO_SHOP, **options)  # type: ignore[arg-type]


def test_a_family_the_shop_does_not_have_is_new_and_one_product_holding_its_skus_is_found_whatever_the_case() -> None:
    assert located(["TS-BAS-S", "TS-BAS-M"], holders(("9", "MUGG-ORE"))) is None
    assert located(["TS-BAS-S", "TS-BAS-M"], holders(("12", "ts-bas-s"), ("12", "TS-BAS-M"))) == "12"


def test_one_sku_on_two_products_of_either_side_is_a_conflict_no_param_settles() -> None:
    with pytest.raises(SkuConflict) as on_two_shop_products:
        located(["TS-BAS-S"], holders(("12", "TS-BAS-S"), ("15", "ts-bas-s")))
    assert str(on_two_shop_products.value) == (
        "Mamut family TS-BAS: SKU TS-BAS-S is on shop products 12 (as "
        "TS-BAS-S), 15 (as ts-bas-s): one SKU on two products"
    )
    assert not on_two_shop_products.value.resolvable

    with pytest.raises(SkuConflict) as on_two_families:
        located(["TS-BAS-S"], holders(("12", "TS-BAS-S")), sources=holders(("TS-BAS", "TS-BAS-S"), ("TS", "ts-bas-s")))
    assert str(on_two_families.value) == (
        "Mamut family TS-BAS: SKU TS-BAS-S is also on Mamut family TS (held by "
        "shop product 12 (as TS-BAS-S)): one SKU on two products"
    )


def test_skus_spread_over_several_products_or_beside_the_linked_one_are_a_conflict() -> None:
    with pytest.raises(
        SkuConflict,
        match=r"^Mamut family TS-BAS has its SKUs on 2 shop products: shop product 12 "
        r"\(TS-BAS-S\); shop product 15 \(TS-BAS-M\): one family split",
    ):
        located(["TS-BAS-S", "TS-BAS-M"], holders(("12", "TS-BAS-S"), ("15", "TS-BAS-M")))
    with pytest.raises(SkuConflict, match=r"shop product 12 \(linked to it\); shop product 15 \(TS-BAS-M\)"):
        located(["TS-BAS-S", "TS-BAS-M"], holders(("15", "TS-BAS-M")), linked="12")
    assert located(["TS-BAS-S"], {}, linked="12") == "12"


@pytest.mark.parametrize(
    ("product_skus", "detail"),
    [
        (["OVERALL-86", "OVERALL-92"], "only the shop product has OVERALL-86)"),  # one article = one variant
        (["TS-BAS-S"], "only the Mamut family has TS-BAS-M)"),  # a family with a variant the product lacks
        (["TS-BAS-S", "TS-BAS-128"], "only the shop product has TS-BAS-128; only the Mamut family has TS-BAS-M)"),
    ],
)
def test_a_product_with_other_skus_is_a_conflict_the_param_may_settle(product_skus: list[str], detail: str) -> None:
    family = ["OVERALL-92"] if "OVERALL-86" in product_skus else ["TS-BAS-S", "TS-BAS-M"]
    with pytest.raises(SkuConflict) as conflict:
        check_structure("F", family, "12", product_skus, sides=MAMUT_TO_SHOP)
    assert str(conflict.value).startswith(
        f"Mamut family F has SKUs {', '.join(sorted(family))}; shop product 12 has "
        f"{', '.join(sorted(product_skus))}: a different variant structure ("
    )
    assert str(conflict.value).endswith(detail)
    assert conflict.value.resolvable and conflict.value.product == "12"


def test_the_same_skus_on_other_attribute_axes_are_a_conflict_and_case_alone_is_not() -> None:
    check_structure("HD", ["HD-S"], "12", ["hd-s"], sides=MAMUT_TO_SHOP, axes=(["Storlek"], ["storlek"]))
    with pytest.raises(
        SkuConflict,
        match=r"attribute axes Färg × Storlek in the Mamut family, Färg × Material × "
        r"Storlek on the shop product\)$",
    ):
        check_structure(
            "HD",
            ["HD-S"],
            "12",
            ["HD-S"],
            sides=MAMUT_TO_SHOP,
            axes=(["Färg", "Storlek"], ["Storlek", "Material", "Färg"]),
        )


def test_the_other_direction_names_the_sides_the_other_way_round() -> None:
    with pytest.raises(SkuConflict, match=r"^shop product 7 has SKUs A, B; Mamut family EGEN has A: "):
        check_structure("7", ["A", "B"], "EGEN", ["A"], sides=SHOP_TO_MAMUT)
