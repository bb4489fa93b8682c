"""Bind SKUs to Starweb variants: the id map first, then the shop itself, so nothing is ever created twice.

Every job that writes a variant by SKU (catalogue, prices, stock) asks here first. A SKU the id map knows
costs nothing; the others are looked up in the shop in one pass per call, and each one found is linked at
once, so a later call (or the retry after a crash) finds it in the id map. How the shop is searched:

* a few SKUs (at most ``FILTER_LOOKUP_LIMIT``): one ``GET /products?filterSku=`` each, concurrently;
* more: the whole catalogue is listed once (``primaryVariant`` embedded; the variants of products with
  several are listed too), stopping as soon as every SKU is found, holding only the SKUs still sought.

Starweb tells SKUs apart without regard to letter case, so a SKU matches its shop variant that way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from starmamut.jobs.common import JobContext, chunked, variant_ref
from starmamut.mapping.catalogue import sku_key
from starmamut.mapping.products import children
from starmamut.staging.store import Link
from starmamut.starweb.client import StarwebClient

VARIANT = "variant"
FILTER_LOOKUP_LIMIT = 20
"""Up to this many unknown SKUs are looked up one request each; more list the catalogue once."""
_FILTERABLE_SKU = re.compile(r"[A-Za-z0-9._-]+")  # what the API accepts in filterSku
_LINK_WRITE_CHUNK = 500


def bind_variants_by_sku(ctx: JobContext, client: StarwebClient, skus: Collection[str]) -> dict[str, Link]:
    """The live variant links of ``skus`` (id map first, then the shop); SKUs not in the shop are absent.

    A link found in the shop is recorded at once (entity ``variant``, key = variant id, ``starweb_id`` =
    ``"<productId>:<variantId>"``, keeping the Mamut key an earlier link of that variant had); in a dry run
    it is returned without being recorded.
    """
    shop, store = ctx.shop.id, ctx.store
    wanted = list(dict.fromkeys(skus))
    bound = store.find_links_by_sku(shop, VARIANT, wanted)
    unknown = [sku for sku in wanted if sku not in bound]
    if not unknown:
        return bound
    for found in chunked(locate_variants(client, unknown), _LINK_WRITE_CHUNK):
        earlier = store.get_links(shop, VARIANT, [str(variant_id) for _, _, variant_id in found])
        links = {}
        for sku, product_id, variant_id in found:
            previous = earlier.get(str(variant_id))
            links[sku] = Link(
                shop=shop,
                entity=VARIANT,
                key=str(variant_id),
                starweb_id=variant_ref(product_id, variant_id),
                mamut_key=previous.mamut_key if previous else None,
                sku=sku,
                content_hash=None,
                synced_at=None if ctx.params.dry_run else ctx.clock(),
                retired_at=None,
            )
        if not ctx.params.dry_run:
            store.upsert_links(links.values())
        bound.update(links)
    return bound


def locate_variants(client: StarwebClient, skus: Iterable[str]) -> Iterator[tuple[str, int, int]]:
    """``(sku, productId, variantId)`` for each of ``skus`` the shop has, in the order the shop yields them."""
    sought = {sku_key(sku): sku for sku in skus}
    if not sought:
        return
    if len(sought) <= FILTER_LOOKUP_LIMIT and all(_FILTERABLE_SKU.fullmatch(sku) for sku in sought.values()):
        # Pulled lazily: a SKU found meanwhile among a looked-up product's variants is not looked up again.
        still_sought = (sku for sku in list(sought.values()) if sku_key(sku) in sought)
        found: Iterator[tuple[int, list[dict[str, Any]]]] = (
            entry
            for entries in client.map_concurrent(lambda sku: _filtered(client, sku), still_sought)
            for entry in entries
        )
    else:
        found = client.map_concurrent(
            lambda product: with_variants(client, product), client.iter_products(include=("primaryVariant",))
        )
    for product_id, variants in found:
        for variant in variants:
            sku = sought.pop(sku_key(variant["sku"]), None)
            if sku is not None:
                yield sku, product_id, variant["variantId"]
        if not sought:
            return


def variants_of(client: StarwebClient, product: Mapping[str, Any], include: Sequence[str] = ()) -> list[dict[str, Any]]:
    """All variants of a listed product: the embedded primary one suffices unless it has several."""
    if product.get("hasSeveralVariants"):
        return list(client.iter_variants(product["productId"], include=include))
    return children(product, "variants")


def with_variants(client: StarwebClient, product: Mapping[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """``(productId, all its variants)`` of a listed product: one pass over the shop's catalogue maps these."""
    return product["productId"], variants_of(client, product)


def _filtered(client: StarwebClient, sku: str) -> list[tuple[int, list[dict[str, Any]]]]:
    return [
        with_variants(client, product) for product in client.iter_products(filter_sku=sku, include=("primaryVariant",))
    ]
