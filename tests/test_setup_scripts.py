"""The set-up scripts: the README's two commands depend on them.

bin/setup must be idempotent (a second run does nothing and says nothing) and bin/env.sh must point every
tool at the repo's venv and Airflow home. docker-compose.yml and docker/ are checked in tests/test_compose.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = sorted([path for path in (REPO_ROOT / "bin").iterdir() if path.is_file()] + [REPO_ROOT / ".ci" / "run"])


def outside_environment(**overrides: str) -> dict[str, str]:
    """The caller's environment without what conftest set for this session (Airflow home, Airflow config),
    so the scripts see what a user's shell gives them."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AIRFLOW") and name not in {"STARMAMUT_HOME", "PYTHONPATH", "GX_ANALYTICS_ENABLED"}
    }
    env.update(overrides)
    return env


def run_setup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO_ROOT / "bin" / "setup")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )


def sourced_env_sh(env: dict[str, str]) -> dict[str, str]:
    """The environment after sourcing bin/env.sh twice (twice: a second source must change nothing)."""
    script = f'source "{REPO_ROOT}/bin/env.sh"; source "{REPO_ROOT}/bin/env.sh"; env -0'
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, check=True, timeout=30)
    pairs = (entry.split("=", 1) for entry in result.stdout.decode().split("\0") if "=" in entry)
    return dict(pairs)


def test_second_setup_run_does_nothing_and_prints_nothing() -> None:
    env = outside_environment()
    first = run_setup(env)
    assert first.returncode == 0, first.stdout + first.stderr

    second = run_setup(env)

    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout + second.stderr == "", "a second run must skip every step silently"


def test_setup_reinstalls_when_the_lock_stamp_does_not_match() -> None:
    env = outside_environment()
    assert run_setup(env).returncode == 0
    stamp = REPO_ROOT / ".venv" / ".lock-sha256"
    stamp.write_text("0" * 64 + "\n")

    result = run_setup(env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "setup: installing Python packages from requirements-dev.lock" in result.stdout
    locks = (REPO_ROOT / "requirements.lock").read_bytes() + (REPO_ROOT / "requirements-dev.lock").read_bytes()
    assert stamp.read_text().strip() == hashlib.sha256(locks).hexdigest()


def test_setup_migrates_a_separate_airflow_home_once(tmp_path: Path) -> None:
    env = outside_environment(STARMAMUT_HOME=str(tmp_path / "airflow-home"))

    first = run_setup(env)
    second = run_setup(env)

    assert first.returncode == 0, first.stdout + first.stderr
    assert "setup: migrating the Airflow metadata DB" in first.stdout
    assert (tmp_path / "airflow-home" / "airflow.db").is_file()
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout + second.stderr == ""


def test_env_sh_puts_the_venv_first_and_airflow_home_in_the_repo() -> None:
    env = sourced_env_sh(outside_environment())

    path_entries = env["PATH"].split(":")
    assert path_entries[0] == str(REPO_ROOT / ".venv" / "bin")
    assert path_entries.count(str(REPO_ROOT / ".venv" / "bin")) == 1
    assert env["PYTHONPATH"].split(":").count(str(REPO_ROOT / "include")) == 1
    assert env["PYTHONPATH"].split(":").count(str(REPO_ROOT / "devtools")) == 1
    assert env["REPO"] == str(REPO_ROOT)
    assert env["VENV"] == str(REPO_ROOT / ".venv")
    assert env["AIRFLOW_HOME"] == str(REPO_ROOT / "var" / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(REPO_ROOT / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["GX_ANALYTICS_ENABLED"] == "false"


@pytest.mark.parametrize(
    ("overrides", "expected_home"),
    [
        ({"AIRFLOW_HOME": "/srv/airflow"}, "/srv/airflow"),
        ({"STARMAMUT_HOME": "/srv/starmamut"}, "/srv/starmamut"),
        ({"STARMAMUT_HOME": "/srv/starmamut", "AIRFLOW_HOME": "/srv/airflow"}, "/srv/starmamut"),
    ],
)
def test_env_sh_airflow_home_can_be_overridden(overrides: dict[str, str], expected_home: str) -> None:
    env = sourced_env_sh(outside_environment(**overrides))

    assert env["AIRFLOW_HOME"] == expected_home


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_shell_script_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr


def locked_pins(name: str) -> dict[str, str]:
    text = (REPO_ROOT / name).read_text(encoding="utf-8")
    return {package.lower(): version for package, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)}


def test_the_dev_lock_has_every_runtime_pin_unchanged_and_the_runtime_lock_no_dev_tool() -> None:
    """bin/setup installs the dev lock, the Docker image the runtime lock: the same versions of what both have."""
    runtime, dev = locked_pins("requirements.lock"), locked_pins("requirements-dev.lock")
    assert {
        package: (version, dev.get(package)) for package, version in runtime.items() if dev.get(package) != version
    } == {}
    for tool in ("pytest", "ruff", "mypy", "deptry", "sqlglot", "openapi-core"):
        assert tool in dev and tool not in runtime, tool
    direct_dev = {
        line.split("==")[0].lower()
        for line in (REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert direct_dev.isdisjoint(runtime), "a dev tool is in the runtime lock"
