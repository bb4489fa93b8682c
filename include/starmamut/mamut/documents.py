"""What the integration writes to Mamut for a web order: the order and its customer, as pure values.

The order mapper builds these from Starweb data; :class:`~starmamut.mamut.orders.OrderRepository`
and :class:`~starmamut.mamut.customers.CustomerRepository` write them. ``problems()`` lists what makes
a document unwritable, so the mapper can quarantine it with a reason instead of failing the load.
For customers, ``None`` means "the shop did not say": the value Mamut already holds is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

DOCUMENT_TYPES = ("order", "invoice")
NUMBER_OWNERS = ("mamut", "starweb")
RATE_DIRECTIONS = ("base_per_foreign", "foreign_per_base")
RATE_UNITS = (1, 100)


@dataclass(frozen=True)
class MamutAddress:
    """A postal address as Mamut keeps it in G_DELI (invoice or delivery)."""

    name: str | None
    street: str | None
    zip_code: str | None
    city: str | None
    country: str | None  # ISO 3166 alpha-2, e.g. "SE"


@dataclass(frozen=True)
class MamutCustomer:
    """The buyer of a web order: a company or a private person, with one contact person."""

    name: str  # company name, or "First Last" for a person
    is_company: bool
    email: str | None
    phone: str | None
    org_no: str | None  # organisation or national id number (ENTERNO)
    vat_no: str | None  # company VAT number (invented column, optional in the schema map)
    first_name: str | None  # the contact person
    last_name: str | None
    invoice_address: MamutAddress
    delivery_address: MamutAddress | None
    external_id: str | None  # "<shop>:<starweb customerId>"; None for a guest checkout
    starweb_customer_id: int | None

    @property
    def label(self) -> str:
        """How errors name the customer: the most specific key it has."""
        return self.external_id or self.email or self.name

    def problems(self) -> list[str]:
        """Why this customer cannot be written (empty list: it can)."""
        problems: list[str] = []
        if not self.name or not self.name.strip():
            problems.append(f"customer {self.label!r}: name is empty")
        if self.email is not None and "@" not in self.email:
            problems.append(f"customer {self.label!r}: email {self.email!r} is not an e-mail address")
        if self.starweb_customer_id is not None and self.starweb_customer_id < 1:
            problems.append(f"customer {self.label!r}: starweb_customer_id must be positive")
        return problems


@dataclass(frozen=True)
class MamutOrderLine:
    """One order line; a line without sku is written as free text, as Mamut's own import does."""

    sku: str | None  # None = free-text line
    description: str
    quantity: Decimal  # > 0
    unit_price: Decimal  # ex VAT, in the order's currency
    discount_pct: Decimal  # 0..100
    vat_code: int


@dataclass(frozen=True)
class MamutOrder:
    """A web order as a Mamut order or invoice; ``external_id`` makes its transfer exactly-once."""

    external_id: str  # "<shop>:<starweb orderId>"
    document: Literal["order", "invoice"]
    currency: str  # ISO 4217
    exchange_rate: Decimal
    order_date: date
    reference: str | None  # e.g. "Starweb 1042 · rabattkod SOMMAR"
    your_reference: str | None
    lines: tuple[MamutOrderLine, ...]
    total_incl_vat: Decimal  # the shop's amountToPay, kept for reconciliation
    # The order's own addresses: a gift's recipient or a guest's address belongs to the order, not the customer.
    invoice_address: MamutAddress | None
    delivery_address: MamutAddress | None

    def problems(self) -> list[str]:
        """Why this order cannot be written (empty list: it can); each names the order and field."""
        label = f"order {self.external_id!r}"
        problems: list[str] = []
        if not self.external_id or not self.external_id.strip():
            problems.append(f"{label}: external_id is empty")
        if self.document not in DOCUMENT_TYPES:
            problems.append(f"{label}: document must be one of {', '.join(DOCUMENT_TYPES)}, got {self.document!r}")
        if len(self.currency) != 3 or not self.currency.isalpha():
            problems.append(f"{label}: currency {self.currency!r} is not an ISO 4217 code")
        if not (self.exchange_rate.is_finite() and self.exchange_rate > 0):
            problems.append(f"{label}: exchange_rate must be positive, got {self.exchange_rate}")
        if not self.total_incl_vat.is_finite():
            problems.append(f"{label}: total_incl_vat must be a finite number, got {self.total_incl_vat}")
        if not self.lines:
            problems.append(f"{label}: has no lines")
        for number, line in enumerate(self.lines, start=1):
            where = f"{label} line {number} ({line.sku or 'free text'})"
            if not line.description or not line.description.strip():
                problems.append(f"{where}: description is empty")
            if not (line.quantity.is_finite() and line.quantity > 0):
                problems.append(f"{where}: quantity must be positive, got {line.quantity}")
            if not (line.discount_pct.is_finite() and Decimal(0) <= line.discount_pct <= Decimal(100)):
                problems.append(f"{where}: discount_pct must be within 0..100, got {line.discount_pct}")
            if not line.unit_price.is_finite():
                problems.append(f"{where}: unit_price must be a finite number, got {line.unit_price}")
        return problems


@dataclass(frozen=True)
class CustomerNumberPolicy:
    """Who numbers new customers: Mamut's next free number in [first, last], or offset + Starweb id."""

    owner: Literal["mamut", "starweb"]
    first: int
    last: int
    starweb_offset: int

    def __post_init__(self) -> None:
        if self.owner not in NUMBER_OWNERS:
            raise ValueError(f"customer number owner must be one of {', '.join(NUMBER_OWNERS)}, got {self.owner!r}")
        if not 1 <= self.first <= self.last:
            raise ValueError(f"customer number series {self.first}-{self.last} must satisfy 1 <= first <= last")
        if self.starweb_offset < 0:
            raise ValueError(f"starweb_offset must not be negative, got {self.starweb_offset}")


@dataclass(frozen=True)
class ExchangeRateConvention:
    """How Mamut states an order's exchange rate: base currency per ``unit`` units of the order's currency (the
    Nordic habit: 11.52 SEK per EUR, or 1152.07 per 100 EUR), or order currency per ``unit`` base units."""

    direction: Literal["base_per_foreign", "foreign_per_base"]
    unit: Literal[1, 100]

    def __post_init__(self) -> None:
        if self.direction not in RATE_DIRECTIONS:
            raise ValueError(
                f"exchange rate direction must be one of {', '.join(RATE_DIRECTIONS)}, got {self.direction!r}"
            )
        if self.unit not in RATE_UNITS:
            raise ValueError(f"exchange rate unit must be 1 or 100, got {self.unit!r}")

    def from_starweb(self, rate: Decimal) -> Decimal:
        """Starweb's ``currencyExchangeRate`` (order currency per 1 base unit, e.g. 0.0868 EUR per SEK) in this form."""
        per_one = 1 / rate if self.direction == "base_per_foreign" else rate
        return per_one * self.unit
