"""A shop's reference data, read once per run, and the checks of the shop's mappings against it.

Each check raises before anything is staged or written, naming the shop, the config field and what the shop
(or Mamut) has instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starmamut.config import PricesToStarwebSettings, StockLocationMapping, StockToStarwebSettings
from starmamut.mamut.catalogue import BASE_PRICE, CatalogueReader
from starmamut.mapping.prices_stock import VARIANT_TARGET, StockStatusIds, stock_target
from starmamut.mapping.products import AttributeValue, children, language_name, normalise_product
from starmamut.starweb.client import StarwebClient


class ShopMappingError(ValueError):
    """The shop's price-list or stock mapping does not fit the shop or Mamut (a price list, stock location,
    stock status or warehouse that does not exist, an inactive price list, or a target mapped twice); raised
    before anything is staged or written, naming the culprit."""


class ShopReference:
    """Shop-wide facts a product record needs: master price list, default VAT, attribute names."""

    def __init__(
        self, master_pricelist_id: int, shop_vat_rate: float, values: dict[int, AttributeValue], language: str
    ) -> None:
        self.master_pricelist_id = master_pricelist_id
        self.shop_vat_rate = shop_vat_rate
        self.values = values
        self.language = language

    @classmethod
    def read(cls, client: StarwebClient, language: str) -> ShopReference:
        master = next(pricelist for pricelist in client.list_pricelists() if pricelist.get("isMaster"))
        shop = client.get_shop()
        values: dict[int, AttributeValue] = {}
        for attribute in client.list_attributes():
            axis = language_name(children(attribute, "languages"), language) or str(attribute["attributeId"])
            for value in client.list_attribute_values(attribute["attributeId"]):
                values[value["attributeValueId"]] = AttributeValue(
                    attribute_id=attribute["attributeId"],
                    axis=axis,
                    value=language_name(children(value, "languages"), language) or str(value["attributeValueId"]),
                )
        return cls(master["pricelistId"], float(shop.get("generalDefaultVatRate") or 25), values, language)

    def normalise(self, product: dict[str, Any], variants: list[dict[str, Any]]) -> dict[str, Any]:
        return normalise_product(
            product,
            variants,
            language=self.language,
            master_pricelist_id=self.master_pricelist_id,
            shop_vat_rate=self.shop_vat_rate,
            attribute_values=self.values,
        )


class UnknownOrderStatus(ValueError):
    """The config names a Starweb order status the shop does not have."""


def resolve_statuses(statuses: Iterable[dict[str, Any]], wanted: Iterable[int | str], shop_id: str) -> set[int]:
    """Status ids for config entries given by id or idCode; an unknown one is a clear error naming it."""
    statuses = list(statuses)
    by_code = {status["idCode"]: status["statusId"] for status in statuses if status.get("idCode")}
    ids = {status["statusId"] for status in statuses}
    resolved: set[int] = set()
    for entry in wanted:
        status_id = entry if isinstance(entry, int) else by_code.get(entry)
        if status_id is None or status_id not in ids:
            known = ", ".join(f"{status.get('idCode') or '-'}={status['statusId']}" for status in statuses)
            raise UnknownOrderStatus(
                f"shop {shop_id}: order status {entry!r} does not exist in the shop (the shop has: {known})"
            )
        resolved.add(status_id)
    return resolved


def shop_pricelist_currencies(
    shop_id: str, client: StarwebClient, settings: PricesToStarwebSettings
) -> dict[int, str | None]:
    """Currency of every mapped Starweb price list (a customer list has its parent's); one request.

    Raises ShopMappingError naming a mapped price list the shop does not have, one that is inactive (unless
    its entry allows it), or one mapped twice.
    """
    pricelists = {pricelist["pricelistId"]: pricelist for pricelist in client.list_pricelists()}
    currencies: dict[int, str | None] = {}
    for entry in settings.pricelists:
        if entry.starweb in currencies:
            raise ShopMappingError(
                f"shop {shop_id}: prices_to_starweb.pricelists maps Starweb price list {entry.starweb} twice; "
                "each Starweb price list takes its prices from one Mamut source"
            )
        pricelist = pricelists.get(entry.starweb)
        if pricelist is None:
            known = ", ".join(f"{pid} ({p.get('name')})" for pid, p in sorted(pricelists.items())) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: Starweb price list {entry.starweb} (mapped from Mamut {entry.mamut!r}) does not "
                f"exist in the shop; the shop has: {known}. Nothing was sent."
            )
        if not pricelist.get("isActive") and not entry.allow_inactive:  # the spec's default is false
            raise ShopMappingError(
                f"shop {shop_id}: Starweb price list {entry.starweb} ({pricelist.get('name')}) is inactive, so the "
                f"prices_to_starweb.pricelists entry {{starweb: {entry.starweb}, mamut: {entry.mamut!r}}} would write "
                "prices no buyer sees (and activating a list resets its prices to 0). Activate the list in Starweb "
                "and run with full_refresh, map an active one, or set allow_inactive: true on that entry. Nothing "
                "was sent."
            )
        parent = pricelists.get(pricelist.get("parentPricelistId") or 0, {})
        currencies[entry.starweb] = pricelist.get("currencyCode") or parent.get("currencyCode")
    return currencies


def check_mamut_price_lists(shop_id: str, reader: CatalogueReader, settings: PricesToStarwebSettings) -> None:
    """Raise ShopMappingError naming a mapped Mamut price list that Mamut does not have."""
    lists = reader.price_lists()
    for entry in settings.pricelists:
        if entry.mamut != BASE_PRICE and entry.mamut not in lists:
            known = ", ".join(repr(name) for name in sorted(lists)) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: Mamut price list {entry.mamut!r} (mapped to Starweb price list {entry.starweb}) "
                f"does not exist in Mamut; Mamut has: {known} (or 'base' for the sales price). Nothing was sent."
            )


def shop_stock_statuses(shop_id: str, client: StarwebClient, settings: StockToStarwebSettings) -> StockStatusIds:
    """The ids of the configured stock status idCodes; one request. Raises ShopMappingError for a missing one."""
    by_code = {status.get("idCode"): status["stockStatusId"] for status in client.list_stock_statuses()}

    def resolve(field: str, id_code: str) -> int:
        if id_code not in by_code:
            known = ", ".join(sorted(str(code) for code in by_code if code)) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: stock_to_starweb.{field}: the shop has no stock status with idCode {id_code!r}; "
                f"it has: {known}. Nothing was sent."
            )
        return by_code[id_code]

    return StockStatusIds(
        in_stock=resolve("in_stock_status", settings.in_stock_status),
        out_of_stock=resolve("out_of_stock_status", settings.out_of_stock_status),
        backorder=None if settings.backorder_status is None else resolve("backorder_status", settings.backorder_status),
    )


@dataclass(frozen=True)
class MappedStock:
    """One ``stock_to_starweb.locations`` entry, checked against the shop."""

    entry: StockLocationMapping
    target: str  # ledger target: ``variant`` or ``location:<id>``
    on_variant: bool  # the variant's own stock fields show it: ``variant``, or the e-commerce location by its id


def mapped_stocks(shop_id: str, client: StarwebClient, settings: StockToStarwebSettings) -> list[MappedStock]:
    """Every mapped Starweb stock, after checking each mapped stock location exists in the shop (one request,
    only when a location is mapped by id) and no Starweb stock is mapped twice."""
    locations: dict[int, dict[str, Any]] = {}
    if any(entry.starweb != VARIANT_TARGET for entry in settings.locations):
        locations = {location["stockLocationId"]: location for location in client.list_stock_locations()}
    # The variant's own stock fields are the e-commerce location's stock: one Starweb stock, two names.
    ecommerce = next((lid for lid, location in locations.items() if location.get("ecommerceStockLocation")), None)
    stocks: list[MappedStock] = []
    stocks_mapped: set[str] = set()
    for entry in settings.locations:
        if entry.starweb != VARIANT_TARGET and entry.starweb not in locations:
            known = ", ".join(str(location_id) for location_id in sorted(locations)) or "none"
            raise ShopMappingError(
                f"shop {shop_id}: Starweb stock location {entry.starweb} (fed by Mamut warehouses "
                f"{entry.warehouses}) does not exist in the shop; the shop has: {known}. Nothing was sent."
            )
        on_variant = entry.starweb in (VARIANT_TARGET, ecommerce)
        stock = VARIANT_TARGET if on_variant else stock_target(entry.starweb)
        if stock in stocks_mapped:
            same = f" (the variant's own stock is e-commerce stock location {ecommerce})" if ecommerce else ""
            raise ShopMappingError(
                f"shop {shop_id}: stock_to_starweb.locations maps the same Starweb stock twice: {entry.starweb!r}"
                f"{same}; map each one once"
            )
        stocks_mapped.add(stock)
        stocks.append(MappedStock(entry=entry, target=stock_target(entry.starweb), on_variant=on_variant))
    return stocks
