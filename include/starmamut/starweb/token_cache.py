"""Starweb access tokens shared by every task of a shop, kept in staging with their expiry.

In the DAG each task is a process with a client of its own; without a shared token a migration fetched one per
task (24 ``POST /token`` at 10 000 products). :class:`StagingTokenCache` keeps the shop's token in staging
(table ``starweb_token``, one row per shop and API client id) and hands it to every client of the shop until
shortly before it expires; the row is locked while a client decides, so two processes that need a token at once
cost one ``/token``, and a token Starweb refused is replaced once, by whichever client saw the refusal first (the
others find the new one).

The token is a secret: the row holds it *sealed* (Fernet, as Airflow seals its own secrets) with a key derived
from the client secret, which is never stored, so neither the staging database nor a dump or log of its rows
gives a usable token; a row sealed under another secret (rotated) reads as absent. The client
adds every token it uses to the texts it scrubs.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:
    from starmamut.staging.store import StagingStore


def _key(client_secret: str, shop: str, client_id: str) -> bytes:
    return hmac.new(client_secret.encode(), f"starmamut token cache|{shop}|{client_id}".encode(), "sha256").digest()


def _fernet(key: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(key))


def seal(token: str, key: bytes) -> str:
    return _fernet(key).encrypt(token.encode()).decode()


def unseal(sealed: str, key: bytes) -> str | None:
    """The token, or None when ``sealed`` was not sealed with this key (another secret) or is damaged."""
    try:
        return _fernet(key).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        return None


def renew_margin(lifetime: float) -> float:
    """Seconds before expiry at which a token is no longer handed out (as the client renews its own)."""
    return min(60.0, lifetime / 10)


class StagingTokenCache:
    """A shop's token in staging; :meth:`token` is what :class:`~starmamut.starweb.client.StarwebClient` calls."""

    def __init__(self, store: StagingStore, shop: str, client_id: str, client_secret: str) -> None:
        self._store = store
        self._shop = shop
        self._client_id = client_id
        self._key = _key(client_secret, shop, client_id)

    def __repr__(self) -> str:
        return f"StagingTokenCache(shop={self._shop!r}, client_id={self._client_id!r})"

    def token(self, fetch: Callable[[], tuple[str, float]], refused: str | None) -> tuple[str, float]:
        """(token, seconds it stays valid): the stored one unless missing, near expiry or ``refused``; else
        ``fetch()`` is called (``/token``) and its token stored, all while the shop's row is locked."""
        result: list[tuple[str, float]] = []

        def decide(
            sealed: str | None, expires_at: datetime | None, lifetime: float | None
        ) -> tuple[str, datetime, float] | None:
            now = datetime.now(UTC)
            stored = unseal(sealed, self._key) if sealed else None
            if stored is not None and stored != refused and expires_at is not None and lifetime is not None:
                left = (expires_at - now).total_seconds()
                if left > renew_margin(lifetime):
                    result.append((stored, left))
                    return None
            requested_at = time.monotonic()
            token, fresh_lifetime = fetch()
            left = fresh_lifetime - (time.monotonic() - requested_at)
            result.append((token, fresh_lifetime))
            return seal(token, self._key), now + timedelta(seconds=left), fresh_lifetime

        self._store.shared_token(self._shop, self._client_id, decide)
        return result[0]
