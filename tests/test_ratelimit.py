"""The request pacer keeps one shop's budget across threads and processes, on a file and on Redis."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
import redis

from starmamut.starweb.ratelimit import (
    FilePacer,
    RedisPacer,
    default_pacer_directory,
    pacer_from_url,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
PER_MINUTE = 1200
INTERVAL = 60.0 / PER_MINUTE
# Recorded times are taken after acquire() returns, so a thread the OS schedules late shows up late; allow
# that much bunching (two slots) when checking that no window held more requests than the budget.
SCHEDULING_SLACK_SLOTS = 2


def require_redis() -> None:
    """Skip without the local Redis, except in CI where its absence is a broken set-up."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        reason = f"Redis does not answer at {REDIS_URL} ({type(exc).__name__}); the Redis pacer is untested"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(params=["file", "redis"])
def pacer_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        require_redis()
        return REDIS_URL
    return tmp_path.as_uri()


@pytest.fixture
def key() -> Iterator[str]:
    """A fresh key per test, so runs never see each other's schedule."""
    name = f"test:{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).delete(RedisPacer.KEY_PREFIX + name)


def assert_within_budget(times: list[float], burst: int) -> None:
    """No span [t_i, t_j] holds more sends than ``burst`` plus the slots that fit into it."""
    ordered = sorted(times)
    for first in range(len(ordered)):
        for last in range(first + 1, len(ordered)):
            sends = last - first + 1
            allowed = burst + (ordered[last] - ordered[first]) / INTERVAL + SCHEDULING_SLACK_SLOTS
            assert sends <= allowed, (
                f"{sends} sends within {ordered[last] - ordered[first]:.3f} s exceed the budget "
                f"({INTERVAL:.3f} s interval, burst {burst})"
            )


@pytest.mark.parametrize("burst", [1, 3])
def test_threads_share_one_budget(pacer_url: str, key: str, burst: int) -> None:
    pacer = pacer_from_url(pacer_url, key, PER_MINUTE, burst)
    per_thread, thread_count = 6, 4
    sent: list[float] = []
    sent_lock = threading.Lock()

    def send_some() -> None:
        for _ in range(per_thread):
            pacer.acquire()
            with sent_lock:
                sent.append(time.time())

    started = time.time()
    threads = [threading.Thread(target=send_some) for _ in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = per_thread * thread_count
    assert len(sent) == total
    assert max(sent) - started >= (total - burst) * INTERVAL
    assert_within_budget(sent, burst)


def _send_from_process(url: str, key: str, count: int, barrier: Barrier, results: multiprocessing.Queue) -> None:
    """Child process: its own pacer on the shared key, started together with its siblings."""
    pacer = pacer_from_url(url, key, PER_MINUTE)
    barrier.wait(timeout=60)
    started = time.time()
    sent = []
    for _ in range(count):
        pacer.acquire()
        sent.append(time.time())
    results.put((started, sent))


def test_processes_share_one_budget(pacer_url: str, key: str) -> None:
    context = multiprocessing.get_context("spawn")
    process_count, per_process = 3, 8
    barrier = context.Barrier(process_count)
    results = context.Queue()
    processes = [
        context.Process(target=_send_from_process, args=(pacer_url, key, per_process, barrier, results))
        for _ in range(process_count)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    started = min(start for start, _ in reports)
    sent = [moment for _, moments in reports for moment in moments]
    total = process_count * per_process
    assert len(sent) == total
    # Three separate budgets would finish in (per_process - 1) intervals; one shared budget needs total - 1.
    assert max(sent) - started >= (total - 1) * INTERVAL
    assert_within_budget(sent, burst=1)


def test_burst_goes_out_at_once_then_paces(pacer_url: str, key: str) -> None:
    pacer = pacer_from_url(pacer_url, key, per_minute=600, burst=3)
    assert [pacer.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pacer.acquire() > 0.05


def test_different_keys_do_not_interfere(pacer_url: str, key: str) -> None:
    other_key = f"{key}:other"
    shop_a = pacer_from_url(pacer_url, key, per_minute=120)
    shop_b = pacer_from_url(pacer_url, other_key, per_minute=120)
    shop_a_again = pacer_from_url(pacer_url, key, per_minute=120)
    try:
        assert shop_a.acquire() == 0.0
        assert shop_b.acquire() == 0.0  # shop A's next slot is half a second away; B does not wait for it
        assert shop_a_again.acquire() > 0.25  # a second pacer on A's key does
    finally:
        if isinstance(shop_b, RedisPacer):
            redis.Redis.from_url(REDIS_URL).delete(RedisPacer.KEY_PREFIX + other_key)


def test_torn_state_file_restarts_the_schedule(tmp_path: Path) -> None:
    pacer = FilePacer("shop:torn", PER_MINUTE, tmp_path)
    pacer.path.write_bytes(b"17000\x00\xff")
    assert pacer.acquire() == 0.0
    assert float(pacer.path.read_text()) > time.time() - INTERVAL


def test_file_names_keep_distinct_keys_apart(tmp_path: Path) -> None:
    slash = FilePacer("shop/a", PER_MINUTE, tmp_path)
    colon = FilePacer("shop:a", PER_MINUTE, tmp_path)
    assert slash.path != colon.path
    assert slash.path.parent == colon.path.parent == tmp_path


def test_pacer_from_url_picks_the_backend(tmp_path: Path) -> None:
    directory = tmp_path / "pacer state"
    from_file_url = pacer_from_url(directory.as_uri(), "shop:a", 1000)
    assert isinstance(from_file_url, FilePacer)
    assert from_file_url.path.parent == directory
    default = pacer_from_url(None, "shop:a", 1000)
    assert isinstance(default, FilePacer)
    assert default.path.parent == default_pacer_directory()
    assert isinstance(pacer_from_url(REDIS_URL, "shop:a", 1000), RedisPacer)
    with pytest.raises(ValueError, match="unsupported request pacer URL scheme 'http'"):
        pacer_from_url("http://127.0.0.1/", "shop:a", 1000)
    with pytest.raises(ValueError, match="local directory"):
        pacer_from_url("file://otherhost/tmp", "shop:a", 1000)


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (1000, 0)])
def test_meaningless_budgets_are_refused(tmp_path: Path, per_minute: int, burst: int) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        FilePacer("shop:a", per_minute, tmp_path, burst)


def test_redis_pacer_repr_hides_the_password() -> None:
    pacer = pacer_from_url("redis://:hunter2@127.0.0.1:6379/0", "shop:a", 1000)
    assert "hunter2" not in repr(pacer)
    assert "shop:a" in repr(pacer)
