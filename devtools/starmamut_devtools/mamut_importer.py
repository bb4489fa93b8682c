"""A stand-in for ``Mamut ImportExport.exe`` on the Mamut mock: tests of ``write_mode: import`` without Windows.

It applies the import rules docs/reference/mamut.md section 2.2 documents, and nothing more:

* a file that does not follow ``gbax10.xsd`` is refused whole (exit code 1, the reason on the output);
* orders (IO): Mamut numbers the order (MAX+1) and keeps EXTERNALID; CONTID > 0 names the customer (an unknown
  one refuses the file), CONTID 0 matches a customer by name, else creates one (next free customer number);
  an unknown article number becomes a free-text line; line VATCODE 0 takes the article's code, 1 = zero VAT;
* articles (IP): matched by article number (CompareKey 1) and updated, else created;
* customers (IC): matched by name, else created.

Each file is one transaction: refused means nothing of it is written. :func:`process_inbox` does what
``deploy/mamut/import-inbox.ps1`` does on the Mamut server (queued file → processing/ → done/ or failed/ with a
``.log`` of the output). As a program (``python -m starmamut_devtools.mamut_importer --odbc <mock> IO 001 <file>
1 1 .F.``) it takes the real program's arguments, for the ssh transport's tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from starmamut.mamut.customers import CONTACT, CustomerRepository, max_value
from starmamut.mamut.documents import CustomerNumberPolicy, MamutAddress, MamutCustomer
from starmamut.mamut.gateway import MamutGateway, MamutTransaction
from starmamut.mamut.import_export.formats import schema_path
from starmamut.mamut.orders import CURRENCY, ORDER, ORDER_LINE, OrderRepository
from starmamut.mamut.products import PRODUCT
from starmamut.mamut.schema_map import SchemaMap

ZERO_VAT_CODE = 4  # the mock's VAT code for 0 % (tests map 0 -> 4)
DEFAULT_VAT_CODE = 1  # free-text lines that do not say zero VAT
VAT_RATES = {1: Decimal(25), 2: Decimal(12), 3: Decimal(6), 4: Decimal(0), 5: Decimal("25.5")}
NUMBERS = CustomerNumberPolicy(owner="mamut", first=10000, last=49999, starweb_offset=0)


class ImportRefused(ValueError):
    """Mamut refuses the file; the message is what the program prints."""


def import_file(gateway: MamutGateway, path: Path, mode: str, *, now: dt.datetime | None = None) -> str:
    """Import one file into the mock; returns the program's output, raises ImportRefused."""
    import xmlschema

    now = now or dt.datetime.now(dt.UTC)
    try:
        xmlschema.XMLSchema(schema_path()).validate(str(path))
    except (xmlschema.XMLSchemaException, ET.ParseError) as exc:
        raise ImportRefused(f"Import av {path.name} avbruten: filen följer inte formatet: {exc}") from None
    root = ET.parse(path).getroot()
    expected = {"IO": "GBAOX10", "IP": "GBAPX10", "IC": "GBACX10"}.get(mode)
    if root.tag != expected:
        raise ImportRefused(f"Import av {path.name} avbruten: läge {mode} läser {expected}, filen är {root.tag}")
    with gateway.transaction() as transaction:
        if mode == "IO":
            lines = [_import_order(gateway, transaction, order, now) for order in root.iter("ORDER")]
        elif mode == "IP":
            lines = [_import_article(transaction, product) for product in root.iter("PRODUCT")]
        else:
            lines = [_import_customer(gateway, transaction, contact, now) for contact in root.iter("CONTACT")]
    return "\n".join([f"Import av {path.name}: {len(lines)} post(er) importerade", *lines])


def _text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    return child.text if child is not None and child.text is not None else None


def _create_customer(
    gateway: MamutGateway, transaction: MamutTransaction, name: str, address: str | None, now: dt.datetime, **extra
) -> int:
    parts = (address or "").split(":")
    street = parts[1] if len(parts) > 1 else None
    zip_city = parts[2].split(" ", 1) if len(parts) > 2 else [None, None]
    customer = MamutCustomer(
        name=name,
        is_company=False,
        email=extra.get("email"),
        phone=extra.get("phone"),
        org_no=None,
        vat_no=None,
        first_name=extra.get("first_name"),
        last_name=extra.get("last_name"),
        invoice_address=MamutAddress(
            name=name,
            street=street,
            zip_code=zip_city[0],
            city=zip_city[-1] if len(zip_city) > 1 else None,
            country=None,
        ),
        delivery_address=None,
        external_id=None,
        starweb_customer_id=None,
    )
    written = CustomerRepository(gateway).upsert(
        transaction,
        customer,
        match_keys=["email"],
        numbers=NUMBERS,
        guest_customer_no=None,
        update_matched=False,
        now=now,
    )
    return written.contact_id


def _by_name(transaction: MamutTransaction, name: str) -> dict | None:
    rows = [
        row
        for row in transaction.select(CONTACT, ["contact_key", "customer_number", "name"], where={"name": name})
        if row["customer_number"] is not None
    ]
    return min(rows, key=lambda row: row["contact_key"]) if rows else None


def _import_order(gateway: MamutGateway, transaction: MamutTransaction, order: ET.Element, now: dt.datetime) -> str:
    external = _text(order, "EXTERNALID")
    contact_id = int(_text(order, "CONTID") or 0)
    name = _text(order, "CONTNAME") or ""
    if contact_id:
        rows = transaction.select(CONTACT, ["contact_key", "customer_number"], where={"contact_key": contact_id})
        if not rows:
            raise ImportRefused(f"Order {external}: kunde med CONTID {contact_id} finns inte")
        contact = rows[0]
    else:
        contact = _by_name(transaction, name)
        if contact is None:
            created = _create_customer(gateway, transaction, name, _text(order, "ADRINVO"), now)
            [contact] = transaction.select(CONTACT, ["contact_key", "customer_number"], where={"contact_key": created})
    currencies = {
        row["iso_code"].strip().upper(): row["currency_id"]
        for row in transaction.select(CURRENCY, ["currency_id", "iso_code"])
    }
    currency = _text(order, "CURRENCY") or "SEK"
    if currency not in currencies:
        raise ImportRefused(f"Order {external}: valuta {currency} finns inte")
    skus = [_text(line, "PRODID") for line in order.iter("ORDERLINE")]
    articles = (
        {
            row["sku"]: row["vat_code"]
            for row in transaction.select(PRODUCT, ["sku", "vat_code"], where_in=("sku", [s for s in skus if s]))
        }
        if any(skus)
        else {}
    )
    order_no = (max_value(transaction, ORDER, "order_number") or 0) + 1
    lines, gross = [], Decimal(0)
    for number, line in enumerate(order.iter("ORDERLINE"), start=1):
        sku, description = _text(line, "PRODID"), _text(line, "DESCRIPTION") or ""
        zero = _text(line, "VATCODE") == "1"
        if sku in articles:
            vat_code = ZERO_VAT_CODE if zero else articles[sku]
        else:  # unknown article: a free-text line
            description = f"{sku} {description}".strip() if sku else description
            sku, vat_code = None, ZERO_VAT_CODE if zero else DEFAULT_VAT_CODE
        quantity, price = Decimal(_text(line, "QUANTITY")), Decimal(_text(line, "PRICE"))
        discount = Decimal(_text(line, "DISCOUNT") or 0)
        net = quantity * price * (1 - discount / 100)
        gross += net * (1 + VAT_RATES.get(vat_code, Decimal(0)) / 100)
        lines.append(
            {
                "line_number": number,
                "sku": sku,
                "description": description[:200],
                "qty_ordered": quantity,
                "price": price,
                "discount_pct": discount,
                "vat_code": vat_code,
                "warehouse_id": int(_text(line, "STOREID") or 1),
            }
        )
    transaction.insert(
        ORDER,
        {
            "order_number": order_no,
            "status_id": OrderRepository._status_id(transaction, "order"),
            "contact_key": contact["contact_key"],
            "customer_number": contact["customer_number"],
            "contact_name": name,
            "delivery_address": (_text(order, "ADRDELIV") or "").replace(":", "\n") or None,
            "reference": _text(order, "REF"),
            "your_reference": _text(order, "YOURREF"),
            "external_id": external,
            "currency_id": currencies[currency],
            "total_gross": gross.quantize(Decimal("0.01")),
        },
    )
    [row] = transaction.select(ORDER, ["order_key"], where={"order_number": order_no})
    transaction.insert_many(ORDER_LINE, [{"order_key": row["order_key"], **line} for line in lines])
    return f"Order {external} -> ordre {order_no} (kunde {contact['customer_number']})"


def _import_article(transaction: MamutTransaction, product: ET.Element) -> str:
    sku = _text(product, "PRODID")
    values: dict[str, object] = {"name": _text(product, "DESCRIPTION"), "vat_code": int(_text(product, "VATCODE"))}
    for tag, column, kind in (
        ("PRICEOUT", "price_out", Decimal),
        ("EANCODE", "ean", str),
        ("UNIT", "unit", str),
        ("WEIGHT", "weight", Decimal),
    ):
        if _text(product, tag) is not None:
            values[column] = kind(_text(product, tag))
    if transaction.select(PRODUCT, ["product_key"], where={"sku": sku}):
        transaction.update(PRODUCT, values, where={"sku": sku})
        return f"Artikel {sku} uppdaterad"
    transaction.insert(PRODUCT, {"sku": sku, **values})
    return f"Artikel {sku} skapad"


def _import_customer(
    gateway: MamutGateway, transaction: MamutTransaction, contact: ET.Element, now: dt.datetime
) -> str:
    name = _text(contact, "CONTNAME") or ""
    found = _by_name(transaction, name)
    if found is not None:
        return f"Kund {name} finns redan ({found['customer_number']})"
    address = ":".join(
        [name, _text(contact, "STREET") or "", f"{_text(contact, 'ZIPCODE') or ''} {_text(contact, 'CITY') or ''}"]
    )
    created = _create_customer(
        gateway,
        transaction,
        name,
        address,
        now,
        email=_text(contact, "EMAIL"),
        phone=_text(contact, "PHONE1"),
        first_name=_text(contact, "CPERSFIRSTNAME"),
        last_name=_text(contact, "CPERSLASTNAME"),
    )
    return f"Kund {name} skapad (CONTID {created})"


MODES = {"order": "IO", "articles": "IP", "customer": "IC"}


def mode_of(name: str) -> str:
    """The program mode for a file this project names ``<shop>_<kind>_...``."""
    for kind, mode in MODES.items():
        if f"_{kind}_" in name:
            return mode
    raise ValueError(f"cannot tell the import mode of {name}")


def process_inbox(gateway: MamutGateway, inbox: Path) -> dict[str, bool]:
    """What the scheduled task does: each queued file, by name, to processing/, imported, to done/ or failed/."""
    results: dict[str, bool] = {}
    for folder in ("processing", "done", "failed"):
        (inbox / folder).mkdir(exist_ok=True)
    for path in sorted(inbox.glob("*.xml")):
        taken = inbox / "processing" / path.name
        path.replace(taken)
        try:
            output, ok = import_file(gateway, taken, mode_of(path.name)), True
        except ImportRefused as exc:
            output, ok = str(exc), False
        folder = inbox / ("done" if ok else "failed")
        (folder / f"{path.name}.log").write_text(f"exit code {0 if ok else 1}\n{output}\n", encoding="utf-8")
        taken.replace(folder / path.name)
        results[path.name] = ok
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``--odbc <mock> <mode> <company> <file> <CompareKey> <UserID> .F.``, like Mamut ImportExport.exe."""
    parser = argparse.ArgumentParser(prog="mamut_importer", description=__doc__.splitlines()[0])
    parser.add_argument("--odbc", required=True, help="ODBC connection string of the Mamut mock")
    parser.add_argument("mode", choices=["IO", "IP", "IC"])
    parser.add_argument("company")
    parser.add_argument("file")
    parser.add_argument("compare_key")
    parser.add_argument("user_id")
    parser.add_argument("flag")
    args = parser.parse_args(argv)
    with MamutGateway(args.odbc, SchemaMap.load()) as gateway:
        try:
            print(import_file(gateway, Path(args.file), args.mode))
        except ImportRefused as exc:
            print(exc)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
