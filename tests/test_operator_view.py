"""The Starmamut view without a server: what it shows and what its actions do (model), its routes through
FastAPI's TestClient with Airflow replaced by a stand-in (who the user is, what they may do, the DAG run made),
the store's dismissal, and the Test-button middleware. tests/test_operator_view_browser.py runs it all in a real
Airflow API server and a real browser.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from starmamut.config import Settings, load_settings
from starmamut.jobs import products_to_starweb
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut.operator_view.app import Triggered, Viewer, create_app
from starmamut.operator_view.connection_test import ConnectionTestPortMiddleware, without_unset_port
from starmamut.operator_view.model import (
    RESYNC_BY_ENTITY,
    ActionRefused,
    Selection,
    dismiss,
    mask_secrets,
    overview,
    plan_release,
    plan_resync,
)
from starmamut.staging.store import StagedRow, StagingStore
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.mamut import fresh_mock_database
from tests.test_products_to_starweb import SETTINGS as PRODUCTS_SETTINGS

CONFIG = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1}},
    "shops": {
        "demo": {"name": "Demobutiken", "flow": "ecom", "starweb_conn_id": "starweb_demo"},
        "grossist": {"name": "Grossisten", "flow": "erp", "starweb_conn_id": "starweb_grossist"},
    },
}
ORDER_PAYLOAD = {
    "order_id": "1001",
    "email": "kund@example.se",
    "payment": {"api_key": "sk-live-XYZ"},
    "total": "10,50",
}


@dataclass(frozen=True)
class Grants:
    """A stand-in for Airflow's auth manager: DAG ids the user may read and trigger ('*' = all)."""

    read: frozenset[str] = frozenset({"*"})
    trigger: frozenset[str] = frozenset()

    def may_read(self, dag_id: str) -> bool:
        return "*" in self.read or dag_id in self.read

    def may_trigger(self, dag_id: str) -> bool:
        return "*" in self.trigger or dag_id in self.trigger


ADMIN = Grants(trigger=frozenset({"*"}))
VIEWER = Grants()


@pytest.fixture
def settings(shop_config) -> Any:
    return load_settings(shop_config(CONFIG))


def quarantine_order(store: StagingStore, key: str = "1001", *, accepted: bool = True) -> str:
    batch_id = store.start_batch("demo", "orders_to_mamut", "order")
    store.stage_rows(
        batch_id, "order", [StagedRow(key=key, payload={**ORDER_PAYLOAD, "order_id": key}, content_hash="h")]
    )
    reason = {"check": "totals_add_up", "reason": f"order {key}: totalAmount 10,50 is not a number"}
    store.quarantine("demo", "order", key, [reason], batch_id, accepted=accepted)
    store.finish_batch(batch_id, "done", {"read": 1, "quarantined": 1, "loaded": 0, "requests": 3})
    return batch_id


# --- the store -----------------------------------------------------------------------------------------------


def test_dismissal_closes_the_entry_and_keeps_who_when_and_why(staging_store: StagingStore) -> None:
    quarantine_order(staging_store)

    assert staging_store.dismiss_quarantine("demo", "order", ["1001"], by="anna", note="  test order  ") == 1

    assert staging_store.open_quarantine("demo") == []
    [entry] = staging_store.dismissed_quarantine("demo")
    assert (entry.key, entry.dismissed_by, entry.dismissal_note) == ("1001", "anna", "test order")
    assert entry.dismissed_at is not None and entry.resolved_at == entry.dismissed_at
    assert staging_store.dismiss_quarantine("demo", "order", ["1001"], by="anna", note="again") == 0


def test_a_dismissal_needs_a_note_and_a_name(staging_store: StagingStore) -> None:
    quarantine_order(staging_store)
    with pytest.raises(ValueError, match="needs a note"):
        staging_store.dismiss_quarantine("demo", "order", ["1001"], by="anna", note=" ")
    with pytest.raises(ValueError, match="name of who"):
        staging_store.dismiss_quarantine("demo", "order", ["1001"], by="", note="why")
    assert [entry.key for entry in staging_store.open_quarantine("demo")] == ["1001"]


def test_a_record_failing_again_after_a_dismissal_opens_a_new_entry(staging_store: StagingStore) -> None:
    quarantine_order(staging_store)
    staging_store.dismiss_quarantine("demo", "order", ["1001"], by="anna", note="known")
    quarantine_order(staging_store)

    assert [entry.key for entry in staging_store.open_quarantine("demo")] == ["1001"]
    assert [entry.dismissal_note for entry in staging_store.dismissed_quarantine("demo")] == ["known"]


# --- the model -----------------------------------------------------------------------------------------------


def test_resync_entities_are_the_jobs_own() -> None:
    import importlib

    for entity, (job, _) in RESYNC_BY_ENTITY.items():
        assert entity == importlib.import_module(f"starmamut.jobs.{job}").ENTITY


def test_overview_shows_runs_quarantine_and_the_staged_record_without_secrets(settings, staging_store) -> None:
    batch_id = quarantine_order(staging_store)

    [demo, grossist] = overview(settings, staging_store, VIEWER)

    runs = {job.job: job for job in demo.jobs}
    assert set(runs) == {"products_to_mamut", "orders_to_mamut"}
    [run] = runs["orders_to_mamut"].runs
    assert (run.batch.batch_id, run.batch.status, run.batch.dry_run, run.requests) == (batch_id, "done", False, 3)
    assert dict(run.counts) == {"read": 1, "loaded": 0, "quarantined": 1}
    [row] = demo.quarantine
    assert (row.entry.key, row.job, row.dag_id) == ("1001", "orders_to_mamut", "demo__orders_to_mamut")
    assert row.payload["payment"] == {"api_key": "***"} and row.payload["email"] == "kund@example.se"
    assert row.resync is not None and row.resync.conf == {"resync_ids": [1001]}
    assert not row.may_act and not demo.may_act
    assert grossist.quarantine == [] and {job.job for job in grossist.jobs} >= {"products_to_starweb"}


def test_secrets_are_masked_at_any_depth() -> None:
    masked = mask_secrets({"a": [{"Password": "x", "b": {"client_secret": 1, "token_url": "y"}}], "sku": "S"})
    assert masked == {"a": [{"Password": "***", "b": {"client_secret": "***", "token_url": "***"}}], "sku": "S"}


def test_a_user_sees_only_the_shops_and_jobs_whose_dags_they_may_read(settings, staging_store) -> None:
    quarantine_order(staging_store)

    [demo] = overview(settings, staging_store, Grants(read=frozenset({"demo__orders_to_mamut"})))

    assert [job.job for job in demo.jobs] == ["orders_to_mamut"] and len(demo.quarantine) == 1
    [demo] = overview(settings, staging_store, Grants(read=frozenset({"demo__products_to_mamut"})))
    assert demo.quarantine == []


def test_resync_groups_records_per_job_with_the_jobs_param(settings, staging_store) -> None:
    quarantine_order(staging_store, "1001")
    quarantine_order(staging_store, "1002")
    selections = [Selection("demo", "order", "1001"), Selection("demo", "order", "1002")]

    [plan] = plan_resync(settings, staging_store, ADMIN, selections)

    assert (plan.dag_id, plan.conf) == ("demo__orders_to_mamut", {"resync_ids": [1001, 1002]})
    with pytest.raises(ActionRefused, match="may not trigger demo__orders_to_mamut"):
        plan_resync(settings, staging_store, VIEWER, selections)
    with pytest.raises(ActionRefused, match="no longer in the open quarantine"):
        plan_resync(settings, staging_store, ADMIN, [Selection("demo", "order", "999")])


def test_price_and_stock_records_are_resynced_by_sku(settings, staging_store) -> None:
    batch_id = staging_store.start_batch("grossist", "prices_to_starweb", "price")
    for key in ("MUGG-ORE@pricelist:1", "MUGG-ORE@pricelist:2"):
        staging_store.quarantine("grossist", "price", key, [{"check": "c", "reason": "r"}], batch_id)
    selections = [Selection("grossist", "price", key) for key in ("MUGG-ORE@pricelist:1", "MUGG-ORE@pricelist:2")]

    [plan] = plan_resync(settings, staging_store, ADMIN, selections)

    assert (plan.dag_id, plan.conf) == ("grossist__prices_to_starweb", {"skus": ["MUGG-ORE"]})


def test_dismiss_needs_a_note_and_permission(settings, staging_store) -> None:
    quarantine_order(staging_store)
    selection = [Selection("demo", "order", "1001")]

    with pytest.raises(ActionRefused, match="needs a note"):
        dismiss(settings, staging_store, ADMIN, selection, by="anna", note="")
    with pytest.raises(ActionRefused, match="may not act"):
        dismiss(settings, staging_store, VIEWER, selection, by="vera", note="no")
    [entry] = dismiss(settings, staging_store, ADMIN, selection, by="anna", note="a test order")

    assert entry.key == "1001" and staging_store.open_quarantine("demo") == []


def test_only_the_newest_stopped_batch_of_a_job_is_released(settings, staging_store) -> None:
    batch_id = quarantine_order(staging_store)
    staging_store.set_batch_status(batch_id, "stopped")
    [demo, _] = overview(settings, staging_store, ADMIN)
    [run] = next(job for job in demo.jobs if job.job == "orders_to_mamut").runs
    assert run.releasable and dict(run.counts)["quarantined"] == 1

    plan = plan_release(settings, staging_store, ADMIN, batch_id)

    assert (plan.dag_id, plan.conf) == ("demo__orders_to_mamut", {"accept_quarantine": True})
    staging_store.start_batch("demo", "orders_to_mamut", "order")
    with pytest.raises(ActionRefused, match="not the newest"):
        plan_release(settings, staging_store, ADMIN, batch_id)
    with pytest.raises(ActionRefused, match="not stopped"):
        plan_release(settings, staging_store, ADMIN, quarantine_order(staging_store, "1002"))


# --- the app -------------------------------------------------------------------------------------------------


@dataclass
class FakeServices:
    """Airflow replaced: a fixed user and grants, the test's store, runs recorded instead of made."""

    settings_: Any
    store_: StagingStore
    name: str = "admin"
    grants: Grants = ADMIN
    signed_in: bool = True
    triggered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    audited: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def viewer(self, request: Any, credentials: Any) -> Viewer:
        from fastapi import HTTPException

        if not self.signed_in:
            raise HTTPException(401, "Not authenticated")
        return Viewer(name=self.name, permissions=self.grants, credential=f"jwt-of-{self.name}")

    def login_url(self, next_url: str) -> str:
        return f"/auth/login?next={next_url}"

    def settings(self) -> Any:
        return self.settings_

    def store(self, settings: Any) -> StagingStore:
        return self.store_

    def trigger(self, plan: Any, viewer: Viewer) -> Triggered:
        self.triggered.append((plan.dag_id, plan.conf))
        return Triggered(plan.dag_id, f"manual__{len(self.triggered)}", paused=False)

    def audit(self, action: str, viewer: Viewer, details: dict[str, Any], dag_id: str | None = None) -> None:
        self.audited.append((action, details))


def client_for(services: FakeServices) -> TestClient:
    return TestClient(create_app(services), follow_redirects=False)  # type: ignore[arg-type]


def form_token(services: FakeServices) -> str:
    return Viewer(name=services.name, permissions=services.grants, credential=f"jwt-of-{services.name}").form_token


def test_page_lists_the_quarantined_record_and_offers_the_actions(settings, staging_store) -> None:
    quarantine_order(staging_store)
    services = FakeServices(settings, staging_store)

    page = client_for(services).get("/")

    assert page.status_code == 200
    assert "totalAmount 10,50 is not a number" in page.text and "kund@example.se" in page.text
    assert "sk-live-XYZ" not in page.text
    assert 'id="resync-demo"' in page.text and 'id="dismiss-demo"' in page.text


def test_a_shadow_mode_shop_lists_its_would_be_writes_after_a_dry_run(sandbox, staging_store, tmp_path) -> None:
    settings = Settings.model_validate(PRODUCTS_SETTINGS)  # the shop has no live: shadow mode
    with fresh_mock_database("sqlite", tmp_path, seed="demo") as odbc, MamutGateway(odbc, SchemaMap.load()) as mamut:
        ctx = sandbox_job_context(settings, sandbox, staging_store, mamut)
        ctx = replace(ctx, params=ctx.params.for_shop(ctx.shop.live))  # as a task builds it
        sandbox.reset_requests()

        result = products_to_starweb.run(ctx)

    assert sandbox.write_requests() == [] and result["planned"]
    [batch] = staging_store.latest_batches("demo", products_to_starweb.JOB, limit=1)
    assert batch.dry_run and batch.counts["planned"] == result["planned"]
    page = client_for(FakeServices(settings, staging_store)).get("/?shop=demo")
    assert "shadow mode (not live)" in page.text
    assert all(f"<li>{entry}</li>" in html.unescape(page.text) for entry in result["planned"])


def test_a_viewer_sees_the_record_without_actions_and_is_refused_with_403(settings, staging_store) -> None:
    quarantine_order(staging_store)
    services = FakeServices(settings, staging_store, name="viewer", grants=VIEWER)
    client = client_for(services)

    page = client.get("/")
    refused = client.post(
        "/resync",
        data={"selected": Selection("demo", "order", "1001").encode(), "form_token": form_token(services)},
    )

    assert "totalAmount 10,50" in page.text and 'id="resync-demo"' not in page.text and "no-actions" in page.text
    assert refused.status_code == 403 and "needs permission to trigger" in refused.text
    assert services.triggered == []


def test_resync_triggers_the_dag_and_says_so_after_a_redirect(settings, staging_store) -> None:
    quarantine_order(staging_store)
    services = FakeServices(settings, staging_store)
    client = client_for(services)

    done = client.post(
        "/resync",
        data={"selected": Selection("demo", "order", "1001").encode(), "form_token": form_token(services)},
    )

    assert done.status_code == 303
    assert services.triggered == [("demo__orders_to_mamut", {"resync_ids": [1001]})]
    assert services.audited == [("resync", {"conf": {"resync_ids": [1001]}, "run_id": "manual__1"})]
    shown = client.get(done.headers["location"])
    assert "triggered demo__orders_to_mamut run manual__1" in shown.text


def test_dismiss_keeps_the_note_and_shows_it(settings, staging_store) -> None:
    quarantine_order(staging_store)
    services = FakeServices(settings, staging_store)
    client = client_for(services)
    selected = Selection("demo", "order", "1001").encode()

    empty = client.post("/dismiss", data={"selected": selected, "note": " ", "form_token": form_token(services)})
    done = client.post(
        "/dismiss", data={"selected": selected, "note": "test order", "form_token": form_token(services)}
    )

    assert empty.status_code == 400 and "needs a note" in empty.text
    assert done.status_code == 303
    [entry] = staging_store.dismissed_quarantine("demo")
    assert (entry.dismissed_by, entry.dismissal_note) == ("admin", "test order")
    page = client.get(done.headers["location"]).text
    assert "dismissed demo order 1001" in page and 'class="dismissal-note">test order<' in page


def test_posts_need_the_pages_form_token(settings, staging_store) -> None:
    quarantine_order(staging_store)
    services = FakeServices(settings, staging_store)

    forged = client_for(services).post(
        "/dismiss", data={"selected": Selection("demo", "order", "1001").encode(), "note": "x", "form_token": "f"}
    )

    assert forged.status_code == 403 and staging_store.dismissed_quarantine("demo") == []


def test_a_notice_not_signed_for_this_session_is_not_shown(settings, staging_store) -> None:
    page = client_for(FakeServices(settings, staging_store)).get("/", params={"notice": "call 555", "sig": "x"})
    assert "call 555" not in page.text


def test_release_triggers_an_accept_quarantine_run(settings, staging_store) -> None:
    batch_id = quarantine_order(staging_store)
    staging_store.set_batch_status(batch_id, "stopped")
    services = FakeServices(settings, staging_store)

    done = client_for(services).post("/release", data={"batch_id": batch_id, "form_token": form_token(services)})

    assert done.status_code == 303
    assert services.triggered == [("demo__orders_to_mamut", {"accept_quarantine": True})]


def test_a_signed_out_browser_is_sent_to_the_login(settings, staging_store) -> None:
    page = client_for(FakeServices(settings, staging_store, signed_in=False)).get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")


def test_migration_report_is_rendered_from_its_file(settings, staging_store, tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    report.write_text(
        "# Initial product sync\n\n| outcome | count |\n|---|---|\n| created | 3 |\n\n<script>x</script>\n"
    )
    batch_id = staging_store.start_batch("demo", "initial_product_sync", "product")
    staging_store.finish_batch(batch_id, "done", {"direction": "starweb_to_mamut", "report_file": str(report)})
    client = client_for(FakeServices(settings, staging_store))

    page = client.get(f"/reports/{batch_id}")
    index = client.get("/").text

    assert page.status_code == 200
    assert "<td>created</td>" in page.text and "<script>x" not in page.text
    assert f"reports/{batch_id}" in index
    assert client.get("/reports/nope").status_code == 404


def test_a_report_on_another_host_shows_the_batch_counts(settings, staging_store, tmp_path: Path) -> None:
    batch_id = staging_store.start_batch("demo", "initial_product_sync", "product")
    gone = str(tmp_path / "elsewhere.md")
    staging_store.finish_batch(batch_id, "done", {"direction": "starweb_to_mamut", "created": 3, "report_file": gone})

    page = client_for(FakeServices(settings, staging_store)).get(f"/reports/{batch_id}").text

    assert "is not on this server" in page and "<th>created</th>" in page


# --- the Test button -----------------------------------------------------------------------------------------

UI_TEST_BODY = {
    "conn_type": "starweb",
    "connection_id": "starweb_demo",
    "description": "",
    "extra": "{}",
    "host": "https://demo.starwebserver.se/api/v2",
    "login": "partner.app",
    "password": "***",
    "port": 0,
    "schema": "",
}


def test_the_port_the_ui_invents_is_dropped_for_our_types_only() -> None:
    assert json.loads(without_unset_port(json.dumps(UI_TEST_BODY).encode()) or b"") == {
        name: value for name, value in UI_TEST_BODY.items() if name != "port"
    }
    assert without_unset_port(json.dumps({**UI_TEST_BODY, "port": 443}).encode()) is None
    assert without_unset_port(json.dumps({**UI_TEST_BODY, "conn_type": "postgres"}).encode()) is None
    assert without_unset_port(b"not json") is None


async def echo(request: Request) -> dict[str, Any]:
    return {"body": await request.json(), "length": request.headers["content-length"]}


def test_the_middleware_rewrites_only_the_connection_test() -> None:
    app = FastAPI()
    app.post("/api/v2/connections/test")(echo)
    app.post("/api/v2/connections")(echo)
    app.add_middleware(ConnectionTestPortMiddleware)
    client = TestClient(app)

    tested = client.post("/api/v2/connections/test", json=UI_TEST_BODY).json()
    saved = client.post("/api/v2/connections", json=UI_TEST_BODY).json()

    assert "port" not in tested["body"] and int(tested["length"]) == len(json.dumps(tested["body"]))
    assert saved["body"]["port"] == 0


def test_plugin_registers_the_app_the_view_and_the_middleware() -> None:
    import importlib.util

    from tests.conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("starmamut_plugin", REPO_ROOT / "plugins" / "starmamut_plugin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.StarmamutPlugin

    [app] = plugin.fastapi_apps
    [view] = plugin.external_views
    [middleware] = plugin.fastapi_root_middlewares
    assert (app["url_prefix"], view["href"], view["url_route"], view["destination"]) == (
        "/starmamut",
        "starmamut/",
        "starmamut",
        "nav",
    )
    assert middleware["middleware"] is ConnectionTestPortMiddleware
