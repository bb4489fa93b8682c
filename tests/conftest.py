"""Test-session set-up: an isolated Airflow home before anything imports Airflow, and shared fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(os.environ.get("STARMAMUT_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="starmamut-airflow-"))

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "false"

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.sandbox",
    "tests.fixtures.mamut",
    "tests.fixtures.staging",
    "tests.fixtures.airflow",
    "tests.fixtures.smtp",
]
