"""A loopback TCP proxy that delays every byte by a fixed time in each direction: a database at LAN distance.

The Mamut mock runs on the same machine as the job, so a statement costs microseconds of network where a real
SQL Server across a LAN costs a round trip (~0.5–1 ms). Put this proxy in front of the PostgreSQL mock and each
request/response turn pays ``2 × delay``, whatever the statement does; the benchmarks use it to show what the
number of round trips costs.

Each direction is a delay line: bytes read at ``t`` are written at ``t + delay`` (a reader thread stamps them, a
writer thread sends them when due), so bytes in flight overlap as on a real link and a large message is delayed
once, not per segment. The proxy counts *turns*: a burst from the client after the server last answered is one
round trip (the client's messages before it waits for an answer are one burst). It runs in its own process, so
the job's threads and the proxy's do not share one interpreter lock:

    python -m starmamut_devtools.latency_proxy --target 127.0.0.1:5432 --delay-ms 0.5 --stats stats.json

prints ``listening on 127.0.0.1:<port>`` and writes its counts to ``--stats`` every second and on SIGTERM.
:func:`latency_proxy` starts and stops one for a ``with`` block.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUFFER = 256 * 1024


@dataclass
class ProxyStats:
    """What went through the proxy: connections, client→server turns (round trips) and bytes each way."""

    connections: int = 0
    round_trips: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "round_trips": self.round_trips,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }


class LatencyProxy:
    """Accept on ``listen``, connect each client to ``target``, delay each direction by ``delay`` seconds."""

    def __init__(self, target: tuple[str, int], delay: float, listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.target = target
        self.delay = delay
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._server = socket.create_server(listen)
        self.address: tuple[str, int] = self._server.getsockname()[:2]

    def serve_forever(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def close(self) -> None:
        with suppress(OSError):
            self._server.close()

    def _connection(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.stats.connections += 1
        turn = {"up": False}  # True while the client is talking: the next server answer ends the turn
        for source, sink, up in ((client, server, True), (server, client, False)):
            lane: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(source, lane, up, turn), daemon=True).start()
            threading.Thread(target=self._write, args=(sink, lane), daemon=True).start()

    def _read(self, source: socket.socket, lane: queue.Queue[tuple[float, bytes]], up: bool, turn: dict) -> None:
        while True:
            try:
                data = source.recv(BUFFER)
            except OSError:
                data = b""
            lane.put((time.monotonic() + self.delay, data))
            if not data:
                return
            with self._lock:
                if up:
                    self.stats.bytes_up += len(data)
                    if not turn["up"]:
                        self.stats.round_trips += 1
                        turn["up"] = True
                else:
                    self.stats.bytes_down += len(data)
                    turn["up"] = False

    @staticmethod
    def _write(sink: socket.socket, lane: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            due, data = lane.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                with suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            try:
                sink.sendall(data)
            except OSError:
                return


@contextmanager
def latency_proxy(target: tuple[str, int], delay_ms: float, stats_path: Path) -> Iterator[tuple[str, int]]:
    """Run the proxy in a child process for the block; yields its address. Counts land in ``stats_path``
    (read them with :func:`read_stats` after the block: the child writes them once more as it stops)."""
    command = [
        sys.executable,
        "-m",
        "starmamut_devtools.latency_proxy",
        "--target",
        f"{target[0]}:{target[1]}",
        "--delay-ms",
        str(delay_ms),
        "--stats",
        str(stats_path),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        host, _, port = line.removeprefix("listening on ").rpartition(":")
        yield host, int(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_stats(stats_path: Path) -> dict[str, Any]:
    return json.loads(stats_path.read_text()) if stats_path.exists() else {}


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starmamut_devtools.latency_proxy", description=__doc__)
    parser.add_argument("--target", type=_address, required=True, help="host:port to forward to")
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0), help="host:port (default: a free port)")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="delay per direction (default 0.5 ms)")
    parser.add_argument("--stats", type=Path, help="JSON file for the counts, written every second and on exit")
    args = parser.parse_args(argv)
    proxy = LatencyProxy(args.target, args.delay_ms / 1000, args.listen)
    stop = threading.Event()

    def write_stats() -> None:
        if args.stats is not None:
            with proxy._lock:
                payload = json.dumps({**proxy.stats.as_dict(), "delay_ms": args.delay_ms})
            tmp = args.stats.with_suffix(".tmp")
            tmp.write_text(payload)
            tmp.replace(args.stats)

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    print(f"listening on {proxy.address[0]}:{proxy.address[1]}", flush=True)
    while not stop.wait(1.0):
        write_stats()
    proxy.close()
    write_stats()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
