"""The ssh transport of the Mamut import against a real OpenSSH server on loopback, started by the test.

sshd runs as the current user on a free port with a temp host key and one authorized key; the "program" on the
server is the stand-in importer with Mamut ImportExport.exe's arguments, landing files in the Mamut mock.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from starmamut.jobs import orders_to_mamut
from starmamut.mamut.import_export.transport import FileState, SshTransport
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.processes import reap_with_this_process
from tests.test_mamut_import_files import the_order_file
from tests.test_orders_to_mamut import eligible_orders, mamut_orders, settings_for

SSHD = Path("/usr/sbin/sshd")
CONN_ID = "mamut_ssh_test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ssh_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    if not SSHD.exists():
        if os.environ.get("CI"):
            pytest.fail("openssh-server is missing: bin/setup installs it")
        pytest.skip("openssh-server is not installed (bin/setup installs it)")
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    shutil.copy(keys / "client.pub", keys / "authorized_keys")
    port = _free_port()
    config = keys / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {keys / 'host'}",
                f"AuthorizedKeysFile {keys / 'authorized_keys'}",
                f"PidFile {keys / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin yes",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory, when run as root
    server = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, start_new_session=True
    )
    watchdog = reap_with_this_process(server.pid)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "sshd did not listen"
                time.sleep(0.1)
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{CONN_ID.upper()}",
            json.dumps(
                {
                    "conn_type": "ssh",
                    "host": "127.0.0.1",
                    "port": port,
                    "login": getpass.getuser(),
                    "extra": {"key_file": str(keys / "client"), "no_host_key_check": True},
                }
            ),
        )
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        watchdog.terminate()


@pytest.fixture
def program(tmp_path: Path, mamut_db) -> str:
    """The stand-in importer as a program taking ImportExport.exe's arguments, for this test's mock."""
    script = tmp_path / "ImportExport.sh"
    script.write_text(
        f"#!/bin/sh\nexec {sys.executable} -m starmamut_devtools.mamut_importer --odbc '{mamut_db.odbc}' \"$@\"\n"
    )
    script.chmod(0o755)
    return str(script)


def transport(inbox: Path, program: str) -> SshTransport:
    return SshTransport(CONN_ID, str(inbox), program=program, company="001", compare_key=1, user_id=1)


def test_a_file_is_uploaded_imported_over_ssh_and_moved_with_its_output(ssh_server, program, mamut_db, tmp_path):
    if mamut_db.backend != "sqlite":
        pytest.skip("one backend is enough for the transport")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    ssh = transport(inbox, program)
    try:
        ssh.issue(the_order_file())
        assert ssh.state("demo_order_1001.xml") is FileState.DONE
        assert "demo:1001" in ssh.output("demo_order_1001.xml")
        assert "demo:1001" in mamut_orders(mamut_db.gateway)

        bad = the_order_file()
        bad = type(bad)("demo_order_1002.xml", bad.mode, bad.content.replace(b"<QUANTITY>2<", b"<QUANTITY>-2<"))
        ssh.issue(bad)
        assert ssh.state("demo_order_1002.xml") is FileState.FAILED
        assert "exit code 1" in ssh.output("demo_order_1002.xml")
        assert sorted(path.name for path in inbox.glob("*.xml")) == []  # nothing left queued
    finally:
        ssh.close()


def test_orders_to_mamut_over_ssh_is_confirmed_in_the_same_run(
    ssh_server, program, sandbox, mamut_db, staging_store, tmp_path
):
    if mamut_db.backend != "sqlite":
        pytest.skip("one backend is enough for the transport")
    from starmamut.jobs import products_to_mamut

    products_to_mamut.run(sandbox_job_context(settings_for(), sandbox, staging_store, mamut_db.gateway))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    imports = {"transport": "ssh", "inbox": str(inbox), "ssh_conn_id": CONN_ID, "program": program}
    settings = settings_for({"write_mode": "import", "import": imports})
    result = orders_to_mamut.run(sandbox_job_context(settings, sandbox, staging_store, mamut_db.gateway))

    expected = {f"demo:{oid}" for oid in eligible_orders(sandbox)}
    assert result["loaded"] == len(expected) and set(mamut_orders(mamut_db.gateway)) == expected
    assert len(list((inbox / "done").glob("*.xml"))) == len(expected)
    again = orders_to_mamut.run(sandbox_job_context(settings, sandbox, staging_store, mamut_db.gateway))
    assert again["loaded"] == 0 and again.get("issued", 0) == 0
