"""Benchmark: products Starweb → Mamut through extract → staging → checks → load, against the sandbox.

Runs the sandbox in its own process (so its memory is not counted) with a generated catalogue, a fresh SQLite
Mamut mock and SQLite staging, then the job twice: a first load and an unchanged re-run. Reports requests made
against the minimum this API allows, records per second, time waiting for the pacer and peak memory.

    .venv/bin/python bench/products_to_mamut.py --products 2000
    .venv/bin/python bench/products_to_mamut.py --products 2000 --latency-ms 150 --budget 1000 --concurrency 8
"""

from __future__ import annotations

import argparse
import math
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "include"))
sys.path.insert(0, str(REPO / "devtools"))  # starmamut_devtools: the sandbox and the Mamut mock

from starmamut.config import Settings  # noqa: E402
from starmamut.jobs import products_to_mamut  # noqa: E402
from starmamut.jobs.common import JobContext, RunParams  # noqa: E402
from starmamut.mamut.gateway import MamutGateway  # noqa: E402
from starmamut.mamut.schema_map import SchemaMap  # noqa: E402
from starmamut.staging.store import StagingStore  # noqa: E402
from starmamut.starweb.client import StarwebClient, StarwebCredentials  # noqa: E402
from starmamut.starweb.ratelimit import FilePacer  # noqa: E402
from starmamut_devtools.mamut_mock import create_mock_company_database, sqlite_odbc_string  # noqa: E402
from starmamut_devtools.sandbox.demo_data import generate_catalogue  # noqa: E402

PER_PAGE = 100
REFERENCE_REQUESTS = 6  # token, pricelists, shop, attributes, values of Färg and Storlek


def minimum_requests(products: int) -> int:
    """Product pages, plus one variant page per product with several variants, plus the reference reads."""
    several = sum(1 for body in generate_catalogue(products) if len(body["variants"]) > 1)
    return REFERENCE_REQUESTS + math.ceil(products / PER_PAGE) + several


def start_sandbox(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "starmamut_devtools.sandbox",
        "--port",
        "0",
        "--seed",
        "empty",
        "--generate",
        str(args.products),
        "--latency-ms",
        str(args.latency_ms),
        "--per-page",
        str(PER_PAGE),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": f"{REPO / 'include'}:{REPO / 'devtools'}", "PATH": "/usr/bin:/bin"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"(http://\S+/api/v2)", line)
    if not match:
        process.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    return process, match.group(1)


def run_once(ctx: JobContext) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = products_to_mamut.run(ctx)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--budget", type=int, default=0, help="requests per minute; 0 = unpaced")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    process, base_url = start_sandbox(args)
    try:
        with tempfile.TemporaryDirectory() as work:
            work_dir = Path(work)
            odbc = sqlite_odbc_string(work_dir / "mamut.db")
            create_mock_company_database(odbc)
            store = StagingStore.from_url(f"sqlite:///{work_dir / 'staging.db'}")
            store.migrate()
            settings = Settings.model_validate(
                {
                    "version": 1,
                    "mamut": {"vat_codes": {25: 1, 12: 2, 6: 3, 0: 4}},
                    "shops": {"bench": {"name": "Bench", "flow": "ecom", "starweb_conn_id": "unused"}},
                }
            )
            pacer = FilePacer("bench", args.budget, work_dir) if args.budget else None
            clients: list[StarwebClient] = []

            def open_starweb() -> StarwebClient:
                client = StarwebClient(
                    StarwebCredentials(base_url, "demo.starmamut", "sandbox-secret"),
                    pacer=pacer,
                    max_concurrency=args.concurrency,
                )
                clients.append(client)
                return client

            gateway = MamutGateway(odbc, SchemaMap.load())
            ctx = JobContext(
                settings=settings,
                shop=settings.shop("bench"),
                store=store,
                open_starweb=open_starweb,
                open_mamut=lambda: gateway,
                params=RunParams(),
            )
            first, first_seconds = run_once(ctx)
            second, second_seconds = run_once(ctx)
            gateway.close()
    finally:
        process.terminate()
        process.wait(timeout=10)

    minimum = minimum_requests(args.products)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"workload: {args.products} products ({first['created_articles']} Mamut articles), "
        f"latency {args.latency_ms} ms, budget {args.budget or 'none'}/min, concurrency {args.concurrency}"
    )
    print(
        f"first run : {first_seconds:7.2f} s  {args.products / first_seconds:8.1f} products/s  "
        f"requests {first['requests']} (minimum {minimum}, ratio {first['requests'] / minimum:.3f})"
    )
    print(
        f"second run: {second_seconds:7.2f} s  {args.products / second_seconds:8.1f} products/s  "
        f"requests {second['requests']}  changed {second['changed']}"
    )
    if args.budget:
        floor = minimum / args.budget * 60
        print(f"floor (minimum requests / budget): {floor:.2f} s; first run at {floor / first_seconds:.0%} of it")
    print(f"peak memory (job process): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
