"""Field rules for request bodies, checked the same way whether data arrives over HTTP or from a test.

The rules mirror the writable fields of the spec's request models (types, nullability, lengths,
ranges). Unknown fields are refused rather than ignored, so a typo in a client shows up as a 400
naming the field instead of a write that silently did nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from starmamut_devtools.sandbox.errors import bad_request

SHOP_TIMEZONE = ZoneInfo("Europe/Stockholm")

FieldKind = Literal["str", "int", "num", "bool", "int_list", "list", "object"]


@dataclass(frozen=True)
class FieldRule:
    """What one JSON field may hold."""

    kind: FieldKind
    nullable: bool = False
    max_length: int | None = None
    min_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None


EXTERNAL_ID_RULES: dict[str, FieldRule] = {
    "externalId": FieldRule("str", nullable=True, max_length=40),
    "externalIdType": FieldRule("str", nullable=True, max_length=20),
}


def check_fields(
    body: Any,
    rules: Mapping[str, FieldRule],
    *,
    where: str,
    required: Iterable[str] = (),
    unsupported: Iterable[str] = (),
    read_only: Iterable[str] = (),
) -> dict[str, Any]:
    """Return a copy of ``body`` after checking every field against ``rules``; 400 naming ``where`` if not.

    ``unsupported`` names spec fields the sandbox does not model, refused with a message saying so;
    ``read_only`` names fields the spec marks readOnly (e.g. computed totals), refused as such.
    """
    if not isinstance(body, dict):
        raise bad_request(f"{where}: expected a JSON object, got {type(body).__name__}")
    for name in required:
        if name not in body:
            raise bad_request(f"{where}: field '{name}' is required")
    for name, value in body.items():
        if name in unsupported:
            raise bad_request(f"{where}.{name}: not supported by the sandbox")
        if name in read_only:
            raise bad_request(f"{where}.{name}: read-only, it cannot be written")
        rule = rules.get(name)
        if rule is None:
            raise bad_request(f"{where}: unknown field '{name}'")
        _check_value(value, rule, f"{where}.{name}")
    return dict(body)


def _check_value(value: Any, rule: FieldRule, where: str) -> None:
    if value is None:
        if not rule.nullable:
            raise bad_request(f"{where}: must not be null")
        return
    if rule.kind == "str":
        _check_string(value, rule, where)
    elif rule.kind == "int":
        if not _is_int(value):
            raise bad_request(f"{where}: expected an integer, got {value!r}")
        _check_range(value, rule, where)
    elif rule.kind == "num":
        if not _is_number(value):
            raise bad_request(f"{where}: expected a number, got {value!r}")
        _check_range(value, rule, where)
    elif rule.kind == "bool":
        if not isinstance(value, bool):
            raise bad_request(f"{where}: expected true or false, got {value!r}")
    elif rule.kind == "int_list":
        if not isinstance(value, list) or not all(_is_int(item) and item >= 1 for item in value):
            raise bad_request(f"{where}: expected a list of positive integers, got {value!r}")
    elif rule.kind == "object":
        if not isinstance(value, dict):
            raise bad_request(f"{where}: expected a JSON object, got {type(value).__name__}")
    elif not isinstance(value, list):
        raise bad_request(f"{where}: expected a list, got {type(value).__name__}")


def _check_string(value: Any, rule: FieldRule, where: str) -> None:
    if not isinstance(value, str):
        raise bad_request(f"{where}: expected a string, got {value!r}")
    if rule.max_length is not None and len(value) > rule.max_length:
        raise bad_request(f"{where}: longer than {rule.max_length} characters")
    if rule.min_length is not None and len(value) < rule.min_length:
        raise bad_request(f"{where}: shorter than {rule.min_length} characters")
    if rule.choices is not None and value not in rule.choices:
        raise bad_request(f"{where}: {value!r} is not one of {', '.join(rule.choices)}")
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        raise bad_request(f"{where}: {value!r} does not match {rule.pattern}")


def _check_range(value: float, rule: FieldRule, where: str) -> None:
    if rule.minimum is not None and value < rule.minimum:
        raise bad_request(f"{where}: {value!r} is below the minimum {rule.minimum:g}")
    if rule.maximum is not None and value > rule.maximum:
        raise bad_request(f"{where}: {value!r} is above the maximum {rule.maximum:g}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_list_of_objects(value: Any, where: str) -> list[dict[str, Any]]:
    """A JSON array whose items are objects (children like ``languages`` or ``variants``)."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise bad_request(f"{where}: expected a list of objects")
    return value


def check_decimal_string(value: str, where: str, *, minimum: float, maximum: float | None = None) -> None:
    """Fields such as ``defaultVatRate`` and ``costPrice`` are numbers sent as strings."""
    try:
        number = float(value)
    except ValueError:
        raise bad_request(f"{where}: {value!r} is not a number") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise bad_request(f"{where}: {value!r} is out of range")


def parse_timestamp(value: str, where: str) -> datetime:
    """ISO-8601 as Starweb sends it; a time without offset is read as shop time (Europe/Stockholm)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{where}: {value!r} is not an ISO-8601 timestamp (URL-encode the '+')") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHOP_TIMEZONE)
    return parsed


def format_timestamp(moment: datetime) -> str:
    """Seconds precision with the shop's UTC offset, e.g. ``2024-03-01T09:00:00+01:00``."""
    return moment.astimezone(SHOP_TIMEZONE).isoformat(timespec="seconds")
