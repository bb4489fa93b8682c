"""The README's main command, `bin/demo --exit-after-sync`, run as a user would: it must sync and say what landed."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_demo_syncs_the_demo_shop_and_prints_what_landed(tmp_path) -> None:
    env = {
        **os.environ,
        "STARMAMUT_HOME": str(tmp_path / "airflow"),
        "STARMAMUT_DEMO_DIR": str(tmp_path / "demo"),
        "STARMAMUT_SANDBOX_PORT": str(free_port()),
    }
    env.pop("AIRFLOW_HOME", None)
    env.pop("STARMAMUT_CONFIG", None)
    done = subprocess.run(
        ["bash", "bin/demo", "--exit-after-sync"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    articles = int(re.search(r"Mamut articles \((\d+)\)", done.stdout).group(1))
    orders = int(re.search(r"Mamut orders \((\d+)\)", done.stdout).group(1))
    assert articles > 0 and orders > 0
    assert "open quarantine: 0" in done.stdout
    assert "sandbox-secret" not in done.stdout.split("demo: running", 1)[1]
    assert "demo: running demo__orders_to_mamut" in done.stdout
    assert "initial_product_sync" not in done.stdout  # the migration is manual only
    assert f"logs of each run are in {tmp_path / 'demo'}" in done.stdout


def test_demo_help_answers_without_setting_anything_up() -> None:
    done = subprocess.run(["bash", "bin/demo", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and "--exit-after-sync" in done.stdout
    assert "setup:" not in done.stdout + done.stderr


def free_port_run(length: int) -> int:
    """The first of ``length`` consecutive free loopback ports (the demo's UI port and the log ports beside it)."""
    for _ in range(50):
        first = free_port()
        if first + length > 65535:
            continue
        try:
            for port in range(first, first + length):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {length} consecutive free ports")


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_of(airflow_home: Path) -> list[int]:
    """Every process running with this Airflow home in its environment (what the demo started, and their children)."""
    marker = f"AIRFLOW_HOME={airflow_home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


DEMO_START_SECONDS = 420


@pytest.mark.slow
def test_demo_runs_a_dag_through_its_scheduler_on_its_own_ports_and_sigterm_stops_everything(tmp_path) -> None:
    """`bin/demo --no-sync` on a UI port that is not 8080: a triggered run goes through the scheduler, the task
    processes reach the execution API on the demo's port, the Connections are in the metadata DB and testable;
    SIGTERM to the demo's own pid stops every process it started."""
    from starmamut.staging.store import StagingStore
    from tests.fixtures.processes import reap_with_this_process
    from tests.test_celery_executor import RestApi

    ui_port = free_port_run(3)
    home, demo_dir = tmp_path / "airflow", tmp_path / "demo"
    config = yaml.safe_load((REPO_ROOT / "config" / "shops.yaml").read_text(encoding="utf-8"))
    config["shops"]["demo"]["schedules"] = {"products_to_mamut": None, "orders_to_mamut": None}  # manual only
    (tmp_path / "shops.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")},
        "STARMAMUT_HOME": str(home),
        "STARMAMUT_DEMO_DIR": str(demo_dir),
        "STARMAMUT_SANDBOX_PORT": str(free_port()),
        "STARMAMUT_UI_PORT": str(ui_port),
        "STARMAMUT_CONFIG": str(tmp_path / "shops.yaml"),
        "AIRFLOW__API__WORKERS": "1",
    }
    output = (tmp_path / "demo.out").open("wb")
    demo = subprocess.Popen(
        ["bash", "bin/demo", "--no-sync"],
        cwd=REPO_ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    watchdog = reap_with_this_process(demo.pid)

    def check_alive() -> None:
        if demo.poll() is not None:
            pytest.fail(f"bin/demo exited ({demo.returncode}):\n{(tmp_path / 'demo.out').read_text()[-3000:]}")

    api = RestApi(f"http://127.0.0.1:{ui_port}", check_alive)
    try:
        deadline = time.monotonic() + DEMO_START_SECONDS  # set-up, a fresh metadata DB, then Airflow
        while f"demo: open http://127.0.0.1:{ui_port}" not in (tmp_path / "demo.out").read_text():
            check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"bin/demo did not start Airflow within {DEMO_START_SECONDS} s")
            time.sleep(1)
        api.wait_until_healthy()
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        api.log_in("admin", passwords["admin"])
        stored = api.call("GET", "/connections/starweb_demo")  # in the metadata DB, not an environment variable
        assert stored["conn_type"] == "starweb" and stored["login"] == "demo.starmamut"
        assert api.call("GET", "/connections/mamut_default")["conn_type"] == "mamut_odbc"
        tested = api.call(
            "POST",
            "/connections/test",
            json={key: stored[key] for key in ("connection_id", "conn_type", "host", "login")}
            | {"password": "sandbox-secret"},
        )
        assert tested["status"] is True, tested["message"]  # [core] test_connection = Enabled

        api.wait_for_dag("demo__products_to_mamut")
        run = api.run_dag("demo__products_to_mamut")
        states = {ti["task_id"]: ti["state"] for ti in run["task_instances"]}
        assert run["state"] == "success", f"{states}\n{(demo_dir / 'airflow.log').read_text()[-4000:]}"
        assert answers(ui_port + 1), "the task log server listens beside the UI port"
        store = StagingStore.from_url(f"sqlite:///{home / 'starmamut_staging.db'}")
        try:
            (batch,) = store.latest_batches("demo", job="products_to_mamut")
        finally:
            store.close()
        assert batch.status == "done" and batch.counts["loaded"] > 0 and batch.counts["open_quarantine"] == 0
    finally:
        api.close()
        demo.send_signal(signal.SIGTERM)  # the demo's own pid only: it must stop its process groups itself
        try:
            demo.wait(timeout=60)
        finally:
            output.close()
            deadline = time.monotonic() + 10
            while processes_of(home) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = processes_of(home)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            watchdog.terminate()
    assert demo.returncode == 143
    assert left == [], "processes of the demo outlived it"
    assert not any(answers(port) for port in (ui_port, ui_port + 1, ui_port + 2, int(env["STARMAMUT_SANDBOX_PORT"])))
