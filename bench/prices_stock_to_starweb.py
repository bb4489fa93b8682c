"""Benchmark: stock Mamut → Starweb against the ledger, with a large catalogue and a few changed values.

The sandbox runs in its own process with a generated catalogue (``--generate``); Mamut is a fresh SQLite mock
holding an article for each of the sandbox's SKUs, with stock in warehouse 1. The job (flow ``erp``, the
variant's own stock fed from warehouse 1) runs three times:

1. first run: binds every SKU to its variant (one pass over the shop's catalogue) and pushes every value,
   without added latency (it is set-up, and would take long);
2. unchanged run, with ``--latency-ms`` added to every request from here on: sends nothing;
3. after changing ``--changed-share`` of the stock levels in Mamut: the measured run.

For each run it reports requests (writes against changed values: the goal is equal), wall time, the time
the API was being waited for (the union of the intervals during which at least one request was in flight or
waiting for the budget) and the time spent outside that (Mamut reads, ledger, staging, Great Expectations),
plus the job process's peak memory.

    .venv/bin/python bench/prices_stock_to_starweb.py --skus 100000
    .venv/bin/python bench/prices_stock_to_starweb.py --skus 100000 --latency-ms 50 --concurrency 8
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO / "devtools"))  # starmamut_devtools: the sandbox and the Mamut mock

# bench/ is the script's directory, so its sibling benchmark is importable: it starts the generated sandbox.
from products_to_mamut import start_sandbox  # noqa: E402

from starmamut.config import Settings  # noqa: E402
from starmamut.jobs import stock_to_starweb  # noqa: E402
from starmamut.jobs.common import JobContext, RunParams, chunked  # noqa: E402
from starmamut.mamut.gateway import MamutGateway  # noqa: E402
from starmamut.mamut.schema_map import SchemaMap  # noqa: E402
from starmamut.staging.store import StagingStore  # noqa: E402
from starmamut.starweb.client import StarwebClient, StarwebCredentials  # noqa: E402
from starmamut.starweb.ratelimit import FilePacer, RequestPacer  # noqa: E402
from starmamut_devtools.mamut_mock import create_mock_company_database, sqlite_odbc_string  # noqa: E402
from starmamut_devtools.sandbox.demo_data import generate_catalogue  # noqa: E402

INSERT_CHUNK = 5000


class ApiWaitClock:
    """Wall time during which at least one thread waits for the API (a request in flight, or the budget)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = 0
        self._since = 0.0
        self.seconds = 0.0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._lock:
            if self._waiting == 0:
                self._since = time.perf_counter()
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1
                if self._waiting == 0:
                    self.seconds += time.perf_counter() - self._since


class TimedTransport(httpx.BaseTransport):
    """The default transport, with each request (body read included) counted as waiting for the API."""

    def __init__(self, clock: ApiWaitClock, connections: int) -> None:
        self._clock = clock
        self._inner = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=connections))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._clock.waiting():
            response = self._inner.handle_request(request)
            response.read()
        return response

    def close(self) -> None:
        self._inner.close()


class TimedPacer:
    """A pacer whose waits count as waiting for the API (the budget is the API's limit)."""

    def __init__(self, pacer: RequestPacer, clock: ApiWaitClock) -> None:
        self._pacer = pacer
        self._clock = clock

    def acquire(self) -> float:
        with self._clock.waiting():
            return self._pacer.acquire()


def catalogue_for(target_skus: int) -> tuple[int, list[str]]:
    """The number of generated products whose variants give at least ``target_skus`` SKUs, and those SKUs."""
    skus: list[str] = []
    for products, body in enumerate(generate_catalogue(10**9), start=1):
        skus.extend(variant["sku"] for variant in body["variants"])
        if len(skus) >= target_skus:
            return products, skus
    raise AssertionError("unreachable: the generator is unbounded for this purpose")


def seed_mamut(gateway: MamutGateway, skus: list[str]) -> dict[str, int]:
    """An article per SKU with stock in warehouse 1 (0–50 on hand, some reserved); returns keys by SKU."""
    rng = random.Random(1)
    with gateway.transaction() as tx:
        for chunk in chunked(skus, INSERT_CHUNK):
            tx.insert_many(
                "product",
                [
                    {"sku": sku, "name": f"Artikel {sku}", "vat_code": 1, "price_out": Decimal(rng.randint(50, 900))}
                    for sku in chunk
                ],
            )
        keys = {row["sku"]: row["product_key"] for row in tx.select("product", ["sku", "product_key"])}
        for chunk in chunked(skus, INSERT_CHUNK):
            tx.insert_many(
                "product_stock",
                [
                    {
                        "product_key": keys[sku],
                        "warehouse_id": 1,
                        "qty_in_stock": Decimal(rng.randint(0, 50)),
                        "qty_reserved": Decimal(rng.choice((0, 0, 0, 1))),
                        "qty_ordered": Decimal(0),
                    }
                    for sku in chunk
                ],
            )
    return keys


def change_stock(gateway: MamutGateway, keys: dict[str, int], skus: list[str], share: float) -> int:
    """Raise the on-hand quantity of ``share`` of the SKUs by 7 (each a different shop value); returns how many."""
    chosen = random.Random(2).sample(skus, round(len(skus) * share))
    with gateway.transaction() as tx:
        for sku in chosen:
            [row] = tx.select("product_stock", ["qty_in_stock"], where={"product_key": keys[sku], "warehouse_id": 1})
            tx.update(
                "product_stock",
                {"qty_in_stock": row["qty_in_stock"] + 7},
                {"product_key": keys[sku], "warehouse_id": 1},
            )
    return len(chosen)


def timed_run(ctx: JobContext, clock: ApiWaitClock) -> dict[str, Any]:
    """One job run, with per-step wall times and the API-wait share."""
    clock.seconds = 0.0
    steps: dict[str, float] = {}
    started = time.perf_counter()
    extracted = stock_to_starweb.extract(ctx)
    steps["extract"] = time.perf_counter() - started
    mark = time.perf_counter()
    validated = stock_to_starweb.validate(ctx, extracted["batch_id"])
    steps["validate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    loaded = stock_to_starweb.load(ctx, extracted["batch_id"])
    steps["load"] = time.perf_counter() - mark
    result = stock_to_starweb.report(ctx, extracted["batch_id"], extracted, validated, loaded)
    total = time.perf_counter() - started
    return {**result, "seconds": total, "api_seconds": clock.seconds, "steps": steps}


def describe(label: str, run: dict[str, Any], changed: int | None = None) -> str:
    outside = run["seconds"] - run["api_seconds"]
    steps = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in run["steps"].items())
    against = f" against {changed} changed values ({run['write_requests'] / changed:.3f})" if changed else ""
    return (
        f"{label}: {run['seconds']:8.2f} s ({steps}); write requests {run['write_requests']}{against}; "
        f"all requests {run['requests']}; waiting for the API {run['api_seconds']:.2f} s; "
        f"outside the API {outside:.2f} s ({outside / run['seconds']:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--changed-share", type=float, default=0.01)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="added to every request after the first run (which binds and pushes at 0 ms)",
    )
    parser.add_argument("--budget", type=int, default=0, help="requests per minute; 0 = unpaced")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    products, skus = catalogue_for(args.skus)
    clock = ApiWaitClock()
    setup_started = time.perf_counter()
    process, base_url = start_sandbox(argparse.Namespace(products=products, latency_ms=0.0))
    try:
        with tempfile.TemporaryDirectory() as work:
            work_dir = Path(work)
            odbc = sqlite_odbc_string(work_dir / "mamut.db")
            create_mock_company_database(odbc)
            gateway = MamutGateway(odbc, SchemaMap.load())
            keys = seed_mamut(gateway, skus)
            setup_seconds = time.perf_counter() - setup_started
            store = StagingStore.from_url(f"sqlite:///{work_dir / 'staging.db'}")
            store.migrate()
            settings = Settings.model_validate(
                {
                    "version": 1,
                    "mamut": {"vat_codes": {25: 1, 12: 2, 6: 3, 0: 4}},
                    "shops": {
                        "bench": {
                            "name": "Bench",
                            "flow": "erp",
                            "starweb_conn_id": "unused",
                            "stock_to_starweb": {"locations": [{"starweb": "variant", "warehouses": [1]}]},
                        }
                    },
                }
            )
            pacer = TimedPacer(FilePacer("bench", args.budget, work_dir), clock) if args.budget else None

            def open_starweb() -> StarwebClient:
                return StarwebClient(
                    StarwebCredentials(base_url, "demo.starmamut", "sandbox-secret"),
                    pacer=pacer,
                    max_concurrency=args.concurrency,
                    transport=TimedTransport(clock, args.concurrency + 1),
                )

            ctx = JobContext(
                settings=settings,
                shop=settings.shop("bench"),
                store=store,
                open_starweb=open_starweb,
                open_mamut=lambda: gateway,
                params=RunParams(),
            )
            first = timed_run(ctx, clock)
            admin_url = base_url.removesuffix("/api/v2") + "/_sandbox"
            httpx.post(f"{admin_url}/faults", json={"latency_ms": args.latency_ms}).raise_for_status()
            unchanged = timed_run(ctx, clock)
            changed = change_stock(gateway, keys, skus, args.changed_share)
            measured = timed_run(ctx, clock)
            gateway.close()
    finally:
        process.terminate()
        process.wait(timeout=30)

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"workload: {len(skus)} SKUs ({products} generated products), {changed} stock levels changed, "
        f"latency after the first run {args.latency_ms} ms, budget {args.budget or 'none'}/min, "
        f"concurrency {args.concurrency}; "
        f"set-up (sandbox start, Mamut seed) {setup_seconds:.1f} s"
    )
    print(describe("first run (bind + push all)", first))
    print(describe("unchanged run", unchanged))
    print(describe(f"{args.changed_share:.0%} changed", measured, changed))
    print(f"peak memory (job process): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
