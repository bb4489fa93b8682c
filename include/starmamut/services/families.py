"""Mamut families as Starweb products: the checks, the shop's transforms, and the sync of one family.

Shared by ``products_to_starweb`` and the initial product sync's ``mamut_to_starweb`` direction, so a migrated
family is exactly what the regular job would have made. :class:`FamilySync` decides and sends the writes of one
family (see :mod:`starmamut.jobs.products_to_starweb` for the rules it follows: matching by the id map then by
SKU, taking over a shop product only when it is exactly the family, field owners, lost answers looked up by SKU),
:class:`KnownFamilies` is what the staging database knows of a chunk of families, :class:`AttributeIds` the
shop's variant attributes by name.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from starmamut.catalogue_conflicts import CHECK as CONFLICT_CHECK
from starmamut.catalogue_conflicts import MAMUT_TO_SHOP, OnConflict, SkuConflict, check_structure, locate
from starmamut.config import TransformPoint
from starmamut.failpoints import failpoint
from starmamut.jobs.common import JobContext, Reasons, parse_variant_ref, variant_ref
from starmamut.mapping.catalogue import (
    MappingError,
    PlannedRequest,
    ProductState,
    apply_request,
    axis_values,
    create_request,
    desired_state,
    governed_state,
    live_state,
    plan_requests,
    settled_state,
    sku_key,
    state_from_json,
    state_to_json,
    structure_problems,
    validation_rows,
)
from starmamut.mapping.products import children, language_name
from starmamut.services.binder import VARIANT, bind_variants_by_sku, locate_variants, variants_of
from starmamut.staging.store import Link, SkuHolder, StagedRow
from starmamut.starweb.client import StarwebClient
from starmamut.starweb.errors import StarwebAmbiguousWrite, StarwebError, StarwebNotFound
from starmamut.transforms import RecordTransforms

JOB = "products_to_starweb"
ARTICLE = "article"  # staged rows, quarantine and product links, keyed by the Mamut main article number
# (not "product": products_to_mamut keys those by Starweb productId, and a shop may change flow)
LEDGER_DIMENSION = "starweb_product"  # last pushed state per main article number
LEDGER_TARGET = "state"

log = logging.getLogger(__name__)


def check_families(ctx: JobContext, batch_id: str, staged: list[StagedRow]) -> dict[str, Reasons]:
    """Why each failing staged family fails: its variant structure, or the catalogue suite on its rows."""
    import pandas as pd

    from starmamut.quality.catalogue import CATALOGUE_COLUMNS, catalogue_checks
    from starmamut.quality.runner import validate_rows

    rows = [row for record in staged for row in validation_rows(record.payload)]
    family_of_row = {row["row_key"]: row["product_key"] for row in rows}
    report = validate_rows(
        pd.DataFrame(rows, columns=list(CATALOGUE_COLUMNS)),
        catalogue_checks(vat_codes=ctx.settings.mamut.vat_codes.values()),
        key_column="row_key",
        suite_name=f"{ctx.shop.id}_{JOB}_{batch_id}",
    )
    reasons: dict[str, Reasons] = {}
    for record in staged:
        for problem in structure_problems(record.payload):
            reasons.setdefault(record.key, []).append({"check": "has_variants", "reason": problem})
    for row_key, failures in report.failures.items():
        reasons.setdefault(family_of_row[row_key], []).extend(
            {"check": failure.check, "reason": failure.reason} for failure in failures
        )
    return reasons


def family_transforms(ctx: JobContext, batch_id: str, point: TransformPoint) -> RecordTransforms:
    """The shop's product transforms at one point; they see the staged family (``key`` stays fixed)."""
    return RecordTransforms(
        ctx,
        batch_id,
        job=JOB,
        entity="products",
        point=point,
        staged_entity=ARTICLE,
        key=lambda record: str(record["key"]),
        fixed=("key",),
    )


def forced(ctx: JobContext) -> bool:
    """A full refresh or a re-sync of given SKUs compares with the shop itself, not with the ledger."""
    return ctx.params.full_refresh or bool(ctx.params.skus)


@dataclass(frozen=True)
class KnownFamilies:
    """What the staging database knows of a chunk of families: product links and last pushed states."""

    links: dict[str, Link]
    pushed: dict[str, ProductState]

    @classmethod
    def read(cls, ctx: JobContext, keys: list[str]) -> KnownFamilies:
        links = ctx.store.get_links(ctx.shop.id, ARTICLE, keys)
        ledger = ctx.store.get_ledger(ctx.shop.id, LEDGER_DIMENSION, keys)
        return cls(links, {sku: state_from_json(text) for (sku, _target), text in ledger.items()})

    def unchanged(self, row: StagedRow, *, force: bool) -> bool:
        link = self.links.get(row.key)
        return not force and link is not None and link.retired_at is None and link.content_hash == row.content_hash

    def product_id(self, key: str) -> int | None:
        pushed = self.pushed.get(key)
        if pushed is not None and pushed.product_id is not None:
            return pushed.product_id
        link = self.links.get(key)
        return int(link.starweb_id) if link is not None and link.retired_at is None and link.starweb_id else None


def placed_skus(pushed: ProductState | None) -> set[str]:
    """The folded SKUs whose Starweb variant the last pushed state knows."""
    if pushed is None:
        return set()
    return {key for key, variant in pushed.variants.items() if variant.variant_id is not None}


@dataclass
class FamilyOutcome:
    """What syncing one family did (or, in a dry run, would do)."""

    key: str
    created: bool = False
    writes: int = 0
    planned: list[PlannedRequest] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (check, reason) when the family goes to quarantine
    conflict: str | None = None  # why the family is in a SKU conflict (quarantined, or only listed)
    compared_with_shop: bool = False  # the plan came from what the shop shows, not from the ledger


class FamilySync:
    """Syncs one family at a time (called from several threads); shared: the binder's links, the attributes.

    ``on_conflict`` (default: the run's Param) says what to do with a family whose one shop product differs
    from it; the migration passes ``quarantine``, having matched its families already.
    """

    def __init__(
        self,
        ctx: JobContext,
        client: StarwebClient,
        *,
        attributes: AttributeIds | None = None,
        before_create: Callable[[str], None] | None = None,
        variant_extras: Mapping[str, Mapping[str, Any]] | None = None,
        on_conflict: OnConflict | None = None,
    ) -> None:
        self._ctx = ctx
        self._client = client
        self._settings = ctx.shop.products_to_starweb
        self._on_conflict = on_conflict or ctx.params.on_conflict
        self._language = ctx.shop.language
        self._attributes = attributes or AttributeIds(ctx, client)
        self._before_create = before_create  # told the family's key right before its product is created
        self._variant_extras = variant_extras or {}  # fields a new variant carries inline, by SKU (e.g. its stock)
        self._bound: dict[str, int] = {}  # sku -> the shop product holding it

    def bind(self, skus: list[str]) -> None:
        """Place ``skus`` in the shop: the id map first, then a search of the shop (see the binder)."""
        if skus:
            links = bind_variants_by_sku(self._ctx, self._client, skus)
            self.place({sku: parse_variant_ref(link.starweb_id)[0] for sku, link in links.items() if link.starweb_id})

    def place(self, products: Mapping[str, int]) -> None:
        """Tell which shop product already holds each SKU, as ``{sku: productId}``, without asking the shop."""
        self._bound.update(products)

    def run(self, row: StagedRow, known: KnownFamilies) -> FamilyOutcome:
        outcome = FamilyOutcome(row.key)
        try:
            try:
                self._sync(row, known, outcome, refresh=False)
            except StarwebError as exc:
                if outcome.compared_with_shop or not exc.is_record_level:
                    raise
                # The shop changed since the last push (a product or variant deleted, a field set by hand that
                # rules out the change): compare with what the shop has now, recreating what is gone.
                log.warning(
                    "shop %s: Starweb refused an update of %s (%s); comparing with the shop and retrying",
                    self._ctx.shop.id,
                    row.key,
                    exc,
                )
                self._sync(row, known, outcome, refresh=True)
        except MappingError as exc:
            outcome.problem = ("mapping", str(exc))
        except SkuConflict as exc:
            outcome.conflict = str(exc)
            if exc.resolvable and self._on_conflict == "report_only":
                log.warning("shop %s: %s (on_conflict report_only: listed, nothing written)", self._ctx.shop.id, exc)
            else:
                outcome.problem = (CONFLICT_CHECK, str(exc))
        except StarwebError as exc:
            if not exc.is_record_level:
                raise
            outcome.problem = ("starweb_rejected", _refusal(row.key, exc, outcome.planned))
        return outcome

    def _sync(self, row: StagedRow, known: KnownFamilies, outcome: FamilyOutcome, *, refresh: bool) -> None:
        record = row.payload
        pushed = known.pushed.get(row.key)
        product_id = self._product_id(record, known)
        current = None
        if product_id is not None:
            own = pushed is not None and pushed.product_id == product_id  # this job pushed the family there
            placed = placed_skus(pushed)
            stale_ledger = not own or any(
                sku_key(variant["sku"]) not in placed and variant["sku"] in self._bound
                for variant in record["variants"]
            )
            if forced(self._ctx) or refresh or stale_ledger:
                current = self._read_shop(product_id, active=pushed.active if pushed else True)
                outcome.compared_with_shop = True
                if pushed is not None:
                    self._retire_vanished(pushed, current)
            else:
                current = pushed
            if current is not None and not own and not self._take_over(row, current):
                return
        desired = desired_state(record, value_ids=self._attributes.resolve(axis_values(record), outcome))
        if current is None:
            outcome.compared_with_shop = True
            self._create(row, desired, outcome)
            return
        target = governed_state(
            desired,
            current,
            owners=self._settings.field_owners,
            default_visibility=self._settings.new_product_visibility,
        )
        retired = (
            []
            if self._settings.field_owners.variant_active == "shop"
            else [key for key in (pushed.variants if pushed else {}) if key not in desired.variants]
        )
        state = current
        for request in plan_requests(target, current, language=self._language, retired=retired):
            outcome.planned.append(request)
            if self._ctx.params.dry_run:
                continue
            try:
                response = self._send(row.key, request)
            except StarwebError:
                # What reached the shop, of the family's variants only: a variant of the shop's own in the
                # ledger would pass for one Mamut dropped, and be deactivated.
                self._remember(
                    row.key, replace(settled_state(state, target, retired), active=state.active), content_hash=None
                )
                raise
            outcome.writes += 1
            failpoint("products_to_starweb.after_starweb_write")
            state = apply_request(state, target, request, response)
            if request.kind == "new_variant" and request.sku:
                self._link_variants(state, [request.sku])
        if not self._ctx.params.dry_run:
            self._remember(
                row.key,
                settled_state(state, target, retired),
                content_hash=row.content_hash,
                variants=[variant["sku"] for variant in record["variants"]],
            )

    def _product_id(self, record: Mapping[str, Any], known: KnownFamilies) -> int | None:
        """The family's product: as last pushed or linked, else the one shop product holding its SKUs."""
        linked = known.product_id(record["key"])
        targets = {
            sku_key(sku): [SkuHolder(key=str(self._bound[sku]), sku=sku, sku_key=sku_key(sku))]
            for sku in (variant["sku"] for variant in record["variants"])
            if sku in self._bound
        }
        found = locate(
            record["key"],
            [variant["sku"] for variant in record["variants"]],
            targets=targets,
            sides=MAMUT_TO_SHOP,
            linked=None if linked is None else str(linked),
        )
        return None if found is None else int(found)

    def _take_over(self, row: StagedRow, current: ProductState) -> bool:
        """Whether the family may be written onto a shop product this job did not push it to: only when it is
        exactly the family (SKUs and attribute axes), else as ``on_conflict`` says. ``link_and_skip`` links it
        and records the shop's values as pushed, writing nothing: later Mamut changes are compared with those."""
        record = row.payload
        try:
            check_structure(
                record["key"],
                [variant["sku"] for variant in record["variants"]],
                str(current.product_id),
                [variant.sku for variant in current.variants.values()],
                sides=MAMUT_TO_SHOP,
                axes=(
                    record["axes"],
                    self._attributes.axes_of(link for variant in current.variants.values() for link in variant.links),
                ),
            )
        except SkuConflict as conflict:
            if self._on_conflict not in ("link_and_skip", "overwrite"):
                raise
            log.warning("shop %s: %s; on_conflict %s", self._ctx.shop.id, conflict, self._on_conflict)
            if self._on_conflict == "link_and_skip":
                if not self._ctx.params.dry_run:
                    skus = [variant["sku"] for variant in record["variants"]]
                    taken = replace(
                        current,
                        variants={
                            key: variant
                            for key, variant in current.variants.items()
                            if key in {sku_key(sku) for sku in skus}
                        },
                    )
                    self._remember(row.key, taken, content_hash=row.content_hash, variants=skus)
                return False
        return True

    def _create(self, row: StagedRow, desired: ProductState, outcome: FamilyOutcome) -> None:
        request = create_request(desired, language=self._language, visibility=self._settings.new_product_visibility)
        for variant in request.body["variants"]:
            variant.update(self._variant_extras.get(variant["sku"], {}))
        outcome.planned.append(request)
        outcome.created = True
        if self._ctx.params.dry_run:
            return
        if self._before_create is not None:
            self._before_create(row.key)
        response = self._send(row.key, request)
        outcome.writes += 1
        failpoint("products_to_starweb.after_starweb_create")
        state = apply_request(ProductState(), desired, request, response)
        # A variant missing from Starweb's answer is found by the next run, which must not skip the family.
        complete = all(variant.variant_id is not None for variant in state.variants.values())
        self._remember(
            row.key,
            state,
            content_hash=row.content_hash if complete else None,
            variants=[variant.sku for variant in state.variants.values()],
        )

    def _send(self, key: str, request: PlannedRequest) -> dict[str, Any]:
        """Send one planned write of family ``key``. A product or variant POST whose answer was lost may have been
        applied: it is looked up by SKU first, and sent again only if the shop does not have it."""
        try:
            return self._write(request)
        except StarwebAmbiguousWrite as exc:
            if request.kind not in ("new_product", "new_variant"):
                raise
            found = self._find_posted(key, request)
            if found is None:
                log.warning("shop %s: %s; the shop does not have it, so it is sent again", self._ctx.shop.id, exc)
                return self._write(request)
            log.warning("shop %s: %s; the shop has it, so it was applied: taken as the answer", self._ctx.shop.id, exc)
            return found

    def _write(self, request: PlannedRequest) -> dict[str, Any]:
        if request.method == "POST":
            return self._client.post(request.path, request.body).get("data") or {}
        if request.method == "PUT":
            return self._client.put(request.path, request.body).get("data") or {}
        return self._client.patch(request.path, request.body).get("data") or {}

    def _find_posted(self, key: str, request: PlannedRequest) -> dict[str, Any] | None:
        """The answer a lost product or variant POST would have had, built from the shop's variants holding its
        SKUs; None when the shop holds none of them. Some of them, or on another product, is a SKU conflict."""
        skus = (
            [variant["sku"] for variant in request.body["variants"]]
            if request.kind == "new_product"
            else [request.body["sku"]]
        )
        found = list(locate_variants(self._client, skus))
        if not found:
            return None
        products = {str(product_id) for _, product_id, _ in found}
        expected = {request.path.split("/")[2]} if request.kind == "new_variant" else products
        if len(found) < len(skus) or len(products) > 1 or products != expected:
            held = "; ".join(f"{sku} on shop product {product_id}" for sku, product_id, _ in found)
            raise SkuConflict(
                f"Mamut family {key}: after a lost answer to {request.method} {request.path}, the "
                f"shop holds {held} of SKUs {', '.join(sorted(skus))}: look at them before the next run"
            )
        if request.kind == "new_variant":
            return {"variantId": found[0][2]}
        return {
            "productId": found[0][1],
            "variants": {"data": [{"sku": sku, "variantId": variant_id} for sku, _, variant_id in found]},
        }

    def _read_shop(self, product_id: int, *, active: bool) -> ProductState | None:
        """The product as the shop shows it now; None if the shop no longer has it."""
        client = self._client
        try:
            product = client.get_product(product_id, include=("languages", "primaryVariant"))
        except StarwebNotFound:
            return None
        languages = children(product, "languages")
        name = language_name(languages, self._language)
        if not any(entry.get("langCode") == self._language for entry in languages):
            # The include carries the shop's default language only.
            try:
                name = language_name(
                    [client.get(f"/products/{product_id}/languages/{self._language}")["data"]], self._language
                )
            except StarwebNotFound:
                name = None
        return live_state(product, variants_of(client, product), name=name, active=active)

    def _remember(
        self,
        key: str,
        state: ProductState,
        *,
        content_hash: str | None,
        variants: Iterable[str] = (),
    ) -> None:
        """Record the last pushed state, then the product link with the links of the variants of SKUs
        ``variants`` (see :meth:`_variant_links`) in one staging transaction: per family, not per variant. The
        content hash only once all of the family is pushed."""
        if state.product_id is None:
            return
        store, shop = self._ctx.store, self._ctx.shop.id
        variant_links = self._variant_links(state, variants)
        store.set_ledger(shop, LEDGER_DIMENSION, {(key, LEDGER_TARGET): state_to_json(state)})
        product_link = Link(
            shop=shop,
            entity=ARTICLE,
            key=key,
            starweb_id=str(state.product_id),
            mamut_key=None,
            sku=key,
            content_hash=content_hash,
            synced_at=None,
            retired_at=None,
        )
        store.upsert_links([product_link, *variant_links])

    def _link_variants(self, state: ProductState, skus: Iterable[str]) -> None:
        """Link the variants of ``skus`` the id map does not yet place right, in one staging transaction."""
        links = self._variant_links(state, skus)
        if links:
            self._ctx.store.upsert_links(links)

    def _variant_links(self, state: ProductState, skus: Iterable[str]) -> list[Link]:
        """The links to write for the variants of ``skus`` the id map does not yet place right (one read of the
        id map for all of them), keeping the Mamut key a link had. A link carries Mamut's spelling of the SKU
        (the other jobs look it up by that), whatever the shop's."""
        if state.product_id is None:
            return []
        store, shop = self._ctx.store, self._ctx.shop.id
        variants = {
            str(variant.variant_id): sku
            for sku in skus
            if (variant := state.variants.get(sku_key(sku))) is not None and variant.variant_id is not None
        }
        if not variants:
            return []
        existing = store.get_links(shop, VARIANT, variants)
        links = []
        for key, sku in variants.items():
            ref = variant_ref(state.product_id, key)
            link = existing.get(key)
            if link is not None and link.retired_at is None and (link.starweb_id, link.sku) == (ref, sku):
                continue
            links.append(
                Link(
                    shop=shop,
                    entity=VARIANT,
                    key=key,
                    starweb_id=ref,
                    mamut_key=link.mamut_key if link else None,
                    sku=sku,
                    content_hash=None,
                    synced_at=None,
                    retired_at=None,
                )
            )
        return links

    def _retire_vanished(self, pushed: ProductState, current: ProductState | None) -> None:
        """Retire the links of variants deleted in the shop since the last push (all of them if the product went)."""
        if self._ctx.params.dry_run:
            return
        alive = {variant.variant_id for variant in current.variants.values()} if current is not None else set()
        gone = [
            str(variant.variant_id)
            for variant in pushed.variants.values()
            if variant.variant_id is not None and variant.variant_id not in alive
        ]
        store, shop = self._ctx.store, self._ctx.shop.id
        for key, link in store.get_links(shop, VARIANT, gone).items():
            if link.retired_at is None:
                store.retire_link(shop, VARIANT, key)


class AttributeIds:
    """Starweb's variant attributes and their values by name in the shop's language; missing ones are created.

    Read once, on first need, and shared by every family of the load (behind a lock, so two families that
    need the same new value create it once). In a dry run a missing one gets a placeholder id and the
    request that would create it is planned on the family that first needed it.
    """

    def __init__(self, ctx: JobContext, client: StarwebClient) -> None:
        self._ctx = ctx
        self._client = client
        self._language = ctx.shop.language
        self._lock = threading.Lock()
        self._attribute_ids: dict[str, int] | None = None  # folded axis name -> attribute id
        self._attribute_names: dict[int, str] = {}  # attribute id -> its name as the shop spells it
        self._value_ids: dict[tuple[int, str], int] = {}  # (attribute id, folded value name) -> value id
        self._placeholders = itertools.count(-1, -1)

    def known(self) -> dict[str, Any]:
        """The ids read or created so far, JSON-able, for :meth:`restore` in another process."""
        with self._lock:
            return {
                "attributes": self._attribute_ids or {},
                "values": [
                    [attribute_id, value, value_id] for (attribute_id, value), value_id in self._value_ids.items()
                ],
            }

    def restore(self, known: Mapping[str, Any]) -> None:
        """Take the ids :meth:`known` gave instead of reading the shop's attributes again."""
        with self._lock:
            self._attribute_ids = dict(known["attributes"])
            self._value_ids = {(attribute_id, value): value_id for attribute_id, value, value_id in known["values"]}

    def resolve(self, pairs: Iterable[tuple[str, str]], outcome: FamilyOutcome) -> dict[tuple[str, str], int]:
        wanted = sorted(pairs)
        if not wanted:
            return {}
        with self._lock:
            if self._attribute_ids is None:
                self._read()
            return {
                (axis, value): self._value_id(self._attribute_id(axis, outcome), value, outcome)
                for axis, value in wanted
            }

    def axes_of(self, value_ids: Iterable[int]) -> set[str]:
        """The names of the attributes these value ids belong to: a shop product's axes (a value the shop's
        list did not hold when read stands for an axis of its own, so it never passes for a known one)."""
        with self._lock:
            if self._attribute_ids is None:
                self._read()
            assert self._attribute_ids is not None
            names = {
                attribute_id: self._attribute_names.get(attribute_id, folded)
                for folded, attribute_id in self._attribute_ids.items()
            }
            attribute_of = {value_id: attribute_id for (attribute_id, _), value_id in self._value_ids.items()}
            return {
                names[attribute_of[value_id]] if value_id in attribute_of else f"(the attribute of value {value_id})"
                for value_id in value_ids
            }

    def _read(self) -> None:
        self._attribute_ids = {}
        for attribute in self._client.list_attributes():
            name = language_name(children(attribute, "languages"), self._language)
            if name is None:
                continue
            attribute_id = attribute["attributeId"]
            self._attribute_ids.setdefault(name.casefold(), attribute_id)
            self._attribute_names[attribute_id] = name
            for value in self._client.list_attribute_values(attribute_id):
                value_name = language_name(children(value, "languages"), self._language)
                if value_name is not None:
                    self._value_ids.setdefault((attribute_id, value_name.casefold()), value["attributeValueId"])

    def _attribute_id(self, axis: str, outcome: FamilyOutcome) -> int:
        assert self._attribute_ids is not None
        found = self._attribute_ids.get(axis.casefold())
        if found is None:
            found = self._create(outcome, "/product-attributes", axis, f"new attribute {axis!r}", "attributeId")
            self._attribute_ids[axis.casefold()] = found
            self._attribute_names[found] = axis
        return found

    def _value_id(self, attribute_id: int, value: str, outcome: FamilyOutcome) -> int:
        found = self._value_ids.get((attribute_id, value.casefold()))
        if found is None:
            path = f"/product-attributes/{attribute_id}/values"
            found = self._create(outcome, path, value, f"new value {value!r}", "attributeValueId")
            self._value_ids[(attribute_id, value.casefold())] = found
        return found

    def _create(self, outcome: FamilyOutcome, path: str, name: str, what: str, id_field: str) -> int:
        request = PlannedRequest("attribute", "POST", path, {"languages": [{"langCode": self._language, "name": name}]})
        outcome.planned.append(request)
        if self._ctx.params.dry_run:
            return next(self._placeholders)
        created = self._client.post(path, request.body)["data"]
        outcome.writes += 1
        log.info("shop %s: created Starweb %s (%s)", self._ctx.shop.id, what, created[id_field])
        return int(created[id_field])


def _refusal(key: str, exc: StarwebError, planned: list[PlannedRequest]) -> str:
    """The quarantine reason of a request Starweb refused for one family: the family, the variant or product, the
    fields sent and Starweb's own words (which usually name the field at fault)."""
    said = exc.error_description or exc.error or f"HTTP {exc.status}"
    request = next(
        (request for request in reversed(planned) if (request.method, request.path) == (exc.method, exc.path)), None
    )
    if request is None:
        return f"Mamut family {key}: Starweb refused {exc.method} {exc.path} (HTTP {exc.status}): {said}"
    what = f"variant {request.sku}" if request.sku else f"its {request.kind.replace('_', ' ')}"
    return (
        f"Mamut family {key}: Starweb refused {what} ({request.method} {request.path}, field(s) "
        f"{', '.join(request.body)}; HTTP {exc.status}): {said}"
    )
