"""SKU conflicts between a catalogue family and the other system's products: one judgement for every loader.

``products_to_starweb`` and ``initial_product_sync`` (both directions) ask here before they write a family onto
a product the other side already has, so a family is held back for the same reasons wherever it is loaded. A
conflict is never guessed away: the family is quarantined with a reason naming both sides, and nothing is
written to either side for it until a person fixes the SKUs (the next run checks again) or says what to do
(the ``on_conflict`` Param).

What counts as a conflict:

* one SKU on two products: another family of the same side holds it too (letter case aside), or the other
  side holds it on two products;
* a family whose SKUs are spread over several products of the other side (or over the product it is linked
  to and another);
* a family whose SKUs or attribute axes differ from the one product holding them: a subset (one article that
  is one variant of a larger product), a superset (a family with variants the product lacks), other SKUs, or
  other axes. Only this kind concerns one product, so only this kind ``on_conflict`` may settle.

Pure: the callers gather the facts (who holds which SKU, the matched product's SKUs and axes).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from starmamut.mapping.catalogue import sku_key
from starmamut.staging.store import SkuHolder

OnConflict = Literal["quarantine", "link_and_skip", "overwrite", "report_only"]
"""What ``products_to_starweb`` does with a family whose one shop product differs from it (the Param)."""
ON_CONFLICT: tuple[OnConflict, ...] = get_args(OnConflict)
CHECK = "sku_conflict"
"""The quarantine check name of every conflict."""


@dataclass(frozen=True)
class Sides:
    """What the two sides' records are called in a reason: the family being loaded and the other side's product."""

    family: str
    product: str


MAMUT_TO_SHOP = Sides(family="Mamut family", product="shop product")
SHOP_TO_MAMUT = Sides(family="shop product", product="Mamut family")


class SkuConflict(Exception):
    """A family a person must sort out before anything is written for it; the message names both sides."""

    def __init__(self, reason: str, *, product: str | None = None) -> None:
        super().__init__(reason)
        self.product = product  # the one product concerned when on_conflict may settle it, else None

    @property
    def resolvable(self) -> bool:
        """The conflict concerns one product only (it differs from the family), so ``on_conflict`` may settle it."""
        return self.product is not None


def locate(
    key: str,
    skus: Sequence[str],
    *,
    targets: Mapping[str, Sequence[SkuHolder]],
    sides: Sides,
    sources: Mapping[str, Sequence[SkuHolder]] | None = None,
    linked: str | None = None,
) -> str | None:
    """The one product of the other side holding the family's SKUs (or the one it is linked to), None when none
    does (the family is new there); raises :class:`SkuConflict` when the SKUs do not point at one product.

    ``targets`` and ``sources`` give, by folded SKU, the other side's products and this side's families holding
    it (the family itself may be among the sources); ``linked`` is the product the family is already linked to.
    """
    folded = {sku_key(sku): sku for sku in skus}
    shared = {
        sku: others
        for fold, sku in folded.items()
        if (others := sorted({holder.key for holder in (sources or {}).get(fold, ()) if holder.key != key}))
    }
    if shared:
        raise SkuConflict(
            "; ".join(
                f"{sides.family} {key}: SKU {sku} is also on {sides.family} {', '.join(others)}"
                + _held_by(targets.get(sku_key(sku), ()), sides)
                for sku, others in sorted(shared.items())
            )
            + ": one SKU on two products"
        )
    twice = {
        sku: targets[fold] for fold, sku in folded.items() if len({holder.key for holder in targets.get(fold, ())}) > 1
    }
    if twice:
        raise SkuConflict(
            "; ".join(
                f"{sides.family} {key}: SKU {sku} is on {sides.product}s {_products(holders)}"
                for sku, holders in sorted(twice.items())
            )
            + ": one SKU on two products"
        )
    products: dict[str, list[str]] = {} if linked is None else {linked: []}
    for fold in folded:
        for holder in targets.get(fold, ()):
            products.setdefault(holder.key, []).append(holder.sku)
    if len(products) > 1:
        listing = "; ".join(
            f"{sides.product} {product} ({_skus(held) if held else 'linked to it'})"
            for product, held in sorted(products.items())
        )
        raise SkuConflict(
            f"{sides.family} {key} has its SKUs on {len(products)} {sides.product}s: {listing}: "
            "one family split over several products"
        )
    return next(iter(products), None)


def check_structure(
    key: str,
    skus: Iterable[str],
    product: str,
    product_skus: Iterable[str],
    *,
    sides: Sides,
    axes: tuple[Collection[str], Collection[str]] | None = None,
) -> None:
    """Raise :class:`SkuConflict` (one ``on_conflict`` may settle) unless ``product`` holds exactly the family's
    SKUs (letter case aside) and, when ``axes`` (the family's, the product's) are given, on the same attribute
    axes: written onto a product with other variants, a family would rename, relink or hide what is not its own.
    """
    ours = {sku_key(sku): sku for sku in skus}
    theirs = {sku_key(sku): sku for sku in product_skus}
    both = (
        f"{sides.family} {key} has SKUs {_skus(ours.values())}; {sides.product} {product} has {_skus(theirs.values())}"
    )
    if ours.keys() != theirs.keys():
        only = [
            f"only the {side} has {_skus(mine[fold] for fold in mine.keys() - other.keys())}"
            for side, mine, other in ((sides.product, theirs, ours), (sides.family, ours, theirs))
            if mine.keys() - other.keys()
        ]
        raise SkuConflict(f"{both}: a different variant structure ({'; '.join(only)})", product=product)
    if axes is not None:
        family_axes, product_axes = axes
        if {axis.casefold() for axis in family_axes} != {axis.casefold() for axis in product_axes}:
            raise SkuConflict(
                f"{both}: a different variant structure (attribute axes {_axes(family_axes)} in the "
                f"{sides.family}, {_axes(product_axes)} on the {sides.product})",
                product=product,
            )


def _skus(skus: Iterable[str]) -> str:
    return ", ".join(sorted(skus))


def _axes(axes: Collection[str]) -> str:
    return " × ".join(sorted(axes, key=str.casefold)) if axes else "none"


def _products(holders: Iterable[SkuHolder]) -> str:
    return ", ".join(f"{holder.key} (as {holder.sku})" for holder in sorted(holders, key=lambda holder: holder.key))


def _held_by(holders: Sequence[SkuHolder], sides: Sides) -> str:
    return f" (held by {sides.product} {_products(holders)})" if holders else ""
