"""Errors the Starweb client raises, one class per way a caller reacts to them.

Every message carries Starweb's own ``error``/``error_description`` plus the method and path, so an Airflow
task log says what failed where. The client scrubs its client secret and access token out of every text it
puts into these errors; nothing here ever holds request headers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

# Statuses with which Starweb refuses one record's request: its data, its existence or a feature it needs.
RECORD_LEVEL_STATUSES = frozenset({400, 404, 409, 422, 501})
_TOKEN_PATH = "/token"


class StarwebError(Exception):
    """A Starweb request failed for good (after any retries the failure allowed)."""

    def __init__(
        self,
        status: int | None,
        error: str | None,
        error_description: str | None,
        method: str,
        path: str,
    ) -> None:
        self.status = status
        self.error = error
        self.error_description = error_description
        self.method = method
        self.path = path
        super().__init__(self._message())

    def _message(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        detail = ": ".join(part for part in (self.error, self.error_description) if part)
        return f"Starweb {self.method} {self.path} failed ({status})" + (f": {detail}" if detail else "")

    def __reduce__(self) -> tuple[type[StarwebError], tuple[Any, ...]]:
        """Pickle by the constructor's arguments, so the error survives a trip between Celery processes."""
        return (type(self), (self.status, self.error, self.error_description, self.method, self.path))

    @property
    def is_record_level(self) -> bool:
        """Starweb refused this one record, not the run: the caller may note it, skip it and go on.

        True for HTTP 400, 404, 409, 422 and 501 on a request for one record: any write but ``/token``, or a
        GET that names an entity (``/products/7``, ``/products/7/variants``). False on a listing of a whole
        collection (``/products``, ``/shop``), where those codes mean the query or endpoint is wrong for every
        record, and for every other failure (credentials, request budget, outages, incomplete listings).
        """
        if self.status not in RECORD_LEVEL_STATUSES or self.path == _TOKEN_PATH:
            return False
        return self.method != "GET" or self.path.strip("/").count("/") >= 1


class StarwebAuthError(StarwebError):
    """Credentials were refused (``invalid_client``) or a fresh token was refused too: fix the Connection."""


class StarwebNotFound(StarwebError):
    """The entity (or, on ``/token``, the shop itself) does not exist."""


class StarwebRateLimited(StarwebError):
    """Starweb answered ``Too Many Requests`` until the retries ran out: the shop's budget is set too high."""


class StarwebUnavailable(StarwebError):
    """Server errors, timeouts or dropped connections outlasted the retries; a later task try may succeed."""


class StarwebAmbiguousWrite(StarwebUnavailable):
    """A POST got a gateway error (502/503/504), timed out after sending or lost its connection.

    Starweb may have created the object anyway, and a blind resend could create it twice, so the client does
    not resend it: the caller looks the object up (by SKU or name) and sends it again only if it is missing.
    """

    def _message(self) -> str:
        return (
            super()._message()
            + "; the write may have been applied, so it was not resent: look the object up (by SKU or name)"
            " before sending it again"
        )


class StarwebIncompleteListing(StarwebError):
    """A listing's answers do not add up: a 2xx with an error body or without a ``data`` list, an empty page
    before the last, or fewer items than ``meta.pagination.total``.

    Raised instead of ending the listing quietly, so a watermark never passes records that were not read; the
    description names the page and what was wrong. A later try usually reads the listing whole.
    """

    def _message(self) -> str:
        return (
            f"Starweb {self.method} {self.path} listing is incomplete: {self.error_description};"
            " stopped rather than skip records"
        )


class StarwebClockSkew(StarwebError):
    """This worker's clock and Starweb's (its ``Date`` header) differ by more than a job allows.

    Time filters such as ``updatedSince`` are written in the worker's time but applied in Starweb's: with a
    skew larger than a job's overlap window, records fall between two runs. Fix the worker's time sync.
    """

    def __init__(
        self, starweb_time: datetime, local_time: datetime, max_skew: timedelta, method: str, path: str
    ) -> None:
        self.starweb_time = starweb_time
        self.local_time = local_time
        self.max_skew = max_skew
        apart = abs((starweb_time - local_time).total_seconds())
        description = (
            f"Starweb's clock read {starweb_time.isoformat(timespec='seconds')} (Date header of {method} {path})"
            f" while this worker's read {local_time.isoformat(timespec='seconds')}: {apart:.0f} s apart,"
            f" more than the allowed {max_skew.total_seconds():.0f} s"
        )
        super().__init__(None, "clock_skew", description, method, path)

    def _message(self) -> str:
        return f"Starweb clock check failed: {self.error_description}"

    def __reduce__(self) -> tuple[type[StarwebError], tuple[Any, ...]]:
        return (type(self), (self.starweb_time, self.local_time, self.max_skew, self.method, self.path))
