"""A server a test started dies with the test run, even when the run is killed (tests/fixtures/processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO_ROOT

TEST_RUN = """
import subprocess, sys, time
from tests.fixtures.processes import reap_with_this_process
server = subprocess.Popen(["sleep", "300"], start_new_session=True)
reap_with_this_process(server.pid)
print(server.pid, flush=True)
time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone as far as anyone listening is concerned
        return stat.read().split()[2] != "Z"


def test_a_server_dies_with_a_test_run_killed_by_sigkill() -> None:
    run = subprocess.Popen([sys.executable, "-c", TEST_RUN], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    server = int(run.stdout.readline())
    try:
        assert alive(server)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(server)
    finally:
        if alive(server):
            os.killpg(server, signal.SIGKILL)
