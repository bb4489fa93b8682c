"""SQL Server dialect guard: every statement the Mamut gateway emits at run time is T-SQL that SQL Server 2016+ takes.

The Mamut mock runs on SQLite and PostgreSQL only, so nothing else would notice a statement SQL Server refuses.
Each job that reads or writes Mamut runs a full pass (two, so the "nothing changed" paths run too) in the
three-shop world of tests/test_multishop.py, and both directions of initial_product_sync run once, with the
gateway's ``statement_observer`` collecting every distinct SQL text (``?`` markers, no values). The mock's
creation DDL is not collected: the observer is set after the mock exists. Each statement must parse with
sqlglot's T-SQL dialect and avoid what SQL Server 2016 lacks (LIMIT, RETURNING, ON CONFLICT, ``||``,
TRUE/FALSE literals, ILIKE), judged on the parsed tree and, as a second net, on the raw text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp

from starmamut.jobs import (
    order_status_to_starweb,
    orders_to_mamut,
    prices_to_starweb,
    products_to_mamut,
    products_to_starweb,
    stock_to_starweb,
)
from starmamut.jobs.registry import JOBS
from starmamut.mamut.gateway import MamutGateway
from starmamut_devtools.mamut_mock import progress_demo_orders
from tests.test_initial_product_sync import M2S, S2M, open_systems  # noqa: F401  (the fixture too)
from tests.test_multishop import ThreeShops, mamut_skus, set_mamut_price_and_stock, shops  # noqa: F401  (the fixture too)

# Distinct statement shapes (IN lists of any length count once) each pass must see, a little under what it
# sees today (31 and 17): far fewer means the observer or the world broke and the guard would prove nothing.
MIN_SHAPES_REGULAR_JOBS = 25
MIN_SHAPES_INITIAL_SYNC = 12
_IN_LIST = re.compile(r"\?(?:, \?)+")

# SQL Server 2016 has none of these (it has TOP/OFFSET-FETCH, OUTPUT, MERGE, ``+``, 0/1 bits and LIKE).
FORBIDDEN_NODES: dict[type[exp.Expression], str] = {
    exp.Limit: "LIMIT",
    exp.Returning: "RETURNING",
    exp.OnConflict: "ON CONFLICT",
    exp.DPipe: "|| string concatenation",
    exp.Boolean: "TRUE/FALSE literal",
    exp.ILike: "ILIKE",
}
FORBIDDEN_TEXT: dict[str, re.Pattern[str]] = {
    "LIMIT": re.compile(r"(?i)\bLIMIT\b"),
    "RETURNING": re.compile(r"(?i)\bRETURNING\b"),
    "ON CONFLICT": re.compile(r"(?i)\bON\s+CONFLICT\b"),
    "|| string concatenation": re.compile(r"\|\|"),
    "TRUE/FALSE literal": re.compile(r"(?i)\b(TRUE|FALSE)\b"),
    "ILIKE": re.compile(r"(?i)\bILIKE\b"),
}


def ast_problems(sql: str) -> list[str]:
    """What keeps ``sql`` from SQL Server by its T-SQL parse tree (a parse failure is a problem too)."""
    try:
        tree = sqlglot.parse_one(sql, read="tsql")  # ``?`` parses as a placeholder
    except sqlglot.errors.SqlglotError as exc:
        return [f"does not parse as T-SQL: {exc}"]
    if isinstance(tree, exp.Command):
        return ["parsed only as an opaque command, not as a statement sqlglot understands"]
    return sorted({label for node in tree.walk() for kind, label in FORBIDDEN_NODES.items() if isinstance(node, kind)})


def text_problems(sql: str) -> list[str]:
    """The same constructs found in the raw text: a net for anything the parser might read differently."""
    return [label for label, pattern in FORBIDDEN_TEXT.items() if pattern.search(sql)]


def tsql_problems(sql: str) -> list[str]:
    return sorted(set(ast_problems(sql)) | set(text_problems(sql)))


@pytest.fixture
def recorded() -> Iterator[tuple[dict[str, None], list[MamutGateway]]]:
    """Distinct statements in first-seen order, and the gateways observed (their observers are unset after)."""
    statements: dict[str, None] = {}
    gateways: list[MamutGateway] = []
    yield statements, gateways
    for gateway in gateways:
        gateway.statement_observer = None


def observe(recorded: tuple[dict[str, None], list[MamutGateway]], gateway: MamutGateway) -> None:
    statements, gateways = recorded
    gateway.statement_observer = lambda sql: statements.setdefault(" ".join(sql.split()), None)
    gateways.append(gateway)


@contextmanager
def unobserved(gateway: MamutGateway) -> Iterator[None]:
    """Test set-up through the gateway (standing in for a Mamut user) is not the engine's SQL."""
    observer, gateway.statement_observer = gateway.statement_observer, None
    try:
        yield
    finally:
        gateway.statement_observer = observer


def assert_tsql(statements: dict[str, None], min_shapes: int) -> None:
    shapes = {_IN_LIST.sub("?", sql) for sql in statements}
    assert len(shapes) >= min_shapes, f"only {len(shapes)} distinct statement shapes seen:\n" + "\n".join(shapes)
    assert {sql.split()[0] for sql in shapes} >= {"SELECT", "INSERT"}
    failures = {sql: problems for sql in statements if (problems := tsql_problems(sql))}
    assert not failures, "statements SQL Server 2016 would refuse:\n" + "\n".join(
        f"  {sql}\n    -> {', '.join(problems)}" for sql, problems in failures.items()
    )


# ------------------------------------------------------------------------------------------------- the checker


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT a FROM t LIMIT 1", "LIMIT"),
        ("INSERT INTO t (a) VALUES (?) RETURNING a", "RETURNING"),
        ("INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO NOTHING", "ON CONFLICT"),
        ("SELECT a || b FROM t", "|| string concatenation"),
        ("UPDATE t SET a = ? WHERE b = TRUE", "TRUE/FALSE literal"),
        ("SELECT a FROM t WHERE b ILIKE ?", "ILIKE"),
    ],
)
def test_the_checker_rejects_what_sql_server_lacks_on_the_tree_and_on_the_text(sql: str, problem: str) -> None:
    assert problem in ast_problems(sql)
    assert problem in text_problems(sql)


def test_the_checker_rejects_what_does_not_parse_and_accepts_the_gateways_own_shapes() -> None:
    assert ast_problems("SELECT a FROM WHERE") != []
    for sql in (
        "SELECT PRODID, NAME FROM G_PROD WHERE PRODNO = ? AND INACTIVE IS NULL AND PRODNO IN (?, ?)",
        "INSERT INTO G_PROD (PRODNO, NAME) VALUES (?, ?)",
        "UPDATE G_PROD SET NAME = ? WHERE PRODID = ?",
        "SELECT p.PRODID, COUNT(*) FROM G_PROD p JOIN G_STOCK s ON s.PRODID = p.PRODID GROUP BY p.PRODID",
    ):
        assert tsql_problems(sql) == [], sql


# ----------------------------------------------------------------------------------------- what the jobs emit


def test_every_statement_the_regular_jobs_emit_is_tsql(
    shops: ThreeShops,  # noqa: F811  (the imported fixture)
    recorded: tuple[dict[str, None], list[MamutGateway]],
) -> None:
    assert {
        "products_to_mamut",
        "orders_to_mamut",
        "order_status_to_starweb",
        "products_to_starweb",
        "prices_to_starweb",
        "stock_to_starweb",
    } == set(JOBS), "a new job: add its pass here"
    observe(recorded, shops.gateway)

    for _pass in ("first", "second"):
        products_to_mamut.run(shops.ctx("kombo"))
        products_to_mamut.run(shops.ctx("webshop"))
        orders_to_mamut.run(shops.ctx("kombo"))  # as orders
        products_to_starweb.run(shops.ctx("grossist"))
        orders_to_mamut.run(shops.ctx("grossist"))  # as invoices
        prices_to_starweb.run(shops.ctx("grossist"))
        stock_to_starweb.run(shops.ctx("grossist"))
        prices_to_starweb.run(shops.ctx("kombo"))
        stock_to_starweb.run(shops.ctx("kombo"))
        with unobserved(shops.gateway):  # a Mamut user at work, not the engine
            assert progress_demo_orders(shops.gateway, "kombo", now=datetime.now(UTC)) or _pass == "second"
        order_status_to_starweb.run(shops.ctx("kombo"))
    with unobserved(shops.gateway):  # a price and stock change for the ledger-based jobs to publish
        (sku, *_others) = sorted(mamut_skus(shops.gateway))
        set_mamut_price_and_stock(shops.gateway, sku, Decimal("123.45"), {1: (7, 1), 2: (3, 0)})
    prices_to_starweb.run(shops.ctx("grossist"))
    stock_to_starweb.run(shops.ctx("grossist"))

    assert_tsql(recorded[0], MIN_SHAPES_REGULAR_JOBS)
    assert any(sql.startswith("UPDATE ") for sql in recorded[0])


def test_every_statement_initial_product_sync_emits_is_tsql(
    open_systems,  # noqa: F811  (the imported fixture)
    recorded: tuple[dict[str, None], list[MamutGateway]],
) -> None:
    for direction in (S2M, M2S):
        systems = open_systems(direction)
        observe(recorded, systems.mamut)
        systems.migrate()

    assert_tsql(recorded[0], MIN_SHAPES_INITIAL_SYNC)
