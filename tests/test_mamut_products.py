"""ProductRepository on real mock databases: idempotent family upserts, conflicts, atomicity, overrides,
and the bulk price-list and stock writers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from starmamut.mamut.articles import MamutArticle, MamutProductFamily
from starmamut.mamut.catalogue import CatalogueReader, PriceRow
from starmamut.mamut.customers import MamutRecordError
from starmamut.mamut.gateway import MamutError, MamutGateway
from starmamut.mamut.products import (
    FamilyWriteResult,
    ListPrice,
    MamutConflict,
    ProductRepository,
    StockLevel,
    ValueWriteResult,
)
from starmamut.mamut.schema_map import SchemaMap, SchemaMapError
from starmamut_devtools.mamut_mock import create_mock_company_database, demo_families
from tests.fixtures.mamut import MAMUT_BACKENDS, MamutTestDatabase, fresh_mock_database, reject_inserts

T1 = dt.datetime(2026, 5, 1, 8, 0, 0)
T2 = dt.datetime(2026, 5, 2, 8, 0, 0)
T3 = dt.datetime(2026, 5, 3, 8, 0, 0)


def jacket_family(main_sku: str = "JACKA") -> MamutProductFamily:
    """Two axes, four variants; Swedish names and decimal prices as a mapper would produce them."""
    main = MamutArticle(
        sku=main_sku,
        name="Skaljacka Kebnekaise",
        vat_code=1,
        price_out=Decimal("1596.00"),
        use_store=False,
        variant_axes=("Färg", "Storlek"),
    )
    variants = tuple(
        MamutArticle(
            sku=f"{main_sku}-{colour[:3].upper()}-{size}",
            name=f"Skaljacka Kebnekaise {colour} {size}",
            vat_code=1,
            price_out=Decimal("1596.00"),
            ean=f"735000000{index:04d}",
            weight=Decimal("0.850"),
            unit="st",
            main_sku=main_sku,
            variant_values=(colour, size),
        )
        for index, (colour, size) in enumerate((("Röd", "S"), ("Röd", "M"), ("Blå", "S"), ("Blå", "M")))
    )
    return MamutProductFamily(main=main, variants=variants)


def edit_dates(gateway: MamutGateway, skus: tuple[str, ...]) -> dict[str, dt.datetime]:
    with gateway.transaction() as tx:
        return {
            row["sku"]: row["edit_date"] for row in tx.select("product", ["sku", "edit_date"], where_in=("sku", skus))
        }


def test_create_then_rerun_unchanged_then_one_change_updates_only_that_row(
    mamut_db: MamutTestDatabase,
) -> None:
    repository = ProductRepository(mamut_db.gateway)
    family = jacket_family()

    created = repository.upsert_family(family, update_price=True, now=T1)
    assert created.created == family.skus and created.updated == () and created.unchanged == ()
    assert set(created.keys) == set(family.skus)
    assert repository.fetch_family("JACKA") == family
    assert repository.fetch_family("JACKA-BLÅ-M") == family  # a variant's sku finds its whole family

    rerun = repository.upsert_family(family, update_price=True, now=T2)
    assert rerun.unchanged == family.skus and rerun.created == () and rerun.updated == ()
    assert rerun.keys == created.keys
    assert set(edit_dates(mamut_db.gateway, family.skus).values()) == {T1}  # nothing was rewritten

    renamed = dataclasses.replace(family.variants[2], name="Skaljacka Kebnekaise Havsblå S")
    changed = dataclasses.replace(family, variants=(*family.variants[:2], renamed, family.variants[3]))
    result = repository.upsert_family(changed, update_price=True, now=T3)
    assert result.updated == ("JACKA-BLÅ-S",)
    assert result.unchanged == tuple(sku for sku in family.skus if sku != "JACKA-BLÅ-S")
    dates = edit_dates(mamut_db.gateway, family.skus)
    assert dates.pop("JACKA-BLÅ-S") == T3 and set(dates.values()) == {T1}
    assert repository.fetch_family("JACKA") == changed
    assert sum(1 for row in repository.iter_articles() if row["sku"].startswith("JACKA")) == 5


def test_update_price_false_leaves_existing_prices_to_mamut(mamut_db: MamutTestDatabase) -> None:
    repository = ProductRepository(mamut_db.gateway)
    family = jacket_family()
    repository.upsert_family(family, update_price=True, now=T1)
    cheaper = MamutProductFamily(
        main=dataclasses.replace(family.main, price_out=Decimal("999.00")),
        variants=(
            dataclasses.replace(family.variants[0], price_out=Decimal("999.00"), unit="par"),
            *(dataclasses.replace(v, price_out=Decimal("999.00")) for v in family.variants[1:]),
            MamutArticle(
                sku="JACKA-GRÖ-S",
                name="Skaljacka Kebnekaise Grön S",
                vat_code=1,
                price_out=Decimal("1299.50"),
                main_sku="JACKA",
                variant_values=("Grön", "S"),
            ),
        ),
    )
    result = repository.upsert_family(cheaper, update_price=False, now=T2)
    assert result.created == ("JACKA-GRÖ-S",)
    assert result.updated == ("JACKA-RÖD-S",)  # the unit changed; price differences alone do not count
    fetched = repository.fetch_family("JACKA")
    assert fetched is not None
    prices = {article.sku: article.price_out for article in (fetched.main, *fetched.variants)}
    assert prices["JACKA"] == Decimal("1596.00") and prices["JACKA-RÖD-S"] == Decimal("1596.00")
    assert prices["JACKA-GRÖ-S"] == Decimal("1299.50")  # a new row takes the given price
    assert fetched.variants[0].unit == "par"

    repriced = repository.upsert_family(cheaper, update_price=True, now=T3)
    assert set(repriced.updated) == set(family.skus)
    assert repository.fetch_family("JACKA").main.price_out == Decimal("999.00")  # type: ignore[union-attr]


def test_a_missing_price_keeps_mamuts_price_and_new_rows_start_at_zero(mamut_db: MamutTestDatabase) -> None:
    repository = ProductRepository(mamut_db.gateway)
    repository.upsert_family(
        MamutProductFamily(MamutArticle("KORT", "Vykort Visby", 1, Decimal("12.00"))),
        update_price=True,
        now=T1,
    )
    result = repository.upsert_family(
        MamutProductFamily(MamutArticle("KORT", "Vykort Visby", 1)), update_price=True, now=T2
    )
    assert result.unchanged == ("KORT",)
    repository.upsert_family(MamutProductFamily(MamutArticle("NYTT", "Nytt kort", 1)), update_price=True, now=T2)
    assert repository.fetch_family("KORT").main.price_out == Decimal("12.00")  # type: ignore[union-attr]
    assert repository.fetch_family("NYTT").main.price_out == Decimal("0")  # type: ignore[union-attr]


def test_keys_by_sku_covers_1200_skus_in_chunks(mamut_db: MamutTestDatabase) -> None:
    skus = [f"MASS-{n:04d}" for n in range(1200)]
    with mamut_db.gateway.transaction() as tx:
        tx.insert_many("product", [{"sku": sku, "name": f"Massartikel {sku}", "vat_code": 1} for sku in skus])
        expected = {row["sku"]: row["product_key"] for row in tx.select("product", ["sku", "product_key"])}
    before = mamut_db.gateway.statements_executed
    keys = ProductRepository(mamut_db.gateway).keys_by_sku([*skus, *skus[:10], "SAKNAS"])
    assert mamut_db.gateway.statements_executed - before == 3  # 1201 distinct skus, at most 500 per statement
    assert keys == expected and len(keys) == 1200
    assert ProductRepository(mamut_db.gateway).keys_by_sku([]) == {}


def test_a_failure_mid_family_leaves_nothing_half_written(mamut_db: MamutTestDatabase) -> None:
    """A trigger rejects the third variant's insert, after the main's update and two variant inserts."""
    repository = ProductRepository(mamut_db.gateway)
    single = MamutProductFamily(MamutArticle("BOOM", "Tält Sarek", 1, Decimal("2000.00")))
    repository.upsert_family(single, update_price=True, now=T1)
    reject_inserts(mamut_db, "G_PROD", "BOOM-3")
    family = MamutProductFamily(
        main=MamutArticle("BOOM", "Tält Sarek (ny modell)", 1, Decimal("2000.00"), variant_axes=("Storlek", None)),
        variants=tuple(
            MamutArticle(f"BOOM-{n}", f"Tält Sarek {n} personer", 1, Decimal("2000.00"), variant_values=(str(n), None))
            for n in (1, 2, 3, 4)
        ),
    )
    with pytest.raises(MamutError, match="trigger rejects BOOM-3") as caught:
        repository.upsert_family(family, update_price=True, now=T2)
    assert caught.value.operation == "insert"
    assert repository.fetch_family("BOOM") == single  # the main's rename and axes were rolled back
    assert repository.keys_by_sku(family.skus).keys() == {"BOOM"}
    assert edit_dates(mamut_db.gateway, ("BOOM",)) == {"BOOM": T1}


def test_conflicting_structures_raise_mamut_conflict_naming_both_skus(mamut_db: MamutTestDatabase) -> None:
    repository = ProductRepository(mamut_db.gateway)
    repository.upsert_family(jacket_family("JACKA"), update_price=True, now=T1)

    steals_variant = MamutProductFamily(
        main=MamutArticle("VÄST", "Dunväst", 1, Decimal("800")),
        variants=(MamutArticle("JACKA-RÖD-S", "Dunväst Röd S", 1, Decimal("800"), variant_values=("Röd", "S")),),
    )
    with pytest.raises(
        MamutConflict, match="variant JACKA-RÖD-S belongs to main article JACKA in Mamut, not to VÄST"
    ) as caught:
        repository.upsert_family(steals_variant, update_price=True, now=T2)
    assert (caught.value.sku, caught.value.other_sku) == ("JACKA-RÖD-S", "JACKA")

    variant_as_main = MamutProductFamily(MamutArticle("JACKA-BLÅ-M", "Fristående jacka", 1))
    with pytest.raises(MamutConflict, match="JACKA-BLÅ-M is a variant of main article JACKA"):
        repository.upsert_family(variant_as_main, update_price=True, now=T2)

    main_as_variant = MamutProductFamily(
        main=MamutArticle("PAKET", "Jackpaket", 1),
        variants=(MamutArticle("JACKA", "Jacka i paket", 1, variant_values=("Standard", None)),),
    )
    with pytest.raises(
        MamutConflict,
        match=r"JACKA is the main article of JACKA-\S+ in Mamut; it cannot become a variant of PAKET",
    ):
        repository.upsert_family(main_as_variant, update_price=True, now=T2)

    assert repository.keys_by_sku(["VÄST", "PAKET"]) == {}  # conflicts write nothing
    assert repository.fetch_family("JACKA") == jacket_family("JACKA")


def test_a_standalone_article_can_become_a_variant(mamut_db: MamutTestDatabase) -> None:
    repository = ProductRepository(mamut_db.gateway)
    standalone = MamutArticle("MÖSSA-RÖD", "Mössa Röd", 1, Decimal("149.00"))
    repository.upsert_family(MamutProductFamily(standalone), update_price=True, now=T1)
    family = MamutProductFamily(
        main=MamutArticle("MÖSSA", "Mössa", 1, Decimal("149.00"), variant_axes=("Färg", None)),
        variants=(
            dataclasses.replace(standalone, main_sku="MÖSSA", variant_values=("Röd", None)),
            MamutArticle(
                "MÖSSA-GUL", "Mössa Gul", 1, Decimal("149.00"), main_sku="MÖSSA", variant_values=("Gul", None)
            ),
        ),
    )
    result = repository.upsert_family(family, update_price=True, now=T2)
    assert result.created == ("MÖSSA", "MÖSSA-GUL") and result.updated == ("MÖSSA-RÖD",)
    assert repository.fetch_family("MÖSSA-RÖD") == family


def test_malformed_families_and_unstorable_values_are_refused_naming_the_sku(
    mamut_db: MamutTestDatabase,
) -> None:
    repository = ProductRepository(mamut_db.gateway)
    duplicate = MamutProductFamily(MamutArticle("DUO", "Duo", 1), (MamutArticle("DUO", "Duo igen", 1),))
    with pytest.raises(ValueError, match="sku DUO occurs twice in the family of DUO"):
        repository.upsert_family(duplicate, update_price=True, now=T1)
    orphan = MamutProductFamily(MamutArticle("A", "A", 1), (MamutArticle("A-1", "A1", 1, main_sku="B"),))
    with pytest.raises(ValueError, match="variant A-1 names main B, but its family's main is A"):
        repository.upsert_family(orphan, update_price=True, now=T1)
    too_long = MamutProductFamily(MamutArticle("LÅNG", "Ä" * 201, 1))
    with pytest.raises(ValueError, match=r"article LÅNG: product\.name \(DESCRIPTION\) takes at most 200 characters"):
        repository.upsert_family(too_long, update_price=True, now=T1)
    assert repository.keys_by_sku(["DUO", "A", "A-1", "LÅNG"]) == {}


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_renamed_table_and_columns_work_without_code_changes(backend: str, tmp_path: Path) -> None:
    renamed = SchemaMap.load(
        overrides={
            "tables": {
                "product": {"name": "ARTIKEL", "columns": {"sku": "ARTNR", "main_product_key": "HUVUDART"}},
            }
        }
    )
    with fresh_mock_database(backend, tmp_path, schema_map=renamed) as odbc:
        with MamutGateway(odbc, renamed) as gateway:
            repository = ProductRepository(gateway)
            family = jacket_family()
            assert repository.upsert_family(family, update_price=True, now=T1).created == family.skus
            assert repository.upsert_family(family, update_price=True, now=T2).unchanged == family.skus
            assert repository.fetch_family("JACKA-RÖD-M") == family
        with MamutGateway(odbc, SchemaMap.load()) as default_gateway:
            ok, message = default_gateway.test_connection()
    assert not ok and "product (G_PROD)" in message  # the physical table really is ARTIKEL


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_optional_columns_mapped_to_null_are_neither_written_nor_read(backend: str, tmp_path: Path) -> None:
    lean = SchemaMap.load(
        overrides={
            "tables": {"product": {"columns": {"edit_date": None, "reg_date": None, "ean": None, "inactive": None}}}
        }
    )
    with fresh_mock_database(backend, tmp_path, schema_map=lean) as odbc:
        with MamutGateway(odbc, lean) as gateway:
            repository = ProductRepository(gateway)
            family = jacket_family()
            repository.upsert_family(family, update_price=True, now=T1)
            changed = dataclasses.replace(family, main=dataclasses.replace(family.main, inactive=True, ean="123"))
            assert repository.upsert_family(changed, update_price=True, now=T2).unchanged == family.skus
            fetched = repository.fetch_family("JACKA")
            rows = list(repository.iter_articles())
        with MamutGateway(odbc, SchemaMap.load()) as default_gateway:
            problems = default_gateway.verify_schema()
    assert fetched is not None and fetched.main.inactive is False
    assert all(variant.ean is None for variant in fetched.variants)
    assert len(rows) == 5 and "edit_date" not in rows[0] and "sku" in rows[0]
    assert len(problems) == 1 and "product (G_PROD)" in problems[0]  # the columns really are absent


def test_variants_need_the_main_link_column(mamut_db: MamutTestDatabase) -> None:
    unlinked = SchemaMap.load(overrides={"tables": {"product": {"columns": {"main_product_key": None}}}})
    with MamutGateway(mamut_db.odbc, unlinked) as gateway:
        repository = ProductRepository(gateway)
        with pytest.raises(SchemaMapError, match=r"family JACKA has variants, but column product\.main_product_key"):
            repository.upsert_family(jacket_family(), update_price=True, now=T1)
        single = MamutProductFamily(MamutArticle("ENKEL", "Enkel artikel", 1, Decimal("5")))
        assert repository.upsert_family(single, update_price=True, now=T1).created == ("ENKEL",)
        assert repository.fetch_family("ENKEL") == single
    assert ProductRepository(mamut_db.gateway).keys_by_sku(jacket_family().skus) == {}


def test_fetch_family_of_an_unknown_sku_is_none(mamut_db: MamutTestDatabase) -> None:
    assert ProductRepository(mamut_db.gateway).fetch_family("FINNS-INTE") is None


def test_demo_seed_holds_one_and_two_axis_families_and_is_idempotent(mamut_db: MamutTestDatabase) -> None:
    create_mock_company_database(mamut_db.odbc, seed="demo")
    repository = ProductRepository(mamut_db.gateway)
    rows_before = list(repository.iter_articles())
    with mamut_db.gateway.transaction() as tx:
        stock_before = tx.select("product_stock", ["product_key", "warehouse_id", "qty_in_stock"])
        lines_before = tx.select("price_list_line", ["price_list_id", "product_key", "min_qty", "price"])
    create_mock_company_database(mamut_db.odbc, seed="demo")
    with mamut_db.gateway.transaction() as tx:
        assert tx.select("product_stock", ["product_key", "warehouse_id", "qty_in_stock"]) == stock_before
        assert len(tx.select("price_list_line", ["price"])) == len(lines_before) > 0
    assert list(repository.iter_articles()) == rows_before
    for family in demo_families():
        assert repository.fetch_family(family.main.sku) == family
    hoodie = repository.fetch_family("HD-ALV-GRA-M")
    assert hoodie is not None and hoodie.main.variant_axes == ("Färg", "Storlek")
    assert ("Grå", "M") in [variant.variant_values for variant in hoodie.variants]
    tshirt = repository.fetch_family("TS-BAS")
    assert tshirt is not None and tshirt.main.variant_axes == ("Storlek", None) and len(tshirt.variants) == 3


RESELLER = "Återförsäljare SEK"
EURO = "Euro EUR"


def add_articles(repository: ProductRepository, *skus: str) -> dict[str, int]:
    """Standalone, stock-managed articles (sellable, so CatalogueReader reports their prices and stock)."""
    keys: dict[str, int] = {}
    for sku in skus:
        family = MamutProductFamily(MamutArticle(sku, f"Artikel {sku}", 1, Decimal("100.00")))
        keys.update(repository.upsert_family(family, update_price=True, now=T1).keys)
    return keys


def price_lines(gateway: MamutGateway) -> dict[tuple[int, int, Decimal], tuple[Decimal, dt.datetime]]:
    with gateway.transaction() as tx:
        rows = tx.select("price_list_line", ["price_list_id", "product_key", "min_qty", "price", "edit_date"])
    return {(r["price_list_id"], r["product_key"], r["min_qty"]): (r["price"], r["edit_date"]) for r in rows}


def stock_rows(gateway: MamutGateway) -> dict[tuple[int, int], dict[str, object]]:
    columns = ["product_key", "warehouse_id", "qty_in_stock", "qty_reserved", "qty_ordered", "edit_date"]
    with gateway.transaction() as tx:
        rows = tx.select("product_stock", columns)
    return {(row["product_key"], row["warehouse_id"]): row for row in rows}


def test_list_prices_insert_read_back_rerun_unchanged_and_one_change_updates_only_that_line(
    mamut_db: MamutTestDatabase,
) -> None:
    repository = ProductRepository(mamut_db.gateway)
    keys = add_articles(repository, "KOPP", "FAT", "SKÅL")
    list_ids = {name: info.id for name, info in CatalogueReader(mamut_db.gateway).price_lists().items()}
    prices = [
        ListPrice("KOPP", RESELLER, Decimal("70.50")),
        ListPrice("KOPP", RESELLER, Decimal("60"), min_qty=Decimal(10)),
        ListPrice("FAT", EURO, Decimal("9.99")),
        ListPrice("SKÅL", RESELLER, Decimal("33.33333"), min_qty=Decimal("2.5")),  # stored as 33.3333
    ]

    assert repository.set_list_prices(prices, now=T1) == ValueWriteResult(written=4, unchanged=0)
    reader = CatalogueReader(mamut_db.gateway)
    assert list(reader.iter_prices([RESELLER, EURO], skus=["KOPP", "FAT"])) == [
        PriceRow("FAT", EURO, "EUR", Decimal("9.99"), False),
        PriceRow("KOPP", RESELLER, "SEK", Decimal("70.50"), False, ((Decimal(10), Decimal(60)),)),
    ]
    lines = price_lines(mamut_db.gateway)
    assert lines[(list_ids[RESELLER], keys["SKÅL"], Decimal("2.5"))] == (Decimal("33.3333"), T1)
    assert len(lines) == 4 and {edited for _price, edited in lines.values()} == {T1}

    before = mamut_db.gateway.statements_executed
    assert repository.set_list_prices(prices, now=T2) == ValueWriteResult(written=0, unchanged=4)
    assert mamut_db.gateway.statements_executed - before == 4  # app lock, skus, price lists, existing lines; no writes
    assert price_lines(mamut_db.gateway) == lines

    changed = [ListPrice("KOPP", RESELLER, Decimal("72.00")), *prices[1:]]
    assert repository.set_list_prices(changed, now=T3) == ValueWriteResult(written=1, unchanged=3)
    after = price_lines(mamut_db.gateway)
    assert after.pop((list_ids[RESELLER], keys["KOPP"], Decimal(1))) == (Decimal("72.00"), T3)
    lines.pop((list_ids[RESELLER], keys["KOPP"], Decimal(1)))
    assert after == lines


def test_stock_sets_on_hand_only_and_is_idempotent(mamut_db: MamutTestDatabase) -> None:
    repository = ProductRepository(mamut_db.gateway)
    keys = add_articles(repository, "MUGG", "TALLRIK")
    with mamut_db.gateway.transaction() as tx:  # Mamut's own row: reserved and ordered must survive
        tx.insert(
            "product_stock",
            {
                "product_key": keys["TALLRIK"],
                "warehouse_id": 1,
                "qty_in_stock": Decimal(1),
                "qty_reserved": Decimal(2),
                "qty_ordered": Decimal(5),
                "edit_date": T1,
            },
        )
    levels = [
        StockLevel("MUGG", 1, Decimal(12)),
        StockLevel("MUGG", 2, Decimal(0)),
        StockLevel("TALLRIK", 1, Decimal(-3)),
        StockLevel("TALLRIK", 2, Decimal("2.5005")),  # stored as 2.501
    ]

    assert repository.set_stock(levels, now=T2) == ValueWriteResult(written=4, unchanged=0)
    reader = CatalogueReader(mamut_db.gateway)
    on_hand = {
        (row.sku, row.group): (row.on_hand, row.reserved)
        for row in reader.iter_stock({"main": [1], "shop": [2]}, subtract_reserved=False, skus=list(keys))
    }
    assert on_hand == {
        ("MUGG", "main"): (Decimal(12), Decimal(0)),
        ("MUGG", "shop"): (Decimal(0), Decimal(0)),
        ("TALLRIK", "main"): (Decimal(-3), Decimal(2)),
        ("TALLRIK", "shop"): (Decimal("2.501"), Decimal(0)),
    }
    rows = stock_rows(mamut_db.gateway)
    assert rows[(keys["TALLRIK"], 1)]["qty_ordered"] == Decimal(5)
    assert all(rows[key]["qty_ordered"] == 0 for key in rows if key != (keys["TALLRIK"], 1))
    assert {row["edit_date"] for row in rows.values()} == {T2}  # the updated row too

    assert repository.set_stock(levels, now=T3) == ValueWriteResult(written=0, unchanged=4)
    assert stock_rows(mamut_db.gateway) == rows

    changed = [*levels[:1], StockLevel("MUGG", 2, Decimal(5)), *levels[2:]]
    assert repository.set_stock(changed, now=T3) == ValueWriteResult(written=1, unchanged=3)
    after = stock_rows(mamut_db.gateway)
    updated = after.pop((keys["MUGG"], 2))
    assert (updated["qty_in_stock"], updated["qty_reserved"], updated["edit_date"]) == (Decimal(5), 0, T3)
    rows.pop((keys["MUGG"], 2))
    assert after == rows


def test_a_chunk_of_600_articles_is_read_in_a_few_statements(mamut_db: MamutTestDatabase) -> None:
    skus = [f"MASS-{n:04d}" for n in range(600)]
    with mamut_db.gateway.transaction() as tx:
        tx.insert_many("product", [{"sku": sku, "name": f"Massartikel {sku}", "vat_code": 1} for sku in skus])
    repository = ProductRepository(mamut_db.gateway)
    levels = [StockLevel(sku, 1 + n % 2, Decimal(n)) for n, sku in enumerate(skus)]
    prices = [ListPrice(sku, RESELLER, Decimal(n) / 7) for n, sku in enumerate(skus)]
    assert repository.set_stock(levels, now=T1) == ValueWriteResult(written=600, unchanged=0)
    assert repository.set_list_prices(prices, now=T1) == ValueWriteResult(written=600, unchanged=0)

    before = mamut_db.gateway.statements_executed
    assert repository.set_stock(levels, now=T2) == ValueWriteResult(written=0, unchanged=600)
    assert repository.set_list_prices(prices, now=T2) == ValueWriteResult(written=0, unchanged=600)
    # Each call: its app lock, 2 chunks of skus, 1 warehouse or price-list select, 2 chunks of existing rows.
    assert mamut_db.gateway.statements_executed - before == 12
    stock = {row.sku: row.on_hand for row in CatalogueReader(mamut_db.gateway).iter_stock({"all": [1, 2]})}
    assert stock == {level.sku: level.quantity for level in levels}


def test_unknown_skus_price_lists_and_warehouses_are_refused_naming_them_and_write_nothing(
    mamut_db: MamutTestDatabase,
) -> None:
    repository = ProductRepository(mamut_db.gateway)
    add_articles(repository, "KOPP")
    with mamut_db.gateway.transaction() as tx:
        tx.insert("price_list", {"name": "Butik inkl moms", "currency_id": 1, "incl_vat": True})

    with pytest.raises(MamutRecordError, match=r"2 sku\(s\) not in Mamut's product register: SAKNAS, BORTA$"):
        repository.set_list_prices(
            [
                ListPrice("KOPP", RESELLER, Decimal(70)),
                ListPrice("SAKNAS", RESELLER, Decimal(1)),
                ListPrice("BORTA", EURO, Decimal(1)),
            ],
            now=T1,
        )
    with pytest.raises(MamutRecordError, match=r"unknown Mamut price list\(s\): 'Grossist NOK'$"):
        repository.set_list_prices(
            [ListPrice("KOPP", RESELLER, Decimal(70)), ListPrice("KOPP", "Grossist NOK", Decimal(50))], now=T1
        )
    with pytest.raises(MamutRecordError, match="price list 'Butik inkl moms' holds prices incl. VAT"):
        repository.set_list_prices([ListPrice("KOPP", "Butik inkl moms", Decimal(88))], now=T1)
    with pytest.raises(MamutRecordError, match=r"unknown Mamut warehouse\(s\): 9$"):
        repository.set_stock([StockLevel("KOPP", 1, Decimal(3)), StockLevel("KOPP", 9, Decimal(3))], now=T1)
    with pytest.raises(MamutRecordError, match=r"1 sku\(s\) not in Mamut's product register: SAKNAS$"):
        repository.set_stock([StockLevel("KOPP", 1, Decimal(3)), StockLevel("SAKNAS", 1, Decimal(3))], now=T1)

    with pytest.raises(ValueError, match=r"list price of KOPP in price list 'Euro EUR' from quantity 1.000 is given"):
        repository.set_list_prices(
            [ListPrice("KOPP", EURO, Decimal(7)), ListPrice("KOPP", EURO, Decimal("7.5"), min_qty=Decimal("1.0"))],
            now=T1,
        )
    with pytest.raises(
        ValueError, match=r"stock of KOPP in warehouse 1: product_stock\.qty_in_stock \(QTYSTOCK\) holds at most 12"
    ):
        repository.set_stock([StockLevel("KOPP", 1, Decimal("1e12"))], now=T1)

    assert price_lines(mamut_db.gateway) == {} and stock_rows(mamut_db.gateway) == {}


@pytest.mark.parametrize("backend", MAMUT_BACKENDS)
def test_value_writers_work_without_edit_date_columns(backend: str, tmp_path: Path) -> None:
    lean = SchemaMap.load(
        overrides={
            "tables": {
                "price_list_line": {"columns": {"edit_date": None}},
                "product_stock": {"columns": {"edit_date": None}},
            }
        }
    )
    with fresh_mock_database(backend, tmp_path, schema_map=lean) as odbc, MamutGateway(odbc, lean) as gateway:
        repository = ProductRepository(gateway)
        add_articles(repository, "KOPP")
        prices = [ListPrice("KOPP", RESELLER, Decimal("70.50"))]
        levels = [StockLevel("KOPP", 2, Decimal(4))]
        assert repository.set_list_prices(prices, now=T1) == ValueWriteResult(written=1, unchanged=0)
        assert repository.set_stock(levels, now=T1) == ValueWriteResult(written=1, unchanged=0)
        assert repository.set_list_prices(prices, now=T2) == ValueWriteResult(written=0, unchanged=1)
        assert repository.set_stock(levels, now=T2) == ValueWriteResult(written=0, unchanged=1)
        reader = CatalogueReader(gateway)
        assert [row.price for row in reader.iter_prices([RESELLER])] == [Decimal("70.50")]
        assert [row.on_hand for row in reader.iter_stock({"shop": [2]})] == [Decimal(4)]


def test_many_families_cost_statements_per_table_not_per_family(mamut_db: MamutTestDatabase) -> None:
    """120 families (360 articles) in one call: a handful of round trips, where one call per family costs
    several each; a re-run writes nothing."""
    repository = ProductRepository(mamut_db.gateway)
    families = [jacket_family(f"J{n:03d}") for n in range(60)] + [
        MamutProductFamily(MamutArticle(f"S{n:03d}", f"Enkel {n}", 1, Decimal("10.00") if n % 2 else None))
        for n in range(60)
    ]
    before = mamut_db.gateway.round_trips
    results = repository.upsert_families(families, update_price=True, now=T1)
    together = mamut_db.gateway.round_trips - before
    assert [len(result.created) for result in results if isinstance(result, FamilyWriteResult)] == [5] * 60 + [1] * 60
    # lock, 1 look-up, mains with and without a price (2 inserts), their keys, the variants (several multi-row
    # inserts of at most 1 000 markers), their keys, commit
    assert together <= 12, together
    assert repository.fetch_family("J007-RÖD-M") == jacket_family("J007")
    assert all(result.created == () for result in repository.upsert_families(families, update_price=True, now=T2))

    before = mamut_db.gateway.round_trips
    for n in range(60, 70):
        repository.upsert_family(jacket_family(f"J{n:03d}"), update_price=True, now=T1)
    assert (mamut_db.gateway.round_trips - before) / 10 >= 6  # per family, alone


def test_one_bad_family_costs_only_itself(mamut_db: MamutTestDatabase) -> None:
    """A malformed family, a structure conflict, a sku held twice in the call and a row the database refuses
    (a trigger) are each that family's outcome, naming it; the families around them are written."""
    repository = ProductRepository(mamut_db.gateway)
    repository.upsert_family(jacket_family("JACKA"), update_price=True, now=T1)
    reject_inserts(mamut_db, "G_PROD", "BOOM-3")
    boom = MamutProductFamily(
        MamutArticle("BOOM", "Tält", 1, variant_axes=("Storlek", None)),
        tuple(MamutArticle(f"BOOM-{n}", f"Tält {n}", 1, variant_values=(str(n), None)) for n in (2, 3)),
    )
    families = [
        jacket_family("FÖRE"),
        MamutProductFamily(MamutArticle("DUO", "Duo", 1), (MamutArticle("DUO", "Duo igen", 1),)),
        MamutProductFamily(
            MamutArticle("VÄST", "Dunväst", 1),
            (MamutArticle("JACKA-RÖD-S", "Dunväst Röd S", 1, variant_values=("Röd", "S")),),
        ),
        boom,
        MamutProductFamily(MamutArticle("FÖRE-RÖD-S", "Samma sku igen", 1)),
        jacket_family("EFTER"),
    ]
    results = repository.upsert_families(families, update_price=True, now=T2)
    first, duo, vast, boomed, again, last = results
    assert isinstance(first, FamilyWriteResult) and isinstance(last, FamilyWriteResult)
    assert isinstance(duo, ValueError) and "DUO occurs twice" in str(duo)
    assert isinstance(vast, MamutConflict) and "belongs to main article JACKA" in str(vast)
    assert isinstance(boomed, MamutError) and "family BOOM" in str(boomed) and "trigger rejects BOOM-3" in str(boomed)
    assert isinstance(again, ValueError) and "FÖRE-RÖD-S of family FÖRE-RÖD-S is also in family FÖRE" in str(again)
    assert repository.fetch_family("FÖRE") == jacket_family("FÖRE")
    assert repository.fetch_family("EFTER") == jacket_family("EFTER")
    assert repository.keys_by_sku(["VÄST", "BOOM", "BOOM-2", "DUO"]) == {}  # nothing of them half-written
    assert repository.fetch_family("JACKA") == jacket_family("JACKA")
