"""The README's main command, `bin/demo --exit-after-sync`, run as a user would: it must sync and say what landed."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest

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
