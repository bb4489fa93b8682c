"""docker-compose.yml, docker/Dockerfile and docker/.env.example: a valid CeleryExecutor layout whose secrets
come only from docker/.env, and the same components and settings that tests/test_celery_executor.py runs.

No Docker engine is needed: Debian's docker-compose parses and resolves the file (`docker-compose config`);
bin/setup installs it, and CI requires it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.test_celery_executor import (
    COMPONENTS,
    CONTAINER_ONLY_ENV,
    NOT_STARTED,
    Endpoints,
    component_environment,
    compose_environment,
    env_file_values,
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
CONTAINER_REFERENCE = re.compile(r"(//|@)(redis|postgres|airflow-apiserver)\b|/opt/airflow")
"""A host or path that only resolves inside the compose network or a container."""
SERVICE_ONLY_ENV = {"DUMB_INIT_SETSID": "dumb-init, the image's entrypoint", "_AIRFLOW_DB_MIGRATE": "airflow-init"}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    lines = (REPO_ROOT / "docker" / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def locked_airflow_version() -> str:
    locked = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements.lock").read_text(), re.M)
    assert locked is not None
    return locked.group(1)


def test_compose_names_the_celery_layout() -> None:
    services = load_compose()["services"]

    assert set(services) == AIRFLOW_SERVICES | {"postgres", "redis"}
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert service["env_file"] == ["docker/.env"], name
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert service["image"] == f"starmamut-airflow:{locked_airflow_version()}", name
        assert {"./dags:/opt/airflow/dags:ro", "./include:/opt/airflow/include:ro"} <= set(service["volumes"])
        # the migration's report files land on the host, where the owner can open them
        assert "./reports:/opt/airflow/reports" in service["volumes"], name
        assert service["environment"]["STARMAMUT_REPORTS_DIR"] == "/opt/airflow/reports", name
    for name, service in services.items():
        if name != "airflow-init":
            assert "healthcheck" in service, f"{name} has no health check"


def test_compose_keeps_secrets_out_of_the_file() -> None:
    services = load_compose()["services"]

    for name, service in services.items():
        secret_keys = [key for key in service.get("environment", {}) if SECRET_NAME.search(key)]
        assert secret_keys == [], f"{name} sets secrets in docker-compose.yml: {secret_keys}"


def test_env_example_holds_only_placeholders_for_secrets() -> None:
    settings = env_example()

    secrets = {key: value for key, value in settings.items() if SECRET_NAME.search(key)}
    assert {"POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"} <= set(secrets)
    for key, value in secrets.items():
        assert "CHANGE_ME" in value, f"{key} in docker/.env.example is not a placeholder"


def test_staging_connection_names_the_database_postgres_creates() -> None:
    staging = json.loads(env_example()["AIRFLOW_CONN_STARMAMUT_STAGING"])
    created = re.findall(
        r"CREATE DATABASE (\w+);",
        "".join(path.read_text() for path in sorted((REPO_ROOT / "docker" / "postgres-init").glob("*.sql"))),
    )

    assert staging["extra"]["sqlalchemy_url"].rsplit("/", 1)[1] in created
    assert "./docker/postgres-init:/docker-entrypoint-initdb.d:ro" in load_compose()["services"]["postgres"]["volumes"]


def test_dockerfile_builds_on_the_locked_airflow_with_the_sql_server_drivers() -> None:
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()

    assert re.search(rf"^FROM apache/airflow:{re.escape(locked_airflow_version())}-python3\.11$", dockerfile, re.M)
    assert "tdsodbc" in dockerfile and re.search(r"^ARG ACCEPT_EULA=N$", dockerfile, re.M)
    eula_block = dockerfile.split('if [ "$ACCEPT_EULA" = "Y" ]', 1)[1].split("fi;", 1)[0]
    assert "msodbcsql18" in eula_block and "msodbcsql" not in dockerfile.split('if [ "$ACCEPT_EULA"', 1)[0]
    assert "pip install --no-cache-dir --no-deps -e /opt/airflow" in dockerfile


def test_the_image_gets_the_runtime_lock_and_the_engine_but_no_dev_tooling() -> None:
    """Only what .dockerignore lets through reaches the build: the runtime lock, pyproject.toml and include/ (the
    engine); devtools/ (the sandbox, the Mamut mock) and requirements-dev.* never do."""
    ignore_lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].strip() for line in ignore_lines if line.startswith("!")]
    assert sorted(allowed) == ["include/", "pyproject.toml", "requirements.lock"]
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.startswith("#"))
    assert "requirements-dev" not in instructions and "devtools" not in instructions
    assert not (REPO_ROOT / "include" / "starmamut_devtools").exists()


def test_docker_compose_resolves_the_file_with_the_env_file(tmp_path: Path) -> None:
    """docker-compose needs docker/.env to exist: resolve a copy that uses the example's placeholders."""
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is not installed (bin/setup installs it) and CI requires it")
        pytest.skip("docker-compose is not installed (bin/setup installs it)")
    shutil.copy(REPO_ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copytree(REPO_ROOT / "docker", tmp_path / "docker", ignore=shutil.ignore_patterns(".env"))
    shutil.copy(REPO_ROOT / "docker" / ".env.example", tmp_path / "docker" / ".env")

    result = subprocess.run([binary, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    for name in AIRFLOW_SERVICES:
        environment = resolved[name]["environment"]
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW_CONN_STARMAMUT_STAGING"):
            assert environment[key] == env_example()[key], f"{name}: {key} does not come from docker/.env"


def test_the_celery_test_starts_the_compose_components() -> None:
    services = load_compose()["services"]

    assert set(services) == set(COMPONENTS) | set(NOT_STARTED)
    for name, command in COMPONENTS.items():
        assert services[name]["command"].split() == command, name
        extra = set(services[name].get("environment", {})) - set(compose_environment())
        assert extra <= set(SERVICE_ONLY_ENV), f"{name} has settings the celery test does not run with: {extra}"


def test_the_celery_test_runs_with_the_compose_settings_on_the_locked_airflow(tmp_path: Path) -> None:
    endpoints = Endpoints(tmp_path, "airflow_meta", 8080, 7)
    env_file = env_file_values(endpoints, "starmamut_staging", "admin-password")
    env = component_environment(endpoints, env_file, {})

    assert set(env_file) == set(env_example()) - CONTAINER_ONLY_ENV, "the celery test must supply every docker/.env key"
    for name, value in compose_environment().items():
        assert env[name] == endpoints.localize(value)
        assert not CONTAINER_REFERENCE.search(env[name]), f"{name}={env[name]} still names a container"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert load_compose()["x-airflow-common"]["image"] == f"starmamut-airflow:{version('apache-airflow')}"
