"""The bad-input corpus (tests/data/bad_input/*.json) run against orders_to_mamut and products_to_mamut.

Each record-level case changes how the sandbox renders one order, product or variant (as a shop with a bug would
send it) and declares its outcome: ``quarantine`` (the reason names the record and ``field``; the rest of the
batch loads; nothing of the record is in Mamut) or ``load`` (the value is acceptable and lands intact). Each
listing-level case breaks the orders listing; the run must fail with a Starweb error before any watermark moves
or anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from starmamut.jobs import orders_to_mamut, products_to_mamut
from starmamut.jobs.common import JobContext
from starmamut.mamut.orders import ORDER_LINE
from starmamut.starweb.errors import StarwebError
from starmamut_devtools.sandbox import server as sandbox_server
from tests.test_orders_faults import render_order_as
from tests.test_orders_to_mamut import eligible_orders, make_ctx, mamut_orders  # noqa: F401 - the fixture too
from tests.test_products_to_mamut import SETTINGS as PRODUCT_SETTINGS
from tests.test_products_to_mamut import expected_mamut_skus, mamut_rows

CORPUS = Path(__file__).parent / "data" / "bad_input"
pytestmark = pytest.mark.parametrize("mamut_db", ["sqlite"], indirect=True)


def _cases(name: str) -> list[Any]:
    cases = json.loads((CORPUS / name).read_text(encoding="utf-8"))
    return [
        pytest.param(case, id=case["name"], marks=[pytest.mark.xfail(reason=case["known_bug"], strict=True)])
        if "known_bug" in case
        else pytest.param(case, id=case["name"])
        for case in cases
    ]


def _value(spec: Any) -> Any:
    """A JSON value, or one JSON files cannot hold literally: ``{"$repeat": [text, n]}``, ``{"$float": "nan"}``."""
    if isinstance(spec, dict) and set(spec) == {"$repeat"}:
        text, times = spec["$repeat"]
        return text * times
    if isinstance(spec, dict) and set(spec) == {"$float"}:
        return float(spec["$float"])
    return spec


def _walk(body: Any, path: str) -> tuple[Any, Any]:
    *parents, last = path.split(".")
    for part in parents:
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body, int(last) if isinstance(body, list) else last


def apply_change(case: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        for path, spec in case.get("set", {}).items():
            try:
                parent, key = _walk(body, path)
            except (KeyError, IndexError, TypeError):  # a rendering without that part (no includes)
                continue
            parent[key] = _value(spec)
        for path in case.get("unset", []):
            try:
                parent, key = _walk(body, path)
            except (KeyError, IndexError, TypeError):
                continue
            parent.pop(key, None)

    return change


def open_reasons(ctx: JobContext, entity: str) -> dict[str, str]:
    return {
        entry.key: "; ".join(reason["reason"] for reason in entry.reasons)
        for entry in ctx.store.open_quarantine(ctx.shop.id, entity)
    }


def orphan_lines(gateway: Any) -> int:
    """Order lines in Mamut whose order row is not there (a half-written order)."""
    keys = {order["order_key"] for order in mamut_orders(gateway, "").values()}
    with gateway.transaction() as tx:
        return sum(1 for line in tx.select(ORDER_LINE, ["order_key"]) if line["order_key"] not in keys)


@pytest.mark.parametrize("case", _cases("orders.json"))
def test_a_bad_order(case, make_ctx, sandbox, mamut_db, monkeypatch) -> None:  # noqa: F811 - the imported fixture
    expected = eligible_orders(sandbox)
    bad = min(expected)
    render_order_as(sandbox, monkeypatch, bad, apply_change(case))

    result = orders_to_mamut.run(make_ctx())  # never fails for one record's data

    reasons = open_reasons(make_ctx(), orders_to_mamut.ENTITY)
    landed = mamut_orders(mamut_db.gateway)
    others = {f"demo:{oid}" for oid in expected if oid != bad}
    assert others <= set(landed), "every other eligible order is loaded"
    assert orphan_lines(mamut_db.gateway) == 0
    if case["expect"] == "quarantine":
        assert list(reasons) == [str(bad)], result
        assert str(bad) in reasons[str(bad)] and case["field"] in reasons[str(bad)], reasons[str(bad)]
        assert f"demo:{bad}" not in landed
        assert result["quarantined"] + result.get("failed", 0) >= 1
    else:
        assert reasons == {}, reasons
        assert f"demo:{bad}" in landed
        description = case.get("lands", {}).get("line_description")
        if description is not None:
            assert description in [line["description"] for line in landed[f"demo:{bad}"]["lines"]]


def render_product_as(sandbox: Any, monkeypatch: pytest.MonkeyPatch, case: dict[str, Any]) -> int:
    """From now on the shop sends the first product (or its variants) changed as ``case`` says."""
    state = sandbox.state
    product_id = min(state.product_ids())
    change = apply_change(case)
    if case["record"] == "product":
        render = state._render_product

        def rendered(product: Any, includes: frozenset[str], **kwargs: Any) -> dict[str, Any]:
            body = render(product, includes, **kwargs)
            if product.product_id == product_id:
                change(body)
            return body

        monkeypatch.setattr(state, "_render_product", rendered)
    else:
        variant_ids = {variant["variantId"] for variant in state.list_variants(product_id)}
        render_variant = state._render_variant_with

        def rendered_variant(variant: Any, includes: frozenset[str]) -> dict[str, Any]:
            body = render_variant(variant, includes)
            if variant.variant_id in variant_ids:
                change(body)
            return body

        monkeypatch.setattr(state, "_render_variant_with", rendered_variant)
    return product_id


@pytest.fixture
def make_product_ctx(sandbox: Any, mamut_db: Any, staging_store: Any) -> Callable[..., JobContext]:
    from starmamut.config import Settings
    from tests.fixtures.jobs import sandbox_job_context

    settings = Settings.model_validate(
        {**PRODUCT_SETTINGS, "shops": {"demo": {**PRODUCT_SETTINGS["shops"]["demo"], "products_to_mamut": {}}}}
    )
    return lambda **params: sandbox_job_context(settings, sandbox, staging_store, mamut_db.gateway, params)


@pytest.mark.parametrize("case", _cases("products.json"))
def test_a_bad_product(case, make_product_ctx, sandbox, mamut_db, monkeypatch) -> None:
    bad = render_product_as(sandbox, monkeypatch, case)
    bad_skus = {variant["sku"] for variant in sandbox.state.list_variants(bad)} | {f"SW-{bad}"}

    products_to_mamut.run(make_product_ctx())

    reasons = open_reasons(make_product_ctx(), products_to_mamut.ENTITY)
    rows = mamut_rows(mamut_db.gateway)
    assert expected_mamut_skus(sandbox) - bad_skus <= set(rows), "every other product is loaded"
    if case["expect"] == "quarantine":
        assert list(reasons) == [str(bad)]
        assert case["field"] in reasons[str(bad)], reasons[str(bad)]
        assert not bad_skus & set(rows)
    else:
        assert reasons == {}, reasons
        name = case.get("lands", {}).get("article_name")
        assert bad_skus & set(rows)
        if name is not None:
            assert {rows[sku]["name"] for sku in bad_skus & set(rows)} == {name}


class _Raw:
    """A body the sandbox sends as it is (not JSON), with ``text/html``."""

    def __init__(self, text: str) -> None:
        self.text = text


@pytest.mark.parametrize("case", _cases("listings.json"))
def test_a_broken_orders_listing(case, make_ctx, sandbox, mamut_db, monkeypatch) -> None:  # noqa: F811
    if "faults" in case:
        sandbox.faults.update(case["faults"])
    else:
        route = sandbox._route
        replacement = _Raw(case["orders_raw"]) if "orders_raw" in case else case["orders_body"]

        def broken_route(method: str, path: str, *args: Any) -> Any:
            outcome = route(method, path, *args)
            return sandbox_server._Outcome(200, replacement) if method == "GET" and path == "/orders" else outcome

        monkeypatch.setattr(sandbox, "_route", broken_route)
        send = sandbox_server._RequestHandler._send

        def send_raw(handler: Any, status: int, body: Any) -> None:
            if not isinstance(body, _Raw):
                return send(handler, status, body)
            payload = body.text.encode("utf-8")
            handler.send_response(status)
            handler.send_header("Content-Type", "text/html; charset=utf-8")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)

        monkeypatch.setattr(sandbox_server._RequestHandler, "_send", send_raw)

    with pytest.raises(StarwebError):
        orders_to_mamut.run(make_ctx())

    ctx = make_ctx()
    assert ctx.store.get_watermark(ctx.shop.id, orders_to_mamut.JOB) is None
    assert mamut_orders(mamut_db.gateway) == {}
    assert sandbox.write_requests() == []
