"""orders_to_mamut and products_to_mamut with mamut.write_mode: import, end to end, folder transport.

The integration writes Import/Export files into a temp inbox; the stand-in importer (dev tooling) lands them
in the Mamut mock as Mamut's import would; the confirm pass reads Mamut by SQL and only then links and writes
back. Every file produced is checked against gbax10.xsd.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from starmamut.failpoints import SimulatedCrash
from starmamut.jobs import orders_to_mamut, products_to_mamut
from starmamut.jobs.common import JobContext
from starmamut.mamut.import_export.formats import ENCODING, schema_path
from starmamut.mamut.products import ProductRepository
from starmamut.staging.store import StagingStore
from starmamut_devtools.mamut_importer import process_inbox
from tests.fixtures.jobs import sandbox_job_context
from tests.test_orders_to_mamut import eligible_orders, mamut_orders, settings_for

SCHEMA = xmlschema.XMLSchema(schema_path())


def files_in(inbox: Path, *folders: str) -> list[Path]:
    return sorted(
        path for folder in folders or ("", "processing", "done", "failed") for path in (inbox / folder).glob("*.xml")
    )


def assert_all_valid(inbox: Path) -> None:
    for path in files_in(inbox):
        SCHEMA.validate(path.read_bytes().decode(ENCODING))


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def import_ctx(
    sandbox: Any, mamut_db: Any, staging_store: StagingStore, inbox: Path
) -> Iterator[Callable[..., JobContext]]:
    def make(imports: dict[str, Any] | None = None, clock: Callable[[], dt.datetime] | None = None, **params: Any):
        mamut = {"write_mode": "import", "import": {"inbox": str(inbox), **(imports or {})}}
        ctx = sandbox_job_context(settings_for(mamut), sandbox, staging_store, mamut_db.gateway, params)
        if clock is not None:
            ctx = JobContext(**{**ctx.__dict__, "clock": clock})
        return ctx

    # the catalogue first (written as rows), so order lines find their articles
    products_to_mamut.run(sandbox_job_context(settings_for(), sandbox, staging_store, mamut_db.gateway))
    yield make


def test_orders_go_as_one_file_each_land_through_the_importer_and_are_confirmed_then_written_back(
    import_ctx, sandbox, mamut_db, inbox
):
    expected = {str(oid) for oid in eligible_orders(sandbox)}
    first = orders_to_mamut.run(import_ctx())

    assert {path.name for path in files_in(inbox)} == {f"demo_order_{oid}.xml" for oid in expected}
    assert mamut_orders(mamut_db.gateway) == {}  # the integration wrote no order row
    assert first["loaded"] == 0 and first.get("issued", expected and len(expected)) == len(expected)
    again = orders_to_mamut.run(import_ctx())  # the importer has not run yet: nothing is issued twice
    assert again["loaded"] == 0 and again.get("issued", 0) == 0
    assert len(files_in(inbox)) == len(expected)
    assert all(sandbox.state.order(int(oid)).get("externalId") in (None, "") for oid in expected)

    assert all(process_inbox(mamut_db.gateway, inbox).values())
    confirmed = orders_to_mamut.run(import_ctx())

    landed = mamut_orders(mamut_db.gateway)
    assert set(landed) == {f"demo:{oid}" for oid in expected}
    assert confirmed["loaded"] == len(expected) and confirmed["quarantined"] == 0
    for oid in expected:
        assert sandbox.state.order(int(oid))["externalId"] == str(landed[f"demo:{oid}"]["order_number"])
    assert_all_valid(inbox)
    final = orders_to_mamut.run(import_ctx())
    assert final["loaded"] == 0 and final.get("issued", 0) == 0 and len(files_in(inbox)) == len(expected)


def test_a_crash_after_the_file_is_written_issues_no_second_file(import_ctx, sandbox, mamut_db, inbox, monkeypatch):
    ctx = import_ctx()
    extracted = orders_to_mamut.extract(ctx)
    orders_to_mamut.validate(ctx, extracted["batch_id"])
    monkeypatch.setenv("STARMAMUT_FAILPOINT", "orders_to_mamut.after_import_file@2")
    with pytest.raises(SimulatedCrash):
        orders_to_mamut.load(ctx, extracted["batch_id"])
    monkeypatch.delenv("STARMAMUT_FAILPOINT")
    assert len(files_in(inbox)) == 2
    written = {path.name: path.stat().st_mtime_ns for path in files_in(inbox)}
    retried = orders_to_mamut.load(ctx, extracted["batch_id"])  # the Airflow retry
    assert retried["issued"] == len(eligible_orders(sandbox)) - 2
    assert all(path.stat().st_mtime_ns == written[path.name] for path in files_in(inbox) if path.name in written)

    assert all(process_inbox(mamut_db.gateway, inbox).values())
    orders_to_mamut.run(import_ctx())
    assert set(mamut_orders(mamut_db.gateway)) == {f"demo:{oid}" for oid in eligible_orders(sandbox)}


KILLED_LOAD = """
import json, sys
from starmamut.config import Settings
from starmamut.jobs import orders_to_mamut
from starmamut.jobs.common import JobContext, RunParams
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient, StarwebCredentials

args = json.loads(sys.argv[1])
settings = Settings.model_validate(args["settings"])
credentials = StarwebCredentials(*args["starweb"])
ctx = JobContext(
    settings=settings,
    shop=settings.shop("demo"),
    store=StagingStore.from_url(args["staging"]),
    open_starweb=lambda: StarwebClient(credentials),
    open_mamut=lambda: MamutGateway(args["odbc"], SchemaMap.load()),
    params=RunParams.from_mapping({}),
)
orders_to_mamut.load(ctx, args["batch_id"])
"""


def test_a_load_killed_between_file_and_confirm_never_issues_the_order_again(
    import_ctx, sandbox, mamut_db, staging_store, inbox, tmp_path
):
    if mamut_db.backend != "sqlite":
        pytest.skip("one backend is enough for the process kill")
    ctx = import_ctx()
    extracted = orders_to_mamut.extract(ctx)
    orders_to_mamut.validate(ctx, extracted["batch_id"])
    pause = tmp_path / "pause"
    pause.mkdir()
    arguments = {
        "settings": ctx.settings.model_dump(by_alias=True, mode="json"),
        "starweb": [sandbox.base_url, sandbox.client_id, sandbox.client_secret],
        "staging": staging_store._engine.url.render_as_string(hide_password=False),
        "odbc": mamut_db.odbc,
        "batch_id": extracted["batch_id"],
    }
    env = {
        **os.environ,
        "STARMAMUT_FAILPOINT": "orders_to_mamut.after_import_file@3",
        "STARMAMUT_FAILPOINT_PAUSE_DIR": str(pause),
    }
    child = subprocess.Popen([sys.executable, "-c", KILLED_LOAD, json.dumps(arguments)], env=env)
    try:
        reached = pause / "orders_to_mamut.after_import_file.reached"
        deadline = time.monotonic() + 120
        while not reached.exists():
            assert child.poll() is None, "the load ended before the fail point"
            assert time.monotonic() < deadline, "the load never reached the fail point"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # the file is in the inbox, its issue not recorded, nothing confirmed
    finally:
        child.kill()
        child.wait()
    assert len(files_in(inbox)) == 3
    written = {path.name: path.read_bytes() for path in files_in(inbox)}

    retried = orders_to_mamut.load(ctx, extracted["batch_id"])
    assert retried["issued"] == len(eligible_orders(sandbox)) - 3
    assert {path.name: path.read_bytes() for path in files_in(inbox) if path.name in written} == written
    assert all(process_inbox(mamut_db.gateway, inbox).values())
    result = orders_to_mamut.run(import_ctx())
    assert result["loaded"] == len(eligible_orders(sandbox))
    assert set(mamut_orders(mamut_db.gateway)) == {f"demo:{oid}" for oid in eligible_orders(sandbox)}
    assert len(files_in(inbox, "done")) == len(eligible_orders(sandbox))


def test_a_file_the_importer_refuses_is_quarantined_naming_the_order_with_mamuts_output(
    import_ctx, sandbox, mamut_db, staging_store, inbox
):
    orders_to_mamut.run(import_ctx())
    victim = files_in(inbox)[0]
    order_id = victim.name.removeprefix("demo_order_").removesuffix(".xml")
    victim.write_bytes(
        victim.read_bytes().replace(b"<CONTNAME>", b"<KUNDNAMN>").replace(b"</CONTNAME>", b"</KUNDNAMN>")
    )
    results = process_inbox(mamut_db.gateway, inbox)
    assert results[victim.name] is False and sum(results.values()) == len(results) - 1

    result = orders_to_mamut.run(import_ctx())
    assert result["loaded"] == len(results) - 1
    [entry] = [entry for entry in staging_store.open_quarantine("demo", "order") if entry.key == order_id]
    [reason] = entry.reasons
    assert reason["check"] == "mamut_import_failed"
    assert f"order {order_id}" in reason["reason"] and "följer inte formatet" in reason["reason"]
    assert orders_to_mamut.run(import_ctx()).get("issued", 0) == 0  # not issued again while in failed/

    (inbox / "failed" / victim.name).unlink()  # the operator clears it: the next run issues it again
    assert orders_to_mamut.run(import_ctx())["issued"] == 1
    assert all(process_inbox(mamut_db.gateway, inbox).values())
    orders_to_mamut.run(import_ctx())
    assert f"demo:{order_id}" in mamut_orders(mamut_db.gateway)
    assert order_id not in {entry.key for entry in staging_store.open_quarantine("demo", "order")}


def test_an_order_mamut_does_not_show_in_time_is_raised_as_a_problem(import_ctx, sandbox, staging_store, inbox):
    orders_to_mamut.run(import_ctx({"confirm_timeout_minutes": 30}))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)
    result = orders_to_mamut.run(import_ctx({"confirm_timeout_minutes": 30}, clock=lambda: later))
    held = {entry.key: entry.reasons for entry in staging_store.open_quarantine("demo", "order")}
    assert set(held) == {str(oid) for oid in eligible_orders(sandbox)}
    assert all(reasons[0]["check"] == "mamut_import_unconfirmed" for reasons in held.values())
    assert "queued" in next(iter(held.values()))[0]["reason"] and result.get("issued", 0) == 0


def test_articles_go_as_gbapx10_files_and_are_linked_once_mamut_shows_them(sandbox, staging_store, inbox, tmp_path):
    from starmamut.mamut.gateway import MamutGateway
    from starmamut.mamut.schema_map import SchemaMap
    from starmamut_devtools.mamut_mock import create_mock_company_database, sqlite_odbc_string

    odbc = sqlite_odbc_string(tmp_path / "articles.db")
    create_mock_company_database(odbc, seed="reference")
    with MamutGateway(odbc, SchemaMap.load()) as gateway:
        mamut = {"write_mode": "import", "import": {"inbox": str(inbox), "articles_per_file": 5}}

        def ctx() -> JobContext:
            return sandbox_job_context(settings_for(mamut), sandbox, staging_store, gateway)

        first = products_to_mamut.run(ctx())
        files = files_in(inbox)
        assert files and all(path.name.startswith("demo_articles_") for path in files)
        assert list(ProductRepository(gateway).iter_articles()) == []  # nothing written by the integration
        assert first["loaded"] == 0
        assert products_to_mamut.run(ctx()).get("issued", 0) == 0 and files_in(inbox) == files
        assert_all_valid(inbox)

        assert all(process_inbox(gateway, inbox).values())
        confirmed = products_to_mamut.run(ctx())
        links = staging_store.get_links("demo", "product")
        assert confirmed["loaded"] == len(links) > 0
        skus = {article["sku"] for article in ProductRepository(gateway).iter_articles()}
        assert {link.sku for link in links.values()} <= skus
        again = products_to_mamut.run(ctx())
        assert again.get("issued", 0) == 0 and again["loaded"] == 0
