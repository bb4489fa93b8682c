"""Mamut as catalogue master (flows ``erp`` and ``combo``): families, prices, price lists and stock, streamed.

The to-Starweb jobs read Mamut only through :class:`CatalogueReader`. Every read is one SELECT over the
product table joined with what it needs (variants' main rows, price-list lines, stock rows), streamed in
``batch_size`` rows and folded into records per article or family as it goes: memory holds one family at a
time and the number of statements does not grow with the catalogue. With ``skus`` the query runs once per
chunk of at most ~500 skus (the gateway's parameter budget), so a re-sync of a few articles reads only those.

Rules the jobs rely on:

- A *family* is a main article (no FK_MAINPRODID) with the variants linked to it, variants in key order;
  a standalone article is a family without variants. A variant whose main is missing or is itself a
  variant is an error (Mamut's variant add-on has one level).
- *Sellable* articles are the ones a shop sells: variants and standalone articles. A main row with
  variants is not sellable, so it gets no price or stock rows.
- ``changed_since`` compares with EDITDATE of every row of a family; an install that maps
  ``product.edit_date`` to null has no change timestamp, so every family is read (the caller then
  compares content hashes) and ``edited_at`` is None.
- The source ``"base"`` is G_PROD.PRICEOUT (excl. VAT) in the *company currency*, which is taken to be
  the currency of the first price list (lowest id), or SEK when there is none: Mamut keeps the company
  currency in its system database, which this project does not read. A Mamut price list named "base"
  therefore cannot be addressed. Price-list validity dates are not applied.
- Stock quantities are summed per group of warehouses exactly as stored: negative stock stays negative
  (the job decides whether to clamp) and articles without stock rows count as 0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starmamut.mamut.articles import MamutProductFamily
from starmamut.mamut.gateway import MAX_PARAMS_PER_STATEMENT, MamutError, MamutGateway
from starmamut.mamut.products import PRODUCT, article_columns, article_from_row

BASE_PRICE = "base"
"""The price source that stands for the article's own sales price (G_PROD.PRICEOUT)."""
FALLBACK_CURRENCY = "SEK"
"""Currency of base prices when Mamut has no price list to take the company currency from."""


class UnknownPriceList(LookupError):
    """A price source names no Mamut price list: a configuration that does not fit this company database."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        listed = ", ".join(repr(known_name) for known_name in self.known) or "none"
        super().__init__(
            f"unknown Mamut price list {name!r}; known price lists: {listed} "
            f"(or {BASE_PRICE!r} for the article's sales price)"
        )


class UnknownWarehouse(LookupError):
    """A stock group names a warehouse id that G_STORE does not have."""

    def __init__(self, warehouse_id: int, group: str, known: Mapping[int, str]) -> None:
        self.warehouse_id = warehouse_id
        self.group = group
        self.known = dict(known)
        listed = ", ".join(f"{key} ({name})" for key, name in sorted(self.known.items())) or "none"
        super().__init__(f"unknown Mamut warehouse {warehouse_id} in stock group {group!r}; known warehouses: {listed}")


@dataclass(frozen=True)
class FamilySnapshot:
    """A family as Mamut holds it now, with the change time the caller keeps as its watermark."""

    family: MamutProductFamily
    edited_at: dt.datetime | None  # latest EDITDATE over the main and its variants (aware UTC); None if unmapped


@dataclass(frozen=True)
class PriceListInfo:
    """One Mamut price list (G_PRICELIST) as the price job needs it."""

    id: int
    currency: str  # ISO code
    incl_vat: bool


@dataclass(frozen=True)
class PriceRow:
    """The price of one sellable article from one source (``"base"`` or a price-list name)."""

    sku: str
    source: str
    currency: str
    price: Decimal  # as stored: excl. VAT unless incl_vat
    incl_vat: bool
    volume: tuple[tuple[Decimal, Decimal], ...] = ()  # (minimum quantity > 1, price), ascending quantity


@dataclass(frozen=True)
class StockRow:
    """Stock of one sellable article summed over one group of warehouses."""

    sku: str
    group: str
    on_hand: Decimal  # minus reserved when the read subtracts it
    reserved: Decimal
    use_store: bool  # False: a non-stock article, always buyable
    inactive: bool


@dataclass(frozen=True)
class _Query:
    """A streamed catalogue query; ``sku_filter(markers)`` is the WHERE clause a chunk of skus adds."""

    tables: Mapping[str, str]
    select: Mapping[str, str]
    source: str  # FROM ... JOIN ...
    conditions: tuple[str, ...]
    order_by: str
    params: tuple[Any, ...]
    sku_filter: Callable[[str], str]

    def body(self, extra_condition: str | None = None) -> str:
        conditions = [*self.conditions, *([extra_condition] if extra_condition else [])]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"{self.source}{where} ORDER BY {self.order_by}"


class CatalogueReader:
    """Reads Mamut's catalogue for the jobs that push it to Starweb; see the module docstring for the rules."""

    def __init__(self, gateway: MamutGateway) -> None:
        self._gateway = gateway
        schema_map = gateway.schema_map
        self._product = schema_map.table(PRODUCT)
        self._article_columns = article_columns(self._product)
        self._links_variants = self._product.has("main_product_key")
        self._has_edit_date = self._product.has("edit_date")
        self._has_inactive = self._product.has("inactive")
        self._zero_quantity = schema_map.table("product_stock").column("qty_in_stock").from_db(0)

    # --- families --------------------------------------------------------------------------------

    def iter_families(
        self,
        *,
        skus: Collection[str] | None = None,
        changed_since: dt.datetime | None = None,
        batch_size: int = 1000,
    ) -> Iterator[FamilySnapshot]:
        """Every family ordered by main article number (per chunk of ``skus`` when given).

        ``changed_since`` keeps families with any row edited at or after it (ignored without EDITDATE);
        ``skus`` keeps families that contain any of them. Raises MamutError for a broken variant link.
        """
        family_key = self._family_key("p")
        conditions: list[str] = []
        params: list[Any] = []
        if changed_since is not None and self._has_edit_date:
            conditions.append(f"{family_key} IN (SELECT {self._family_key('c')} FROM {{c}} WHERE {{c.edit_date}} >= ?)")
            params.append(self._product.column("edit_date").since_param(changed_since))
        select = {name: f"p.{name}" for name in ("product_key", *self._article_columns)}
        tables = {"p": PRODUCT, "c": PRODUCT, "s": PRODUCT}
        if self._has_edit_date:
            select["edit_date"] = "p.edit_date"
        if self._links_variants:
            tables["m"] = PRODUCT
            source = "FROM {p} LEFT JOIN {m} ON {m.product_key} = {p.main_product_key}"
            order_by = (
                f"COALESCE({{m.sku}}, {{p.sku}}), {family_key}, "
                "CASE WHEN {p.main_product_key} IS NULL THEN 0 ELSE 1 END, {p.product_key}"
            )
        else:
            source, order_by = "FROM {p}", "{p.sku}, {p.product_key}"
        query = _Query(
            tables=tables,
            select=select,
            source=source,
            conditions=tuple(conditions),
            order_by=order_by,
            params=tuple(params),
            sku_filter=lambda markers: (
                f"{family_key} IN (SELECT {self._family_key('s')} FROM {{s}} WHERE {{s.sku}} IN ({markers}))"
            ),
        )
        seen: set[int] = set()  # a family two chunks of skus both reach comes out once
        for rows in self._statements(query, skus, batch_size):
            for key, snapshot in self._fold_families(rows):
                if skus is not None:
                    if key in seen:
                        continue
                    seen.add(key)
                yield snapshot

    def _family_key(self, alias: str) -> str:
        """SQL for the key of the family a row belongs to: its main's key, or its own for a main."""
        if self._links_variants:
            return f"COALESCE({{{alias}.main_product_key}}, {{{alias}.product_key}})"
        return f"{{{alias}.product_key}}"

    def _fold_families(self, rows: Iterator[dict[str, Any]]) -> Iterator[tuple[int, FamilySnapshot]]:
        """Consecutive rows of one family (main first) → one snapshot, keyed by the main's product key."""
        group: list[dict[str, Any]] = []
        for row in rows:
            main_key = row.get("main_product_key")
            if group and main_key == group[0]["product_key"]:
                group.append(row)
                continue
            if group:
                yield group[0]["product_key"], self._snapshot(group)
            if main_key is not None:
                raise MamutError(
                    f"article {row['sku']} links to main product key {main_key}, which is not a main article "
                    "in Mamut (missing, or itself a variant)",
                    operation="select",
                    table=PRODUCT,
                )
            group = [row]
        if group:
            yield group[0]["product_key"], self._snapshot(group)

    def _snapshot(self, group: list[dict[str, Any]]) -> FamilySnapshot:
        main = group[0]
        edits = [row["edit_date"] for row in group if row.get("edit_date") is not None]
        return FamilySnapshot(
            family=MamutProductFamily(
                main=article_from_row(main, main_sku=None),
                variants=tuple(article_from_row(row, main_sku=main["sku"]) for row in group[1:]),
            ),
            edited_at=self._product.column("edit_date").to_utc(max(edits)) if edits else None,
        )

    # --- prices ----------------------------------------------------------------------------------

    def price_lists(self) -> dict[str, PriceListInfo]:
        """Every Mamut price list by name; raises MamutError if two share a name (the config maps by name)."""
        return dict(self._price_lists())

    def _price_lists(self) -> list[tuple[str, PriceListInfo]]:
        """(name, info) in id order; names are unique and currencies resolved to ISO codes."""
        with self._gateway.transaction() as transaction:
            lists = transaction.select("price_list", ["price_list_id", "name", "currency_id", "incl_vat"])
            currencies = {
                row["currency_id"]: row["iso_code"].strip()
                for row in transaction.select("currency", ["currency_id", "iso_code"])
            }
        result: list[tuple[str, PriceListInfo]] = []
        ids_by_name: dict[str, int] = {}
        for row in sorted(lists, key=lambda r: r["price_list_id"]):
            name, list_id = row["name"], row["price_list_id"]
            if name in ids_by_name:
                raise MamutError(
                    f"Mamut price list name {name!r} is used by price lists {ids_by_name[name]} and {list_id}; "
                    "rename one so the shop's mapping is unambiguous",
                    operation="select",
                    table="price_list",
                )
            if row["currency_id"] not in currencies:
                raise MamutError(
                    f"Mamut price list {name!r} has currency id {row['currency_id']}, which no currency row has",
                    operation="select",
                    table="price_list",
                )
            ids_by_name[name] = list_id
            result.append((name, PriceListInfo(list_id, currencies[row["currency_id"]], row["incl_vat"])))
        return result

    def iter_prices(
        self, sources: Sequence[str], *, skus: Collection[str] | None = None, batch_size: int = 1000
    ) -> Iterator[PriceRow]:
        """One row per sellable article and source, sources in the given order, articles by sku.

        A price list gives the article's line with the highest minimum quantity up to 1 (no such line:
        no row) and its lines above 1 as ``volume``. Raises UnknownPriceList at once for an unknown name.
        """
        wanted = list(dict.fromkeys(sources))
        lists = self._price_lists()
        known = dict(lists)
        for name in wanted:
            if name != BASE_PRICE and name not in known:
                raise UnknownPriceList(name, known)
        base_currency = lists[0][1].currency if lists else FALLBACK_CURRENCY
        list_ids = sorted({known[name].id for name in wanted if name != BASE_PRICE})
        select = {"product_key": "p.product_key", "sku": "p.sku", "price_out": "p.price_out"}
        source = "FROM {p}"
        params: tuple[int, ...] = ()
        if list_ids:
            select.update(price_list_id="l.price_list_id", min_qty="l.min_qty", price="l.price")
            source = (
                "FROM {p} LEFT JOIN {l} ON {l.product_key} = {p.product_key} "
                f"AND {{l.price_list_id}} IN ({_markers(len(list_ids))})"
            )
            params = tuple(list_ids)
        query = _Query(
            tables={"p": PRODUCT, "l": "price_list_line", "v": PRODUCT},
            select=select,
            source=source,
            conditions=self._sellable(),
            order_by="{p.sku}, {p.product_key}" + (", {l.price_list_id}, {l.min_qty}" if list_ids else ""),
            params=params,
            sku_filter=lambda markers: f"{{p.sku}} IN ({markers})",
        )

        def rows_to_prices() -> Iterator[PriceRow]:
            for rows in self._statements(query, skus, batch_size):
                for article in _fold_by_product(rows):
                    lines: dict[int, list[tuple[Decimal, Decimal]]] = {}
                    for row in article:
                        if row.get("price_list_id") is not None:
                            lines.setdefault(row["price_list_id"], []).append((row["min_qty"], row["price"]))
                    sku = article[0]["sku"]
                    for name in wanted:
                        if name == BASE_PRICE:
                            yield PriceRow(sku, BASE_PRICE, base_currency, article[0]["price_out"], False)
                            continue
                        info = known[name]
                        breaks = lines.get(info.id, [])
                        unit_prices = [price for min_qty, price in breaks if min_qty <= 1]
                        if unit_prices:
                            volume = tuple((min_qty, price) for min_qty, price in breaks if min_qty > 1)
                            yield PriceRow(sku, name, info.currency, unit_prices[-1], info.incl_vat, volume)

        return rows_to_prices()

    # --- stock -----------------------------------------------------------------------------------

    def warehouses(self) -> dict[int, str]:
        """Every warehouse (G_STORE) by id, with its description."""
        with self._gateway.transaction() as transaction:
            rows = transaction.select("warehouse", ["warehouse_id", "description"])
        return {row["warehouse_id"]: row["description"] for row in rows}

    def iter_stock(
        self,
        groups: Mapping[str, Sequence[int]],
        *,
        subtract_reserved: bool = True,
        skus: Collection[str] | None = None,
        batch_size: int = 1000,
    ) -> Iterator[StockRow]:
        """One row per sellable article and group, groups in the given order, articles by sku.

        ``on_hand`` is QTYSTOCK summed over the group's warehouses, minus QTYRESERVED when
        ``subtract_reserved``; ``reserved`` is always the summed QTYRESERVED. Raises UnknownWarehouse at
        once for a warehouse id Mamut does not have, ValueError for a group without warehouses.
        """
        known = self.warehouses()
        for group, warehouse_ids in groups.items():
            if not warehouse_ids:
                raise ValueError(f"stock group {group!r} names no warehouse")
            for warehouse_id in warehouse_ids:
                if warehouse_id not in known:
                    raise UnknownWarehouse(warehouse_id, group, known)
        wanted = {group: frozenset(warehouse_ids) for group, warehouse_ids in groups.items()}
        all_ids = sorted(set().union(*wanted.values())) if wanted else []
        select = {
            "product_key": "p.product_key",
            "sku": "p.sku",
            "use_store": "p.use_store",
            "warehouse_id": "s.warehouse_id",
            "qty_in_stock": "s.qty_in_stock",
            "qty_reserved": "s.qty_reserved",
        }
        if self._has_inactive:
            select["inactive"] = "p.inactive"
        query = _Query(
            tables={"p": PRODUCT, "s": "product_stock", "v": PRODUCT},
            select=select,
            source=(
                "FROM {p} LEFT JOIN {s} ON {s.product_key} = {p.product_key} "
                f"AND {{s.warehouse_id}} IN ({_markers(len(all_ids))})"
            ),
            conditions=self._sellable(),
            order_by="{p.sku}, {p.product_key}",
            params=tuple(all_ids),
            sku_filter=lambda markers: f"{{p.sku}} IN ({markers})",
        )
        zero = self._zero_quantity

        def rows_to_stock() -> Iterator[StockRow]:
            if not wanted:
                return
            for rows in self._statements(query, skus, batch_size):
                for article in _fold_by_product(rows):
                    first = article[0]
                    stocked = [row for row in article if row["warehouse_id"] is not None]
                    for group, warehouse_ids in wanted.items():
                        in_group = [row for row in stocked if row["warehouse_id"] in warehouse_ids]
                        on_hand = sum((row["qty_in_stock"] for row in in_group), zero)
                        reserved = sum((row["qty_reserved"] for row in in_group), zero)
                        yield StockRow(
                            sku=first["sku"],
                            group=group,
                            on_hand=on_hand - reserved if subtract_reserved else on_hand,
                            reserved=reserved,
                            use_store=first["use_store"],
                            inactive=first.get("inactive", False),
                        )

        return rows_to_stock()

    # --- shared ----------------------------------------------------------------------------------

    def _sellable(self) -> tuple[str, ...]:
        """WHERE clause (alias p, helper alias v) that drops main rows with variants."""
        if not self._links_variants:
            return ()
        return ("NOT EXISTS (SELECT 1 FROM {v} WHERE {v.main_product_key} = {p.product_key})",)

    def _statements(
        self, query: _Query, skus: Collection[str] | None, batch_size: int
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """The query's rows per statement, in one read transaction: once, or once per chunk of sorted skus."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        with self._gateway.transaction() as transaction:
            if skus is None:
                yield transaction.iter_query(
                    query.tables, query.select, query.body(), query.params, batch_size=batch_size
                )
                return
            sku_column = self._product.column("sku")
            wanted = sorted({sku_column.to_param(sku, strict=False) for sku in skus})
            chunk_size = MAX_PARAMS_PER_STATEMENT - len(query.params)
            for start in range(0, len(wanted), chunk_size):
                chunk = wanted[start : start + chunk_size]
                yield transaction.iter_query(
                    query.tables,
                    query.select,
                    query.body(query.sku_filter(_markers(len(chunk)))),
                    (*query.params, *chunk),
                    batch_size=batch_size,
                )


def _fold_by_product(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows of one product (a product joined with its lines) → one list per product."""
    group: list[dict[str, Any]] = []
    for row in rows:
        if group and row["product_key"] != group[0]["product_key"]:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def _markers(count: int) -> str:
    return ", ".join("?" * count)
