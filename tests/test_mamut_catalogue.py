"""CatalogueReader on real mock databases: families, prices, price lists and stock as the to-Starweb jobs read them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from starmamut.mamut.articles import MamutArticle, MamutProductFamily
from starmamut.mamut.catalogue import (
    CatalogueReader,
    FamilySnapshot,
    PriceListInfo,
    PriceRow,
    StockRow,
    UnknownPriceList,
    UnknownWarehouse,
)
from starmamut.mamut.gateway import MAX_PARAMS_PER_STATEMENT, MamutError, MamutGateway
from starmamut.mamut.products import ProductRepository
from starmamut.mamut.schema_map import SchemaMap, SchemaMapError
from starmamut_devtools.mamut_mock import demo_families
from tests.fixtures.mamut import MAMUT_BACKENDS, MamutTestDatabase, fresh_mock_database
from tests.test_mamut_products import jacket_family

T1 = dt.datetime(2026, 5, 1, 8, 0, 0)
T2 = dt.datetime(2026, 5, 2, 8, 0, 0)
T3 = dt.datetime(2026, 5, 3, 8, 0, 0)
RESELLER = "Återförsäljare SEK"
EURO = "Euro EUR"


def tshirt() -> MamutProductFamily:
    """The demo seed's one-axis family (three sizes)."""
    return next(family for family in demo_families() if family.main.sku == "TS-BAS")


def singles() -> tuple[MamutProductFamily, ...]:
    return (
        MamutProductFamily(
            MamutArticle(sku="BOK", name="Kokbok Norrland", vat_code=3, price_out=Decimal("249.00"), unit="st")
        ),
        MamutProductFamily(
            MamutArticle(
                sku="PRESENTKORT", name="Presentkort 300 kr", vat_code=4, price_out=Decimal("300"), use_store=False
            )
        ),
        MamutProductFamily(
            MamutArticle(sku="UTGÅTT", name="Termos (utgått)", vat_code=1, price_out=Decimal("129.50"), inactive=True)
        ),
    )


def catalogue() -> tuple[MamutProductFamily, ...]:
    """Every family of these tests, in main-sku order."""
    return tuple(sorted((jacket_family(), tshirt(), *singles()), key=lambda family: family.main.sku))


def write(gateway: MamutGateway, families: tuple[MamutProductFamily, ...], now: dt.datetime) -> dict[str, int]:
    repository = ProductRepository(gateway)
    keys: dict[str, int] = {}
    for family in families:
        keys.update(repository.upsert_family(family, update_price=True, now=now).keys)
    return keys


def statements(gateway: MamutGateway, action: object) -> tuple[object, int]:
    """The result of ``action()`` (a list) and how many SQL statements it took."""
    before = gateway.statements_executed
    result = action()  # type: ignore[operator]
    return result, gateway.statements_executed - before


# --- families ---------------------------------------------------------------------------------


def test_families_with_one_or_two_axes_and_single_articles_read_back_as_written(
    mamut_db: MamutTestDatabase,
) -> None:
    write(mamut_db.gateway, catalogue(), T1)
    reader = CatalogueReader(mamut_db.gateway)

    snapshots, count = statements(mamut_db.gateway, lambda: list(reader.iter_families(batch_size=3)))

    assert snapshots == [FamilySnapshot(family, T1.replace(tzinfo=dt.UTC)) for family in catalogue()]
    assert [snapshot.family.main.sku for snapshot in snapshots] == ["BOK", "JACKA", "PRESENTKORT", "TS-BAS", "UTGÅTT"]
    assert count == 1  # one streamed statement, however many batches


def test_changed_since_yields_whole_families_with_any_row_edited_at_or_after_it(mamut_db: MamutTestDatabase) -> None:
    write(mamut_db.gateway, catalogue(), T1)
    repository = ProductRepository(mamut_db.gateway)
    family = jacket_family()
    renamed = dataclasses.replace(family.variants[3], name="Skaljacka Kebnekaise Havsblå M")
    jacket_now = dataclasses.replace(family, variants=(*family.variants[:3], renamed))
    repository.upsert_family(jacket_now, update_price=True, now=T3)  # only a variant changes
    book_now = MamutProductFamily(dataclasses.replace(singles()[0].main, price_out=Decimal("259.00")))
    repository.upsert_family(book_now, update_price=True, now=T2)
    reader = CatalogueReader(mamut_db.gateway)

    changed = list(reader.iter_families(changed_since=T2))

    assert changed == [
        FamilySnapshot(book_now, T2.replace(tzinfo=dt.UTC)),  # T2 itself counts
        FamilySnapshot(jacket_now, T3.replace(tzinfo=dt.UTC)),
    ]
    assert [s.family.main.sku for s in reader.iter_families(changed_since=T2 + dt.timedelta(seconds=1))] == ["JACKA"]
    assert list(reader.iter_families(changed_since=T3 + dt.timedelta(seconds=1))) == []
    aware = dt.datetime(2026, 5, 3, 10, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # = T3 in UTC
    assert [s.family.main.sku for s in reader.iter_families(changed_since=aware)] == ["JACKA"]


def test_skus_select_the_families_that_contain_them(mamut_db: MamutTestDatabase) -> None:
    write(mamut_db.gateway, catalogue(), T1)
    reader = CatalogueReader(mamut_db.gateway)

    picked = [s.family for s in reader.iter_families(skus={"JACKA-BLÅ-S", "UTGÅTT", "JACKA", "OKÄND"})]
    assert picked == [jacket_family(), singles()[2]]

    both = list(reader.iter_families(skus=["TS-BAS-M"], changed_since=T2))
    assert both == []  # the filters combine
    nothing, count = statements(mamut_db.gateway, lambda: list(reader.iter_families(skus=[])))
    assert nothing == [] and count == 0


def test_a_family_reached_from_two_chunks_of_skus_comes_out_once(mamut_db: MamutTestDatabase) -> None:
    write(mamut_db.gateway, catalogue(), T1)
    reader = CatalogueReader(mamut_db.gateway)
    # Sorted, "JACKA" lands in the first chunk and "JACKA-RÖD-S" in the second, with missing skus between.
    skus = ["JACKA", *(f"JACKA-A{n:03d}" for n in range(MAX_PARAMS_PER_STATEMENT)), "JACKA-RÖD-S", "BOK"]

    snapshots, count = statements(mamut_db.gateway, lambda: list(reader.iter_families(skus=skus)))

    assert [s.family for s in snapshots] == [singles()[0], jacket_family()]
    assert count == 2


def test_a_variant_of_a_variant_is_refused_naming_the_article(mamut_db: MamutTestDatabase) -> None:
    keys = write(mamut_db.gateway, (tshirt(),), T1)
    with mamut_db.gateway.transaction() as tx:
        tx.insert(
            "product",
            {
                "sku": "TS-BAS-M-BARN",
                "name": "T-shirt Basic M barn",
                "vat_code": 1,
                "main_product_key": keys["TS-BAS-M"],
            },
        )
    reader = CatalogueReader(mamut_db.gateway)
    with pytest.raises(MamutError, match=r"article TS-BAS-M-BARN links to main product key \d+, which is not a main"):
        list(reader.iter_families())


def test_without_edit_date_inactive_and_variant_link_every_row_is_read_as_a_single_article(
    mamut_db: MamutTestDatabase,
) -> None:
    write(mamut_db.gateway, catalogue(), T1)
    lean = SchemaMap.load(
        overrides={"tables": {"product": {"columns": {"edit_date": None, "inactive": None, "main_product_key": None}}}}
    )
    with MamutGateway(mamut_db.odbc, lean) as gateway:
        reader = CatalogueReader(gateway)
        snapshots = list(reader.iter_families(changed_since=T3))  # no change timestamp: a full scan
        stock = list(reader.iter_stock({"variant": [1]}))
        prices = list(reader.iter_prices(["base"]))

    every_row = [article for family in catalogue() for article in (family.main, *family.variants)]
    expected = [
        MamutProductFamily(dataclasses.replace(article, main_sku=None, inactive=False))
        for article in sorted(every_row, key=lambda article: article.sku)
    ]
    assert snapshots == [FamilySnapshot(family, None) for family in expected]
    assert [row.sku for row in stock] == [family.main.sku for family in expected]  # main rows are articles now
    assert not any(row.inactive for row in stock)  # UTGÅTT is inactive in the table, but the column is unmapped
    assert len(prices) == len(expected)


# --- prices -----------------------------------------------------------------------------------


def add_price_lines(gateway: MamutGateway, keys: dict[str, int], list_id: int, lines: dict[str, list[tuple[str, str]]]):
    rows = [
        {"price_list_id": list_id, "product_key": keys[sku], "min_qty": Decimal(qty), "price": Decimal(price)}
        for sku, breaks in lines.items()
        for qty, price in breaks
    ]
    with gateway.transaction() as tx:
        tx.insert_many("price_list_line", rows)


def test_prices_per_source_with_volume_breaks_for_sellable_articles_only(mamut_db: MamutTestDatabase) -> None:
    keys = write(mamut_db.gateway, catalogue(), T1)
    with mamut_db.gateway.transaction() as tx:
        tx.insert("price_list", {"name": "Butik inkl. moms", "currency_id": 1, "incl_vat": True})
    reader = CatalogueReader(mamut_db.gateway)
    lists = reader.price_lists()
    add_price_lines(
        mamut_db.gateway,
        keys,
        lists[RESELLER].id,
        {
            "JACKA": [("1", "900")],  # a main row with variants is never priced
            "JACKA-RÖD-S": [("50", "980"), ("1", "1100"), ("10", "1050.5")],
            "JACKA-BLÅ-M": [("0", "1200"), ("1", "1150")],  # the line nearest to 1 is the unit price
            "TS-BAS-M": [("5", "120")],  # breaks without a unit price give no row
            "BOK": [("1", "180")],
        },
    )
    add_price_lines(mamut_db.gateway, keys, lists[EURO].id, {"JACKA-RÖD-S": [("1", "139.90")]})
    add_price_lines(mamut_db.gateway, keys, lists["Butik inkl. moms"].id, {"BOK": [("1", "299")]})

    rows, count = statements(
        mamut_db.gateway, lambda: list(reader.iter_prices(["base", RESELLER, EURO, "Butik inkl. moms", RESELLER]))
    )

    by_key = {(row.sku, row.source): row for row in rows}
    assert by_key[("JACKA-RÖD-S", RESELLER)] == PriceRow(
        "JACKA-RÖD-S",
        RESELLER,
        "SEK",
        Decimal("1100"),
        False,
        ((Decimal("10"), Decimal("1050.5")), (Decimal("50"), Decimal("980"))),
    )
    assert by_key[("JACKA-BLÅ-M", RESELLER)] == PriceRow("JACKA-BLÅ-M", RESELLER, "SEK", Decimal("1150"), False, ())
    assert by_key[("JACKA-RÖD-S", EURO)] == PriceRow("JACKA-RÖD-S", EURO, "EUR", Decimal("139.90"), False, ())
    assert by_key[("BOK", "Butik inkl. moms")] == PriceRow("BOK", "Butik inkl. moms", "SEK", Decimal("299"), True, ())
    assert by_key[("TS-BAS-M", "base")] == PriceRow("TS-BAS-M", "base", "SEK", Decimal("159.20"), False, ())
    sellable = ["BOK", *(v.sku for v in jacket_family().variants), *(v.sku for v in tshirt().variants)]
    sellable += ["PRESENTKORT", "UTGÅTT"]
    assert sorted({row.sku for row in rows}) == sorted(sellable)  # no JACKA, no TS-BAS
    assert [row.source for row in rows if row.sku == "JACKA-RÖD-S"] == ["base", RESELLER, EURO]  # as asked, once
    assert sorted(key for key in by_key if key[1] != "base") == [
        ("BOK", "Butik inkl. moms"),
        ("BOK", RESELLER),
        ("JACKA-BLÅ-M", RESELLER),
        ("JACKA-RÖD-S", EURO),
        ("JACKA-RÖD-S", RESELLER),
    ]
    assert len(rows) == len(sellable) + 5
    assert count == 3  # price lists, currencies, one streamed join

    only_two = list(reader.iter_prices([RESELLER], skus=["JACKA-RÖD-S", "JACKA", "BOK"]))
    assert [(row.sku, row.price) for row in only_two] == [("BOK", Decimal("180")), ("JACKA-RÖD-S", Decimal("1100"))]


def test_base_prices_take_the_currency_of_the_first_price_list(mamut_db: MamutTestDatabase) -> None:
    write(mamut_db.gateway, singles(), T1)
    reader = CatalogueReader(mamut_db.gateway)
    first = min(info.id for info in reader.price_lists().values())
    with mamut_db.gateway.transaction() as tx:
        tx.update("price_list", {"currency_id": 2}, where={"price_list_id": first})  # EUR

    rows = list(reader.iter_prices(["base"], skus=["BOK"]))

    assert rows == [PriceRow("BOK", "base", "EUR", Decimal("249.00"), False, ())]


def test_price_lists_by_name_and_unknown_names_refused_at_once(mamut_db: MamutTestDatabase) -> None:
    reader = CatalogueReader(mamut_db.gateway)
    lists = reader.price_lists()
    assert {name: (info.currency, info.incl_vat) for name, info in lists.items()} == {
        "Standard SEK": ("SEK", False),
        RESELLER: ("SEK", False),
        EURO: ("EUR", False),
    }
    assert all(isinstance(info, PriceListInfo) and info.id > 0 for info in lists.values())

    with pytest.raises(UnknownPriceList, match=r"unknown Mamut price list 'Grossist'; known price lists: .*'Euro EUR'"):
        reader.iter_prices(["base", "Grossist"])  # raised by the call, before any row is read

    with mamut_db.gateway.transaction() as tx:
        tx.insert("price_list", {"name": EURO, "currency_id": 2})
    with pytest.raises(MamutError, match=r"price list name 'Euro EUR' is used by price lists \d+ and \d+"):
        reader.price_lists()


# --- stock ------------------------------------------------------------------------------------


def test_stock_summed_per_group_with_flags_and_negative_values_kept(mamut_db: MamutTestDatabase) -> None:
    keys = write(mamut_db.gateway, catalogue(), T1)
    with mamut_db.gateway.transaction() as tx:
        tx.insert("warehouse", {"warehouse_id": 3, "description": "Lager Luleå"})
        tx.insert_many(
            "product_stock",
            [
                {
                    "product_key": keys[sku],
                    "warehouse_id": wid,
                    "qty_in_stock": Decimal(qty),
                    "qty_reserved": Decimal(res),
                }
                for sku, wid, qty, res in (
                    ("JACKA-RÖD-S", 1, "10", "2"),
                    ("JACKA-RÖD-S", 2, "4.5", "0"),
                    ("JACKA-RÖD-S", 3, "100", "100"),
                    ("JACKA-BLÅ-M", 1, "-3", "1"),  # oversold: stays negative
                    ("JACKA", 1, "99", "0"),  # main rows with variants are not articles of their own
                    ("UTGÅTT", 2, "7", "0"),
                    ("PRESENTKORT", 1, "0", "0"),
                )
            ],
        )
    reader = CatalogueReader(mamut_db.gateway)
    groups = {"variant": [1], "2": [1, 2], "3": [3, 2]}

    rows, count = statements(mamut_db.gateway, lambda: list(reader.iter_stock(groups)))

    by_key = {(row.sku, row.group): row for row in rows}
    assert by_key[("JACKA-RÖD-S", "variant")] == StockRow("JACKA-RÖD-S", "variant", Decimal(8), Decimal(2), True, False)
    assert by_key[("JACKA-RÖD-S", "2")] == StockRow("JACKA-RÖD-S", "2", Decimal("12.5"), Decimal(2), True, False)
    assert by_key[("JACKA-RÖD-S", "3")] == StockRow("JACKA-RÖD-S", "3", Decimal("4.5"), Decimal(100), True, False)
    assert by_key[("JACKA-BLÅ-M", "variant")].on_hand == Decimal(-4)
    assert by_key[("JACKA-BLÅ-S", "2")] == StockRow("JACKA-BLÅ-S", "2", Decimal(0), Decimal(0), True, False)
    assert by_key[("UTGÅTT", "2")] == StockRow("UTGÅTT", "2", Decimal(7), Decimal(0), True, True)
    assert by_key[("PRESENTKORT", "variant")].use_store is False
    assert all(isinstance(row.on_hand, Decimal) and isinstance(row.reserved, Decimal) for row in rows)
    assert "JACKA" not in {row.sku for row in rows} and "TS-BAS" not in {row.sku for row in rows}
    assert [row.group for row in rows if row.sku == "BOK"] == ["variant", "2", "3"]
    assert len(rows) == 10 * 3
    assert count == 2  # warehouses, one streamed join

    gross = {
        (row.sku, row.group): row for row in reader.iter_stock(groups, subtract_reserved=False, skus=["JACKA-RÖD-S"])
    }
    assert gross[("JACKA-RÖD-S", "3")].on_hand == Decimal("104.5")
    assert gross[("JACKA-RÖD-S", "variant")] == StockRow("JACKA-RÖD-S", "variant", Decimal(10), Decimal(2), True, False)
    assert len(gross) == 3


def test_unknown_warehouses_and_empty_groups_are_refused_at_once(mamut_db: MamutTestDatabase) -> None:
    reader = CatalogueReader(mamut_db.gateway)
    assert reader.warehouses() == {1: "Huvudlager", 2: "Butik Göteborg"}
    with pytest.raises(
        UnknownWarehouse, match=r"warehouse 7 in stock group 'Luleå'; known warehouses: 1 \(Huvudlager\)"
    ):
        reader.iter_stock({"variant": [1], "Luleå": [2, 7]})
    with pytest.raises(ValueError, match="stock group 'variant' names no warehouse"):
        reader.iter_stock({"variant": []})
    assert list(reader.iter_stock({})) == []


# --- the demo seed and scale ------------------------------------------------------------------


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_the_demo_catalogue_reads_back_as_seeded(backend: str, tmp_path: Path) -> None:
    with fresh_mock_database(backend, tmp_path, seed="demo") as odbc, MamutGateway(odbc, SchemaMap.load()) as gateway:
        reader = CatalogueReader(gateway)
        families = [snapshot.family for snapshot in reader.iter_families()]
        prices = list(reader.iter_prices([RESELLER]))
        stock = list(reader.iter_stock({"alla": [1, 2]}, subtract_reserved=False))
        with gateway.transaction() as tx:
            stored = tx.select("product_stock", ["product_key", "qty_in_stock"])
            product_keys = {row["product_key"]: row["sku"] for row in tx.select("product", ["product_key", "sku"])}

    assert families == sorted(demo_families(), key=lambda family: family.main.sku)
    sellable = {article.sku for family in demo_families() for article in (family.variants or (family.main,))}
    assert {row.sku for row in prices} == sellable
    assert {row.sku: row.volume for row in prices}["MUGG-ORE"] == ((Decimal(10), Decimal("45.00")),)
    totals: dict[str, Decimal] = {}
    for row in stored:
        sku = product_keys[row["product_key"]]
        totals[sku] = totals.get(sku, Decimal(0)) + row["qty_in_stock"]
    assert {row.sku: row.on_hand for row in stock} == {sku: totals.get(sku, Decimal(0)) for sku in sellable}


def test_twenty_thousand_articles_stream_in_a_bounded_number_of_statements(mamut_db: MamutTestDatabase) -> None:
    gateway = mamut_db.gateway
    family_count, variants_per_family, single_count = 2_000, 4, 10_000
    with gateway.transaction() as tx:
        tx.insert_many(
            "product",
            [
                {"sku": f"F{n:05d}", "name": f"Familj {n}", "vat_code": 1, "use_store": False, "edit_date": T1}
                for n in range(family_count)
            ]
            + [
                {"sku": f"S{n:05d}", "name": f"Artikel {n}", "vat_code": 1, "use_store": True, "edit_date": T1}
                for n in range(single_count)
            ],
        )
        main_keys = {row["sku"]: row["product_key"] for row in tx.iter_rows("product", ["sku", "product_key"])}
        tx.insert_many(
            "product",
            [
                {
                    "sku": f"F{n:05d}-{v}",
                    "name": f"Familj {n} variant {v}",
                    "vat_code": 1,
                    "main_product_key": main_keys[f"F{n:05d}"],
                    "variant_value_1": str(v),
                    "edit_date": T1,
                }
                for n in range(family_count)
                for v in range(variants_per_family)
            ],
        )
        sellable = {
            row["sku"]: row["product_key"]
            for row in tx.iter_rows("product", ["sku", "product_key"])
            if "-" in row["sku"] or row["sku"].startswith("S")
        }
        tx.insert_many(
            "product_stock",
            [{"product_key": key, "warehouse_id": 1, "qty_in_stock": Decimal(3)} for key in sellable.values()],
        )
    reader = CatalogueReader(gateway)
    total = family_count * (1 + variants_per_family) + single_count
    batch_size = 500

    families, family_statements = statements(gateway, lambda: list(reader.iter_families(batch_size=batch_size)))
    prices, price_statements = statements(gateway, lambda: list(reader.iter_prices(["base"], batch_size=batch_size)))
    stock, stock_statements = statements(
        gateway, lambda: list(reader.iter_stock({"variant": [1, 2]}, batch_size=batch_size))
    )
    some = sorted(sellable)[::2]
    picked, picked_statements = statements(
        gateway, lambda: list(reader.iter_stock({"variant": [1]}, skus=some, batch_size=batch_size))
    )

    assert len(families) == family_count + single_count
    assert sum(1 + len(s.family.variants) for s in families) == total
    assert [s.family.main.sku for s in families] == sorted(s.family.main.sku for s in families)
    assert len(prices) == len(stock) == len(sellable) == total - family_count
    assert {row.on_hand for row in stock} == {Decimal(3)} and len(picked) == len(some)
    assert (family_statements, price_statements, stock_statements) == (1, 3, 2)
    assert picked_statements == 1 + -(-len(some) // (MAX_PARAMS_PER_STATEMENT - 1))  # 1 marker: warehouse 1


# --- the gateway's joined query ---------------------------------------------------------------


def test_iter_query_resolves_logical_names_and_refuses_unknown_ones(mamut_db: MamutTestDatabase) -> None:
    write(mamut_db.gateway, (tshirt(),), T1)
    with mamut_db.gateway.transaction() as tx:
        rows = list(
            tx.iter_query(
                {"v": "product", "m": "product"},
                {"variant": "v.sku", "main": "m.sku", "price": "v.price_out", "stocked": "v.use_store"},
                "FROM {v} JOIN {m} ON {m.product_key} = {v.main_product_key} WHERE {v.vat_code} = ? ORDER BY {v.sku}",
                (1,),
                batch_size=1,
            )
        )
        with pytest.raises(ValueError, match=r"'x.sku' names alias 'x'; known aliases: p"):
            list(tx.iter_query({"p": "product"}, {"sku": "x.sku"}, "FROM {p}"))
        with pytest.raises(ValueError, match="malformed placeholder"):
            list(tx.iter_query({"p": "product"}, {"sku": "p.sku"}, "FROM {p} WHERE {p.sku = 'A'"))
        with pytest.raises(SchemaMapError, match=r"unknown column 'colour' of table product"):
            list(tx.iter_query({"p": "product"}, {"sku": "p.sku"}, "FROM {p} ORDER BY {p.colour}"))
    assert rows == [
        {"variant": f"TS-BAS-{size}", "main": "TS-BAS", "price": Decimal("159.20"), "stocked": True}
        for size in ("L", "M", "S")
    ]
