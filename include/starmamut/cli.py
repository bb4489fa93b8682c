"""Command line for operators: ``python -m starmamut <command>``.

Commands that read state use the same config and staging database the DAGs use, so what they print is what
the Airflow tasks see. The config is config/shops.yaml or the file named by $STARMAMUT_CONFIG. An unusable
config or a missing file prints one line per problem on stderr and exits 1 (probe: 2, see its help).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starmamut.config import ConfigError, load_settings
from starmamut.jobs.registry import MIGRATION, dag_id, jobs_for_shop
from starmamut.mamut.schema_map import SchemaMap, SchemaMapError


def cmd_pools(_: argparse.Namespace) -> int:
    """One line per shop pool: '<name> <slots> <description>' (bin/demo feeds these to `airflow pools set`)."""
    for shop in load_settings().shops:
        print(shop.pool, shop.pool_slots, f"Starweb requests of shop {shop.id}")
    return 0


def cmd_dags(_: argparse.Namespace) -> int:
    """The DAG ids the config generates, one per line."""
    for shop in load_settings().shops:
        for job in jobs_for_shop(shop.flow, shop.extra_jobs):
            print(dag_id(shop.id, job.name))
        print(dag_id(shop.id, MIGRATION))
    return 0


def cmd_create_mamut_mock(args: argparse.Namespace) -> int:
    """Create the SQLite Mamut mock company database (idempotent)."""
    from starmamut.mamut.mock import create_mock_company_database, sqlite_odbc_string

    path = Path(args.path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    create_mock_company_database(sqlite_odbc_string(path), seed=args.seed)
    print(sqlite_odbc_string(path))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """What landed in Mamut (articles, orders), the latest batch reports and the open quarantine, per shop."""
    from starmamut.airflow_adapter import airflow_home
    from starmamut.mamut.gateway import MamutGateway
    from starmamut.mamut.mock import sqlite_odbc_string
    from starmamut.mamut.orders import OrderRepository
    from starmamut.mamut.products import ProductRepository
    from starmamut.mamut.schema_map import SchemaMap
    from starmamut.staging.store import StagingStore, default_staging_url

    settings = load_settings()
    mamut_db = Path(args.mamut_db)
    if not mamut_db.is_file():  # checked first: the SQLite ODBC driver would create an empty database
        raise CliError(
            f"Mamut database not found: {mamut_db} (create one with: python -m starmamut create-mamut-mock {mamut_db})"
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


class CliError(RuntimeError):
    """A command cannot run as asked; the message says what to do instead (printed without a traceback)."""


class ProbeTargetError(RuntimeError):
    """The Connection to probe is missing or incomplete."""


def cmd_probe(args: argparse.Namespace) -> int:
    """Check the Mamut company database against the schema map, writing nothing.

    Exit 0 when the map fits, 1 when something must be mapped first, 2 when the config, the Connection or the
    database cannot be used (the message says which; it never holds the password).
    """
    from starmamut.mamut.gateway import MamutError, MamutGateway
    from starmamut.probe import format_report, probe

    try:
        odbc, schema_map = _probe_target(args)
        with MamutGateway(odbc, schema_map) as gateway:
            report = probe(gateway)
    except (ConfigError, SchemaMapError, MamutError, ProbeTargetError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.ready else 1


def _probe_target(args: argparse.Namespace) -> tuple[str, SchemaMap]:
    """The ODBC string and schema map to probe: from the arguments, else from the config and its Connection."""
    from starmamut.airflow_adapter import configured_schema_map, mamut_odbc_string

    if args.odbc and args.schema_map:
        return args.odbc, SchemaMap.load(args.schema_map)
    settings = load_settings()
    odbc = args.odbc
    if not odbc:
        conn_id = args.conn_id or settings.mamut.conn_id
        try:
            odbc = mamut_odbc_string(conn_id)
        except Exception as exc:  # Airflow's not-found error or our incomplete-Connection one; no secret in either
            raise ProbeTargetError(f"Connection {conn_id!r}: {exc}") from None
    schema_map = SchemaMap.load(args.schema_map) if args.schema_map else configured_schema_map(settings)
    return odbc, schema_map


def build_parser() -> argparse.ArgumentParser:
    """The command line: every command and argument has its help."""
    parser = argparse.ArgumentParser(
        prog="python -m starmamut", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, help: str, run: Any, description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description or help)
        sub.set_defaults(run=run)
        return sub

    command(
        "pools",
        "list the Airflow pools the config needs, one line each: <pool> <slots> <description>",
        cmd_pools,
        "List the Airflow pools the config needs, one line each: <pool> <slots> <description> "
        "(feed each to `airflow pools set`).",
    )
    command("dags", "list the DAG ids the config generates, one per line", cmd_dags)
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
    check = command(
        "probe",
        "check a Mamut company database against the schema map before the first sync (writes nothing)",
        cmd_probe,
        "Check a Mamut company database against the schema map before the first sync; writes nothing. Exit 0: "
        "the map fits; 1: something must be mapped first; 2: the config, the Connection or the database cannot "
        "be used.",
    )
    target = check.add_mutually_exclusive_group()
    target.add_argument("--conn-id", help="Airflow Connection of the database (default: the config's mamut.conn_id)")
    target.add_argument(
        "--odbc", help="an ODBC connection string instead of a Connection (a password here is visible to `ps`)"
    )
    check.add_argument("--schema-map", help="schema map override file (default: the config's mamut.schema_map)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, SchemaMapError, CliError) as exc:
        print(f"starmamut {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
