"""Per-shop custom transforms: plain Python callables kept in ``plugins/`` that adjust records at named points.

A shop's config lists, per entity (products, prices, stock, orders, customers) and hook point (``after_mapping``,
``before_load``), the dotted paths of callables ``f(record, context) -> dict | Skip | Reject``, applied in order.
A transform returns the (possibly changed) record, ``Skip(reason)`` to leave the record out on purpose, or
``Reject(reason)`` to quarantine it; an exception inside a transform quarantines that record too, naming the
transform and the message, and the batch goes on.

Where the points sit in every job (the record a transform sees is the staged record; see plugins/README.md):

* ``after_mapping`` — in extract, right after a source record is normalised and before it is staged, hashed
  and checked: what a transform changes here is validated like anything else, and a changed transform list
  changes the content hash.
* ``before_load`` — in load, right before the staged (validated) record is mapped to what the target takes.

This module holds the engine (:func:`run_transforms`, pure) and the bookkeeping every job shares
(:class:`RecordTransforms`: skips counted, rejects quarantined, dry runs show the records after transforms).
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from starmamut.config import ShopConfig, TransformEntity, TransformPoint

if TYPE_CHECKING:  # the DAG file imports this module at parse time: no clients or database drivers
    from starmamut.jobs.common import JobContext

ENTITIES: tuple[TransformEntity, ...] = get_args(TransformEntity)
POINTS: tuple[TransformPoint, ...] = get_args(TransformPoint)
PLUGINS_DIR = Path(__file__).resolve().parents[2] / "plugins"
RECORDS_LOGGED = 100  # per hook and step: records shown at INFO (dry-run records, skips); the rest at DEBUG

log = logging.getLogger(__name__)


class TransformError(ValueError):
    """A configured transform cannot be used (not importable, not callable, not meant for that entity or point);
    the message names the shop, the entity, the point and the dotted path."""


@dataclass(frozen=True)
class Skip:
    """Leave this record out on purpose: counted as skipped in the report, never quarantined."""

    reason: str


@dataclass(frozen=True)
class Reject:
    """This record must not be loaded: it is quarantined with the transform's path as the check."""

    reason: str


@dataclass(frozen=True)
class TransformContext:
    """What a transform may want to know besides the record.

    ``source`` is the record as the source system gave it (the Starweb product or order), offered at
    ``after_mapping`` where the job has it, so a transform can carry a field the standard mapping leaves out;
    it is read-only by contract. ``job`` tells the direction (``products`` records differ between
    products_to_mamut and products_to_starweb).
    """

    shop_id: str
    job: str
    entity: TransformEntity
    point: TransformPoint
    dry_run: bool
    source: Mapping[str, Any] | None = None


TransformOutput = dict[str, Any] | Skip | Reject
Transform = Callable[[dict[str, Any], TransformContext], TransformOutput]


def applies_to(
    *entities: TransformEntity, points: Iterable[TransformPoint] = POINTS
) -> Callable[[Transform], Transform]:
    """Declare where a transform makes sense, so listing it elsewhere fails the run at once with a clear error
    instead of quarantining every record. Optional: an undecorated transform may be listed anywhere."""
    unknown = sorted(set(entities) - set(ENTITIES)) + sorted(set(points) - set(POINTS))
    if unknown or not entities:
        raise ValueError(f"applies_to: name at least one of {ENTITIES} and points of {POINTS}; unknown: {unknown}")

    def mark(function: Transform) -> Transform:
        function.entities = frozenset(entities)  # type: ignore[attr-defined]
        function.points = frozenset(points)  # type: ignore[attr-defined]
        return function

    return mark


@dataclass(frozen=True)
class TransformStep:
    """One configured transform: its dotted path (named in quarantine and logs) and the callable."""

    path: str
    function: Transform


@dataclass(frozen=True)
class TransformResult:
    """What a chain made of one record: kept (with the new record), skipped or rejected by ``transform``.

    ``key`` is the record's key as the deciding transform received it (when a key function was given): an
    earlier transform may have changed it (a SKU mapped to the shop's numbering), and the quarantine entry
    must carry the key the next run will see, or it could never be closed.
    """

    outcome: Literal["kept", "skipped", "rejected"]
    record: dict[str, Any] | None = None
    transform: str | None = None
    reason: str | None = None
    key: str | None = None


def ensure_plugins_on_path() -> None:
    """Airflow puts its plugins folder on sys.path in the DAG processor and workers; the CLI and the tests
    rely on this one place to add the project's ``plugins/``."""
    folder = str(PLUGINS_DIR)
    if PLUGINS_DIR.is_dir() and folder not in sys.path:
        sys.path.append(folder)


def load_transform(path: str) -> Transform:
    """Import the callable a dotted path names (``transforms.prices.round_to_whole_kronor``)."""
    ensure_plugins_on_path()
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError, or any error the plugin module raises while importing
        raise TransformError(
            f"{path}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
            f"transforms live in plugins/ ({PLUGINS_DIR})"
        ) from exc
    function = getattr(module, attribute, None)
    if function is None:
        raise TransformError(f"{path}: module {module_name!r} has no {attribute!r}")
    if not callable(function):
        raise TransformError(
            f"{path}: {type(function).__name__} is not callable; a transform is "
            "f(record, context) -> record | Skip | Reject"
        )
    return function


def transform_steps(shop: ShopConfig, entity: TransformEntity, point: TransformPoint) -> tuple[TransformStep, ...]:
    """The shop's transforms for one entity and point, loaded and checked; TransformError names what is wrong."""
    steps = []
    for path in shop.transforms.get(entity, {}).get(point, []):
        where = f"shop {shop.id}: transforms.{entity}.{point}"
        try:
            function = load_transform(path)
        except TransformError as exc:
            raise TransformError(f"{where}: {exc}") from exc.__cause__
        allowed_entities = getattr(function, "entities", None)
        allowed_points = getattr(function, "points", None)
        if allowed_entities is not None and entity not in allowed_entities:
            raise TransformError(f"{where}: {path}: works on {', '.join(sorted(allowed_entities))}, not {entity}")
        if allowed_points is not None and point not in allowed_points:
            raise TransformError(f"{where}: {path}: works at {', '.join(sorted(allowed_points))}, not {point}")
        steps.append(TransformStep(path, function))
    return tuple(steps)


def check_shop_transforms(shop: ShopConfig) -> None:
    """Load every transform a shop lists, so a typo shows before any run: the DAG file calls this for each shop
    when it is parsed, and a shop whose transforms cannot be loaded is left out with the error in the UI."""
    for entity, points in shop.transforms.items():
        for point in points:
            transform_steps(shop, entity, point)


def run_transforms(
    steps: Iterable[TransformStep],
    record: Mapping[str, Any],
    context: TransformContext,
    *,
    fixed: Iterable[str] = (),
    key: Callable[[Mapping[str, Any]], str] | None = None,
) -> TransformResult:
    """Apply the steps in order to a copy of ``record`` (the caller's record is never changed).

    ``fixed`` names the fields that identify the record at this point (its key in staging, say): a transform
    that changes one, or leaves the record without the fields ``key`` reads, is treated as failing, since the
    job could no longer tell which record it holds.
    """
    fixed = tuple(fixed)
    current: dict[str, Any] = copy.deepcopy(dict(record))
    current_key = key(current) if key is not None else None
    for step in steps:
        identity = {field: current.get(field) for field in fixed}
        next_key = None
        try:
            output = step.function(current, context)
        except Exception as exc:  # any failure of the plugin's code is this record's problem, not the batch's
            output = Reject(f"raised {type(exc).__name__}: {exc}")
        if isinstance(output, dict):
            changed = [field for field in fixed if output.get(field) != identity[field]]
            if changed:
                output = Reject(
                    f"changed {', '.join(map(repr, changed))}, which identifies the record at "
                    f"{context.point} and must stay as it is"
                )
            elif key is not None:
                try:
                    next_key = key(output)
                except (KeyError, TypeError, ValueError) as exc:
                    output = Reject(f"left the record without what makes its key ({type(exc).__name__}: {exc})")
        elif not isinstance(output, Skip | Reject):
            output = Reject(
                f"returned {type(output).__name__}; a transform returns the record (a dict), "
                "Skip(reason) or Reject(reason)"
            )
        if isinstance(output, Skip | Reject):
            return TransformResult(
                "skipped" if isinstance(output, Skip) else "rejected",
                transform=step.path,
                reason=output.reason,
                key=current_key,
            )
        current, current_key = output, next_key
    return TransformResult("kept", record=current, key=current_key)


class RecordTransforms:
    """A shop's transforms of one entity at one point of a job step, with the bookkeeping every job shares.

    ``apply`` returns the record after the transforms, or None when it must not go on. ``finish`` (once, at the
    end of the step) writes what the records earned and returns the counts: a rejected record is quarantined
    under ``staged_entity`` and its key with the transform's path as the check; a skipped one is only counted,
    and an open quarantine entry for it is closed (leaving it out is now intended). The writes wait for
    ``finish`` because ``apply`` runs inside the step's own staging transaction. A dry run writes nothing and
    logs each record after its transforms. Falsy when the shop lists no transforms here, so a step can skip any
    preparation. Not thread-safe: call it from the step's own thread.
    """

    def __init__(
        self,
        ctx: JobContext,
        batch_id: str,
        *,
        job: str,
        entity: TransformEntity,
        point: TransformPoint,
        staged_entity: str,
        key: Callable[[Mapping[str, Any]], str],
        fixed: Iterable[str] = (),
    ) -> None:
        self._ctx = ctx
        self._batch_id = batch_id
        self._job = job
        self._entity: TransformEntity = entity
        self._point: TransformPoint = point
        self._staged_entity = staged_entity
        self._key = key
        self._fixed = tuple(fixed)
        self._steps = transform_steps(ctx.shop, entity, point)
        self._skipped: list[str] = []
        self._rejected: list[TransformResult] = []
        self._logged = 0
        self._counts = {"skipped": 0, "rejected": 0}

    def __bool__(self) -> bool:
        return bool(self._steps)

    def apply(self, record: dict[str, Any], *, source: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        if not self._steps:
            return record
        shop = self._ctx.shop.id
        result = self._run(record, source)
        if result.outcome == "kept":
            if self._ctx.params.dry_run:
                self._log(
                    "dry run: shop %s: %s %s after %s transforms: %s",
                    shop,
                    self._entity,
                    result.key,
                    self._point,
                    json.dumps(result.record, ensure_ascii=False, sort_keys=True, default=str),
                )
            return result.record
        if result.outcome == "skipped":
            self._skipped.append(str(result.key))
            self._log(
                "shop %s: %s %s skipped by %s: %s", shop, self._entity, result.key, result.transform, result.reason
            )
        else:
            self._rejected.append(result)
            log.warning(
                "shop %s: %s %s quarantined by transform %s: %s",
                shop,
                self._entity,
                result.key,
                result.transform,
                result.reason,
            )
        return None

    def preview(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The record ``apply`` would return, without counting, logging or quarantining anything: for a pass
        that must look ahead (transforms are pure functions of record and context, so both passes agree)."""
        return self._run(record, None).record if self._steps else record

    def finish(self) -> dict[str, int]:
        """Quarantine the rejected records, close the entries of skipped ones; the step's counts so far."""
        store, shop = self._ctx.store, self._ctx.shop.id
        self._counts["skipped"] += len(self._skipped)
        self._counts["rejected"] += len(self._rejected)
        if not self._ctx.params.dry_run:
            for result in self._rejected:
                store.quarantine(
                    shop,
                    self._staged_entity,
                    str(result.key),
                    [{"check": str(result.transform), "reason": str(result.reason)}],
                    self._batch_id,
                )
            if self._skipped:
                still_open = {entry.key for entry in store.open_quarantine(shop, self._staged_entity)}
                store.resolve_quarantine(shop, self._staged_entity, still_open.intersection(self._skipped))
        self._skipped, self._rejected = [], []
        return dict(self._counts)

    def _run(self, record: dict[str, Any], source: Mapping[str, Any] | None) -> TransformResult:
        context = TransformContext(
            shop_id=self._ctx.shop.id,
            job=self._job,
            entity=self._entity,
            point=self._point,
            dry_run=self._ctx.params.dry_run,
            source=source,
        )
        return run_transforms(self._steps, record, context, fixed=self._fixed, key=self._key)

    def _log(self, message: str, *args: Any) -> None:
        """The first records of a step at INFO, the rest at DEBUG: a skip rule may match thousands every run."""
        self._logged += 1
        log.log(logging.INFO if self._logged <= RECORDS_LOGGED else logging.DEBUG, message, *args)
