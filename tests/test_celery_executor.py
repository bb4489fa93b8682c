"""The distributed path without Docker: docker-compose.yml's components and settings, run on this machine.

`airflow scheduler`, `airflow api-server`, `airflow dag-processor` and `airflow celery worker` start as separate
processes with CeleryExecutor, on a fresh PostgreSQL metadata database (also Celery's result backend) and a
Redis database of their own. Their settings are docker-compose.yml's, with the service names and container
paths replaced by this machine's (tests/test_compose.py checks nothing else differs). The demo shop's config
runs on the Starweb sandbox, a PostgreSQL Mamut mock and PostgreSQL staging. Through the REST API, as an
operator would: log in, create the shop's pool, test both Connections (the UI's Test button), unpause and
trigger the shop's DAGs, and wait for success. Then the articles and orders must be in Mamut and Celery's
result backend must hold one successful Celery task per Airflow task.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
import redis
import yaml

from starmamut.config import load_settings
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from tests.conftest import REPO_ROOT
from tests.fixtures.databases import PG_HOST, PG_PORT, PG_USER, fresh_postgres_database, postgres_sqlalchemy_url
from tests.fixtures.mamut import fresh_mock_database
from tests.fixtures.processes import reap_with_this_process
from tests.test_demo import free_port
from tests.test_orders_to_mamut import eligible_orders, mamut_orders
from tests.test_products_to_mamut import expected_mamut_skus, mamut_rows

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / "docker" / ".env.example"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = 7
"""This test's own Redis database (broker and request pacer); flushed before and after."""

COMPONENTS: dict[str, list[str]] = {
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-worker": ["celery", "worker"],
}
"""docker-compose.yml service -> the `airflow` command this test runs for it."""
NOT_STARTED = {
    "airflow-init": "replaced by `airflow db migrate` and the password file the test writes",
    "airflow-triggerer": "no deferrable task in the DAGs",
    "postgres": "the machine's PostgreSQL",
    "redis": "the machine's Redis",
}
CONTAINER_ONLY_ENV = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
"""docker/.env keys only the postgres container reads."""
DEMO_DAGS = ("demo__products_to_mamut", "demo__orders_to_mamut")
STARTUP_SECONDS = 120
RUN_SECONDS = 180


@dataclass(frozen=True)
class Endpoints:
    """Where this machine's services answer, in place of docker-compose.yml's service names."""

    home: Path
    metadata_database: str
    api_port: int
    redis_db: int

    @property
    def metadata_url(self) -> str:
        return postgres_sqlalchemy_url(self.metadata_database)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def localize(self, value: str) -> str:
        """A docker-compose.yml value with its service hosts and container paths made this machine's."""
        substitutions = {
            "redis://redis:6379/0": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
            "http://airflow-apiserver:8080/": f"{self.api_url}/",
            "/opt/airflow/include": str(REPO_ROOT / "include"),
            "/opt/airflow/auth": str(self.home / "auth"),
            "/opt/airflow/reports": str(self.home / "reports"),
        }
        for container, local in substitutions.items():
            value = value.replace(container, local)
        return value


def compose_environment() -> dict[str, str]:
    """The settings every Airflow service of docker-compose.yml shares (its x-airflow-common environment)."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return {name: str(value) for name, value in compose["x-airflow-common"]["environment"].items()}


def env_file_values(endpoints: Endpoints, staging_database: str, admin_password: str) -> dict[str, str]:
    """This machine's values for what docker/.env holds in production (its keys: docker/.env.example)."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": endpoints.metadata_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + endpoints.metadata_url,
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW_ADMIN_PASSWORD": admin_password,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",  # 2 cores here
        "AIRFLOW_CONN_STARMAMUT_STAGING": json.dumps(
            {"conn_type": "generic", "extra": {"sqlalchemy_url": postgres_sqlalchemy_url(staging_database)}}
        ),
    }


def component_environment(endpoints: Endpoints, env_file: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """What every component process gets: the caller's PATH and the like, compose's settings made local, the
    env-file values, then what a container gets from its mounts and image (folders, home, connections)."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "STARMAMUT")) and name not in {"PYTHONPATH", "GX_ANALYTICS_ENABLED"}
    }
    venv_bin = str(Path(sys.executable).parent)
    return {
        **inherited,
        "PATH": f"{venv_bin}:{inherited.get('PATH', '')}",
        **{name: endpoints.localize(value) for name, value in compose_environment().items()},
        **env_file,
        "AIRFLOW_HOME": str(endpoints.home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__API__WORKERS": "1",  # one API server worker process is plenty for a test on 2 cores
        **extra,
    }


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _deadline_loop(seconds: float, what: str, check_alive: Callable[[], None]) -> Iterator[None]:
    """Yield every half second, while every component lives, until the caller breaks out; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check_alive()
        yield
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}")


class Components:
    """The Airflow processes of one run, each in its own session with its output in a log file."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env = env
        self._log_dir = log_dir
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._watchdogs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, arguments: list[str]) -> None:
        log = (self._log_dir / f"{name}.log").open("wb")
        self._processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *arguments],
            env=self._env,
            cwd=self._log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._watchdogs.append(reap_with_this_process(self._processes[name].pid))
        log.close()

    def check_alive(self) -> None:
        dead = {name: process.returncode for name, process in self._processes.items() if process.poll() is not None}
        if dead:
            pytest.fail(f"Airflow component(s) exited: {dead}")

    def stop(self) -> None:
        """SIGTERM each session (the components and their children), then SIGKILL what is left after 30 s."""
        for process in self._processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self._processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for process in self._processes.values():
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent (celery pool)
        for watchdog in self._watchdogs:
            watchdog.terminate()
            watchdog.wait(timeout=10)

    def print_logs(self, task_logs: Path) -> None:
        """The tail of every component log and every task log, for a failed run."""
        for path in sorted(self._log_dir.glob("*.log")) + sorted(task_logs.rglob("*.log")):
            text = path.read_text(errors="replace")
            print(f"\n===== {path} (last 4000 characters) =====\n{text[-4000:]}")


def require_redis() -> redis.Redis:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        message = f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    return client


def require_provider_installed() -> None:
    """The hooks register through the editable install that bin/setup makes."""
    names = {entry.value for entry in entry_points(group="apache_airflow_provider")}
    assert "starmamut.provider_info:get_provider_info" in names, "starmamut is not a provider yet: run bin/setup"


def demo_config(path: Path) -> Path:
    """config/shops.yaml as the deployment guide has it (PostgreSQL staging, Redis pacer), manual runs only."""
    config = yaml.safe_load((REPO_ROOT / "config" / "shops.yaml").read_text(encoding="utf-8"))
    config["staging_conn_id"] = "starmamut_staging"
    config["request_pacer_url"] = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    for shop in config["shops"].values():
        shop["schedules"] = {job: None for job in shop.get("schedules") or {}}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


class RestApi:
    """The REST API as an operator's script uses it: a JWT from /auth/token, then /api/v2."""

    def __init__(self, base_url: str, check_alive: Callable[[], None]) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=30)
        self._check_alive = check_alive

    def wait_until_healthy(self) -> None:
        for _ in _deadline_loop(STARTUP_SECONDS, "the API server", self._check_alive):
            try:
                if self._http.get("/api/v2/monitor/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass

    def log_in(self, username: str, password: str) -> None:
        response = self._http.post("/auth/token", json={"username": username, "password": password})
        assert response.status_code in (200, 201), response.text
        self._http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"/api/v2{path}", **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def wait_for_dag(self, dag_id: str) -> None:
        for _ in _deadline_loop(STARTUP_SECONDS, f"the DAG {dag_id} to be parsed", self._check_alive):
            if self._http.get(f"/api/v2/dags/{dag_id}").status_code == 200:
                return

    def run_dag(self, dag_id: str) -> dict[str, Any]:
        """Unpause, trigger, and wait until the run ends; returns the run with its task instances."""
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run_id = self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})["dag_run_id"]
        for _ in _deadline_loop(RUN_SECONDS, f"{dag_id} run {run_id}", self._check_alive):
            run = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                break
        run["task_instances"] = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return run

    def close(self) -> None:
        self._http.close()


def celery_task_states(metadata_database: str) -> list[str]:
    """States of the Celery tasks in the result backend (Celery's own table in the metadata database)."""
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=metadata_database)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT status FROM celery_taskmeta")
            return [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_celery_executor_runs_the_demo_shop_end_to_end(sandbox, tmp_path: Path) -> None:
    require_provider_installed()
    broker = require_redis()
    broker.flushdb()
    home = tmp_path / "airflow"
    (home / "auth").mkdir(parents=True)
    admin_password = secrets.token_urlsafe(16)
    with ExitStack() as stack:
        stack.callback(broker.flushdb)
        metadata_database = stack.enter_context(fresh_postgres_database("airflow_celery"))
        staging_database = stack.enter_context(fresh_postgres_database("starmamut_staging"))
        mamut_odbc = stack.enter_context(fresh_mock_database("postgres", tmp_path, seed="reference"))
        endpoints = Endpoints(home, metadata_database, free_port(), REDIS_DB)
        connections = {
            "AIRFLOW_CONN_STARWEB_DEMO": json.dumps(
                {
                    "conn_type": "starweb",
                    "host": sandbox.base_url,
                    "login": sandbox.client_id,
                    "password": sandbox.client_secret,
                }
            ),
            "AIRFLOW_CONN_MAMUT_DEFAULT": json.dumps(
                {"conn_type": "mamut_odbc", "extra": {"odbc_connection_string": mamut_odbc}}
            ),
        }
        config = demo_config(tmp_path / "shops.yaml")
        env = component_environment(
            endpoints,
            env_file_values(endpoints, staging_database, admin_password),
            {"STARMAMUT_CONFIG": str(config), **connections},
        )
        (home / "auth" / "passwords.json").write_text(json.dumps({"admin": admin_password}))
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

        log_dir = tmp_path / "components"
        log_dir.mkdir()
        components = Components(env, log_dir)
        stack.callback(components.stop)
        components.start(
            "api-server", [*COMPONENTS["airflow-apiserver"], "--host", "127.0.0.1", "--port", str(endpoints.api_port)]
        )
        components.start("scheduler", COMPONENTS["airflow-scheduler"])
        components.start("dag-processor", COMPONENTS["airflow-dag-processor"])
        components.start(
            "celery-worker",
            [
                *COMPONENTS["airflow-worker"],
                "--skip-serve-logs",
                "--celery-hostname",
                f"starmamut-test-{endpoints.api_port}@%h",
            ],
        )
        api = RestApi(endpoints.api_url, components.check_alive)
        stack.callback(api.close)
        try:
            run_and_check(api, sandbox, config, mamut_odbc, admin_password, metadata_database)
        except BaseException:
            components.print_logs(home / "logs")
            raise


def run_and_check(
    api: RestApi, sandbox: Any, config: Path, mamut_odbc: str, admin_password: str, metadata_database: str
) -> None:
    api.wait_until_healthy()
    api.log_in("admin", admin_password)
    for shop in load_settings(config).shops:  # what `python -m starmamut pools` lists
        api.call("POST", "/pools", json={"name": shop.pool, "slots": shop.pool_slots})
    check_connection_tests(api, sandbox, mamut_odbc)

    for dag_id in DEMO_DAGS:
        api.wait_for_dag(dag_id)
    runs = [api.run_dag(dag_id) for dag_id in DEMO_DAGS]  # orders after products: lines find their articles

    for run in runs:
        states = {ti["task_id"]: ti["state"] for ti in run["task_instances"]}
        assert run["state"] == "success", f"{run['dag_id']}: {states}"
        assert states == dict.fromkeys(("extract", "validate", "load", "report"), "success")
    with MamutGateway(mamut_odbc, SchemaMap.load()) as gateway:
        assert set(mamut_rows(gateway)) == expected_mamut_skus(sandbox)
        assert set(mamut_orders(gateway)) == {f"demo:{order_id}" for order_id in eligible_orders(sandbox)}
    task_count = sum(len(run["task_instances"]) for run in runs)
    # A Celery task records SUCCESS a moment after its Airflow task has reported its own state.
    deadline = time.monotonic() + 30
    while (states := celery_task_states(metadata_database)) != ["SUCCESS"] * task_count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert states == ["SUCCESS"] * task_count, "every Airflow task ran as one Celery task"


def check_connection_tests(api: RestApi, sandbox: Any, mamut_odbc: str) -> None:
    """The UI's Test button (POST /connections/test) on both connection types, with good and bad settings."""
    wrong_secret = "not-the-" + secrets.token_hex(4)
    starweb = {
        "connection_id": "starweb_check",
        "conn_type": "starweb",
        "host": sandbox.base_url,
        "login": sandbox.client_id,
    }
    assert api.call("POST", "/connections/test", json={**starweb, "password": sandbox.client_secret}) == {
        "status": True,
        "message": f"Connected to Starweb shop {sandbox.state.shop()['name']!r} ({sandbox.state.shop()['idCode']})"
        f" as {sandbox.client_id!r}",
    }
    refused = api.call("POST", "/connections/test", json={**starweb, "password": wrong_secret})
    assert refused["status"] is False
    assert refused["message"].startswith(f"Starweb refused the credentials of client {sandbox.client_id!r}")
    assert wrong_secret not in refused["message"]

    mamut = {"connection_id": "mamut_check", "conn_type": "mamut_odbc", "login": PG_USER}
    odbc_without_user = mamut_odbc.replace(f"Uid={PG_USER};", "")
    reached = api.call(
        "POST", "/connections/test", json={**mamut, "extra": json.dumps({"odbc_connection_string": odbc_without_user})}
    )
    database = odbc_without_user.split("Database=")[1].split(";")[0]
    assert reached["status"] is True, reached["message"]
    assert f"as {PG_USER!r}, database {database!r}; table product (G_PROD) answers" in reached["message"]
    unreachable_odbc = odbc_without_user.replace(f"Port={PG_PORT}", "Port=1")
    unreachable = api.call(
        "POST",
        "/connections/test",
        json={**mamut, "password": wrong_secret, "extra": json.dumps({"odbc_connection_string": unreachable_odbc})},
    )
    assert unreachable["status"] is False
    assert unreachable["message"].startswith("Mamut connect failed") and "PWD=***" in unreachable["message"]
    assert wrong_secret not in unreachable["message"]
