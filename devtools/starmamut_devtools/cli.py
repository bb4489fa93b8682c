"""Dev tooling command line: ``python -m starmamut_devtools <command>``.

The demo (bin/demo), the benchmarks and the tests use these; the engine never does. ``sandbox`` serves the
Starweb sandbox shop, ``mamut-mock`` creates a mock Mamut company database on SQLite or PostgreSQL (or prints
its DDL), ``create-mamut-mock`` is the demo's one-step SQLite variant, and ``summary`` prints what landed in a
mock with the batch reports and the open quarantine of the staging database.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starmamut.config import ConfigError, load_settings
from starmamut.mamut.schema_map import SchemaMapError


class CliError(RuntimeError):
    """A command cannot run as asked; the message says what to do instead (printed without a traceback)."""


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve the Starweb sandbox shop in the foreground until Ctrl-C or SIGTERM."""
    from starmamut_devtools.sandbox.__main__ import serve

    return serve(args)


def cmd_mamut_mock(args: argparse.Namespace) -> int:
    """Create and seed a mock Mamut company database, or print its DDL."""
    from starmamut_devtools import mamut_mock

    return mamut_mock.run(args)


def cmd_create_mamut_mock(args: argparse.Namespace) -> int:
    """Create the SQLite Mamut mock company database (idempotent)."""
    from starmamut_devtools.mamut_mock import create_mock_company_database, sqlite_odbc_string

    path = Path(args.path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    create_mock_company_database(sqlite_odbc_string(path), seed=args.seed)
    print(sqlite_odbc_string(path))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """What landed in Mamut (articles, orders), the latest batch reports and the open quarantine, per shop."""
    from starmamut.airflow_adapter import airflow_home
    from starmamut.mamut.gateway import MamutGateway
    from starmamut.mamut.orders import OrderRepository
    from starmamut.mamut.products import ProductRepository
    from starmamut.mamut.schema_map import SchemaMap
    from starmamut.staging.store import StagingStore, default_staging_url
    from starmamut_devtools.mamut_mock import sqlite_odbc_string

    settings = load_settings()
    mamut_db = Path(args.mamut_db)
    if not mamut_db.is_file():  # checked first: the SQLite ODBC driver would create an empty database
        raise CliError(
            f"Mamut database not found: {mamut_db} "
            f"(create one with: python -m starmamut_devtools create-mamut-mock {mamut_db})"
        )
    gateway = MamutGateway(sqlite_odbc_string(mamut_db), SchemaMap.load(None))
    articles = list(ProductRepository(gateway).iter_articles())
    sku_by_key = {article["product_key"]: article["sku"] for article in articles}
    print(f"\nMamut articles ({len(articles)}):")
    print(f"  {'article no.':<18} {'main article':<14} {'variant':<22} {'price ex VAT':>12}  name")
    for article in sorted(articles, key=lambda a: a["sku"]):
        main_sku = sku_by_key.get(article.get("main_product_key"), "")
        variant = " / ".join(v for v in (article.get("variant_value_1"), article.get("variant_value_2")) if v)
        price = article.get("price_out")
        print(
            f"  {article['sku']:<18} {main_sku:<14} {variant:<22} "
            f"{'' if price is None else f'{price:.2f}':>12}  {article['name']}"
        )
    orders = list(OrderRepository(gateway).iter_orders_with_lines())
    print(f"\nMamut orders ({len(orders)}):")
    print(f"  {'external id':<14} {'order':>6} {'invoice':>7} {'cust.':>6} {'lines':>5} {'total':>10}  customer")
    for order in orders:
        print(
            f"  {order['external_id'] or '':<14} {order['order_number']:>6} {order['invoice_number'] or '':>7} "
            f"{order['customer_number'] or '':>6} {len(order['lines']):>5} {order['total_gross']:>10.2f}  "
            f"{order['contact_name'] or ''}"
        )
    store = StagingStore.from_url(default_staging_url(Path(os.environ.get("AIRFLOW_HOME", airflow_home()))))
    for shop in settings.shops:
        print(f"\nShop {shop.id} · latest batches:")
        for batch in store.latest_batches(shop.id, limit=5):
            counts = ", ".join(f"{key} {value}" for key, value in batch.counts.items())
            print(f"  {batch.started_at:%Y-%m-%d %H:%M:%S} {batch.job:<18} {batch.status:<8} {counts}")
        quarantined = store.open_quarantine(shop.id)
        print(f"Shop {shop.id} · open quarantine: {len(quarantined)}")
        for entry in quarantined:
            print(f"  {entry.entity} {entry.key}: " + "; ".join(reason["reason"] for reason in entry.reasons))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: every command and argument has its help."""
    from starmamut_devtools import mamut_mock
    from starmamut_devtools.sandbox.__main__ import add_arguments as add_sandbox_arguments

    parser = argparse.ArgumentParser(
        prog="python -m starmamut_devtools", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, help: str, run: Any, description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description or help)
        sub.set_defaults(run=run)
        return sub

    add_sandbox_arguments(
        command(
            "sandbox",
            "serve the Starweb sandbox shop in the foreground until Ctrl-C or SIGTERM",
            cmd_sandbox,
            "Serve a local HTTP server that behaves like a Starweb shop's API v2 (admin endpoints under "
            "/_sandbox/), in the foreground until Ctrl-C or SIGTERM.",
        )
    )
    mamut_mock.add_arguments(
        command(
            "mamut-mock",
            "create and seed a mock Mamut company database (SQLite or ODBC), or print its DDL",
            cmd_mamut_mock,
            "Create and seed the mock Mamut company database on SQLite (--sqlite) or any ODBC database "
            "(--odbc, $STARMAMUT_MAMUT_ODBC), or print the DDL of a dialect (--print-ddl).",
        )
    )
    mock = command(
        "create-mamut-mock",
        "create the SQLite Mamut mock company database (idempotent)",
        cmd_create_mamut_mock,
        "Create the SQLite Mamut mock company database, or complete an existing "
        "one (idempotent), and print its ODBC connection string.",
    )
    mock.add_argument("path", help="the SQLite file to create (its folder is created too)")
    mock.add_argument(
        "--seed",
        default="reference",
        choices=["reference", "demo"],
        help="reference: currencies, warehouses, statuses, price lists, code registers; demo: "
        "reference plus a small Swedish catalogue with variants, stock and prices "
        "(default: %(default)s)",
    )
    summary = command(
        "summary",
        "print what landed in the Mamut mock, the batch reports and the quarantine",
        cmd_summary,
        "Print the articles and orders in a Mamut mock database, and per shop the "
        "latest batch reports and the open quarantine from the staging database.",
    )
    summary.add_argument(
        "--mamut-db",
        required=True,
        metavar="PATH",
        help="the Mamut mock SQLite file (from create-mamut-mock); it must exist",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, SchemaMapError, CliError) as exc:
        print(f"starmamut_devtools {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
