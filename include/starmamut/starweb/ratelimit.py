"""One request budget per shop, shared by every thread and process that runs that shop's tasks.

Starweb allows about 1000 requests per minute per API user. Several Airflow tasks of one shop run at the
same time (on one host with the LocalExecutor, on many with Celery), each with its own thread pool, so pacing
inside one client is not enough: the budget has to live outside the process.

Both pacers use GCRA (virtual scheduling). The only state per key is the theoretical arrival time (TAT) of the
next request. ``acquire`` atomically reserves ``slot = max(tat, now - (burst - 1) * interval)``, stores
``slot + interval`` and then sleeps until ``slot`` *outside* the lock, so waiting callers never block each
other's reservations. ``burst`` is the number of requests that may go out back to back after an idle spell;
with ``burst=1`` any window of 60 s holds at most ``per_minute`` requests. (The textbook form with
``now - burst * interval`` lets ``burst + 1`` requests through at once, one more than the name promises.)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import redis


class RequestPacer(Protocol):
    """Something that decides when the next request may go out."""

    def acquire(self) -> float:
        """Block until this request may be sent; return the seconds spent waiting."""
        ...


def _interval(per_minute: int, burst: int) -> float:
    """Seconds between requests; rejects budgets that would make the pacer meaningless."""
    if per_minute < 1:
        raise ValueError(f"per_minute must be at least 1, got {per_minute}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst}")
    return 60.0 / per_minute


def _sleep_until_slot(slot_wait: float) -> float:
    if slot_wait > 0:
        time.sleep(slot_wait)
        return slot_wait
    return 0.0


class FilePacer:
    """GCRA with the TAT in a small file under ``flock``: shared by all threads and processes on one host.

    ``flock`` locks belong to an open file description, and every ``acquire`` opens the file anew, so threads
    of one process exclude each other exactly like separate processes do. Wall-clock ``time.time()`` is the
    clock because it is the one all processes on the host share.
    """

    def __init__(self, key: str, per_minute: int, directory: Path, burst: int = 1) -> None:
        self.key = key
        self.per_minute = per_minute
        self.burst = burst
        self._interval = _interval(per_minute, burst)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / _file_name(key)

    def __repr__(self) -> str:
        return f"FilePacer(key={self.key!r}, per_minute={self.per_minute}, burst={self.burst}, path={self.path})"

    def acquire(self) -> float:
        with open(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+b") as state:
            fcntl.flock(state, fcntl.LOCK_EX)
            state.seek(0)
            tat = _parse_tat(state.read())
            now = time.time()
            slot = max(tat, now - (self.burst - 1) * self._interval)
            state.seek(0)
            state.truncate()
            state.write(repr(slot + self._interval).encode("ascii"))
            state.flush()
        # Closing the file released the lock: sleeping here lets other callers reserve their own slots.
        return _sleep_until_slot(slot - now)


def _file_name(key: str) -> str:
    """A readable, collision-free file name for any key (keys may hold ':' or '/')."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:60]
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{readable}-{digest}.tat"


def _parse_tat(raw: bytes) -> float:
    """The stored TAT; an empty or torn file (a crash mid-write) just restarts the schedule."""
    try:
        return float(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return 0.0


# Redis's own clock (TIME) is the shared clock: Celery workers on different hosts may disagree on time.time().
# Lua numbers are doubles; values go in and out as "%.6f" strings because Redis truncates returned numbers to
# integers and Lua's tostring keeps only 14 significant digits.
_GCRA_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat, now - (burst - 1) * interval)
local new_tat = slot + interval
local ttl_ms = math.ceil((new_tat - now) * 1000) + 60000
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', ttl_ms)
return string.format('%.6f', slot - now)
"""


class RedisPacer:
    """GCRA in one Lua script on Redis: shared by Celery workers on any number of hosts.

    The key expires a minute after its schedule runs dry, so retired shops leave nothing behind.
    """

    KEY_PREFIX = "starmamut:pacer:"

    def __init__(self, key: str, per_minute: int, redis_url: str, burst: int = 1) -> None:
        self.key = key
        self.per_minute = per_minute
        self.burst = burst
        self._interval = _interval(per_minute, burst)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=10)
        self._script = self._redis.register_script(_GCRA_SCRIPT)

    def __repr__(self) -> str:
        # The URL may hold a Redis password, so it stays out of the repr.
        return f"RedisPacer(key={self.key!r}, per_minute={self.per_minute}, burst={self.burst})"

    def acquire(self) -> float:
        wait = float(self._script(keys=[self.KEY_PREFIX + self.key], args=[repr(self._interval), self.burst]))
        return _sleep_until_slot(wait)


def default_pacer_directory() -> Path:
    """Where FilePacer state lives when no URL is configured: per user, so permissions never clash."""
    return Path(tempfile.gettempdir()) / f"starmamut-pacer-{os.getuid()}"


def pacer_from_url(url: str | None, key: str, per_minute: int, burst: int = 1) -> RequestPacer:
    """Build the pacer a config names: ``file:///dir``, ``redis://host:port/db`` (or rediss/unix), or None."""
    if url is None:
        return FilePacer(key, per_minute, default_pacer_directory(), burst)
    scheme = urlparse(url).scheme
    if scheme == "file":
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file pacer URL must name a local directory (file:///path), got host {parsed.netloc!r}")
        return FilePacer(key, per_minute, Path(unquote(parsed.path)), burst)
    if scheme in ("redis", "rediss", "unix"):
        return RedisPacer(key, per_minute, url, burst)
    raise ValueError(f"unsupported request pacer URL scheme {scheme!r}: use file:///dir or redis://host:port/db")
