"""The set-up scripts and the docker-compose draft: the README's two commands depend on them.

bin/setup must be idempotent (a second run does nothing and says nothing), bin/env.sh must point every
tool at the repo's venv and Airflow home, and docker-compose.yml must stay a valid CeleryExecutor
layout whose secrets come only from docker/.env.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SHELL_SCRIPTS = sorted(
    [path for path in (REPO_ROOT / "bin").iterdir() if path.is_file()] + [REPO_ROOT / ".ci" / "run"]
)
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
# Settings whose value is a secret or a URL that carries one.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY|SQL_ALCHEMY_CONN|RESULT_BACKEND)$|^AIRFLOW_CONN_")


def outside_environment(**overrides: str) -> dict[str, str]:
    """The caller's environment without what conftest set for this session (Airflow home, Airflow config),
    so the scripts see what a user's shell gives them."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AIRFLOW")
        and name not in {"STARMAMUT_HOME", "PYTHONPATH", "GX_ANALYTICS_ENABLED"}
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
    assert "setup: installing Python packages from requirements.lock" in result.stdout
    lock_hash = hashlib.sha256((REPO_ROOT / "requirements.lock").read_bytes()).hexdigest()
    assert stamp.read_text().strip() == lock_hash


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


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_names_the_celery_layout() -> None:
    services = load_compose()["services"]

    assert set(services) >= AIRFLOW_SERVICES | {"postgres", "redis"}
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert service["env_file"] == ["docker/.env"], name
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert {"./dags:/opt/airflow/dags:ro", "./include:/opt/airflow/include:ro"} <= set(service["volumes"])
    assert services["airflow-worker"]["command"] == "celery worker"
    for name, service in services.items():
        if name != "airflow-init":
            assert "healthcheck" in service, f"{name} has no health check"


def test_compose_keeps_secrets_out_of_the_file() -> None:
    services = load_compose()["services"]

    for name, service in services.items():
        secret_keys = [key for key in service.get("environment", {}) if SECRET_NAME.search(key)]
        assert secret_keys == [], f"{name} sets secrets in docker-compose.yml: {secret_keys}"


def test_env_example_holds_only_placeholders_for_secrets() -> None:
    lines = (REPO_ROOT / "docker" / ".env.example").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    secrets = {key: value for key, value in settings.items() if SECRET_NAME.search(key)}
    assert {"POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"} <= set(secrets)
    for key, value in secrets.items():
        assert "CHANGE_ME" in value, f"{key} in docker/.env.example is not a placeholder"


def test_dockerfile_image_matches_the_locked_airflow() -> None:
    locked = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements.lock").read_text(), re.M)
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()

    assert locked is not None
    assert re.search(rf"^FROM apache/airflow:{re.escape(locked.group(1))}-python3\.11$", dockerfile, re.M)


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """docker-compose needs docker/.env to exist: validate a copy that uses the example's placeholders."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed")
    shutil.copy(REPO_ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / "docker").mkdir()
    shutil.copy(REPO_ROOT / "docker" / "Dockerfile", tmp_path / "docker" / "Dockerfile")
    shutil.copy(REPO_ROOT / "docker" / ".env.example", tmp_path / "docker" / ".env")

    result = subprocess.run(
        [binary, "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
