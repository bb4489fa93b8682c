"""Command line for operators: ``python -m starmamut <command>``.

Commands that read state use the same config and staging database the DAGs use, so what they print is what
the Airflow tasks see. The config is config/shops.yaml or the file named by $STARMAMUT_CONFIG. An unusable
config or a missing file prints one line per problem on stderr and exits 1 (probe: 2, see its help).
The demo's commands (the sandbox shop, the Mamut mock, the summary of what landed in it) are dev tooling:
``python -m starmamut_devtools <command>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from starmamut.config import ConfigError, load_settings
from starmamut.jobs.registry import DAILY_REPORT, MIGRATION, dag_id, jobs_for_shop
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
        print(dag_id(shop.id, DAILY_REPORT))
    return 0


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
    except (ConfigError, SchemaMapError) as exc:
        print(f"starmamut {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
