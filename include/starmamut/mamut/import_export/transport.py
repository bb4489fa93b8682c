"""Getting a file to Mamut Import/Export, and telling what became of it.

Both transports use one layout, the inbox and three folders in it::

    <inbox>/<name>.xml              queued: written, not yet taken by the importer
    <inbox>/processing/<name>.xml   the importer has taken it (never started again automatically)
    <inbox>/done/<name>.xml         the program ran and said it went well; <name>.xml.log holds its output
    <inbox>/failed/<name>.xml       the program refused it;                 <name>.xml.log holds its output

A file is written under a temporary name (``.<name>.tmp``, which no importer picks up) and renamed into place,
so the importer never reads half a file. ``folder``: the inbox is a share the Mamut server sees, and
``deploy/mamut/import-inbox.ps1`` (Task Scheduler, every minute) moves each queued file to processing/, runs
``Mamut ImportExport.exe <mode> <company> <file> <CompareKey> <UserID> .F.`` on it and moves it on. ``ssh``:
the same steps, done by this process over SSH (Airflow's SSH provider and an SSH Connection): upload by SFTP,
rename, run the program, move the file and write the log; the program's output goes to the task log.

"done" is only the program's word: the jobs confirm every file by reading Mamut over SQL.
"""

from __future__ import annotations

import enum
import io
import logging
import os
import posixpath
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from starmamut.mamut.import_export.formats import ImportFile

if TYPE_CHECKING:
    from starmamut.config import MamutImportSettings

PROCESSING, DONE, FAILED = "processing", "done", "failed"
LOG_SUFFIX = ".log"
OUTPUT_LIMIT = 4000  # characters of the program's output kept in a quarantine reason

log = logging.getLogger(__name__)


class FileState(enum.Enum):
    ABSENT = "absent"  # nowhere: never issued, or cleared away by hand
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"

    @property
    def pending(self) -> bool:
        """Issued and not finished: the file must not be issued again."""
        return self in (FileState.QUEUED, FileState.PROCESSING)


class ImportTransportError(RuntimeError):
    """The inbox cannot be reached or written (a fault of the transport, not of the file: the task retries)."""


class ImportTransport(Protocol):
    def issue(self, file: ImportFile) -> None:
        """Put the file in the inbox (atomically); the ssh transport also runs the import on it."""

    def state(self, name: str) -> FileState:
        """Where the file is now."""

    def output(self, name: str) -> str | None:
        """The program's output for a done or failed file (None when there is none)."""

    def resume(self, file_name: str, mode: str) -> None:
        """Start the import of a file left queued by a run that died before starting it (ssh); folder: nothing."""


def open_transport(settings: MamutImportSettings) -> ImportTransport:
    if settings.transport == "folder":
        return FolderTransport(Path(settings.inbox))
    return SshTransport(
        settings.ssh_conn_id,
        settings.inbox,
        program=settings.program,
        company=settings.company,
        compare_key=settings.compare_key,
        user_id=settings.user_id,
    )


def import_command(program: str, mode: str, company: str, path: str, compare_key: int, user_id: int) -> str:
    """The Import/Export command line (reference section 2.2): quoted paths, ``.F.`` last."""
    for value in (program, path):
        if '"' in value:
            raise ValueError(f"a path in the import command must not contain '\"': {value!r}")
    return f'"{program}" {mode} {company} "{path}" {compare_key} {user_id} .F.'


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + " …"


class FolderTransport:
    """The inbox is a local path (a mounted share); a scheduled task on the Mamut server imports from it."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox

    def issue(self, file: ImportFile) -> None:
        if not self.inbox.is_dir():
            raise ImportTransportError(f"Mamut import inbox {self.inbox} is not a folder this worker can see")
        temporary = self.inbox / f".{file.name}.tmp"
        try:
            with open(temporary, "wb") as handle:
                handle.write(file.content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.inbox / file.name)
        except OSError as exc:
            raise ImportTransportError(
                f"cannot write {file.name} into the Mamut import inbox {self.inbox}: {exc}"
            ) from exc

    def state(self, name: str) -> FileState:
        for state, path in (
            (FileState.DONE, self.inbox / DONE / name),
            (FileState.FAILED, self.inbox / FAILED / name),
            (FileState.PROCESSING, self.inbox / PROCESSING / name),
            (FileState.QUEUED, self.inbox / name),
        ):
            if path.exists():
                return state
        return FileState.ABSENT

    def output(self, name: str) -> str | None:
        for folder in (FAILED, DONE):
            path = self.inbox / folder / f"{name}{LOG_SUFFIX}"
            if path.exists():
                return _clip(path.read_text(encoding="utf-8", errors="replace"))
        return None

    def resume(self, file_name: str, mode: str) -> None:
        return None  # the scheduled task takes every queued file


class SshTransport:
    """SFTP upload and the import run over SSH, through Airflow's SSH provider (``ssh_conn_id``)."""

    def __init__(
        self, ssh_conn_id: str, inbox: str, *, program: str, company: str, compare_key: int, user_id: int
    ) -> None:
        self.ssh_conn_id = ssh_conn_id
        self.inbox = inbox.rstrip("/") or "/"
        self.program, self.company, self.compare_key, self.user_id = program, company, compare_key, user_id
        self._client = None
        self._sftp = None

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.inbox, *parts)

    def _connect(self):  # noqa: ANN202 - paramiko's SFTPClient
        if self._sftp is None:
            from airflow.providers.ssh.hooks.ssh import SSHHook

            try:
                self._client = SSHHook(ssh_conn_id=self.ssh_conn_id).get_conn()
                self._sftp = self._client.open_sftp()
            except Exception as exc:  # noqa: BLE001 - paramiko and socket errors alike; the task retries
                raise ImportTransportError(
                    f"cannot reach the Mamut server over SSH ({self.ssh_conn_id}): {exc}"
                ) from exc
        return self._sftp

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None

    def issue(self, file: ImportFile) -> None:
        sftp = self._connect()
        temporary = self._path(f".{file.name}.tmp")
        try:
            sftp.putfo(io.BytesIO(file.content), temporary)
            sftp.rename(temporary, self._path(file.name))
        except OSError as exc:
            raise ImportTransportError(f"cannot upload {file.name} to {self.inbox} on the Mamut server: {exc}") from exc
        self.resume(file.name, file.mode)

    def resume(self, file_name: str, mode: str) -> None:
        sftp = self._connect()
        for folder in (PROCESSING, DONE, FAILED):
            self._ensure_folder(sftp, self._path(folder))
        taken = self._path(PROCESSING, file_name)
        sftp.rename(self._path(file_name), taken)  # from here on this file is never started again automatically
        command = import_command(self.program, mode, self.company, taken, self.compare_key, self.user_id)
        log.info("Mamut import over SSH: %s", command)
        _, stdout, stderr = self._client.exec_command(command)
        output = stdout.read().decode("utf-8", errors="replace") + stderr.read().decode("utf-8", errors="replace")
        status = stdout.channel.recv_exit_status()
        log.info("Mamut ImportExport (%s) exited %s:\n%s", file_name, status, output.strip() or "(no output)")
        folder = DONE if status == 0 else FAILED
        with sftp.open(self._path(folder, f"{file_name}{LOG_SUFFIX}"), "w") as handle:
            handle.write(f"exit code {status}\n{output}".encode())
        sftp.rename(taken, self._path(folder, file_name))

    def state(self, name: str) -> FileState:
        sftp = self._connect()
        for state, path in (
            (FileState.DONE, self._path(DONE, name)),
            (FileState.FAILED, self._path(FAILED, name)),
            (FileState.PROCESSING, self._path(PROCESSING, name)),
            (FileState.QUEUED, self._path(name)),
        ):
            try:
                sftp.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ImportTransportError(f"cannot read {path} on the Mamut server: {exc}") from exc
            return state
        return FileState.ABSENT

    def output(self, name: str) -> str | None:
        sftp = self._connect()
        for folder in (FAILED, DONE):
            try:
                with sftp.open(self._path(folder, f"{name}{LOG_SUFFIX}"), "r") as handle:
                    return _clip(handle.read().decode("utf-8", errors="replace"))
            except FileNotFoundError:
                continue
        return None

    @staticmethod
    def _ensure_folder(sftp, path: str) -> None:  # noqa: ANN001
        try:
            if stat.S_ISDIR(sftp.stat(path).st_mode):
                return
        except FileNotFoundError:
            sftp.mkdir(path)
