"""The operator command line, run as operators run it: help everywhere, one-line errors, exit 1, no traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from starmamut.cli import build_parser
from tests.conftest import REPO_ROOT

COMMANDS = ("pools", "dags", "probe")


def run_cli(*args: str, config: Path | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")}
    env.pop("STARMAMUT_CONFIG", None)
    if config is not None:
        env["STARMAMUT_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "starmamut", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
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
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m starmamut {command}" in result.stdout


def test_config_errors_are_named_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "shops.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "mamut": {"conn_id": "m", "vat_codes": {25: 1}},
                "shops": {
                    "demo": {
                        "name": "Demo",
                        "flow": "ecom",
                        "starweb_conn_id": "s",
                        "schedules": {"orders_to_mamut": "*/5 * * *"},
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    for command in ("dags", "pools"):
        result = run_cli(command, config=path)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"starmamut {command}: {path}: shop 'demo': field 'schedules.orders_to_mamut': ")


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli("dags", config=tmp_path / "nope.yaml")
    assert result.returncode == 1
    assert result.stderr.strip() == f"starmamut dags: {tmp_path / 'nope.yaml'}: config file not found"


def test_the_shipped_config_lists_its_dags() -> None:
    result = run_cli("dags")
    assert result.returncode == 0, result.stderr
    assert "demo__products_to_mamut" in result.stdout.split()
