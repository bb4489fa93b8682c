"""The Starmamut view in a real Airflow API server and a real browser (Debian's chromium + chromium-driver).

One `airflow api-server` on a free port, against a fresh Airflow home whose staging holds quarantined records,
with this repository's DAGs and plugins folder and the simple auth manager's `admin` and `viewer`. As an
operator would: log in, open the Starmamut entry of the navigation, see the records with their reasons,
re-sync two of them and dismiss one with a note; then check the effect where it lands (the staging row
dismissed with who and why, one queued DAG run per job with the right conf). The viewer sees the records but
may not act. The Connections page's Test button tests a saved Starweb Connection (success, then a refused
secret). Last, with a scheduler beside the API server and the shop's Connections on a sandbox and a Mamut mock, a
re-sync pressed in the view runs through the scheduler, succeeds and heals the record. Screenshots go to
$STARMAMUT_TEST_ARTIFACTS (default tests/artifacts/, git-ignored), under operator_view/.

Every process started here (the API server, the scheduler, chromedriver and its browser) runs in a session of its
own that a watchdog kills when this test process ends, however it ends (tests/fixtures/processes.py).
"""

from __future__ import annotations

import html
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from starmamut.operator_view.app import Viewer
from starmamut.operator_view.model import Selection
from starmamut.staging.store import StagedRow, StagingStore, default_staging_url
from tests.conftest import REPO_ROOT
from tests.fixtures.processes import reap_with_this_process
from tests.test_demo import free_port

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("STARMAMUT_TEST_ARTIFACTS") or REPO_ROOT / "tests" / "artifacts") / "operator_view"
STARTUP_SECONDS = 180
WAIT_SECONDS = 30
RUN_SECONDS = 300
BROWSER_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # root in CI
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
"""The browser's own processes stay in chromedriver's session; its crash handlers (sessions of their own) exit
when the browser is gone, also when the watchdog kills it."""
PASSWORDS = {"admin": secrets.token_urlsafe(12), "viewer": secrets.token_urlsafe(12)}
CONFIG = {
    "version": 1,
    "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1, 12: 2, 6: 3, 0: 4}},
    "shops": {
        "demo": {
            "name": "Demobutiken",
            "flow": "ecom",
            "starweb_conn_id": "starweb_demo",
            "live": True,
            "schedules": {"products_to_mamut": None, "orders_to_mamut": None},
        }
    },
}
ORDER_REASON = "order 1001: totalAmount '12,50' is not a number"
PRODUCT_REASON = "product 501: vatRate 'tjugofem' is not a number"
NOTE = "Test order placed by the shop owner; never to be invoiced"


def require_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (bin/setup does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)


def seed_staging(home: Path) -> StagingStore:
    """The demo shop's staging with an order and a product held by the quality gate, each staged as read."""
    store = StagingStore.from_url(default_staging_url(home))
    store.migrate()
    for job, entity, key, payload, reason in (
        ("orders_to_mamut", "order", "1001", {"orderId": 1001, "totalAmount": "12,50"}, ORDER_REASON),
        ("products_to_mamut", "product", "501", {"productId": 501, "vatRate": "tjugofem"}, PRODUCT_REASON),
    ):
        batch_id = store.start_batch("demo", job, entity)
        store.stage_rows(
            batch_id, entity, [StagedRow(key=key, payload=payload, content_hash="h", verdict="quarantined")]
        )
        store.quarantine("demo", entity, key, [{"check": "readable", "reason": reason}], batch_id, accepted=False)
        store.finish_batch(batch_id, "done", {"read": 1, "valid": 0, "quarantined": 1, "loaded": 0, "requests": 2})
    return store


@dataclass
class AirflowServer:
    url: str
    home: Path
    log: Path
    store: StagingStore
    env: dict[str, str]

    def token(self, user: str) -> str:
        response = httpx.post(
            f"{self.url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30
        )
        assert response.status_code in (200, 201), response.text
        return response.json()["access_token"]

    def api(self, user: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=60)


def server_environment(home: Path, config: Path) -> dict[str, str]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "STARMAMUT")) and name != "PYTHONPATH"
    }
    return {
        **inherited,
        "PATH": f"{Path(sys.executable).parent}:{inherited.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT / "include"),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "STARMAMUT_CONFIG": str(config),
        "GX_ANALYTICS_ENABLED": "false",
    }


def airflow(env: dict[str, str], *arguments: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"airflow {' '.join(arguments)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def stop_session(process: subprocess.Popen[bytes], watchdog: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's session, SIGKILL what is left after 30 s, then retire the watchdog."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the server
    process.wait(timeout=10)
    watchdog.terminate()
    watchdog.wait(timeout=10)


@pytest.fixture(scope="module")
def sandbox_shop() -> Iterator[Any]:
    from starmamut_devtools.sandbox import start_sandbox

    with start_sandbox(seed="demo") as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    home = tmp_path_factory.mktemp("operator-view") / "airflow"
    home.mkdir()
    (home / "passwords.json").write_text(json.dumps(PASSWORDS))
    config = home.parent / "shops.yaml"
    config.write_text(yaml.safe_dump(CONFIG, allow_unicode=True), encoding="utf-8")
    env = server_environment(home, config)
    airflow(env, "db", "migrate")
    store = seed_staging(home)
    port = free_port()
    log = home.parent / "api-server.log"
    with ExitStack() as stack:
        stack.callback(store.close)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        stack.callback(stop_session, process, reap_with_this_process(process.pid))
        airflow(env, "dags", "reserialize")  # the DAGs the view triggers, while the server starts
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, f"api-server exited:\n{log.read_text(errors='replace')[-4000:]}"
            with suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"api-server not up:\n{log.read_text(errors='replace')[-4000:]}"
            time.sleep(0.5)
        yield AirflowServer(url=url, home=home, log=log, store=store, env=env)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in BROWSER_ARGUMENTS:
        options.add_argument(argument)
    service = Service(str(CHROMEDRIVER), popen_kw={"start_new_session": True})
    driver = webdriver.Chrome(service=service, options=options)
    watchdog = reap_with_this_process(service.process.pid)  # chromedriver's session holds the browser too
    try:
        yield driver
    finally:
        driver.quit()
        with suppress(ProcessLookupError):
            os.killpg(service.process.pid, signal.SIGKILL)
        watchdog.terminate()
        watchdog.wait(timeout=10)


class Page:
    """The browser as the operator drives it, with a screenshot per step kept as a test artifact."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.url = url
        # A form post reloads the page: an element read while it is replaced goes stale, so poll again.
        self.wait = WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=(StaleElementReferenceException,))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_for_text(self, text: str) -> None:
        self.wait.until(lambda _: text in self.text(), f"{text!r} never appeared")

    def log_in(self, user: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.delete_all_cookies()
        self.driver.get(f"{self.url}/auth/login")
        username, password = self.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input") or None)[:2]
        username.send_keys(user)
        password.send_keys(PASSWORDS[user])
        self.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        self.wait.until(lambda d: "/auth/login" not in d.current_url, f"{user} was not logged in")

    def open_view(self) -> None:
        """The Starmamut entry of the UI's navigation, then into its frame."""
        from selenium.webdriver.common.by import By

        self.driver.switch_to.default_content()
        self.driver.get(f"{self.url}/")
        entry = "//a[@aria-label='Starmamut']"  # the external view's entry in the navigation
        self.wait.until(lambda d: d.find_elements(By.XPATH, entry) or None)[0].click()
        frame = self.wait.until(lambda d: d.find_elements(By.TAG_NAME, "iframe") or None)[0]
        self.driver.switch_to.frame(frame)
        self.wait_for_text("Open quarantine")

    def select(self, key: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, f"tr.entry[data-key='{key}'] input[type=checkbox]").click()


def dag_runs(api: httpx.Client, dag_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v2/dags/{dag_id}/dagRuns")
    assert response.status_code == 200, response.text
    return response.json()["dag_runs"]


def test_operator_sees_the_quarantine_resyncs_and_dismisses_in_the_browser(server, browser) -> None:
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    page = Page(browser, server.url)
    try:
        page.log_in("admin")
        page.open_view()
        page.shot("01-quarantine")
        assert ORDER_REASON in page.text() and PRODUCT_REASON in page.text()

        page.select("1001")
        page.select("501")
        browser.find_element(By.ID, "resync-demo").click()
        page.wait_for_text("triggered demo__orders_to_mamut run")
        page.shot("02-resynced")
        assert "triggered demo__products_to_mamut run" in page.text()

        page.select("1001")
        browser.find_element(By.ID, "note-demo").send_keys(NOTE)
        browser.find_element(By.ID, "dismiss-demo").click()
        page.wait_for_text("dismissed demo order 1001")
        page.shot("03-dismissed")
        assert NOTE in browser.find_element(By.CSS_SELECTOR, "tr.dismissed-entry[data-key='1001']").text
    except BaseException:
        page.shot("failure-admin")
        raise

    [dismissed] = server.store.dismissed_quarantine("demo")
    assert (dismissed.key, dismissed.dismissed_by, dismissed.dismissal_note) == ("1001", "admin", NOTE)
    assert [entry.key for entry in server.store.open_quarantine("demo")] == ["501"]
    with server.api() as api:
        for dag_id, conf in (("demo__orders_to_mamut", [1001]), ("demo__products_to_mamut", [501])):
            [run] = dag_runs(api, dag_id)
            assert run["conf"] == {"resync_ids": conf}
            assert (run["run_type"], run["state"], run["triggering_user_name"]) == ("manual", "queued", "admin")
        events = api.get("/api/v2/eventLogs", params={"event_pattern": "starmamut"}).json()["event_logs"]
        assert {event["event"] for event in events} >= {"starmamut.resync", "starmamut.dismiss"}

    try:
        page.log_in("viewer")
        page.open_view()
        page.shot("04-viewer")
        assert PRODUCT_REASON in page.text() and "need permission to trigger" in page.text()
        assert browser.find_elements(By.ID, "resync-demo") == []
    except BaseException:
        page.shot("failure-viewer")
        raise
    print(f"browser steps took {time.monotonic() - started:.1f} s")


def test_a_viewer_may_not_act_even_by_posting_directly(server) -> None:
    token = server.token("viewer")
    form_token = Viewer(name="viewer", permissions=None, credential=token).form_token  # type: ignore[arg-type]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as viewer:
        page = viewer.get("/starmamut/")
        refused = viewer.post(
            "/starmamut/resync",
            data={"selected": Selection("demo", "product", "501").encode(), "form_token": form_token},
        )

    assert page.status_code == 200 and PRODUCT_REASON in html.unescape(page.text)
    assert refused.status_code == 403 and "You may not act on demo__products_to_mamut" in refused.text
    assert len(server.store.open_quarantine("demo")) >= 1


def ui_test_body(connection: dict[str, Any]) -> dict[str, Any]:
    """What the Connections list's Test button posts for a row: every field, the port as Number(port) (0)."""
    return {
        "conn_type": connection["conn_type"],
        "connection_id": connection["connection_id"],
        "description": connection["description"] or "",
        "extra": connection["extra"] or "{}",
        "host": connection["host"] or "",
        "login": connection["login"] or "",
        "password": connection["password"] or "",
        "port": connection["port"] or 0,
        "schema": connection["schema"] or "",
    }


def test_the_test_button_tests_a_saved_starweb_connection(server, sandbox_shop) -> None:
    with server.api() as api:
        created = api.post(
            "/api/v2/connections",
            json={
                "connection_id": "starweb_button",
                "conn_type": "starweb",
                "host": sandbox_shop.base_url,
                "login": sandbox_shop.client_id,
                "password": sandbox_shop.client_secret,
            },
        )
        assert created.status_code == 201, created.text
        saved = api.get("/api/v2/connections/starweb_button").json()
        assert saved["port"] is None and saved["password"] != sandbox_shop.client_secret

        works = api.post("/api/v2/connections/test", json=ui_test_body(saved))
        api.post(
            "/api/v2/connections",
            json={"connection_id": "generic_button", "conn_type": "generic", "host": "example.org", "login": "x"},
        ).raise_for_status()
        other = api.post(
            "/api/v2/connections/test", json=ui_test_body(api.get("/api/v2/connections/generic_button").json())
        )
        api.patch("/api/v2/connections/starweb_button", json={**saved, "password": "wrong"}).raise_for_status()
        refused = api.post(
            "/api/v2/connections/test", json=ui_test_body(api.get("/api/v2/connections/starweb_button").json())
        )

    assert works.status_code == 200, works.text
    assert works.json()["status"] is True and "Connected to Starweb shop" in works.json()["message"]
    # What the plugin's middleware spares our two types: any other saved Connection without a port is refused.
    assert other.status_code == 400 and "differs from the stored connection" in other.text
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] is False and "refused the credentials" in refused.json()["message"]
    assert "wrong" not in refused.json()["message"]


def test_the_test_button_in_the_browser(server, browser, sandbox_shop) -> None:
    from selenium.webdriver.common.by import By

    with server.api() as api:
        api.post(
            "/api/v2/connections",
            json={
                "connection_id": "starweb_demo",
                "conn_type": "starweb",
                "host": sandbox_shop.base_url,
                "login": sandbox_shop.client_id,
                "password": sandbox_shop.client_secret,
            },
        ).raise_for_status()
    page = Page(browser, server.url)
    test_button = "//tr[.//*[normalize-space()='starweb_demo']]//button[@aria-label='Test Connection']"
    try:
        page.log_in("admin")
        browser.get(f"{server.url}/connections")
        page.wait.until(lambda d: d.find_elements(By.XPATH, test_button) or None)[0].click()
        page.wait_for_text("Connected to Starweb shop")
        page.shot("05-connection-test")
        with server.api() as api:
            saved = api.get("/api/v2/connections/starweb_demo").json()
            api.patch("/api/v2/connections/starweb_demo", json={**saved, "password": "wrong"}).raise_for_status()
        browser.refresh()
        page.wait.until(lambda d: d.find_elements(By.XPATH, test_button) or None)[0].click()
        page.wait_for_text(f"Starweb refused the credentials of client {sandbox_shop.client_id!r}")
        page.shot("06-connection-test-refused")
        assert "differs from the stored connection" not in page.text() and "wrong" not in page.text()
    except BaseException:
        page.shot("failure-connection-test")
        raise


def test_a_resync_pressed_in_the_browser_runs_through_the_scheduler(server, browser, sandbox_shop, tmp_path) -> None:
    """A scheduler (LocalExecutor, task processes told the API server's port) beside the API server, the shop's
    Connections on the sandbox and a Mamut mock: the re-sync pressed in the view runs and heals the record."""
    from selenium.webdriver.common.by import By

    product = str(min(sandbox_shop.state.product_ids()))
    batch_id = server.store.start_batch("demo", "products_to_mamut", "product")
    server.store.stage_rows(batch_id, "product", [StagedRow(key=product, payload={}, content_hash="h")])
    server.store.quarantine("demo", "product", product, [{"check": "readable", "reason": "unreadable"}], batch_id)
    server.store.finish_batch(batch_id, "done", {"read": 1, "quarantined": 1})
    mamut = subprocess.run(
        [sys.executable, "-m", "starmamut_devtools", "create-mamut-mock", str(tmp_path / "mamut.db")],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with server.api() as api:
        for connection in (
            {"connection_id": "starweb_demo", "conn_type": "starweb", "host": sandbox_shop.base_url}
            | {"login": sandbox_shop.client_id, "password": sandbox_shop.client_secret},
            {"connection_id": "mamut_default", "conn_type": "mamut_odbc"}
            | {"extra": json.dumps({"odbc_connection_string": mamut})},
        ):
            if api.post("/api/v2/connections", json=connection).status_code == 409:  # an earlier test saved it
                api.patch(f"/api/v2/connections/{connection['connection_id']}", json=connection).raise_for_status()
        api.post("/api/v2/pools", json={"name": "starweb_demo", "slots": 2})
        api.patch("/api/v2/dags/demo__products_to_mamut", json={"is_paused": False}).raise_for_status()
    env = server.env | {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{server.url}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }
    log = tmp_path / "scheduler.log"
    with ExitStack() as stack, log.open("wb") as out:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "airflow", "scheduler"],
            env=env,
            cwd=server.home,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        stack.callback(stop_session, scheduler, reap_with_this_process(scheduler.pid))
        page = Page(browser, server.url)
        try:
            page.log_in("admin")
            page.open_view()
            page.select(product)
            browser.find_element(By.ID, "resync-demo").click()
            page.wait_for_text("triggered demo__products_to_mamut run")
        except BaseException:
            page.shot("failure-scheduler")
            raise
        with server.api() as api:
            [run] = [r for r in dag_runs(api, "demo__products_to_mamut") if r["conf"] == {"resync_ids": [int(product)]}]
            deadline = time.monotonic() + RUN_SECONDS
            while run["state"] not in ("success", "failed") and time.monotonic() < deadline:
                assert scheduler.poll() is None, f"scheduler exited:\n{log.read_text(errors='replace')[-4000:]}"
                time.sleep(2)
                run = api.get(f"/api/v2/dags/demo__products_to_mamut/dagRuns/{run['dag_run_id']}").json()
    assert run["state"] == "success", f"{run['state']}:\n{log.read_text(errors='replace')[-4000:]}"
    assert product not in [entry.key for entry in server.store.open_quarantine("demo")]
    [latest] = server.store.latest_batches("demo", "products_to_mamut", limit=1)
    assert latest.status == "done" and latest.counts["loaded"] >= 1
