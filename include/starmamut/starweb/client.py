"""Synchronous Starweb Shop API v2 client: token cache, pacing, retries, pagination, bounded concurrency.

Retry policy (what is retried, and why):

* ``Too Many Requests`` (HTTP 429, or any 4xx whose JSON ``error`` says so, as Starweb's own SDK checks), 408
  Request Timeout and 500 are retried for every method, POST included: the server answered that it did not
  do the work.
* 502, 503 and 504 come from what stands in front of Starweb, which may have passed the request on before it
  gave up. They are retried for every method but POST: a POST (other than ``/token``) may have created the
  entity, so it fails at once with :class:`StarwebAmbiguousWrite` and the caller looks the object up (by SKU or
  name) before sending it again. Any other 5xx is retried like 500.
* 501 Not Implemented and every other 4xx are final: the same request gets the same answer, so resending it
  (7 tries on each of 4 task attempts) only spends the shop's request budget.
* A request that never reached the server (connect error or connect/pool timeout) is retried for every method.
* A request that may have reached the server (read/write timeout, dropped connection, read error) is retried
  only for GET/PUT/PATCH/DELETE, which Starweb applies idempotently; a POST fails with
  :class:`StarwebAmbiguousWrite`. A resent DELETE that meets 404 after such a failure or a gateway error counts
  as done: the lost answer was to a deletion that happened.
* A 401 ``invalid_token`` renews the token and resends once; a second refusal is a :class:`StarwebAuthError`.

Back-off is exponential with jitter, capped at ``backoff_cap``; a ``Retry-After`` header is honoured up to
the same cap so a misbehaving header cannot stall a task for hours. Retrying one request stops after
``max_retries`` resends or, earlier, when the next wait would end more than ``max_retry_seconds`` after the
first failure. Every attempt, ``/token`` included, first waits for the shop's
:class:`~starmamut.starweb.ratelimit.RequestPacer`.

Listings are checked as they are read (:meth:`StarwebClient.iter_pages`): an error body in a 2xx, an empty
page before the last or fewer items than ``meta.pagination.total`` raise :class:`StarwebIncompleteListing`
instead of ending the listing early, so a watermark never passes records that were not read.

Every answer's ``Date`` header is noted against the local clock; :meth:`StarwebClient.check_clock` raises
:class:`StarwebClockSkew` when the two differ by more than a job's overlap window allows.

The client secret and access tokens never reach logs, reprs or exception messages: texts that come from the
server or from httpx are scrubbed before use, of the secrets as sent and as a server may echo them
(URL-encoded, JSON-escaped, as Basic credentials), and httpx exceptions are not chained (their ``request``
carries the Authorization header).
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote, quote_plus

import httpx

from starmamut.starweb.errors import (
    StarwebAmbiguousWrite,
    StarwebAuthError,
    StarwebClockSkew,
    StarwebError,
    StarwebIncompleteListing,
    StarwebNotFound,
    StarwebRateLimited,
    StarwebUnavailable,
)
from starmamut.starweb.ratelimit import RequestPacer

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

TOKEN_PATH = "/token"
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600
TOO_MANY_REQUESTS = "Too Many Requests"
USER_AGENT = "starmamut-starweb-client/0.1"
REDACTED = "[redacted]"
# Answers from a gateway in front of Starweb: the request may have been passed on and carried out.
_GATEWAY_STATUSES = frozenset({502, 503, 504})

# Transport failures where the request provably never reached the server.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport failures after the request may have reached the server.
_MAYBE_APPLIED_ERRORS = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


@dataclass(frozen=True)
class StarwebCredentials:
    """One shop's API user; the secret is left out of repr/str so logging the object is safe."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)


Counter = Literal["requests_sent", "retries", "throttled", "token_fetches"]


@dataclass
class ClientStats:
    """Thread-safe request counters, reported per batch as "requests used"."""

    requests_sent: int = 0
    retries: int = 0
    throttled: int = 0
    token_fetches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def increment(self, counter: Counter) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests_sent": self.requests_sent,
                "retries": self.retries,
                "throttled": self.throttled,
                "token_fetches": self.token_fetches,
            }


@dataclass(frozen=True)
class _Failure:
    """A retryable outcome of one attempt: what to log and which error to raise when retries run out."""

    reason: str
    status: int | None
    error: str | None
    description: str | None
    exhausted: type[StarwebError]
    retry_after: float | None = None


@dataclass(frozen=True)
class _ClockReading:
    """Starweb's time (an answer's ``Date`` header) and the local time that answer arrived."""

    starweb_time: datetime
    local_time: datetime
    method: str
    path: str


class SharedTokens(Protocol):
    """Where a shop's clients share their access token (:class:`starmamut.starweb.token_cache.StagingTokenCache`)."""

    def token(self, fetch: Callable[[], tuple[str, float]], refused: str | None) -> tuple[str, float]:
        """(token, seconds it stays valid): a shared one unless missing, near expiry or ``refused``, else
        ``fetch()``'s, then shared."""
        ...


class StarwebClient:
    """A client for one shop; safe to share between threads (``map_concurrent`` does exactly that)."""

    def __init__(
        self,
        credentials: StarwebCredentials,
        *,
        pacer: RequestPacer | None = None,
        max_concurrency: int = 8,
        timeout: float = 30.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_seconds: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        token_cache: SharedTokens | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        if max_retry_seconds < 0:
            raise ValueError(f"max_retry_seconds must not be negative, got {max_retry_seconds}")
        self.credentials = credentials
        self.stats = ClientStats()
        self._pacer = pacer
        self._max_concurrency = max_concurrency
        self._max_retries = max_retries
        self._max_retry_seconds = max_retry_seconds
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._http = httpx.Client(
            base_url=credentials.base_url,
            # Connecting should be quick; a slow server answer gets the full timeout.
            timeout=httpx.Timeout(connect=min(10.0, timeout), read=timeout, write=timeout, pool=timeout),
            limits=httpx.Limits(max_keepalive_connections=max_concurrency + 1),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            transport=transport,
        )
        # per_page from the last meta.pagination seen, to page listings that come without meta.
        self._page_size: int | None = None
        self._token_lock = threading.Lock()
        self._token_cache = token_cache  # the shop's token shared with its other clients (starweb/token_cache.py)
        self._token: str | None = None
        self._token_renew_at = 0.0
        # Tokens handed out recently, scrubbed from every text along with the secret.
        self._issued_tokens: deque[str] = deque(maxlen=4)
        # The latest answer's Date header against the local clock, for check_clock.
        self._clock_reading: _ClockReading | None = None
        self.write_guard: Callable[[], None] | None = None
        """Called right before each attempt of every request but GET and ``/token``; it raises to stop the write
        (a load step sets it to check the shop's lease, see jobs.common.holding_leases)."""

    def __repr__(self) -> str:
        return f"StarwebClient({self.credentials!r})"

    # ----------------------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StarwebClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- plain verbs

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET ``path`` and return the whole envelope (``data`` and, on lists, ``meta``).

        A 2xx whose body carries an ``error`` is raised as a :class:`StarwebError`, not returned as data.
        """
        response = self._request("GET", path, params=params)
        envelope = self._json(response, "GET", path)
        if "error" in envelope:
            error, description = self._error_fields(response)
            raise StarwebError(response.status_code, error, description, "GET", path)
        return envelope

    def post(self, path: str, json: Any) -> dict[str, Any]:
        return self._json(self._request("POST", path, json_body=json), "POST", path)

    def put(self, path: str, json: Any) -> dict[str, Any]:
        return self._json(self._request("PUT", path, json_body=json), "PUT", path)

    def patch(self, path: str, json: Any) -> dict[str, Any]:
        return self._json(self._request("PATCH", path, json_body=json), "PATCH", path)

    def delete(self, path: str) -> None:
        self._request("DELETE", path)

    def iter_pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of ``data[]`` of a paged listing (``/products``, ``/orders``), following
        ``meta.pagination``; one page in memory.

        The first request carries no ``page``; later ones ask for ``current_page + 1`` until ``total_pages``
        is reached.

        Raises :class:`StarwebIncompleteListing` where the answers do not add up, rather than end early and
        let a watermark pass records never read: a 2xx with an ``error`` or without a ``data`` list, a page
        without ``meta.pagination`` (the spec pages these listings, so its absence means the answer cannot be
        told complete), an empty page before the last, or, once the last page is read, fewer items than its
        ``meta.pagination.total``. A caller that stops early never meets the last check.
        """
        query = dict(params or {})
        received = 0
        while True:
            envelope = self._listing_page(path, query)
            items = envelope["data"]
            pagination = self._pagination(envelope, path, query.get("page", 1))
            yield from items
            received += len(items)
            page, last_page, total = pagination["current_page"], pagination["total_pages"], pagination["total"]
            if page >= last_page:
                if received < total:
                    raise self._incomplete(
                        path, page, f"{received} items over {page} pages, but meta.pagination.total is {total}"
                    )
                return
            if not items:
                raise self._incomplete(path, page, f"empty, but meta.pagination says {last_page} pages")
            query["page"] = page + 1

    def _pagination(self, envelope: Mapping[str, Any], path: str, page: int) -> Mapping[str, Any]:
        """The ``meta.pagination`` of a page of a paged listing; without it the answer cannot be told
        complete. Learns the page size first: the variant listings, which answer without meta, rely on it."""
        pagination = (envelope.get("meta") or {}).get("pagination")
        if not isinstance(pagination, Mapping):
            raise self._incomplete(path, page, "no meta.pagination in a paged listing")
        self._page_size = pagination["per_page"]
        return pagination

    def _iter_pages_without_meta(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Items of a listing that takes ``page`` but answers without ``meta`` (product variants).

        A page shorter than a full page ends the listing. The full page size is the ``per_page`` this
        client last saw in any ``meta.pagination`` (Starweb uses one page size; taken as given, not
        documented); until it has seen one, it asks for pages until one comes back empty.
        """
        query = dict(params or {})
        page = 1
        while True:
            items = self._listing_page(path, query)["data"]
            yield from items
            if not items or (self._page_size is not None and len(items) < self._page_size):
                return
            page += 1
            query["page"] = page

    def _listing_page(self, path: str, query: Mapping[str, Any]) -> dict[str, Any]:
        """One page of a listing, checked to carry a ``data`` list and no ``error``."""
        response = self._request("GET", path, params=query)
        envelope = self._json(response, "GET", path)
        page = query.get("page", 1)
        if "error" in envelope:
            error, description = self._error_fields(response)
            detail = ": ".join(part for part in (error, description) if part)
            raise self._incomplete(path, page, f"HTTP {response.status_code} with an error body ({detail})")
        if not isinstance(envelope.get("data"), list):
            raise self._incomplete(path, page, f"HTTP {response.status_code} without a data list")
        return envelope

    @staticmethod
    def _incomplete(path: str, page: int, problem: str) -> StarwebIncompleteListing:
        return StarwebIncompleteListing(None, "incomplete_listing", f"page {page}: {problem}", "GET", path)

    def map_concurrent(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``map(fn, items)`` on a pool of ``max_concurrency`` threads, results in input order.

        Items are pulled lazily and at most ``max_concurrency`` calls are in flight or waiting to be consumed,
        so this runs over 100k items in constant memory. The first exception is raised at its item's position;
        calls not yet started are cancelled, also when the caller stops iterating early.
        """
        source = iter(items)
        with ThreadPoolExecutor(max_workers=self._max_concurrency, thread_name_prefix="starweb") as pool:
            pending: deque[Future[R]] = deque(
                pool.submit(fn, item) for item in itertools.islice(source, self._max_concurrency)
            )
            try:
                while pending:
                    result = pending.popleft().result()
                    for item in itertools.islice(source, 1):
                        pending.append(pool.submit(fn, item))
                    yield result
            finally:
                for future in pending:
                    future.cancel()

    def test_connection(self) -> tuple[bool, str]:
        """Obtain a token and read ``/shop``; the message is meant for a person (Airflow's "Test" button)."""
        try:
            shop = self.get_shop()
        except StarwebAuthError as exc:
            reason = exc.error_description or exc.error or f"HTTP {exc.status}"
            return (
                False,
                f"Starweb refused the credentials of client {self.credentials.client_id!r}: {reason}",
            )
        except StarwebNotFound as exc:
            if exc.path == TOKEN_PATH:
                return False, f"No Starweb shop answers at {self.credentials.base_url}: check the base URL"
            return False, str(exc)
        except StarwebError as exc:
            return False, f"Could not reach Starweb at {self.credentials.base_url}: {exc}"
        return (
            True,
            f"Connected to Starweb shop {shop.get('name')!r} ({shop.get('idCode')}) as {self.credentials.client_id!r}",
        )

    def check_clock(self, max_skew: timedelta) -> None:
        """Raise :class:`StarwebClockSkew` when this worker's clock and Starweb's differ by more than ``max_skew``.

        Compares the ``Date`` header of the latest answer this client received with the local time it arrived;
        only a client that has received none reads ``/shop`` for one. ``Date`` counts whole seconds, so the
        reading is good to about a second plus the answer's travel time: ``max_skew`` should be well above that
        (a job's overlap window is minutes).
        """
        if self._clock_reading is None:
            self.get_shop()
        reading = self._clock_reading
        if reading is None:
            raise StarwebError(
                None, "no_date_header", "Starweb's answers carry no Date header to compare clocks", "GET", "/shop"
            )
        if abs(reading.starweb_time - reading.local_time) > max_skew:
            raise StarwebClockSkew(reading.starweb_time, reading.local_time, max_skew, reading.method, reading.path)

    # ----------------------------------------------------------------------------------------- typed reads

    def iter_products(
        self,
        *,
        updated_since: datetime | None = None,
        include: Sequence[str] = (),
        filter_sku: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """All products (ProductModel dicts), optionally only those modified at or after ``updated_since``."""
        params: dict[str, Any] = {}
        if updated_since is not None:
            params["updatedSince"] = _iso8601(updated_since)
        if filter_sku is not None:
            params["filterSku"] = filter_sku
        if include:
            params["include"] = ",".join(include)
        return self.iter_pages("/products", params)

    def products_page(self, page: int, include: Sequence[str] = ()) -> tuple[list[dict[str, Any]], int]:
        """One page of ``/products`` and the number of pages, for callers that fetch pages concurrently or
        resume at a page; like :meth:`iter_pages` it learns the page size the variant listings rely on, and
        raises :class:`StarwebIncompleteListing` for an error body or an empty page before the last."""
        envelope = self._listing_page("/products", {**_include(include), "page": page})
        items = envelope["data"]
        total_pages = int(self._pagination(envelope, "/products", page)["total_pages"])
        if not items and page < total_pages:
            raise self._incomplete("/products", page, f"empty, but meta.pagination says {total_pages} pages")
        return items, total_pages

    def get_product(self, product_id: int, include: Sequence[str] = ()) -> dict[str, Any]:
        return self.get(f"/products/{int(product_id)}", _include(include))["data"]

    def iter_variants(self, product_id: int, include: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        return self._iter_pages_without_meta(f"/products/{int(product_id)}/variants", _include(include))

    def list_variant_stocks(self, product_id: int, variant_id: int) -> list[dict[str, Any]]:
        """A variant's stock at every stock location that holds some (no listing include carries these)."""
        return self.get(f"/products/{int(product_id)}/variants/{int(variant_id)}/stocks")["data"]

    def iter_orders(
        self,
        *,
        created_after: datetime | None = None,
        include_non_complete_payments: bool = False,
        sort_by: str = "createdAt",
        sort_order: str = "ASC",
        include: Sequence[str] = (),
    ) -> Iterator[dict[str, Any]]:
        """Orders created at or after ``created_after`` (orders have no updatedSince), in the given order."""
        params: dict[str, Any] = {
            "sortBy": sort_by,
            "sortOrder": sort_order,
            "includeNonCompletePayments": "true" if include_non_complete_payments else "false",
        }
        if created_after is not None:
            params["ordersCreatedAfter"] = _iso8601(created_after)
        return self.iter_pages("/orders", params | _include(include))

    def get_order(self, order_id: int, include: Sequence[str] = ()) -> dict[str, Any]:
        return self.get(f"/orders/{int(order_id)}", _include(include))["data"]

    def list_order_statuses(self) -> list[dict[str, Any]]:
        return self.get("/order-statuses")["data"]

    def list_pricelists(self) -> list[dict[str, Any]]:
        return self.get("/pricelists")["data"]

    def list_stock_statuses(self) -> list[dict[str, Any]]:
        return self.get("/product-stock-statuses")["data"]

    def list_stock_locations(self) -> list[dict[str, Any]]:
        return self.get("/stock-locations")["data"]

    def list_attributes(self) -> list[dict[str, Any]]:
        return self.get("/product-attributes")["data"]

    def list_attribute_values(self, attribute_id: int) -> list[dict[str, Any]]:
        return self.get(f"/product-attributes/{int(attribute_id)}/values")["data"]

    def get_shop(self) -> dict[str, Any]:
        return self.get("/shop")["data"]

    def list_vat_rates(self) -> list[dict[str, Any]]:
        return self.get("/vat-rates")["data"]

    # ----------------------------------------------------------------------------------------- token

    def _access_token(self, refused: str | None = None) -> str:
        """The cached token, fetched once for all threads when missing, near expiry, or just refused.

        ``refused`` is the token a 401 came back for: if another thread already replaced it, that new token
        is used instead of fetching yet another.
        """
        with self._token_lock:
            token = self._token
            if token is not None and token != refused and time.monotonic() < self._token_renew_at:
                return token
            requested_at = time.monotonic()
            if self._token_cache is None:
                token, lifetime = self._fetch_token()
            else:
                token, lifetime = self._token_cache.token(self._fetch_token, refused)
                self._issued_tokens.append(token)  # one fetched by another process is scrubbed too
            # Renew a little early so a request never leaves with a token that expires on the way.
            self._token_renew_at = requested_at + lifetime - min(60.0, lifetime / 10)
            self._token = token
            return token

    def _fetch_token(self) -> tuple[str, float]:
        self.stats.increment("token_fetches")
        form = {
            "grant_type": "client_credentials",
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        }
        response = self._request("POST", TOKEN_PATH, form=form, authenticated=False)
        body = self._json(response, "POST", TOKEN_PATH)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise StarwebAuthError(response.status_code, "invalid_response", "no access_token", "POST", TOKEN_PATH)
        self._issued_tokens.append(token)
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_TOKEN_LIFETIME_SECONDS
        logger.info("Fetched a Starweb access token for %s (expires in %.0f s)", self.credentials.client_id, lifetime)
        return token, lifetime

    # ----------------------------------------------------------------------------------------- transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        """Send with pacing, token handling and the retry policy of this module; return a 2xx response
        (or the 404 of a resent DELETE whose first attempt already deleted the entity)."""
        # /token may always be resent: a second token request has no side effect worth guarding.
        resend_after_maybe_applied = method != "POST" or path == TOKEN_PATH
        failures = 0
        first_failure_at: float | None = None
        refused_token: str | None = None
        token_renewed = False
        earlier_attempt_maybe_applied = False
        while True:
            headers: dict[str, str] = {}
            token: str | None = None
            if authenticated:
                token = self._access_token(refused_token)
                headers["Authorization"] = f"Bearer {token}"
            if self._pacer is not None:
                self._pacer.acquire()
            if self.write_guard is not None and method != "GET" and authenticated:
                self.write_guard()
            self.stats.increment("requests_sent")
            try:
                response = self._http.request(method, path, params=params, json=json_body, data=form, headers=headers)
            except httpx.RequestError as exc:
                failure = self._transport_failure(exc, method, path, resend_after_maybe_applied)
                earlier_attempt_maybe_applied |= isinstance(exc, _MAYBE_APPLIED_ERRORS)
            else:
                self._note_clock(response, method, path)
                if response.is_success:
                    return response
                if response.status_code == 404 and method == "DELETE" and earlier_attempt_maybe_applied:
                    # An earlier attempt deleted it and its answer was lost: what the caller asked is done.
                    logger.info("Starweb DELETE %s: already gone after a lost answer; taken as deleted", path)
                    return response
                error, description = self._error_fields(response)
                if response.status_code == 401 and token is not None and error == "invalid_token" and not token_renewed:
                    token_renewed = True
                    refused_token = token
                    self.stats.increment("retries")
                    logger.warning(
                        "Starweb %s %s: HTTP 401 invalid_token; renewing the token and resending",
                        method,
                        path,
                    )
                    continue
                # A gateway may have passed the request on before it gave up (see the DELETE case above).
                earlier_attempt_maybe_applied |= response.status_code in _GATEWAY_STATUSES
                failure = self._response_failure(response, error, description, method, path, resend_after_maybe_applied)
                if failure is None:
                    raise self._final_error(response.status_code, error, description, method, path)
            if failures >= self._max_retries:
                raise failure.exhausted(failure.status, failure.error, failure.description, method, path)
            delay = backoff_delay(failures + 1, failure.retry_after, base=self._backoff_base, cap=self._backoff_cap)
            if first_failure_at is None:
                first_failure_at = time.monotonic()
            if time.monotonic() - first_failure_at + delay > self._max_retry_seconds:
                logger.warning(
                    "Starweb %s %s: %s; giving up: waiting %.2f s more would pass the %.0f s retry budget",
                    method,
                    path,
                    failure.reason,
                    delay,
                    self._max_retry_seconds,
                )
                raise failure.exhausted(failure.status, failure.error, failure.description, method, path)
            failures += 1
            self.stats.increment("retries")
            logger.warning(
                "Starweb %s %s: %s (attempt %d of %d); retrying in %.2f s",
                method,
                path,
                failure.reason,
                failures,
                self._max_retries + 1,
                delay,
            )
            time.sleep(delay)

    def _transport_failure(self, exc: httpx.RequestError, method: str, path: str, resendable: bool) -> _Failure:
        """Classify a request that got no response; raise at once when resending could apply a write twice
        or cannot help (e.g. an undecodable body)."""
        kind = type(exc).__name__
        detail = self._scrub(str(exc)) or kind
        if isinstance(exc, _NOT_SENT_ERRORS) or (resendable and isinstance(exc, _MAYBE_APPLIED_ERRORS)):
            return _Failure(f"{kind}: {detail}", None, kind, detail, StarwebUnavailable)
        if isinstance(exc, _MAYBE_APPLIED_ERRORS):
            # Not chained: the httpx exception's request holds the Authorization header.
            raise StarwebAmbiguousWrite(None, kind, detail, method, path) from None
        raise StarwebError(None, kind, detail, method, path) from None

    def _response_failure(
        self,
        response: httpx.Response,
        error: str | None,
        description: str | None,
        method: str,
        path: str,
        resendable: bool,
    ) -> _Failure | None:
        """A retryable failure for throttling, request timeouts and server errors; None for answers a resend
        cannot change. A gateway error on a request that must not be resent raises StarwebAmbiguousWrite."""
        status = response.status_code
        reason = f"HTTP {status}" + "".join(f": {part}" for part in (error, description) if part)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if status == 429 or (400 <= status < 500 and error == TOO_MANY_REQUESTS):
            self.stats.increment("throttled")
            return _Failure(reason, status, error or TOO_MANY_REQUESTS, description, StarwebRateLimited, retry_after)
        if status in _GATEWAY_STATUSES and not resendable:
            raise StarwebAmbiguousWrite(status, error, description, method, path)
        if status == 408 or (status >= 500 and status != 501):
            return _Failure(reason, status, error, description, StarwebUnavailable, retry_after)
        return None

    @staticmethod
    def _final_error(status: int, error: str | None, description: str | None, method: str, path: str) -> StarwebError:
        if status == 401 or (path == TOKEN_PATH and status in (400, 403)):
            return StarwebAuthError(status, error, description, method, path)
        if status == 404:
            return StarwebNotFound(status, error, description, method, path)
        return StarwebError(status, error, description, method, path)

    def _error_fields(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """Starweb's ``error``/``error_description``, or a short scrubbed excerpt of a non-JSON body."""
        try:
            body = response.json()
        except ValueError:
            # Scrubbed before it is cut, so no secret can be cut in two and escape the scrubber.
            return None, self._scrub(response.text.strip())[:200] or None
        if not isinstance(body, dict):
            return None, None
        error = body.get("error")
        description = body.get("error_description")
        return (
            self._scrub(str(error)) if error is not None else None,
            self._scrub(str(description)) if description is not None else None,
        )

    def _json(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        """The response's JSON object; ``{}`` for an empty body (204)."""
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise StarwebError(response.status_code, "invalid_response", "body is not JSON", method, path) from None
        if not isinstance(body, dict):
            raise StarwebError(response.status_code, "invalid_response", "body is not a JSON object", method, path)
        return body

    def _note_clock(self, response: httpx.Response, method: str, path: str) -> None:
        """Remember the answer's ``Date`` against the local clock; an answer without a readable one is passed."""
        local_time = datetime.now(UTC)
        try:
            starweb_time = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
        except (TypeError, ValueError):
            return
        if starweb_time.tzinfo is not None:
            self._clock_reading = _ClockReading(starweb_time, local_time, method, path)

    def _scrub(self, text: str) -> str:
        """``text`` without the client secret and this client's access tokens, in every form a server may echo
        them in: as sent, URL-encoded, JSON-escaped, and as the Basic credentials ``client_id:client_secret``."""
        secret = self.credentials.client_secret
        forms = {form for value in (secret, *self._issued_tokens) if value for form in _echoed_forms(value)}
        if secret:
            basic = f"{self.credentials.client_id}:{secret}".encode()
            forms.add(base64.b64encode(basic).decode().rstrip("="))
        if not forms:
            return text
        # Longest first, so a form is not half replaced by a shorter one it contains; percent-escapes and \u
        # escapes come in either case.
        pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        return re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)


def backoff_delay(failures: int, retry_after: float | None, *, base: float, cap: float) -> float:
    """Seconds to wait before the next attempt: the server's Retry-After, else exponential back-off with
    jitter (half fixed, half random, so concurrent clients spread out); either way at most ``cap``."""
    if retry_after is not None:
        return min(retry_after, cap)
    ceiling = min(cap, base * 2 ** (failures - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _echoed_forms(value: str) -> set[str]:
    """``value`` as a server may echo it: raw, URL-encoded (path and form style) and JSON-escaped (also with
    PHP's escaped slashes and with non-ASCII characters kept)."""
    escaped = json.dumps(value)[1:-1]
    return {
        value,
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


def _iso8601(moment: datetime) -> str:
    """Starweb's timestamp format; a naive datetime is refused because its zone would be a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"updated_since must be timezone-aware, got naive {moment.isoformat()}")
    return moment.isoformat(timespec="seconds")


def _include(include: Sequence[str]) -> dict[str, str]:
    return {"include": ",".join(include)} if include else {}
