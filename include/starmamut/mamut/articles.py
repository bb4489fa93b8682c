"""What the integration writes to (and reads from) Mamut's product register: pure values, no I/O.

Mappers build these from shop data; :class:`~starmamut.mamut.products.ProductRepository` writes them.
Every field is the full desired state of the article, so ``None`` clears the column in Mamut, except
``price_out``: ``None`` there means "no price given" (existing prices stay, new rows get 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class MamutArticle:
    """One row of the product register: a single article, a variant's main row or a variant."""

    sku: str
    name: str
    vat_code: int
    price_out: Decimal | None = None  # base sales price excl. VAT
    ean: str | None = None
    weight: Decimal | None = None
    unit: str | None = None
    inactive: bool = False
    use_store: bool = True
    main_sku: str | None = None  # set on variant rows: the main article's sku
    variant_values: tuple[str | None, str | None] = (None, None)  # on variant rows, e.g. ("Svart", "M")
    variant_axes: tuple[str | None, str | None] = (None, None)  # on main rows, e.g. ("Färg", "Storlek")


@dataclass(frozen=True)
class MamutProductFamily:
    """A main article and the variants linked to it (Mamut's variant add-on allows two axes)."""

    main: MamutArticle  # a single-article product is just this row
    variants: tuple[MamutArticle, ...] = ()  # rows linked to the main via FK_MAINPRODID

    @property
    def skus(self) -> tuple[str, ...]:
        """Main sku first, then the variants in their given order."""
        return (self.main.sku, *(variant.sku for variant in self.variants))

    def structure_problems(self) -> list[str]:
        """Why this family cannot be written as one main plus linked variants (empty list: it can)."""
        problems: list[str] = []
        if self.main.main_sku is not None:
            problems.append(f"main article {self.main.sku} has main_sku {self.main.main_sku}; a main has none")
        seen: set[str] = set()
        for sku in self.skus:
            if not sku or not sku.strip():
                problems.append(f"family of {self.main.sku!r} has an article with an empty sku")
            elif sku in seen:
                problems.append(f"sku {sku} occurs twice in the family of {self.main.sku}")
            seen.add(sku)
        for variant in self.variants:
            if variant.main_sku not in (None, self.main.sku):
                problems.append(
                    f"variant {variant.sku} names main {variant.main_sku}, but its family's main is {self.main.sku}"
                )
        return problems
