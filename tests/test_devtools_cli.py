"""The dev tooling's command line (``python -m starmamut_devtools``), which bin/demo runs: help everywhere,
one-line errors without a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from starmamut_devtools.cli import build_parser
from tests.conftest import REPO_ROOT

COMMANDS = ("sandbox", "mamut-mock", "create-mamut-mock", "summary")


def run_devtools(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'include'}:{REPO_ROOT / 'devtools'}"}
    env.pop("STARMAMUT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "starmamut_devtools", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_every_command_and_argument_has_help() -> None:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subparsers.choices) == set(COMMANDS)
    helped = {choice.dest for choice in subparsers._choices_actions if choice.help}
    assert helped == set(COMMANDS)
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command: str) -> None:
    result = run_devtools(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m starmamut_devtools {command}" in result.stdout


def test_summary_with_a_missing_mamut_db_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mamut.db"
    result = run_devtools("summary", "--mamut-db", str(missing))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"starmamut_devtools summary: Mamut database not found: {missing}")
    assert "create-mamut-mock" in line
    assert not missing.exists() and not missing.parent.exists()


def test_create_mamut_mock_is_idempotent_and_prints_its_odbc_string(tmp_path: Path) -> None:
    database = tmp_path / "mock" / "mamut.db"
    first = run_devtools("create-mamut-mock", str(database))
    second = run_devtools("create-mamut-mock", str(database))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and str(database) in first.stdout
    assert database.is_file()


def test_mamut_mock_prints_the_sql_server_ddl() -> None:
    result = run_devtools("mamut-mock", "--print-ddl", "mssql")
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE" in result.stdout and "IDENTITY" in result.stdout
