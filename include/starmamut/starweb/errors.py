"""Errors the Starweb client raises, one class per way a caller reacts to them.

Every message carries Starweb's own ``error``/``error_description`` plus the method and path, so an Airflow
task log says what failed where. The client scrubs its client secret and access token out of every text it
puts into these errors; nothing here ever holds request headers.
"""

from __future__ import annotations


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

    def __reduce__(self) -> tuple[type[StarwebError], tuple[int | None, str | None, str | None, str, str]]:
        """Pickle by the constructor's arguments, so the error survives a trip between Celery processes."""
        return (type(self), (self.status, self.error, self.error_description, self.method, self.path))


class StarwebAuthError(StarwebError):
    """Credentials were refused (``invalid_client``) or a fresh token was refused too: fix the Connection."""


class StarwebNotFound(StarwebError):
    """The entity (or, on ``/token``, the shop itself) does not exist."""


class StarwebRateLimited(StarwebError):
    """Starweb answered ``Too Many Requests`` until the retries ran out: the shop's budget is set too high."""


class StarwebUnavailable(StarwebError):
    """Server errors, timeouts or dropped connections outlasted the retries; a later task try may succeed."""
