"""Mamut Import/Export files (write_mode: import): the XML, its schema, the folder inbox, the stand-in importer."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest
import xmlschema

from starmamut.mamut.articles import MamutArticle
from starmamut.mamut.import_export.formats import (
    ENCODING,
    article_file,
    customer_file,
    order_file,
    schema_path,
)
from starmamut.mamut.import_export.transport import FileState, FolderTransport
from starmamut.mamut.orders import OrderRepository
from starmamut_devtools.mamut_importer import ImportRefused, import_file, process_inbox
from tests.fixtures.mamut import MamutTestDatabase
from tests.test_mamut_customers import add_contact, private_buyer, rows
from tests.test_mamut_orders import web_order

SCHEMA = xmlschema.XMLSchema(schema_path())


def assert_valid(content: bytes) -> ET.Element:
    """The file follows gbax10.xsd, is declared ISO-8859-1 and has upper-case tags only."""
    SCHEMA.validate(content.decode(ENCODING))
    assert content.startswith(b"<?xml version='1.0' encoding='ISO-8859-1'?>")
    root = ET.fromstring(content)
    assert all(element.tag == element.tag.upper() for element in root.iter())
    return root


def the_order_file(**changes):
    order = web_order("demo:1001", **changes)
    return order_file("demo", "1001", order, private_buyer(), contact_id=0, warehouse=1, zero_vat_codes={4})


def test_an_order_file_carries_the_external_number_and_no_number_of_ours() -> None:
    file = the_order_file()
    root = assert_valid(file.content)

    assert file.name == "demo_order_1001.xml" and file.mode == "IO"
    order = root.find("ORDERLIST/ORDER")
    assert order.findtext("EXTERNALID") == "demo:1001" and order.findtext("CONTID") == "0"
    assert order.find("ORDERID") is None and root.find(".//INVOICEID") is None
    assert order.findtext("ADRDELIV") == "Åsa Öberg c/o Lund:Ängsvägen 7:111 22 Malmö:SE"
    lines = order.findall("ORDERLINES/ORDERLINE")
    assert [line.findtext("PRODID") for line in lines] == ["MUGG-ORE", "BOK-SKANE", "FRAKT", None]
    assert [line.findtext("DISCOUNT") for line in lines][1] == "10"
    assert {line.findtext("VATCODE") for line in lines} == {"0"}  # 0 = the article's own VAT code
    assert lines[3].findtext("DESCRIPTION") == "Presentinslagning – gåvokort"  # outside Latin-1: a character ref
    assert b"&#8211;" in file.content and "Öberg".encode(ENCODING) in file.content


def test_a_zero_vat_line_says_so_and_the_same_order_gives_the_same_file() -> None:
    export = web_order("demo:1001")
    export = dataclasses.replace(export, lines=tuple(dataclasses.replace(line, vat_code=4) for line in export.lines))
    file = order_file("demo", "1001", export, private_buyer(), contact_id=7, warehouse=2, zero_vat_codes={4})
    root = assert_valid(file.content)
    assert {line.findtext("VATCODE") for line in root.iter("ORDERLINE")} == {"1"}
    assert {line.findtext("STOREID") for line in root.iter("ORDERLINE")} == {"2"}
    assert the_order_file().content == the_order_file().content


def test_an_order_that_cannot_be_written_gives_no_file() -> None:
    with pytest.raises(ValueError, match="has no lines"):
        the_order_file(lines=())


def test_customer_and_article_files_validate_and_are_named_by_content() -> None:
    assert_valid(customer_file("demo", "17", [private_buyer()]).content)
    articles = [
        MamutArticle(sku="MUGG-ORE", name="Kaffemugg Örebro", vat_code=1, price_out=Decimal("79.20"), ean="735000001"),
        MamutArticle(sku="TS-S", name="T-shirt S", vat_code=1),
    ]
    first = article_file("demo", "10", "12", articles, warehouse=1, with_price=True)
    root = assert_valid(first.content)
    assert first.mode == "IP" and first.name.startswith("demo_articles_10-12_")
    assert [product.findtext("PRODID") for product in root.iter("PRODUCT")] == ["MUGG-ORE", "TS-S"]
    assert article_file("demo", "10", "12", articles, warehouse=1, with_price=True).name == first.name
    no_price = article_file("demo", "10", "12", articles, warehouse=1, with_price=False)
    assert no_price.name != first.name and b"PRICEOUT" not in no_price.content


def test_the_folder_transport_writes_atomically_and_follows_the_file(tmp_path: Path) -> None:
    transport = FolderTransport(tmp_path)
    file = the_order_file()
    assert transport.state(file.name) is FileState.ABSENT
    transport.issue(file)
    assert transport.state(file.name) is FileState.QUEUED
    assert [path.name for path in tmp_path.iterdir()] == [file.name]  # no temporary file left behind
    (tmp_path / "processing").mkdir()
    (tmp_path / file.name).replace(tmp_path / "processing" / file.name)
    assert transport.state(file.name) is FileState.PROCESSING and transport.state(file.name).pending
    (tmp_path / "failed").mkdir()
    (tmp_path / "processing" / file.name).replace(tmp_path / "failed" / file.name)
    (tmp_path / "failed" / f"{file.name}.log").write_text("exit code 1\nKund saknas", encoding="utf-8")
    assert transport.state(file.name) is FileState.FAILED and "Kund saknas" in transport.output(file.name)


def test_a_missing_inbox_is_a_transport_fault(tmp_path: Path) -> None:
    from starmamut.mamut.import_export.transport import ImportTransportError

    with pytest.raises(ImportTransportError, match="not a folder"):
        FolderTransport(tmp_path / "nowhere").issue(the_order_file())


def test_the_stand_in_importer_numbers_the_order_and_applies_the_import_rules(
    mamut_db: MamutTestDatabase, tmp_path: Path
) -> None:
    gateway = mamut_db.gateway
    known = add_contact(gateway, 10005, "Åsa Öberg")
    transport = FolderTransport(tmp_path)
    transport.issue(the_order_file())
    stranger = order_file(
        "demo",
        "1002",
        web_order("demo:1002", invoice_address=None, delivery_address=None),
        private_buyer(name="Ny Kund"),
        contact_id=0,
        warehouse=1,
        zero_vat_codes={4},
    )
    transport.issue(stranger)

    assert process_inbox(gateway, tmp_path) == {"demo_order_1001.xml": True, "demo_order_1002.xml": True}
    orders = {o["external_id"]: o for o in OrderRepository(gateway).iter_orders_with_lines("demo:")}
    assert orders["demo:1001"]["contact_key"] == known  # matched by name
    assert orders["demo:1001"]["order_number"] + 1 == orders["demo:1002"]["order_number"]  # Mamut's own series
    created = [row for row in rows(gateway, "contact", ["contact_key", "name"]) if row["name"] == "Ny Kund"]
    assert [orders["demo:1002"]["contact_key"]] == [row["contact_key"] for row in created]
    # the reference mock has no articles: every article number becomes free text
    assert all(line["sku"] is None for line in orders["demo:1001"]["lines"])
    assert orders["demo:1001"]["lines"][0]["description"] == "MUGG-ORE Kaffemugg Örebro"
    assert transport.state("demo_order_1001.xml") is FileState.DONE
    assert "demo:1001" in transport.output("demo_order_1001.xml")


def test_the_stand_in_importer_refuses_a_malformed_file_whole(mamut_db: MamutTestDatabase, tmp_path: Path) -> None:
    path = tmp_path / "demo_order_1.xml"
    path.write_bytes(the_order_file().content.replace(b"<QUANTITY>2</QUANTITY>", b"<QUANTITY>-2</QUANTITY>"))
    with pytest.raises(ImportRefused, match="följer inte formatet"):
        import_file(mamut_db.gateway, path, "IO")
    assert list(OrderRepository(mamut_db.gateway).iter_orders_with_lines("demo:")) == []
