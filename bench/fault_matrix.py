"""Fault matrix (issue #14): every job killed for real at each of its fail points, and run twice at once.

Exactly-once used to be shown by raising an exception at a fail point, one loader at a time, in-process. Here
each job runs as its own process, as a task runs it (``airflow_adapter.job_context``: the config file, the
Airflow Connections from the environment), with staging and the Mamut mock on PostgreSQL and the shop's
sandbox answering over real HTTP on loopback. A fail point armed with ``STARMAMUT_FAILPOINT_PAUSE_DIR`` holds
the process at that line (see :mod:`starmamut.failpoints`), and the harness then:

* **kill** — SIGKILLs it there and runs the job to the end (a retry; one that stops because the killed
  process's lease has not expired yet is retried, as Airflow would);
* **second loader** — starts a second process of the same job and shop while the first is held, lets it run
  or stop, releases the first, waits for it and runs the job to the end.

Each cell is compared with a clean run of the same job in a world set up the same way. Outcome per cell:
duplicate Mamut rows (orders per external id, order/invoice/customer numbers, customers, articles per number),
records lost (a record of the clean run's end state missing or different), status PATCHes with e-mail or
payment capture per order change (the most any one got), duplicate Starweb products/values (variants per SKU,
attribute values per name). Every cell must be 0 / 0 / <= 1 / 0.

The jobs run in the worlds of tests/test_job_contract.py (config/examples/three_shops.yaml on one demo Mamut;
the job's prerequisites run first), the migration in both directions in those of
tests/test_initial_product_sync.py. Workers are forked from one process that imported the engine once (a
multiprocessing fork server), so a worker starts in milliseconds instead of the ~20 s an import of Great
Expectations and Airflow takes here; each is still a process of its own, with its own connections.

    .venv/bin/python bench/fault_matrix.py             # the full matrix -> bench/fault_matrix.md
    .venv/bin/python bench/fault_matrix.py --reduced   # the CI set (tests/test_fault_matrix.py runs it)

Exit status 1 when a cell is not 0 / 0 / <= 1 / 0, or could not be run to the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import yaml

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO / "include", REPO / "devtools", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from starmamut.config import Settings, load_settings  # noqa: E402
from starmamut.jobs.registry import JOBS, MIGRATION  # noqa: E402
from starmamut.mamut.catalogue import CatalogueReader  # noqa: E402
from starmamut.mamut.gateway import MamutGateway  # noqa: E402
from starmamut.mamut.orders import OrderRepository  # noqa: E402
from starmamut.mamut.products import ProductRepository  # noqa: E402
from starmamut.mamut.schema_map import SchemaMap  # noqa: E402
from starmamut.staging.store import StagingStore  # noqa: E402
from starmamut_devtools.mamut_mock import progress_demo_orders  # noqa: E402
from starmamut_devtools.sandbox import Sandbox, start_sandbox  # noqa: E402
from tests.fixtures.airflow import mamut_connection, starweb_connection  # noqa: E402
from tests.fixtures.databases import fresh_postgres_database, postgres_sqlalchemy_url  # noqa: E402
from tests.fixtures.mamut import fresh_mock_database  # noqa: E402
from tests.fixtures.processes import reap_with_this_process  # noqa: E402
from tests.test_initial_product_sync import CHUNK_SIZE, PER_PAGE, settings_for  # noqa: E402
from tests.test_initial_product_sync import SEEDS as MIGRATION_SEEDS  # noqa: E402
from tests.test_job_contract import world_of  # noqa: E402
from tests.test_multishop import BUDGET_SCALE, EXAMPLE, ThreeShops  # noqa: E402

OUTPUT = REPO / "bench" / "fault_matrix.md"
COMMAND = ".venv/bin/python bench/fault_matrix.py"
S2M, M2S = "starweb_to_mamut", "mamut_to_starweb"

KILL, SECOND_LOADER, CLEAN = "kill", "second loader", "none (clean run)"
REACH_TIMEOUT = 120.0  # a worker that neither reaches its fail point nor ends in this time is a harness fault
RUN_TIMEOUT = 300.0  # one job run in these worlds takes seconds
SECOND_LOADER_TIMEOUT = 90.0  # the second loader waits for the first's lease, then stops; released after this
LEASE = {"ttl_seconds": 10, "wait_seconds": 11}
"""The shortest lease the config allows, and a wait past it, so a retry takes over a killed loader's lease in
seconds, while a held (paused) loader's heartbeat keeps its lease and a second loader stops."""
LEASE_ERRORS = ("LeaseHeld", "LeaseLost")
RETRIES = 5  # attempts at running to the end, as a task's retries (a lease still held by a killed process)
RETRY_DELAY = 2.0

EDIT_CATALOGUE = "edit catalogue"
"""A step before a job: every Mamut family renamed, so products_to_starweb's next run updates the shop."""
CHANGES = "products_to_starweb (changes)"
MIGRATIONS = {direction: f"{MIGRATION} ({direction})" for direction in (S2M, M2S)}

# The fail points each row passes, and the pass a worker is held at (``name@n``: the n-th, so part of the work
# is done before it). Listed, not discovered, so a point a job no longer passes shows as "not reached".
FAILPOINTS: dict[str, tuple[str, ...]] = {
    "products_to_mamut": ("products_to_mamut.after_mamut_commit@2",),
    "products_to_starweb": ("products_to_starweb.after_starweb_create@2",),
    CHANGES: ("products_to_starweb.after_starweb_write@2",),
    "prices_to_starweb": ("prices_to_starweb.after_request@5",),
    "stock_to_starweb": ("stock_to_starweb.after_request@5",),
    "orders_to_mamut": ("orders_to_mamut.after_mamut_commit@2", "orders_to_mamut.after_write_back@2"),
    "order_status_to_starweb": ("order_status_to_starweb.before_patch@2", "order_status_to_starweb.after_patch@2"),
    MIGRATIONS[S2M]: (
        "initial_product_sync.after_page@2",
        "products_to_mamut.after_mamut_commit@2",
        "initial_product_sync.after_settle@2",
    ),
    MIGRATIONS[M2S]: (
        "products_to_starweb.after_starweb_create@2",
        "initial_product_sync.after_settle",
        "prices_to_starweb.after_request@5",
        "stock_to_starweb.after_request@2",
    ),
}

# --reduced (CI): a kill at one point per registered job, and two loaders at once where the second would write
# twice without the lease (order_status_to_starweb: both read "not yet in that status" and both PATCH).
REDUCED: dict[str, tuple[tuple[str, str], ...]] = {
    "products_to_mamut": ((KILL, "products_to_mamut.after_mamut_commit@2"),),
    "products_to_starweb": ((KILL, "products_to_starweb.after_starweb_create@2"),),
    "prices_to_starweb": ((KILL, "prices_to_starweb.after_request@5"),),
    "stock_to_starweb": ((KILL, "stock_to_starweb.after_request@5"),),
    "orders_to_mamut": (
        (KILL, "orders_to_mamut.after_mamut_commit@2"),
        (SECOND_LOADER, "orders_to_mamut.after_mamut_commit@2"),
    ),
    "order_status_to_starweb": (
        (KILL, "order_status_to_starweb.after_patch@2"),
        (SECOND_LOADER, "order_status_to_starweb.before_patch@2"),
    ),
}

PRELOAD = [
    "airflow.sdk",
    "great_expectations",
    "pandas",
    "starmamut.airflow_adapter",
    "starmamut.jobs.initial_product_sync",
    "starmamut.jobs.order_status_to_starweb",
    "starmamut.jobs.orders_to_mamut",
    "starmamut.quality.runner",
]
"""What the fork server imports once, so every worker starts with it loaded."""

# ------------------------------------------------------------------------------------------------ the matrix


@dataclass(frozen=True)
class JobCase:
    """A row of the matrix: a job, the shop and world it runs in, what runs before it, its Params."""

    name: str
    job: str
    shop: str
    world: str  # "three_shops", or the migration's direction
    before: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


def contract_world(job: str) -> tuple[str, str, tuple[str, ...]]:
    """The shop tests/test_job_contract.py runs the job for in the three-shop world, and what runs first."""
    example = Settings.model_validate(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    world, shop = world_of(cast(ThreeShops, SimpleNamespace(settings=example)), job)  # it reads only the settings
    return shop, "three_shops", world.before


def cases() -> list[JobCase]:
    """Every registered job in its contract world (products_to_starweb also sending updates), then the
    migration in both directions; in the order of the table."""
    rows = [JobCase(job, job, *contract_world(job)) for job in JOBS]
    shop, _, _ = contract_world("products_to_starweb")
    changes = JobCase(CHANGES, "products_to_starweb", shop, "three_shops", ("products_to_starweb", EDIT_CATALOGUE))
    rows.insert([row.name for row in rows].index("products_to_starweb") + 1, changes)
    return rows + [
        JobCase(name, MIGRATION, "demo", direction, params={"direction": direction, "chunk_size": CHUNK_SIZE})
        for direction, name in MIGRATIONS.items()
    ]


@dataclass
class Cell:
    """One job × fault: what the loaders did and the four counts against the clean run."""

    case: str
    fault: str
    failpoint: str | None
    story: list[str] = field(default_factory=list)
    mamut_duplicates: int = 0
    lost: int = 0
    patches: int = 0
    starweb_duplicates: int = 0
    problem: str | None = None  # the cell could not be run as meant (point not reached, never finished)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.problem is None
            and self.mamut_duplicates == 0
            and self.lost == 0
            and self.patches <= 1
            and self.starweb_duplicates == 0
        )


# ------------------------------------------------------------------------------------------------ workers


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process runs and where it writes its log and its outcome."""

    job: str
    shop: str
    params: Mapping[str, Any]
    env: Mapping[str, str]
    log: Path
    outcome: Path


def run_worker(spec: WorkerSpec) -> None:
    """A worker process: one job run as a task runs it (context from the config and the Connections)."""
    os.setsid()  # its own process group, so the watchdog can kill it and whatever it started
    with spec.log.open("ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    os.environ.update(spec.env)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s",
        force=True,
    )
    try:
        result = _run_job(spec.job, spec.shop, spec.params)
    except Exception as exc:
        traceback.print_exc()
        _write_json(spec.outcome, {"status": "error", "error": type(exc).__name__, "message": str(exc)})
        sys.exit(1)
    _write_json(spec.outcome, {"status": "ok", "result": result})


def _run_job(job: str, shop: str, params: Mapping[str, Any]) -> Any:
    from starmamut.airflow_adapter import job_context
    from starmamut.jobs import initial_product_sync

    ctx = job_context(shop, params)
    if job == MIGRATION:
        return initial_product_sync.run(ctx, initial_product_sync.MigrationOptions.from_mapping(params))
    return JOBS[job].steps().run(ctx)


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value, default=str), encoding="utf-8")
    partial.replace(path)


def start_worker_server(log_path: Path) -> None:
    """Start the fork server (its import chatter to ``log_path``); every worker is forked from it."""
    multiprocessing.set_forkserver_preload([*PRELOAD, __name__])
    saved = {fd: os.dup(fd) for fd in (1, 2)}  # the server inherits them: its output goes to the log
    try:
        with log_path.open("ab") as out:
            for fd in saved:
                os.dup2(out.fileno(), fd)
            multiprocessing.forkserver.ensure_running()
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


class Worker:
    """One job process; armed, it holds at its fail point until released or killed."""

    def __init__(self, label: str, spec: WorkerSpec, pause_dir: Path, failpoint: str | None) -> None:
        self.label = label
        self.spec = spec
        self.pause_dir = pause_dir
        self.point = failpoint.partition("@")[0] if failpoint else None
        self.process = multiprocessing.get_context("forkserver").Process(target=run_worker, args=(spec,))
        self.process.start()
        assert self.process.pid is not None
        self.watchdog = reap_with_this_process(self.process.pid)

    def wait_reached(self, timeout: float = REACH_TIMEOUT) -> bool:
        """Whether it is held at its fail point (False: it ended without passing it)."""
        assert self.point is not None
        reached = self.pause_dir / f"{self.point}.reached"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if reached.exists():
                return True
            if not self.process.is_alive():
                return reached.exists()
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.label} neither reached {self.point} nor ended in {timeout:.0f} s; see {self.spec.log}"
        )

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()

    def release(self) -> None:
        assert self.point is not None
        (self.pause_dir / f"{self.point}.go").touch()

    def join(self, timeout: float = RUN_TIMEOUT) -> str:
        """Wait for it to end; how it ended in words (``ok``, ``killed``, ``stopped (LeaseHeld)``, an error)."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
            self._done()
            return f"hung (killed after {timeout:.0f} s)"
        self._done()
        if self.process.exitcode == -signal.SIGKILL:
            return "killed"
        if not self.spec.outcome.exists():
            return f"exit {self.process.exitcode} without an outcome"
        outcome = json.loads(self.spec.outcome.read_text(encoding="utf-8"))
        if outcome["status"] == "ok":
            return "ok"
        if outcome["error"] in LEASE_ERRORS:  # the message names host, process and times: the table keeps the kind
            return f"stopped ({outcome['error']})"
        return f"{outcome['error']}: {_first_line(outcome['message'])}"

    def _done(self) -> None:
        self.watchdog.terminate()
        self.watchdog.wait()


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------------ worlds


class World:
    """One job's systems, thrown away afterwards: the Mamut mock and staging on PostgreSQL, the shop's sandbox
    on loopback, a config file and the Connections a task reads (``AIRFLOW_CONN_*``)."""

    def __init__(self, case: JobCase, directory: Path, sandbox: Sandbox, odbc: str, staging_url: str) -> None:
        self.case = case
        self.directory = directory
        self.sandbox = sandbox
        self.odbc = odbc
        self._workers: list[Worker] = []
        config = directory / "shops.yaml"
        config.write_text(yaml.safe_dump(self._config(), allow_unicode=True), encoding="utf-8")
        wall_clock = ZoneInfo(load_settings(config).mamut.timezone)  # Mamut's datetimes, as the workers read them
        self.gateway = MamutGateway(odbc, SchemaMap.load(timezone=wall_clock))
        credentials = starweb_connection(sandbox.base_url, sandbox.client_id, sandbox.client_secret)
        self.env = {
            "STARMAMUT_CONFIG": str(config),
            "STARMAMUT_REPORTS_DIR": str(directory / "reports"),
            "AIRFLOW_CONN_MAMUT_DEFAULT": mamut_connection(odbc),
            "AIRFLOW_CONN_STARMAMUT_STAGING": json.dumps(
                {"conn_type": "postgres", "extra": {"sqlalchemy_url": staging_url}}
            ),
            **{f"AIRFLOW_CONN_{conn_id.upper()}": credentials for conn_id in self._starweb_conn_ids()},
        }

    def _config(self) -> dict[str, Any]:
        if self.case.world == "three_shops":
            raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
            for shop in raw["shops"].values():
                shop["request_budget_per_minute"] *= BUDGET_SCALE
        else:
            raw = settings_for(self.case.world).model_dump(mode="json", exclude_unset=True)
            raw["shops"] = {shop.pop("id"): {**shop, "starweb_conn_id": "starweb_demo"} for shop in raw["shops"]}
        for shop in raw["shops"].values():
            shop["live"] = True  # a shop in shadow mode only dry-runs
        return {
            **raw,
            "lease": LEASE,
            "staging_conn_id": "starmamut_staging",
            "request_pacer_url": (self.directory / "pacer").as_uri(),
        }

    def _starweb_conn_ids(self) -> list[str]:
        """Every shop's Connection points at this world's one sandbox: only the case's shop runs."""
        shops = self._config()["shops"]
        return [shop["starweb_conn_id"] for shop in shops.values()]

    def start(self, label: str, failpoint: str | None = None, *, job: str | None = None) -> Worker:
        """A worker running the case's job (or ``job``, with no Params), held at ``failpoint`` if given."""
        name = f"{len(self._workers) + 1:02d}-{_slug(label)}"
        pause_dir = self.directory / f"pause-{name}"
        pause_dir.mkdir()
        env = dict(self.env)
        if failpoint:
            env |= {"STARMAMUT_FAILPOINT": failpoint, "STARMAMUT_FAILPOINT_PAUSE_DIR": str(pause_dir)}
        spec = WorkerSpec(
            job=job or self.case.job,
            shop=self.case.shop,
            params={} if job else dict(self.case.params),
            env=env,
            log=self.directory / f"{name}.log",
            outcome=self.directory / f"{name}.json",
        )
        worker = Worker(label, spec, pause_dir, failpoint)
        self._workers.append(worker)
        return worker

    def close(self) -> None:
        """Kill a worker still running (a cell that failed half-way), before its databases are dropped."""
        for worker in self._workers:
            if worker.process.is_alive():
                worker.kill()
            worker.join()

    def prepare(self) -> None:
        """Run what the job needs first, each as a worker of its own (the migration needs nothing)."""
        for step in self.case.before:
            if step == "progress":
                if not progress_demo_orders(self.gateway, self.case.shop, now=datetime.now(UTC)):
                    raise RuntimeError("no demo order in Mamut to progress")
                continue
            if step == EDIT_CATALOGUE:
                edit_catalogue(self.gateway)
                continue
            worker = self.start(f"before {step}", job=step)
            outcome = worker.join()
            if outcome != "ok":
                raise RuntimeError(f"preparing {self.case.name}: {step} ended {outcome}; see {worker.spec.log}")

    def run_to_the_end(self, story: list[str]) -> bool:
        """Run the job until a run succeeds, as a task's retries would (a lease held by a process that was
        killed stops a run until it expires); whether it got there."""
        for attempt in range(1, RETRIES + 1):
            outcome = self.start("retry" if attempt == 1 else f"retry {attempt}").join()
            story.append(f"retry: {outcome}" if attempt == 1 else f"retry {attempt}: {outcome}")
            if outcome == "ok":
                return True
            if not outcome.startswith("stopped ("):
                return False
            time.sleep(RETRY_DELAY)
        return False


def edit_catalogue(gateway: MamutGateway) -> None:
    """Rename every Mamut family as a Mamut user would (EDITDATE moves, so the next run reads it)."""
    repository = ProductRepository(gateway)
    for snapshot in list(CatalogueReader(gateway).iter_families()):
        family = snapshot.family
        renamed = replace(family, main=replace(family.main, name=f"{family.main.name} (ny)"))
        repository.upsert_family(renamed, update_price=True, now=datetime.now(UTC))


_MIGRATING = threading.Lock()
"""Alembic keeps its migration context in module globals: two worlds' migrations in one process take turns."""


@contextlib.contextmanager
def open_world(case: JobCase, directory: Path) -> Iterator[World]:
    directory.mkdir(parents=True)
    if case.world == "three_shops":
        shop_seed, mamut_seed, per_page = "demo", "demo", 100
    else:
        (shop_seed, mamut_seed), per_page = MIGRATION_SEEDS[case.world], PER_PAGE
    with contextlib.ExitStack() as stack:
        sandbox = stack.enter_context(start_sandbox(seed=shop_seed, per_page=per_page))
        odbc = stack.enter_context(fresh_mock_database("postgres", directory, seed=mamut_seed))
        staging_url = postgres_sqlalchemy_url(stack.enter_context(fresh_postgres_database("starmamut_staging")))
        store = StagingStore.from_url(staging_url)
        with _MIGRATING:  # once, before two workers could race to it
            store.migrate()
        store.close()
        world = World(case, directory, sandbox, odbc, staging_url)
        stack.callback(world.gateway.close)
        stack.callback(world.close)
        world.prepare()
        yield world


# ------------------------------------------------------------------------------------------------ what the systems hold


@dataclass
class EndState:
    """What the systems hold after a cell: keyed records (compared with the clean run) and counted keys."""

    records: dict[str, Any]
    counts: dict[str, Counter[Any]]
    patches: Counter[tuple[int, int]]


def end_state(world: World) -> EndState:
    """Mamut's orders, customers and articles, the shop's variants, attribute values and orders, and the status
    PATCHes the shop received that e-mail the buyer or capture the payment."""
    records: dict[str, Any] = {}
    counts: dict[str, Counter[Any]] = {}
    orders = list(OrderRepository(world.gateway).iter_orders_with_lines())
    numbers = {order["external_id"]: (order["order_number"], order["invoice_number"]) for order in orders}
    counts["Mamut orders per external id"] = Counter(order["external_id"] for order in orders if order["external_id"])
    counts["Mamut order numbers"] = Counter(order["order_number"] for order in orders)
    counts["Mamut invoice numbers"] = Counter(order["invoice_number"] for order in orders if order["invoice_number"])
    for order in orders:
        records[f"Mamut order {order['external_id']}"] = (
            round(float(order["total_gross"]), 2),
            len(order["lines"]),
            order["contact_name"],
            order["invoice_number"] is not None,
        )
    with world.gateway.transaction() as transaction:
        contacts = transaction.select("contact", ["customer_number", "name", "email", "org_number", "external_id"])
        stock = transaction.select("product_stock", ["product_key", "warehouse_id", "qty_in_stock"])
    counts["Mamut customer numbers"] = Counter(row["customer_number"] for row in contacts if row["customer_number"])
    counts["Mamut customers"] = Counter(
        (row["name"], row["email"], row["org_number"], row["external_id"]) for row in contacts
    )
    for identity in counts["Mamut customers"]:
        records[f"Mamut customer {identity}"] = True
    articles = list(ProductRepository(world.gateway).iter_articles())
    counts["Mamut articles per number"] = Counter(article["sku"] for article in articles)
    sku_of = {article["product_key"]: article["sku"] for article in articles}
    for article in articles:
        price = article.get("price_out")
        records[f"Mamut article {article['sku']}"] = (article["name"], None if price is None else float(price))
    for row in stock:
        records[f"Mamut stock {sku_of[row['product_key']]} @{row['warehouse_id']}"] = float(row["qty_in_stock"])

    state = world.sandbox.state
    variants: Counter[str] = Counter()
    for product_id in state.product_ids():
        names = tuple(sorted((language["langCode"], language.get("name")) for language in state.languages(product_id)))
        for variant in state.list_variants(product_id):
            sku, variant_id = variant["sku"], variant["variantId"]
            variants[sku] += 1
            records[f"shop variant {sku}"] = (
                names,
                tuple((price["pricelistId"], price["priceExVat"]) for price in state.prices(product_id, variant_id)),
                tuple(
                    (stock["stockLocationId"], stock["stockQuantity"]) for stock in state.stocks(product_id, variant_id)
                ),
                variant.get("stockQuantity"),
            )
    counts["shop variants per SKU"] = variants
    counts["shop attribute values per name"] = Counter(
        (attribute["attributeId"], _name(value))
        for attribute in state.attributes()
        for value in state.attribute_values(attribute["attributeId"])
    )
    for order_id in state.order_ids():
        order = state.order(order_id)
        mamut = numbers.get(f"{world.case.shop}:{order_id}")
        external = order.get("externalId") or None
        records[f"shop order {order_id}"] = (
            order["statusId"],
            None if external is None else mamut is not None and int(external) in mamut,
        )
    return EndState(records, counts, status_patches(world.sandbox))


def _name(value: Mapping[str, Any]) -> str | None:
    languages = value["languages"]["data"]
    return languages[0]["name"] if languages else None


def status_patches(sandbox: Sandbox) -> Counter[tuple[int, int]]:
    """Status PATCHes per (order, status) that e-mail the buyer or process the payment (both switches default to
    on); orders_to_mamut's write-back turns both off."""
    patches: Counter[tuple[int, int]] = Counter()
    for request in sandbox.write_requests():
        body = request.body if isinstance(request.body, dict) else {}
        if request.method != "PATCH" or not request.path.startswith("/orders/") or "statusId" not in body:
            continue
        if body.get("onOrderStatusChangeSendEmail", True) or body.get("onOrderStatusChangeProcessPayment", True):
            patches[(int(request.path.rsplit("/", 1)[1]), body["statusId"])] += 1
    return patches


MAMUT_COUNTS = (
    "Mamut orders per external id",
    "Mamut order numbers",
    "Mamut invoice numbers",
    "Mamut customer numbers",
    "Mamut customers",
    "Mamut articles per number",
)
STARWEB_COUNTS = ("shop variants per SKU", "shop attribute values per name")


def compare(cell: Cell, clean: EndState, seen: EndState) -> None:
    """Fill the cell's counts: duplicates beyond what the clean run holds, clean records lost or different,
    the most e-mail/capture PATCHes any order change got."""

    def duplicates(kind: str) -> int:
        extra = 0
        for key, count in seen.counts[kind].items():
            allowed = max(1, clean.counts[kind].get(key, 0))
            if count > allowed:
                extra += count - allowed
                cell.details.append(f"{kind}: {key!r} ×{count}")
        return extra

    cell.mamut_duplicates = sum(duplicates(kind) for kind in MAMUT_COUNTS)
    cell.starweb_duplicates = sum(duplicates(kind) for kind in STARWEB_COUNTS)
    lost = [key for key, value in clean.records.items() if seen.records.get(key, "missing") != value]
    cell.lost = len(lost)
    cell.details += [f"lost: {key}: {seen.records.get(key, 'missing')!r}, clean {clean.records[key]!r}" for key in lost]
    cell.patches = max(seen.patches.values(), default=0)
    cell.details += [
        f"PATCH ×{count}: order {key[0]} status {key[1]}" for key, count in seen.patches.items() if count > 1
    ]


# ------------------------------------------------------------------------------------------------ running cells


def clean_run(case: JobCase, directory: Path) -> tuple[Cell, EndState | None]:
    cell = Cell(case.name, CLEAN, None)
    started = time.monotonic()
    state = None
    try:
        with open_world(case, directory) as world:
            outcome = world.start("clean").join()
            cell.story.append(f"run: {outcome}")
            if outcome != "ok":
                cell.problem = f"the clean run ended {outcome}"
            state = end_state(world)
        cell.story.append(f"{len(state.records)} records to compare")
        cell.patches = max(state.patches.values(), default=0)
    except Exception as exc:  # reported in the table; the other cells go on
        cell.problem = f"harness: {type(exc).__name__}: {exc}"
        cell.details.append(traceback.format_exc())
    cell.seconds = time.monotonic() - started
    _report(cell)
    return cell, state


def fault_cell(case: JobCase, fault: str, failpoint: str, clean: EndState | None, directory: Path) -> Cell:
    cell = Cell(case.name, fault, failpoint)
    started = time.monotonic()
    try:
        if clean is None:
            raise RuntimeError("no clean run to compare with")
        with open_world(case, directory) as world:
            _inflict(world, cell, fault, failpoint)
            compare(cell, clean, end_state(world))
    except Exception as exc:  # reported in the table; the other cells go on
        cell.problem = f"harness: {type(exc).__name__}: {exc}"
        cell.details.append(traceback.format_exc())
    cell.seconds = time.monotonic() - started
    _report(cell)
    return cell


def _inflict(world: World, cell: Cell, fault: str, failpoint: str) -> None:
    """Hold a first loader at the fail point, kill it or run a second loader beside it, then run to the end."""
    first = world.start("first", failpoint)
    if not first.wait_reached():
        cell.problem = f"{failpoint} not reached (the run ended {first.join()})"
        return
    cell.story.append(f"first held at {first.point}")
    if fault == KILL:
        first.kill()
        first.join()
        cell.story.append("first: SIGKILL")
    else:
        second = world.start("second")
        cell.story.append(f"second: {second.join(SECOND_LOADER_TIMEOUT)}")
        first.release()
        cell.story.append(f"first released: {first.join()}")
    if not world.run_to_the_end(cell.story):
        cell.problem = "never ran to the end"


def planned_cells(case: JobCase, reduced: bool) -> list[tuple[str, str]]:
    if reduced:
        return list(REDUCED.get(case.name, ()))
    return [(fault, point) for point in FAILPOINTS[case.name] for fault in (KILL, SECOND_LOADER)]


def run_matrix(*, reduced: bool, only: set[str] | None, logs: Path, parallel: int = 2) -> list[Cell]:
    """Every planned cell of every case (or of the named ones), each in a world of its own, ``parallel`` at a
    time: first the clean runs, then the faults. Cells in the order of the table."""
    logs.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("AIRFLOW_HOME", str(logs / "airflow-home"))
    start_worker_server(logs / "fork-server.log")
    selected = [
        case for case in cases() if (not only or case.name in only or case.job in only) and planned_cells(case, reduced)
    ]
    with ThreadPoolExecutor(parallel) as pool:
        cleans = list(pool.map(lambda case: clean_run(case, logs / _slug(case) / "clean"), selected))
        planned = [
            (case, state, number, fault, point)
            for case, (_, state) in zip(selected, cleans, strict=True)
            for number, (fault, point) in enumerate(planned_cells(case, reduced), 1)
        ]

        def run_fault(item: tuple[JobCase, EndState | None, int, str, str]) -> Cell:
            case, state, number, fault, point = item
            return fault_cell(case, fault, point, state, logs / _slug(case) / f"{number:02d}-{_slug(fault)}")

        faults = list(pool.map(run_fault, planned))
    return [
        cell
        for case, (clean, _) in zip(selected, cleans, strict=True)
        for cell in [clean, *(fault for fault in faults if fault.case == case.name)]
    ]


def _slug(text_or_case: str | JobCase) -> str:
    text = text_or_case if isinstance(text_or_case, str) else text_or_case.name
    return text.replace(" ", "_").replace("(", "").replace(")", "")


def _report(cell: Cell) -> None:
    verdict = "ok" if cell.passed else "FAIL"
    print(
        f"[{verdict}] {cell.case} · {cell.fault} · {cell.failpoint or '-'}: "
        f"{cell.mamut_duplicates}/{cell.lost}/{cell.patches}/{cell.starweb_duplicates} "
        f"({'; '.join(cell.story)}) {cell.seconds:.1f} s",
        flush=True,
    )
    for line in [cell.problem, *cell.details]:
        if line:
            print(f"    {line}", flush=True)


# ------------------------------------------------------------------------------------------------ the table


def markdown(cells: list[Cell], *, command: str, seconds: float) -> str:
    header = [
        "# Fault matrix",
        "",
        "Every job run as a real process (the context a task builds: config file, Airflow Connections), staging and",
        "the Mamut mock on PostgreSQL, the shop's sandbox over HTTP on loopback. *kill*: the process is held at the",
        "fail point, killed with SIGKILL, and the job run again until it completes. *second loader*: while the",
        "first process is held there, a second one of the same job and shop runs (or stops); then the first is",
        "released and the job run to the end. Each cell is compared with a clean run of the same world.",
        "",
        "Worlds: the registered jobs in config/examples/three_shops.yaml as tests/test_job_contract.py runs them",
        "(the demo shop: 15 products, 41 variants, 10 orders; Mamut's demo catalogue: 6 families), after the jobs",
        "they need (orders need the articles, order states need the orders moved on in Mamut); *changes* renames",
        "every Mamut family after a first push, so the run sends updates. The migration moves the demo shop into an",
        "empty Mamut and Mamut's demo catalogue into an empty shop, 6 products a page and 3 families a chunk.",
        f"Leases: `lease: {{ttl_seconds: {LEASE['ttl_seconds']}, wait_seconds: {LEASE['wait_seconds']}}}`, so a "
        "retry takes over a killed loader's lease in seconds. `name@n`: held at the n-th pass through the point.",
        "",
        "Columns: **Mamut dup.** duplicate Mamut rows (orders per external id, order/invoice/customer numbers,",
        "customers, articles per number); **lost** records of the clean run's end state missing or different",
        "(Mamut orders, customers, articles, stock; the shop's variants with prices and stock, order statuses and",
        "write-backs); **PATCH/chg** the most status PATCHes with e-mail or capture any order change got;",
        "**Starweb dup.** variants per SKU and attribute values per name beyond one. Required: 0 / 0 / ≤ 1 / 0.",
        "",
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min; {machine()}.",
        "",
        "| job | fault | fail point | Mamut dup. | lost | PATCH/chg | Starweb dup. | what the loaders did | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        f"| {cell.case} | {cell.fault} | {f'`{cell.failpoint}`' if cell.failpoint else '—'} | {cell.mamut_duplicates} "
        f"| {cell.lost} | {cell.patches} | {cell.starweb_duplicates} | {'; '.join(cell.story)} "
        f"| {'ok' if cell.passed else '**FAIL**' + (f': {cell.problem}' if cell.problem else '')} |"
        for cell in cells
    ]
    failed = [cell for cell in cells if not cell.passed]
    summary = [
        "",
        f"{len(cells)} cells, {len(failed)} failing." if failed else f"{len(cells)} cells, all 0 / 0 / ≤ 1 / 0.",
    ]
    return "\n".join(header + rows + summary) + "\n"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    postgres = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "show server_version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), shared with other work, load {os.getloadavg()[0]:.1f} at the end; "
        f"Python {platform.python_version()}, PostgreSQL {postgres or 'version unknown'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="the CI set: a kill per job, two second-loader cells")
    parser.add_argument("--job", action="append", help="only this job or row (repeatable)")
    parser.add_argument("--out", type=Path, help=f"where to write the table (default: {OUTPUT.relative_to(REPO)})")
    parser.add_argument("--parallel", type=int, default=2, help="cells run at a time (default: %(default)s)")
    parser.add_argument("--logs", type=Path, help="keep worker logs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    out = args.out or (None if args.reduced or args.job else OUTPUT)
    with contextlib.ExitStack() as stack:
        logs = args.logs or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fault-matrix-")))
        started = time.monotonic()
        cells = run_matrix(reduced=args.reduced, only=set(args.job or ()) or None, logs=logs, parallel=args.parallel)
        table = markdown(cells, command=command, seconds=time.monotonic() - started)
    print()
    print(table)
    if out is not None:
        out.write_text(table, encoding="utf-8")
        print(f"written to {out}")
    return 0 if all(cell.passed for cell in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
