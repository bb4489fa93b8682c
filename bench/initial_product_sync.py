"""Benchmark: the initial product migration (``jobs/initial_product_sync.py``) in both directions, at scale.

Workload: ``N`` products from ``demo_data.generate_catalogue`` (~30 % Färg × Storlek, ~30 % Storlek only, the
rest single-variant; 10 000 products are ~38 500 SKUs). Starweb → Mamut: the sandbox holds the catalogue and
Mamut is a fresh SQLite mock with reference data only. Mamut → Starweb: the same families are bulk-inserted
into a fresh SQLite mock (a base price and stock in warehouse 1 per sellable article) and the shop is empty
(reference data only); the shop's default mappings push the base price to the master price list and the
stock to the variant. Staging is SQLite. Every case runs in its own subprocess, so each peak RSS is that
case's own; the sandbox runs in a process of its own too.

Modes, all with the API of the issue (150 ms per request, 1000 requests/min) scaled in time by ``--scale k``
(latency ÷ k, budget × k; the sandbox refuses with 429 a request beyond 1000 in any 60/k s window):

* ``paced``: the production client (``max_concurrency`` of the shop, a FilePacer at 1000·k/min).
* ``unpaced``: latency 0, no budget, no limit: what the machine does (SKUs per second end to end).
* ``baseline``: Starweb's PHP SDK's strategy: one request at a time, no pacing, on Too Many Requests wait
  5 s ÷ k and resend.

*Minimum requests* is computed from the catalogue, not from the job:

* Starweb → Mamut: a token, the shop's reference data (price lists, shop, attributes, the values of each of
  the 2 attributes), one ``/products`` page per 100 products, one variant listing per product with several
  variants (all have fewer than a page): see ``products_to_mamut.minimum_requests``.
* Mamut → Starweb: a token; the attributes and the values of each axis the catalogue uses; one listing of the
  empty shop; one ``POST`` per attribute value the shop lacks (0 here: the shop has all of them); the stock
  statuses (their ids go with the stock); one ``POST /products`` per family with its variants and their stock
  inline (the variant request model has ``stockQuantity`` and ``stockStatusId`` but no prices); the price
  lists (the mapped list's currency), then one ``PUT`` per SKU's price.

Reported per case: requests (every attempt on the wire, counted in the transport by route and status) against
the minimum, 429s (the same count as ``client.stats.throttled``), the share of the budget used while API-bound
(requests the sandbox accepted ÷ what the budget allows during the time at least one request was in flight or
waiting for the pacer; in the baseline also the waits after a 429), the wall time against the floor (minimum ÷
budget), SKUs per second end to end, and the peak RSS with its high-water mark after each step.

    .venv/bin/python bench/initial_product_sync.py --scale 20
    .venv/bin/python bench/initial_product_sync.py --scale 5 --case starweb_to_mamut:paced:10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO / "devtools"))  # starmamut_devtools: the sandbox and the Mamut mock

# bench/ is the script's directory, so the sibling benchmarks are importable.
from prices_stock_to_starweb import INSERT_CHUNK, ApiWaitClock, TimedPacer, TimedTransport  # noqa: E402
from products_to_mamut import minimum_requests as minimum_starweb_to_mamut  # noqa: E402
from products_to_mamut import start_sandbox  # noqa: E402

from starmamut.config import Settings, ShopConfig  # noqa: E402
from starmamut.jobs import initial_product_sync  # noqa: E402
from starmamut.jobs.common import JobContext, RunParams, chunked  # noqa: E402
from starmamut.jobs.initial_product_sync import MigrationOptions  # noqa: E402
from starmamut.mamut.articles import MamutArticle, MamutProductFamily  # noqa: E402
from starmamut.mamut.gateway import MamutGateway  # noqa: E402
from starmamut.mamut.products import PRODUCT, ProductRepository, StockLevel, article_columns  # noqa: E402
from starmamut.mamut.schema_map import SchemaMap, TableSpec  # noqa: E402
from starmamut.staging.store import StagingStore  # noqa: E402
from starmamut.starweb.client import StarwebClient, StarwebCredentials, _Failure  # noqa: E402
from starmamut.starweb.errors import StarwebRateLimited  # noqa: E402
from starmamut.starweb.ratelimit import FilePacer  # noqa: E402
from starmamut.starweb.token_cache import StagingTokenCache  # noqa: E402
from starmamut_devtools.latency_proxy import latency_proxy, read_stats  # noqa: E402
from starmamut_devtools.mamut_mock import create_mock_company_database, sqlite_odbc_string  # noqa: E402
from starmamut_devtools.sandbox.demo_data import COLOUR_VALUE_IDS, SIZE_VALUE_IDS, generate_catalogue  # noqa: E402

DIRECTIONS = ("starweb_to_mamut", "mamut_to_starweb")
MODES = ("paced", "unpaced", "baseline")
# What fits in ~25 minutes on the 2-core VM; Mamut → Starweb at 100 000 products is ~485 000 requests, more than
# the machine serves in that time at any scale (see bench/README.md).
DEFAULT_CASES = (
    "starweb_to_mamut:paced:10000",
    "starweb_to_mamut:unpaced:10000",
    "starweb_to_mamut:baseline:10000",
    "mamut_to_starweb:paced:2000",
    "mamut_to_starweb:baseline:2000",
    "mamut_to_starweb:paced:10000",
    "mamut_to_starweb:unpaced:10000",
    "starweb_to_mamut:paced:100000",
)
SDK_THROTTLE_WAIT_SECONDS = 5.0  # Starweb's PHP SDK (ErrorPlugin): on Too Many Requests wait 5 s and resend
SDK_MAX_RETRIES = 25  # the SDK's limit for /token; enough that no baseline request gives up
AXES = ("Färg", "Storlek")  # the sandbox's attribute names in the shop language (sv)
VALUE_NAMES = {value_id: name for name, value_id in (COLOUR_VALUE_IDS | SIZE_VALUE_IDS).items()}
VAT_CODES = {25: 1, 12: 2, 6: 3, 0: 4}
MAMUT_WAREHOUSE = 1
_ID_SEGMENT = re.compile(r"/\d+")


# ------------------------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Catalogue:
    products: int
    skus: int
    several_variants: int  # products whose variants take a listing of their own
    axis_values: frozenset[tuple[str, str]]  # (axis, value) pairs the families use


def describe_catalogue(products: int) -> Catalogue:
    skus = several = 0
    pairs: set[tuple[str, str]] = set()
    for body in generate_catalogue(products):
        variants = body["variants"]
        skus += len(variants)
        several += len(variants) > 1
        for variant in variants:
            pairs.update(axis_value_pairs(variant["attributeValueLinks"]))
    return Catalogue(products, skus, several, frozenset(pairs))


def axis_value_pairs(links: list[int]) -> list[tuple[str, str]]:
    """The (axis, value) names of a generated variant's links: Storlek alone, or Färg then Storlek."""
    axes = AXES[-len(links) :] if links else ()
    return [(axis, VALUE_NAMES[value_id]) for axis, value_id in zip(axes, links, strict=True)]


def minimum_mamut_to_starweb(catalogue: Catalogue, shop_values: Iterable[tuple[str, str]]) -> dict[str, int]:
    """The fewest requests that put this catalogue into an empty shop (see the module docstring)."""
    axes = {axis for axis, _ in catalogue.axis_values}
    return {
        "token": 1,
        "attribute reads": 1 + len(axes),
        "target listing": 1,
        "attribute creations": len(catalogue.axis_values - set(shop_values)),
        "stock statuses": 1,
        "product POSTs, stock inline": catalogue.products,
        "price lists + one PUT per SKU": 1 + catalogue.skus,
    }


def minimum_for(direction: str, catalogue: Catalogue) -> int:
    if direction == "starweb_to_mamut":
        return minimum_starweb_to_mamut(catalogue.products)
    shop_values = [(AXES[0], name) for name in COLOUR_VALUE_IDS] + [(AXES[1], name) for name in SIZE_VALUE_IDS]
    return sum(minimum_mamut_to_starweb(catalogue, shop_values).values())


# --------------------------------------------------------------------------------------- the Mamut side


def mamut_families(products: int) -> Iterator[tuple[MamutProductFamily, dict[str, int]]]:
    """The generated catalogue as Mamut families (what the ERP would hold), each with its SKUs' stock."""
    prices = random.Random(3)
    for body in generate_catalogue(products):
        name = next(language["name"] for language in body["languages"] if language["langCode"] == "sv")
        vat_code = VAT_CODES[int(body["defaultVatRate"])]
        price = Decimal(prices.randint(4900, 99900)) / 100
        stock = {variant["sku"]: variant["stockQuantity"] for variant in body["variants"]}
        articles = [
            MamutArticle(
                sku=variant["sku"],
                name=name,
                vat_code=vat_code,
                price_out=price,
                ean=variant["ean"],
                weight=Decimal(str(variant["weightInKg"])),
                unit="st",
                inactive=not variant["isActive"],
                variant_values=_pair([value for _, value in axis_value_pairs(variant["attributeValueLinks"])]),
            )
            for variant in body["variants"]
        ]
        if len(articles) == 1:
            yield MamutProductFamily(main=articles[0]), stock
            continue
        links = body["variants"][0]["attributeValueLinks"]
        main_sku = articles[0].sku.rsplit("-", len(links))[0]  # a variant's SKU is the base and a suffix per link
        axes = [axis for axis, _ in axis_value_pairs(links)]
        main = MamutArticle(
            sku=main_sku,
            name=name,
            vat_code=vat_code,
            price_out=price,
            use_store=False,
            inactive=all(article.inactive for article in articles),
            variant_axes=_pair(axes),
        )
        yield (
            MamutProductFamily(main=main, variants=tuple(replace(article, main_sku=main_sku) for article in articles)),
            stock,
        )


def _pair(items: list[str]) -> tuple[str | None, str | None]:
    padded: list[str | None] = [*items, None, None]
    return padded[0], padded[1]


def seed_mamut(gateway: MamutGateway, products: int) -> None:
    """Insert the families in bulk, a chunk at a time so the seed adds nothing to the job's peak memory
    (``upsert_family`` is a transaction per family: minutes at 100 000): main rows, then the variants linked
    by the keys read back, then their stock through ``ProductRepository.set_stock``."""
    table = gateway.schema_map.table(PRODUCT)
    repository = ProductRepository(gateway)
    for chunk in chunked(mamut_families(products), INSERT_CHUNK):
        with gateway.transaction() as tx:
            tx.insert_many(PRODUCT, [_article_row(table, family.main) for family, _ in chunk])
            mains = [family.main.sku for family, _ in chunk if family.variants]
            keys = {
                row["sku"]: row["product_key"]
                for row in tx.select(PRODUCT, ["sku", "product_key"], where_in=("sku", mains))
            }
            tx.insert_many(
                PRODUCT,
                [
                    _article_row(table, variant, keys[family.main.sku])
                    for family, _ in chunk
                    for variant in family.variants
                ],
            )
        repository.set_stock(
            [
                StockLevel(sku=sku, warehouse_id=MAMUT_WAREHOUSE, quantity=Decimal(quantity))
                for _, stock in chunk
                for sku, quantity in stock.items()
            ],
            now=datetime.now(UTC),
        )


def _article_row(table: TableSpec, article: MamutArticle, main_key: int | None = None) -> dict[str, Any]:
    """The article as ``upsert_family`` would insert it (canonical values, mapped columns only)."""
    raw = {
        "sku": article.sku,
        "name": article.name,
        "vat_code": article.vat_code,
        "price_out": article.price_out,
        "ean": article.ean,
        "weight": article.weight,
        "unit": article.unit,
        "inactive": article.inactive,
        "use_store": article.use_store,
        "main_product_key": main_key,
        "variant_value_1": article.variant_values[0],
        "variant_value_2": article.variant_values[1],
        "variant_axis_1": article.variant_axes[0],
        "variant_axis_2": article.variant_axes[1],
    }
    return {name: table.column(name).canonical(raw[name]) for name in article_columns(table)}


# -------------------------------------------------------------------------------------------- the client


class RouteTally:
    """Every attempt on the wire by method, route (ids as ``{id}``) and status; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, method: str, path: str, status: int) -> None:
        route = _ID_SEGMENT.sub("/{id}", path.split("/api/v2", 1)[-1])
        with self._lock:
            self.counts[f"{method} {route} {status}"] += 1


class TalliedTransport(TimedTransport):
    """The timed transport of the stock benchmark, also counting each attempt in a :class:`RouteTally`."""

    def __init__(self, clock: ApiWaitClock, connections: int, tally: RouteTally) -> None:
        super().__init__(clock, connections)
        self._tally = tally

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self._tally.add(request.method, request.url.path, response.status_code)
        return response


class SdkRetryClient(StarwebClient):
    """The PHP SDK's answer to Too Many Requests: wait a fixed time and resend (the client's exponential
    back-off replaced; used with ``max_concurrency=1`` and no pacer, as the SDK sends one request at a time)."""

    def __init__(self, *args: Any, throttle_wait: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._throttle_wait = throttle_wait

    def _response_failure(
        self, status: int, error: str | None, description: str | None, response: httpx.Response
    ) -> _Failure | None:
        failure = super()._response_failure(status, error, description, response)
        if failure is not None and failure.exhausted is StarwebRateLimited:
            return replace(failure, retry_after=self._throttle_wait)
        return failure


# ---------------------------------------------------------------------------------------------- one case


@dataclass(frozen=True)
class Case:
    direction: str
    mode: str
    products: int

    @classmethod
    def parse(cls, text: str) -> Case:
        direction, mode, products = text.split(":")
        if direction not in DIRECTIONS or mode not in MODES:
            raise argparse.ArgumentTypeError(
                f"case {text!r}: expected DIRECTION:MODE:PRODUCTS with a direction "
                f"of {DIRECTIONS} and a mode of {MODES}"
            )
        return cls(direction, mode, int(products))

    def __str__(self) -> str:
        return f"{self.direction}:{self.mode}:{self.products}"


def shop_settings(direction: str) -> Settings:
    """One shop with the default price and stock mappings (base → master list 1, warehouse 1 → variant)."""
    flow = "ecom" if direction == "starweb_to_mamut" else "erp"
    return Settings.model_validate(
        {
            "version": 1,
            "mamut": {"vat_codes": VAT_CODES},
            "shops": {"bench": {"name": "Bench", "flow": flow, "starweb_conn_id": "unused"}},
        }
    )


def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    """Set up the sandbox, Mamut and staging for one case, run the migration step by step, measure it."""
    paced = case.mode == "paced"
    latency_ms = 0.0 if case.mode == "unpaced" else args.latency_ms / args.scale
    per_minute = args.budget * args.scale
    concurrency = 1 if case.mode == "baseline" else args.concurrency
    clock, tally = ApiWaitClock(), RouteTally()
    clients: list[StarwebClient] = []
    setup_started = time.perf_counter()
    listed = case.products if case.direction == "starweb_to_mamut" else 0
    process, base_url = start_sandbox(argparse.Namespace(products=listed, latency_ms=latency_ms))
    try:
        if case.mode != "unpaced":
            admin_url = base_url.removesuffix("/api/v2") + "/_sandbox"
            httpx.post(
                f"{admin_url}/faults",
                json={"rate_limit_per_minute": args.budget, "rate_limit_window_seconds": 60 / args.scale},
            ).raise_for_status()
        with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
            work_dir = Path(work)
            os.environ["STARMAMUT_REPORTS_DIR"] = str(work_dir / "reports")
            odbc = sqlite_odbc_string(work_dir / "mamut.db")
            if args.mamut_delay_ms is not None:  # PostgreSQL mock at LAN distance: see mamut_at_lan_distance
                odbc = stack.enter_context(mamut_at_lan_distance(args.mamut_delay_ms, work_dir / "proxy.json"))
            create_mock_company_database(odbc)
            gateway = MamutGateway(odbc, SchemaMap.load())
            if case.direction == "mamut_to_starweb":
                seed_mamut(gateway, case.products)
            store = StagingStore.from_url(f"sqlite:///{work_dir / 'staging.db'}")
            store.migrate()
            settings = shop_settings(case.direction)
            pacer = TimedPacer(FilePacer("bench", per_minute, work_dir), clock) if paced else None
            credentials = StarwebCredentials(base_url, "demo.starmamut", "sandbox-secret")

            def open_starweb() -> StarwebClient:
                transport = TalliedTransport(clock, concurrency + 1, tally)
                if case.mode == "baseline":
                    client: StarwebClient = SdkRetryClient(
                        credentials,
                        max_concurrency=1,
                        max_retries=SDK_MAX_RETRIES,
                        transport=transport,
                        throttle_wait=SDK_THROTTLE_WAIT_SECONDS / args.scale,
                    )
                else:
                    # as a task builds it (airflow_adapter.starweb_client): one token for every client of the shop
                    tokens = StagingTokenCache(store, "bench", credentials.client_id, credentials.client_secret)
                    client = StarwebClient(
                        credentials, pacer=pacer, max_concurrency=concurrency, transport=transport, token_cache=tokens
                    )
                clients.append(client)
                return client

            ctx = JobContext(
                settings=settings,
                shop=settings.shop("bench"),
                store=store,
                open_starweb=open_starweb,
                open_mamut=lambda: gateway,
                params=RunParams(),
            )
            setup_seconds = time.perf_counter() - setup_started
            peaks = {"set-up": peak_mib()}
            trips_before, proxy_before = getattr(gateway, "round_trips", 0), proxy_round_trips(work_dir)
            result, steps, step_peaks = timed_migration(
                ctx, MigrationOptions.from_mapping({"direction": case.direction, "chunk_size": args.chunk_size})
            )
            peaks |= step_peaks
            mamut = {
                "backend": "sqlite" if args.mamut_delay_ms is None else "postgres",
                "delay_ms": args.mamut_delay_ms,
                "round_trips": getattr(gateway, "round_trips", 0) - trips_before,
                "statements": gateway.statements_executed,
                "proxy_round_trips": proxy_round_trips(work_dir) - proxy_before,
            }
            gateway.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
    stats = Counter[str]()
    for client in clients:
        stats.update(client.stats.as_dict())
    api_seconds = clock.seconds
    if case.mode == "baseline":  # one request at a time, so each wait after a 429 is time spent on the API alone
        api_seconds += stats["throttled"] * SDK_THROTTLE_WAIT_SECONDS / args.scale
    return {
        "case": str(case),
        "scale": args.scale,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "per_minute": per_minute if case.mode != "unpaced" else None,
        "setup_seconds": setup_seconds,
        "steps": steps,
        "seconds": sum(steps.values()),
        "api_seconds": api_seconds,
        "result": {key: value for key, value in result.items() if key != "report_file"},
        "stats": dict(stats),
        "clients": len(clients),
        "routes": dict(sorted(tally.counts.items())),
        "peak_mib": peak_mib(),
        "peak_mib_after": peaks,
        "mamut": mamut,
        "module_sha256": hashlib.sha256(Path(initial_product_sync.__file__).read_bytes()).hexdigest()[:12],
    }


@contextmanager
def mamut_at_lan_distance(delay_ms: float, stats_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL Mamut mock (local server, trust) behind the latency proxy: each round trip pays
    ``delay_ms`` each way, as a SQL Server across a LAN would. psqlODBC binds parameters itself
    (``UseServerSidePrepare=0``), one round trip per statement like SQL Server's driver (else it spends five)."""
    import psycopg2

    name = f"bench_mamut_{os.getpid()}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        with latency_proxy(("127.0.0.1", 5432), delay_ms, stats_path) as (host, port):
            yield (
                f"DRIVER={{PostgreSQL Unicode}};Server={host};Port={port};Database={name};Uid=postgres;"
                "UseServerSidePrepare=0;"
            )
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def proxy_round_trips(work_dir: Path) -> int:
    """The proxy's count so far (it writes it every second: wait for a fresh one)."""
    path = work_dir / "proxy.json"
    if not path.exists():
        return 0
    time.sleep(1.2)
    return int(read_stats(path).get("round_trips", 0))


def timed_migration(
    ctx: JobContext, options: MigrationOptions
) -> tuple[dict[str, Any], dict[str, float], dict[str, float]]:
    """``initial_product_sync.run`` step by step, with the wall time of each step and the RSS high-water mark
    after it (which step raises the peak)."""
    steps: dict[str, float] = {}
    peaks: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = step()
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - started
        peaks[name] = peak_mib()
        return value

    batch_id = timed("start", lambda: initial_product_sync.start(ctx, options))["batch_id"]
    chunks = timed("extract", lambda: initial_product_sync.extract(ctx, options, batch_id))
    results = [
        timed("chunks", lambda chunk=chunk: initial_product_sync.migrate_chunk(ctx, options, chunk)) for chunk in chunks
    ]
    pushed = [
        timed(f"push {job}", lambda job=job: initial_product_sync.push_values(ctx, options, job))
        for job in ("prices", "stock")
    ]
    result = timed("report", lambda: initial_product_sync.report(ctx, options, batch_id, results, pushed))
    values = {
        job: {key: push[key] for key in ("read", "changed", "loaded", "not_in_shop", "failed", "requests")}
        for job, push in zip(("prices", "stock"), pushed, strict=True)
        if not push.get("skipped")
    }
    return {**result, **values}, steps, peaks


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------ report


def summarise(run: dict[str, Any], catalogue: Catalogue) -> dict[str, Any]:
    """The figures of one case against the catalogue's minimum and the budget."""
    direction = run["case"].split(":")[0]
    minimum = minimum_for(direction, catalogue)
    on_wire = sum(run["routes"].values())
    throttled = sum(count for route, count in run["routes"].items() if route.endswith(" 429"))
    summary = {
        "minimum": minimum,
        "requests": on_wire,
        "throttled": throttled,
        "skus_per_second": catalogue.skus / run["seconds"],
    }
    if run["per_minute"]:
        per_second = run["per_minute"] / 60
        floor = minimum / per_second
        summary |= {
            "budget_share": (on_wire - throttled) / (run["api_seconds"] * per_second),
            "floor_seconds": floor,
            "wall_vs_floor": run["seconds"] / floor,
        }
    return summary


def describe(run: dict[str, Any], summary: dict[str, Any], catalogue: Catalogue) -> str:
    scale = run["scale"]
    steps = ", ".join(f"{name} {seconds:.1f}" for name, seconds in run["steps"].items())
    lines = [
        f"== {run['case']}: {catalogue.products} products, {catalogue.skus} SKUs "
        f"({catalogue.several_variants} with several variants); latency {run['latency_ms']:g} ms, "
        f"budget {run['per_minute'] or 'none'}/min, concurrency {run['concurrency']}, scale k={scale}",
        f"   set-up {run['setup_seconds']:.1f} s; run {run['seconds']:.1f} s ({steps}); "
        f"waiting for the API {run['api_seconds']:.1f} s; {summary['skus_per_second']:.0f} SKUs/s",
        f"   requests on the wire {summary['requests']} / minimum {summary['minimum']} "
        f"({summary['requests'] / summary['minimum']:.4f}); 429s {summary['throttled']}; "
        f"client stats {run['stats']} over {run['clients']} client(s); "
        f"job counted {run['result'].get('requests_this_run')}",
        f"   outcomes {run['result']}",
        f"   peak RSS {run['peak_mib']:.0f} MiB (after "
        + ", ".join(f"{name} {mib:.0f}" for name, mib in run["peak_mib_after"].items())
        + f"); jobs/initial_product_sync.py sha256 {run['module_sha256']}",
    ]
    if "budget_share" in summary:
        outside = run["seconds"] - run["api_seconds"]
        lines.append(
            f"   budget share while API-bound {summary['budget_share']:.1%}; wall {run['seconds']:.1f} s = "
            f"{summary['wall_vs_floor']:.3f} × floor {summary['floor_seconds']:.1f} s (real time "
            f"{summary['floor_seconds'] * scale / 60:.1f} min); outside the API {outside:.1f} s, "
            "which does not stretch with k"
        )
    mamut = run.get("mamut")
    if mamut:
        per_k = 1000 / catalogue.skus
        lines.append(
            f"   Mamut ({mamut['backend']}, {mamut['delay_ms'] or 0:g} ms each way): "
            f"{mamut['round_trips']} round trips "
            f"counted by the gateway ({mamut['round_trips'] * per_k:.0f} per 1 000 SKUs), "
            f"{mamut['proxy_round_trips']} seen by the proxy; {mamut['statements']} statements"
        )
    lines.append("   routes: " + "; ".join(f"{route} ×{count}" for route, count in run["routes"].items()))
    return "\n".join(lines)


def table_row(run: dict[str, Any], summary: dict[str, Any], catalogue: Catalogue) -> str:
    direction, mode, _ = run["case"].split(":")
    share = f"{summary['budget_share']:.1%}" if "budget_share" in summary else "—"
    versus = (
        f"{run['seconds']:.0f} s / {summary['floor_seconds']:.0f} s ({summary['wall_vs_floor']:.2f}×)"
        if "floor_seconds" in summary
        else f"{run['seconds']:.0f} s"
    )
    return (
        f"| {direction} | {mode} | {catalogue.products:,} ({catalogue.skus:,}) | {summary['requests']:,} / "
        f"{summary['minimum']:,} ({summary['requests'] - summary['minimum']:+,}) | {summary['throttled']} | "
        f"{share} | {versus} | {summary['skus_per_second']:,.0f} | {run['peak_mib']:.0f} MiB |"
    )


def run_in_subprocess(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(case),
        "--scale",
        str(args.scale),
        "--latency-ms",
        str(args.latency_ms),
        "--budget",
        str(args.budget),
        "--concurrency",
        str(args.concurrency),
        "--chunk-size",
        str(args.chunk_size),
        *(["--mamut-delay-ms", str(args.mamut_delay_ms)] if args.mamut_delay_ms is not None else []),
    ]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, cwd=REPO)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--case",
        type=Case.parse,
        action="append",
        help=f"DIRECTION:MODE:PRODUCTS, repeatable (default: {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument("--scale", type=float, default=20.0, help="k: latency ÷ k, budget and windows × k")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="real latency per request")
    parser.add_argument("--budget", type=int, default=1000, help="real requests per minute")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=ShopConfig.model_fields["max_concurrency"].default,
        help="paced and unpaced modes (default: the shop config's max_concurrency)",
    )
    parser.add_argument("--chunk-size", type=int, default=MigrationOptions.chunk_size)
    parser.add_argument(
        "--mamut-delay-ms",
        type=float,
        help="Mamut on PostgreSQL behind a loopback proxy adding this delay each way (default: SQLite in-process)",
    )
    parser.add_argument("--save", type=Path, help="also append each case's raw figures to this file (JSON lines)")
    parser.add_argument("--worker", type=Case.parse, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    if args.worker is not None:
        print(json.dumps(run_case(args.worker, args)))
        return
    rows: list[str] = []
    for case in args.case or [Case.parse(text) for text in DEFAULT_CASES]:
        run = run_in_subprocess(case, args)
        if args.save:
            with args.save.open("a", encoding="utf-8") as saved:
                saved.write(json.dumps(run) + "\n")
        catalogue = describe_catalogue(case.products)
        summary = summarise(run, catalogue)
        print(describe(run, summary, catalogue), flush=True)
        rows.append(table_row(run, summary, catalogue))
    print(
        "\n| direction | mode | products (SKUs) | requests / minimum | 429s | budget share while API-bound "
        "| wall / floor | SKUs/s | peak RSS |\n|---|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
