"""Mamut Import/Export XML: GBAOX10 orders, GBACX10 customers, GBAPX10 articles (reference section 2.2).

Files are ISO-8859-1 with upper-case tags, as the format pages describe; a character outside Latin-1 is written
as a numeric character reference. Numbers use a decimal point. A file never carries a number of ours: no
ORDERID, no customer number; Mamut numbers what it imports. An order carries the shop's reference as its
external order number (EXTERNALID, ``<shop>:<orderId>``), which is how the confirm pass finds it over SQL.

Tag names the reference lists are used as listed. Where it lists a field but not its tag (the order line's
product no., quantity, price, discount, VAT code, warehouse) or lists no tag at all (the order's currency, the
customer list's wrapper), the name is this project's proposal, marked ``[P]`` in ``gbax10.xsd``: compare them
with a file Mamut exports (``EO``/``EC``) before going live (README, "Import mode").

The order line VAT code follows the import's own rule, not the VAT register: 0 = take it from the article,
1 = zero VAT; so a line at a zero rate (export) says 1 and every other line 0.

File names come from the content's identity, so a re-run produces the same name for the same thing:
``<shop>_order_<orderId>.xml`` for an order, ``<shop>_customer_<key>.xml`` for a customer and
``<shop>_articles_<first>-<last>_<digest>.xml`` for a chunk of products (chunked by product id; the digest of
the content tells two versions of the same chunk apart).
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources

from starmamut.mamut.articles import MamutArticle
from starmamut.mamut.documents import MamutAddress, MamutCustomer, MamutOrder

ENCODING = "ISO-8859-1"
ORDER_MODE, CUSTOMER_MODE, ARTICLE_MODE = "IO", "IC", "IP"
"""Import/Export command-line modes (reference section 2.2, H7)."""
ZERO_VAT, VAT_FROM_ARTICLE = 1, 0
_NAME_PART = re.compile(r"[^A-Za-z0-9-]+")


def schema_path() -> str:
    """Path of ``gbax10.xsd``, the schema every file here follows."""
    return str(resources.files(__package__).joinpath("gbax10.xsd"))


@dataclass(frozen=True)
class ImportFile:
    """One file for Mamut Import/Export: its name, program mode (IO, IC, IP) and bytes."""

    name: str
    mode: str
    content: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def order_file_name(shop: str, order_id: str) -> str:
    return f"{_safe(shop)}_order_{_safe(order_id)}.xml"


def order_file(
    shop: str,
    order_id: str,
    order: MamutOrder,
    customer: MamutCustomer,
    *,
    contact_id: int,
    warehouse: int,
    zero_vat_codes: Collection[int],
) -> ImportFile:
    """The GBAOX10 file of one web order; ``contact_id`` is the matched customer's CONTID, or 0 (Mamut matches or
    creates the customer from the name and addresses, as its order import does)."""
    problems = order.problems() + customer.problems()
    if problems:
        raise ValueError("; ".join(problems))
    root = ET.Element("GBAOX10")
    header = ET.SubElement(ET.SubElement(root, "ORDERLIST"), "ORDER")
    buyer = (order.invoice_address.name if order.invoice_address else None) or customer.name
    invoice = order.invoice_address or customer.invoice_address
    delivery = order.delivery_address or invoice
    _add(header, "CONTID", contact_id)
    _add(header, "CONTNAME", buyer.strip())
    _add(header, "ADRINVO", address_text(invoice))
    _add(header, "ADRDELIV", address_text(delivery))
    _add(header, "REF", order.reference)
    _add(header, "YOURREF", order.your_reference)
    _add(header, "EXTERNALID", order.external_id)
    _add(header, "CURRENCY", order.currency.upper())
    lines = ET.SubElement(header, "ORDERLINES")
    for line in order.lines:
        element = ET.SubElement(lines, "ORDERLINE")
        _add(element, "PRODID", line.sku)
        _add(element, "DESCRIPTION", line.description)
        _add(element, "QUANTITY", line.quantity)
        _add(element, "PRICE", line.unit_price)
        _add(element, "DISCOUNT", line.discount_pct)
        _add(element, "VATCODE", ZERO_VAT if line.vat_code in zero_vat_codes else VAT_FROM_ARTICLE)
        _add(element, "STOREID", warehouse)
    return ImportFile(order_file_name(shop, order_id), ORDER_MODE, _render(root))


def customer_file(shop: str, key: str, customers: Sequence[MamutCustomer]) -> ImportFile:
    """A GBACX10 file of customers (no CONTID: Mamut matches by the CompareKey or creates them)."""
    root = ET.Element("GBACX10")
    listing = ET.SubElement(root, "CONTACTLIST")
    for customer in customers:
        problems = customer.problems()
        if problems:
            raise ValueError("; ".join(problems))
        element = ET.SubElement(listing, "CONTACT")
        address = customer.invoice_address
        _add(element, "CONTNAME", customer.name.strip())
        _add(element, "STREET", address.street)
        _add(element, "ZIPCODE", address.zip_code)
        _add(element, "CITY", address.city)
        _add(element, "CPERSFIRSTNAME", customer.first_name)
        _add(element, "CPERSLASTNAME", customer.last_name)
        _add(element, "PHONE1", customer.phone)
        _add(element, "EMAIL", customer.email)
        _add(element, "CPERSPHONE", customer.phone)
        _add(element, "CPERSMAIL", customer.email)
    return ImportFile(f"{_safe(shop)}_customer_{_safe(key)}.xml", CUSTOMER_MODE, _render(root))


def article_file(
    shop: str, first: str, last: str, articles: Iterable[MamutArticle], *, warehouse: int, with_price: bool
) -> ImportFile:
    """A GBAPX10 file of articles; ``first``/``last`` name the chunk (product ids), a digest its content.

    The format has no variant links, inactive flag or stock flag: variants go in as articles of their own
    (link them with Mamut's variant add-on), and ``with_price=False`` leaves PRICEOUT out (Mamut owns prices).
    """
    root = ET.Element("GBAPX10")
    listing = ET.SubElement(root, "PRODUCTLIST")
    for article in articles:
        element = ET.SubElement(listing, "PRODUCT")
        _add(element, "PRODID", article.sku)
        _add(element, "DESCRIPTION", article.name)
        _add(element, "UNIT", article.unit)
        _add(element, "WEIGHT", article.weight)
        if with_price:
            _add(element, "PRICEOUT", article.price_out)
        _add(element, "VATCODE", article.vat_code)
        _add(element, "DEFSTOREID", warehouse)
        _add(element, "EANCODE", article.ean)
    content = _render(root)
    digest = hashlib.sha256(content).hexdigest()[:12]
    return ImportFile(f"{_safe(shop)}_articles_{_safe(first)}-{_safe(last)}_{digest}.xml", ARTICLE_MODE, content)


def address_text(address: MamutAddress | None) -> str | None:
    """An address as ADRINVO/ADRDELIV hold it: name, street, postcode and city, country, ':' between lines."""
    if address is None:
        return None
    parts = [
        address.name,
        address.street,
        " ".join(part.strip() for part in (address.zip_code, address.city) if part and part.strip()),
        address.country,
    ]
    text = ":".join(part.strip().replace(":", " ") for part in parts if part and part.strip())
    return text or None


def _add(parent: ET.Element, tag: str, value: object) -> None:
    """A child element for a value that is set (an unset one is left out: Mamut then uses its default)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, bool):
        text = "1" if value else "0"
    else:
        text = str(value)
    ET.SubElement(parent, tag).text = text


def _render(root: ET.Element) -> bytes:
    ET.indent(root)
    return ET.tostring(root, encoding=ENCODING, xml_declaration=True) + b"\n"


def _safe(part: str) -> str:
    """A file-name part: letters, digits and '-' only (a shop id or order id never yields a path)."""
    cleaned = _NAME_PART.sub("-", str(part)).strip("-")
    if not cleaned:
        raise ValueError(f"{part!r} gives an empty file-name part")
    return cleaned
