"""Product register writes and reads: idempotent upsert of a main article with its variants.

Families are written many to a transaction (:meth:`ProductRepository.upsert_families`; one alone is
:meth:`ProductRepository.upsert_family`) with a fixed number of statements per table, not per family, since
each statement costs a round trip to a Mamut across the LAN: every sku is looked up by article number with
IN lists, the missing main rows are inserted with multi-row statements (their identity keys read back by sku,
since RETURNING/OUTPUT are not portable), then the missing variants linked to them likewise; rows whose values
differ are updated one statement each. Unchanged rows are not written, so a re-run reports everything
unchanged and leaves EDITDATE alone.

Each of these writes looks rows up and inserts the missing ones under its table's app lock
(:meth:`MamutTransaction.lock`), so two writers never both insert the same article number, price-list line or
stock row, whatever unique indexes the install has.

Columns an install maps to null (see default_schema_map.yaml, ``optional: true``) are neither written
nor compared and read back as the article's defaults; variants need ``main_product_key``. Variants
that a family no longer lists are left in Mamut as they are (never deleted or unlinked).

Price-list lines and warehouse stock are written in bulk (:meth:`ProductRepository.set_list_prices`,
:meth:`ProductRepository.set_stock`), a chunk per transaction, by the same rule: skus, price-list names and
warehouses are resolved with a few IN-list selects and an unknown one refuses the whole chunk before anything
is written; the chunk's existing rows are read in bulk, missing rows inserted with one executemany and only
rows whose value differs updated (one statement each, as the gateway has no bulk update). Values are compared
as the columns store them, so a re-run writes nothing and EDITDATE stays.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starmamut.mamut.articles import MamutArticle, MamutProductFamily
from starmamut.mamut.customers import MamutRecordError, canonical_values, stamp_values
from starmamut.mamut.gateway import MamutError, MamutGateway, MamutTransaction
from starmamut.mamut.schema_map import SchemaMapError, TableSpec

PRODUCT = "product"
PRICE_LIST = "price_list"
PRICE_LIST_LINE = "price_list_line"
PRODUCT_STOCK = "product_stock"
WAREHOUSE = "warehouse"
_LISTED_AT_MOST = 10  # unknown skus named in one error message; the rest are counted

log = logging.getLogger(__name__)

# Article field -> logical column of the product table (variant pairs are spread over two columns).
_ARTICLE_COLUMNS = (
    "sku",
    "name",
    "vat_code",
    "price_out",
    "ean",
    "weight",
    "unit",
    "inactive",
    "use_store",
    "main_product_key",
    "variant_value_1",
    "variant_value_2",
    "variant_axis_1",
    "variant_axis_2",
)


def article_columns(product_table: TableSpec) -> tuple[str, ...]:
    """The article columns this install has (optional ones may be mapped to null), in a fixed order."""
    return tuple(name for name in _ARTICLE_COLUMNS if product_table.has(name))


def article_from_row(row: Mapping[str, Any], *, main_sku: str | None) -> MamutArticle:
    """A product row (logical names, typed values) as an article; unmapped columns take the defaults."""
    return MamutArticle(
        sku=row["sku"],
        name=row["name"],
        vat_code=row["vat_code"],
        price_out=row["price_out"],
        ean=row.get("ean"),
        weight=row.get("weight"),
        unit=row.get("unit"),
        inactive=row.get("inactive", False),
        use_store=row.get("use_store", True),
        main_sku=main_sku,
        variant_values=(row.get("variant_value_1"), row.get("variant_value_2")),
        variant_axes=(row.get("variant_axis_1"), row.get("variant_axis_2")),
    )


class MamutConflict(MamutError):
    """A sku exists in Mamut in a structure that contradicts the family being written."""

    def __init__(self, message: str, *, sku: str, other_sku: str) -> None:
        super().__init__(message, operation="upsert", table=PRODUCT)
        self.sku = sku
        self.other_sku = other_sku


@dataclass(frozen=True)
class FamilyWriteResult:
    """Outcome of one family upsert; the sku tuples follow the family's order (main first)."""

    keys: dict[str, int]
    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]


@dataclass(frozen=True)
class _Desired:
    """A family to write and its rows' values in canonical form, by sku."""

    family: MamutProductFamily
    values: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ListPrice:
    """The price of ``sku`` from ``min_qty`` units on in one Mamut price list (a G_PRICELISTL row)."""

    sku: str
    price_list: str  # Mamut price list name, as CatalogueReader.price_lists() keys them
    price: Decimal  # excl. VAT
    min_qty: Decimal = Decimal(1)


@dataclass(frozen=True)
class StockLevel:
    """Quantity on hand of ``sku`` in one Mamut warehouse (G_PRODSTOCK.QTYSTOCK)."""

    sku: str
    warehouse_id: int
    quantity: Decimal


@dataclass(frozen=True)
class ValueWriteResult:
    """Outcome of one bulk value write, counted in rows."""

    written: int  # inserted or updated
    unchanged: int


class ProductRepository:
    """Reads and writes Mamut's product register through a :class:`MamutGateway`."""

    def __init__(self, gateway: MamutGateway) -> None:
        self._gateway = gateway
        self._table = gateway.schema_map.table(PRODUCT)
        self._article_columns = article_columns(self._table)
        self._read_columns = ("product_key", *self._article_columns)
        self._links_variants = self._table.has("main_product_key")

    def keys_by_sku(self, skus: Iterable[str]) -> dict[str, int]:
        """Internal key per sku found (missing skus are absent); the IN list is chunked by the gateway."""
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return {}
        with self._gateway.transaction() as transaction:
            rows = transaction.select(PRODUCT, ["sku", "product_key"], where_in=("sku", wanted))
        return {row["sku"]: row["product_key"] for row in rows}

    def upsert_family(self, family: MamutProductFamily, *, update_price: bool, now: dt.datetime) -> FamilyWriteResult:
        """One family in its own transaction: :meth:`upsert_families` of one, its refusal raised."""
        (outcome,) = self.upsert_families([family], update_price=update_price, now=now)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def upsert_families(
        self, families: Sequence[MamutProductFamily], *, update_price: bool, now: dt.datetime
    ) -> list[FamilyWriteResult | Exception]:
        """Create or update the families' rows in one transaction, a few statements per table; see the module
        docstring. Returns each family's result, or the error that kept it out while the others were written.

        ``update_price=False`` leaves PRICEOUT of existing rows alone (Mamut governs prices in flow combo).
        ``now`` (naive UTC or aware) stamps REGDATE/EDITDATE of written rows where the install has them.
        A family's error is ValueError for a malformed family, a sku another family of the call holds or a value a
        column cannot hold (naming sku and column), SchemaMapError for variants the install cannot link,
        MamutConflict for a clashing structure in Mamut, or the MamutError of a statement the database refused
        for that family alone. Should the database refuse the set, each family is written again in a transaction
        of its own, so a family it refuses costs only itself; a transient fault (:attr:`MamutError.transient`)
        raises, as do database failures of a single family, so the run retries.
        """
        outcomes: list[FamilyWriteResult | Exception | None] = [None] * len(families)
        desired: dict[int, _Desired] = {}
        held: dict[str, str] = {}  # sku -> main sku of the family of this call that holds it
        for index, family in enumerate(families):
            try:
                desired[index] = self._desired_family(family, held)
            except (ValueError, SchemaMapError) as exc:
                outcomes[index] = exc
        if desired:
            try:
                written = self._upsert_together(list(desired.values()), update_price, self._stamps(now))
            except MamutError as exc:
                if exc.transient or len(desired) == 1:
                    raise
                log.warning("Mamut refused %d families written together (%s); writing each alone", len(desired), exc)
                written = [self._upsert_alone(wanted, update_price, now) for wanted in desired.values()]
            outcomes_written = dict(zip(desired, written, strict=True))
            outcomes = [outcomes_written.get(index, outcome) for index, outcome in enumerate(outcomes)]
        return [outcome for outcome in outcomes if outcome is not None]

    def _desired_family(self, family: MamutProductFamily, held: dict[str, str]) -> _Desired:
        """The family's rows in canonical form; refuses a malformed family and a sku an earlier family holds."""
        problems = family.structure_problems()
        if problems:
            raise ValueError("; ".join(problems))
        if family.variants and not self._links_variants:
            raise SchemaMapError(
                f"family {family.main.sku} has variants, but column {self._table.logical}.main_product_key "
                "is mapped to null in this install"
            )
        taken = next((sku for sku in family.skus if sku in held), None)
        if taken is not None:
            raise ValueError(f"sku {taken} of family {family.main.sku} is also in family {held[taken]}")
        values = {article.sku: self._desired_values(article) for article in (family.main, *family.variants)}
        held.update(dict.fromkeys(family.skus, family.main.sku))
        return _Desired(family, values)

    def _upsert_alone(self, wanted: _Desired, update_price: bool, now: dt.datetime) -> FamilyWriteResult | Exception:
        """One family in its own transaction after the set was refused: a refusal of its own is its outcome."""
        try:
            (outcome,) = self._upsert_together([wanted], update_price, self._stamps(now))
        except MamutError as exc:
            if exc.transient:
                raise
            return MamutError(
                f"family {wanted.family.main.sku}: {exc}",
                operation=exc.operation,
                table=exc.table,
                sqlstate=exc.sqlstate,
            )
        return outcome

    def _upsert_together(
        self, families: list[_Desired], update_price: bool, stamps: dict[str, dt.datetime]
    ) -> list[FamilyWriteResult | Exception]:
        """One transaction under the product table's app lock: look every sku up at once, set the conflicting
        families aside, insert the new mains together, read their keys, then the variants linked to them."""
        with self._gateway.transaction(locks=(PRODUCT,)) as transaction:
            skus = [sku for wanted in families for sku in wanted.family.skus]
            existing = {
                row["sku"]: row for row in transaction.select(PRODUCT, self._read_columns, where_in=("sku", skus))
            }
            conflicts = self._conflicts(transaction, [wanted.family for wanted in families], existing)
            writing = [wanted for wanted in families if wanted.family.main.sku not in conflicts]
            outcome: dict[str, str] = {}
            new_rows: list[dict[str, Any]] = []
            for wanted in writing:
                main = wanted.family.main.sku
                outcome[main] = self._write(
                    transaction, wanted.values[main], existing.get(main), update_price, stamps, new_rows
                )
            keys = {sku: row["product_key"] for sku, row in existing.items()}
            keys.update(self._insert_rows(transaction, new_rows))
            new_rows = []
            for wanted in writing:
                main_key = keys[wanted.family.main.sku]
                for variant in wanted.family.variants:
                    values = {**wanted.values[variant.sku], "main_product_key": main_key}
                    outcome[variant.sku] = self._write(
                        transaction, values, existing.get(variant.sku), update_price, stamps, new_rows
                    )
            keys.update(self._insert_rows(transaction, new_rows))
        return [
            conflicts.get(wanted.family.main.sku)
            or FamilyWriteResult(
                keys={sku: keys[sku] for sku in wanted.family.skus},
                created=tuple(sku for sku in wanted.family.skus if outcome[sku] == "created"),
                updated=tuple(sku for sku in wanted.family.skus if outcome[sku] == "updated"),
                unchanged=tuple(sku for sku in wanted.family.skus if outcome[sku] == "unchanged"),
            )
            for wanted in families
        ]

    def _insert_rows(self, transaction: MamutTransaction, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert the rows, a multi-row statement per set of columns (a row without a price has one fewer), and
        read their identity keys back by sku (RETURNING/OUTPUT are not portable)."""
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            by_columns.setdefault(tuple(row), []).append(row)
        for same in by_columns.values():
            transaction.insert_many(PRODUCT, same)
        return self._keys_in(transaction, [row["sku"] for row in rows])

    def fetch_family(self, sku: str) -> MamutProductFamily | None:
        """The family ``sku`` belongs to (as main or as variant), variants in key order; None if unknown."""
        with self._gateway.transaction() as transaction:
            rows = transaction.select(PRODUCT, self._read_columns, where={"sku": sku})
            if not rows:
                return None
            main = rows[0]
            if self._links_variants and main["main_product_key"] is not None:
                parents = transaction.select(
                    PRODUCT, self._read_columns, where={"product_key": main["main_product_key"]}
                )
                if not parents:
                    raise MamutError(
                        f"article {sku} links to missing main product key {main['main_product_key']}",
                        operation="select",
                        table=PRODUCT,
                    )
                main = parents[0]
            variants: list[dict[str, Any]] = []
            if self._links_variants:
                variants = transaction.select(
                    PRODUCT, self._read_columns, where={"main_product_key": main["product_key"]}
                )
        return MamutProductFamily(
            main=article_from_row(main, main_sku=None),
            variants=tuple(
                article_from_row(row, main_sku=main["sku"]) for row in sorted(variants, key=lambda r: r["product_key"])
            ),
        )

    def iter_articles(self) -> Iterator[dict[str, Any]]:
        """Every product row with all mapped columns (logical names), in key order, streamed."""
        with self._gateway.transaction() as transaction:
            yield from transaction.iter_rows(
                PRODUCT, [column.logical for column in self._table.columns], order_by=["product_key"]
            )

    def set_list_prices(self, prices: Iterable[ListPrice], *, now: dt.datetime) -> ValueWriteResult:
        """Make each price-list line hold its price, all in one transaction; see the module docstring.

        ``now`` stamps EDITDATE of written lines where the install has it. Raises ValueError for a line
        given twice or a value the columns cannot hold, MamutRecordError for an unknown sku or price list
        name or a list kept incl. VAT (before anything is written), MamutError for database failures.
        """
        line_table = self._gateway.schema_map.table(PRICE_LIST_LINE)
        wanted: dict[tuple[str, str, Decimal], dict[str, Any]] = {}
        for item in prices:
            label = f"list price of {item.sku} in price list {item.price_list!r}"
            values = canonical_values(line_table, {"min_qty": item.min_qty, "price": item.price}, label)
            key = (item.sku, item.price_list, values.pop("min_qty"))
            if key in wanted:
                raise ValueError(f"{label} from quantity {key[2]} is given twice")
            wanted[key] = values
        if not wanted:
            return ValueWriteResult(written=0, unchanged=0)
        with self._gateway.transaction(locks=(PRICE_LIST_LINE,)) as transaction:
            product_keys = self._known_product_keys(transaction, [sku for sku, _name, _qty in wanted])
            list_ids = self._price_list_ids(transaction, [name for _sku, name, _qty in wanted])
            existing = {
                (row["price_list_id"], row["product_key"], row["min_qty"]): {"price": row["price"]}
                for row in transaction.select(
                    PRICE_LIST_LINE,
                    ["price_list_id", "product_key", "min_qty", "price"],
                    where_in=("product_key", list(product_keys.values())),
                )
            }
            desired = {
                (list_ids[name], product_keys[sku], min_qty): values for (sku, name, min_qty), values in wanted.items()
            }
            return _write_values(
                transaction,
                line_table,
                ("price_list_id", "product_key", "min_qty"),
                desired,
                existing,
                new_rows_only={},
                now=now,
            )

    def set_stock(self, levels: Iterable[StockLevel], *, now: dt.datetime) -> ValueWriteResult:
        """Make each sku's quantity on hand in each warehouse the given one, all in one transaction.

        Only QTYSTOCK is written: reserved and ordered quantities are Mamut's (new rows start them at 0).
        ``now`` stamps EDITDATE of written rows where the install has it. Raises ValueError for a level
        given twice or a quantity the column cannot hold, MamutRecordError for an unknown sku or warehouse
        (before anything is written), MamutError for database failures.
        """
        stock_table = self._gateway.schema_map.table(PRODUCT_STOCK)
        wanted: dict[tuple[str, int], dict[str, Any]] = {}
        for level in levels:
            label = f"stock of {level.sku} in warehouse {level.warehouse_id}"
            values = canonical_values(
                stock_table, {"warehouse_id": level.warehouse_id, "qty_in_stock": level.quantity}, label
            )
            key = (level.sku, values.pop("warehouse_id"))
            if key in wanted:
                raise ValueError(f"{label} is given twice")
            wanted[key] = values
        if not wanted:
            return ValueWriteResult(written=0, unchanged=0)
        new_rows_only = canonical_values(stock_table, {"qty_reserved": 0, "qty_ordered": 0}, "new stock row")
        with self._gateway.transaction(locks=(PRODUCT_STOCK,)) as transaction:
            product_keys = self._known_product_keys(transaction, [sku for sku, _warehouse in wanted])
            self._check_warehouses(transaction, [warehouse_id for _sku, warehouse_id in wanted])
            existing = {
                (row["product_key"], row["warehouse_id"]): {"qty_in_stock": row["qty_in_stock"]}
                for row in transaction.select(
                    PRODUCT_STOCK,
                    ["product_key", "warehouse_id", "qty_in_stock"],
                    where_in=("product_key", list(product_keys.values())),
                )
            }
            desired = {(product_keys[sku], warehouse_id): values for (sku, warehouse_id), values in wanted.items()}
            return _write_values(
                transaction,
                stock_table,
                ("product_key", "warehouse_id"),
                desired,
                existing,
                new_rows_only=new_rows_only,
                now=now,
            )

    def _known_product_keys(self, transaction: MamutTransaction, skus: list[str]) -> dict[str, int]:
        """Key per sku; any sku Mamut does not have refuses the whole chunk, naming it."""
        keys = self._keys_in(transaction, skus)
        _refuse_unknown(skus, keys, "sku(s) not in Mamut's product register", PRODUCT)
        return keys

    @staticmethod
    def _price_list_ids(transaction: MamutTransaction, names: list[str]) -> dict[str, int]:
        """Id per price list name; unknown, ambiguous and incl.-VAT lists are refused (prices are excl. VAT)."""
        ids: dict[str, int] = {}
        rows = transaction.select(PRICE_LIST, ["price_list_id", "name", "incl_vat"], where_in=("name", names))
        for row in sorted(rows, key=lambda r: r["price_list_id"]):
            name = row["name"]
            if name in ids:
                raise MamutError(
                    f"Mamut price list name {name!r} is used by price lists {ids[name]} and {row['price_list_id']}; "
                    "rename one so the prices' target is unambiguous",
                    operation="select",
                    table=PRICE_LIST,
                )
            if row["incl_vat"]:
                raise MamutRecordError(
                    f"Mamut price list {name!r} holds prices incl. VAT, but list prices are written excl. VAT",
                    operation="select",
                    table=PRICE_LIST,
                )
            ids[name] = row["price_list_id"]
        _refuse_unknown(
            [repr(name) for name in names], {repr(name) for name in ids}, "unknown Mamut price list(s)", PRICE_LIST
        )
        return ids

    @staticmethod
    def _check_warehouses(transaction: MamutTransaction, warehouse_ids: list[int]) -> None:
        rows = transaction.select(WAREHOUSE, ["warehouse_id"], where_in=("warehouse_id", warehouse_ids))
        known = {row["warehouse_id"] for row in rows}
        _refuse_unknown(warehouse_ids, known, "unknown Mamut warehouse(s)", WAREHOUSE)

    def _desired_values(self, article: MamutArticle) -> dict[str, Any]:
        """The article's column values in canonical form (as they read back), only for mapped columns."""
        raw = {
            "sku": article.sku,
            "name": article.name,
            "vat_code": article.vat_code,
            "price_out": article.price_out,
            "ean": article.ean,
            "weight": article.weight,
            "unit": article.unit,
            "inactive": article.inactive,
            "use_store": article.use_store,
            "main_product_key": None,
            "variant_value_1": article.variant_values[0],
            "variant_value_2": article.variant_values[1],
            "variant_axis_1": article.variant_axes[0],
            "variant_axis_2": article.variant_axes[1],
        }
        values: dict[str, Any] = {}
        for name in self._article_columns:
            column = self._table.column(name)
            if name == "price_out" and raw[name] is None:
                continue  # no price given: keep Mamut's (new rows take the column default)
            try:
                values[name] = column.canonical(raw[name])
            except ValueError as exc:
                raise ValueError(f"article {article.sku}: {exc}") from None
        return values

    def _stamps(self, now: dt.datetime) -> dict[str, dt.datetime]:
        return {
            name: self._table.column(name).canonical(now) for name in ("reg_date", "edit_date") if self._table.has(name)
        }

    def _write(
        self,
        transaction: MamutTransaction,
        values: dict[str, Any],
        existing: dict[str, Any] | None,
        update_price: bool,
        stamps: dict[str, dt.datetime],
        new_rows: list[dict[str, Any]],
    ) -> str:
        """Update one row now, or add it to ``new_rows`` for the caller's bulk insert; returns "created",
        "updated" or "unchanged"."""
        if existing is None:
            new_rows.append({**values, **stamps})
            return "created"
        compared = {name: value for name, value in values.items() if update_price or name != "price_out"}
        changes = {name: value for name, value in compared.items() if existing[name] != value}
        if not changes:
            return "unchanged"
        if "edit_date" in stamps:
            changes["edit_date"] = stamps["edit_date"]
        count = transaction.update(PRODUCT, changes, where={"product_key": existing["product_key"]})
        if count != 1:
            raise MamutError(
                f"article {values['sku']} (key {existing['product_key']}) changed {count} rows instead of 1",
                operation="update",
                table=PRODUCT,
            )
        return "updated"

    def _conflicts(
        self,
        transaction: MamutTransaction,
        families: list[MamutProductFamily],
        existing: dict[str, dict[str, Any]],
    ) -> dict[str, MamutConflict]:
        """Never re-parent articles: per main sku, the conflict of a family a sku of which Mamut ties to another
        family. Two look-ups for all families: the skus of the other mains, and the children of the articles
        that would become variants."""
        if not self._links_variants:
            return {}
        parents = {row["main_product_key"] for row in existing.values() if row["main_product_key"] is not None}
        would_be_variants = {  # per main sku, the standalone articles the family makes its variants: (sku, key)
            family.main.sku: [
                (variant.sku, existing[variant.sku]["product_key"])
                for variant in family.variants
                if variant.sku in existing and existing[variant.sku]["main_product_key"] is None
            ]
            for family in families
        }
        sku_of = {
            row["product_key"]: row["sku"]
            for row in transaction.select(PRODUCT, ["sku", "product_key"], where_in=("product_key", list(parents)))
        }
        children: dict[int, str] = {}
        standalone = [key for articles in would_be_variants.values() for _sku, key in articles]
        for row in transaction.select(PRODUCT, ["sku", "main_product_key"], where_in=("main_product_key", standalone)):
            key = row["main_product_key"]
            children[key] = min(children.get(key, row["sku"]), row["sku"])
        conflicts: dict[str, MamutConflict] = {}
        for family in families:
            conflict = self._conflict(family, existing, sku_of, children, would_be_variants[family.main.sku])
            if conflict is not None:
                conflicts[family.main.sku] = conflict
        return conflicts

    @staticmethod
    def _conflict(
        family: MamutProductFamily,
        existing: dict[str, dict[str, Any]],
        sku_of: dict[int, str],
        children: dict[int, str],
        would_be_variants: list[tuple[str, int]],
    ) -> MamutConflict | None:
        main_sku = family.main.sku
        main_row = existing.get(main_sku)
        if main_row is not None and main_row["main_product_key"] is not None:
            other = sku_of.get(main_row["main_product_key"], f"<missing key {main_row['main_product_key']}>")
            return MamutConflict(
                f"sku {main_sku} is a variant of main article {other} in Mamut, but the family makes it a main article",
                sku=main_sku,
                other_sku=other,
            )
        main_key = main_row["product_key"] if main_row is not None else None
        for variant in family.variants:
            row = existing.get(variant.sku)
            if row is None or row["main_product_key"] in (None, main_key):
                continue
            other = sku_of.get(row["main_product_key"], f"<missing key {row['main_product_key']}>")
            return MamutConflict(
                f"variant {variant.sku} belongs to main article {other} in Mamut, not to {main_sku}",
                sku=variant.sku,
                other_sku=other,
            )
        for sku, key in sorted(would_be_variants):
            if key in children:
                return MamutConflict(
                    f"sku {sku} is the main article of {children[key]} in Mamut; "
                    f"it cannot become a variant of {main_sku}",
                    sku=sku,
                    other_sku=children[key],
                )
        return None

    @staticmethod
    def _keys_in(transaction: MamutTransaction, skus: list[str]) -> dict[str, int]:
        rows = transaction.select(PRODUCT, ["sku", "product_key"], where_in=("sku", skus))
        return {row["sku"]: row["product_key"] for row in rows}


def _write_values(
    transaction: MamutTransaction,
    table: TableSpec,
    key_columns: tuple[str, ...],
    desired: Mapping[tuple[Any, ...], Mapping[str, Any]],
    existing: Mapping[tuple[Any, ...], Mapping[str, Any]],
    *,
    new_rows_only: Mapping[str, Any],
    now: dt.datetime,
) -> ValueWriteResult:
    """Insert missing rows (one executemany), update rows whose values differ, leave equal rows alone.

    Keys and values must be canonical (as ``select`` reads them back) for the comparison to hold.
    """
    stamps = stamp_values(table, now, "edit_date")
    inserts: list[dict[str, Any]] = []
    updated = 0
    for key, values in desired.items():
        where = dict(zip(key_columns, key, strict=True))
        stored = existing.get(key)
        if stored is None:
            inserts.append({**where, **values, **new_rows_only, **stamps})
            continue
        changes = {name: value for name, value in values.items() if stored[name] != value}
        if not changes:
            continue
        count = transaction.update(table.logical, {**changes, **stamps}, where=where)
        if count != 1:
            raise MamutError(
                f"update of {table.label} row {', '.join(f'{k}={v}' for k, v in where.items())} "
                f"changed {count} rows instead of 1",
                operation="update",
                table=table.logical,
            )
        updated += 1
    transaction.insert_many(table.logical, inserts)
    written = len(inserts) + updated
    return ValueWriteResult(written=written, unchanged=len(desired) - written)


def _refuse_unknown(wanted: Iterable[Any], known: Collection[Any], what: str, table: str) -> None:
    """Refuse the whole chunk, naming (the first few of) the values Mamut does not have, before any write."""
    unknown = [value for value in dict.fromkeys(wanted) if value not in known]
    if unknown:
        raise MamutRecordError(f"{len(unknown)} {what}: {_listed(unknown)}", operation="select", table=table)


def _listed(values: list[Any]) -> str:
    """The first few values for an error message, and how many more there are."""
    shown = ", ".join(str(value) for value in values[:_LISTED_AT_MOST])
    rest = len(values) - _LISTED_AT_MOST
    return f"{shown} and {rest} more" if rest > 0 else shown
