"""``python -m starmamut_devtools.sandbox``: serve a sandbox shop in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from starmamut_devtools.sandbox.demo_data import SEEDS, generate_catalogue
from starmamut_devtools.sandbox.server import start_sandbox


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sandbox's options (also those of ``python -m starmamut_devtools sandbox``)."""
    parser.add_argument("--host", default="127.0.0.1", help="IPv4 address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    parser.add_argument("--seed", choices=SEEDS, default="demo", help="shop data to start with")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every API request")
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per minute per API user")
    parser.add_argument("--per-page", type=int, default=100, help="page size of paginated lists")
    parser.add_argument(
        "--generate",
        type=int,
        default=0,
        metavar="N",
        help="add N generated products (deterministic) after seeding, for benchmarks",
    )
    parser.add_argument("--token-ttl", type=int, default=3600, help="access token lifetime in seconds")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m starmamut_devtools.sandbox", description=__doc__)
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    serve(_parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Serve the shop the options describe until SIGTERM or Ctrl-C."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with start_sandbox(
        args.host,
        args.port,
        args.seed,
        per_page=args.per_page,
        token_ttl_seconds=args.token_ttl,
        rate_limit_per_minute=args.rate_limit,
        latency_ms=args.latency_ms,
    ) as sandbox:
        for body in generate_catalogue(args.generate):
            sandbox.state.add_product(body)
        print(f"Starweb sandbox ({args.seed}) listening on {sandbox.base_url}", flush=True)
        print(f"admin endpoints: {sandbox.admin_url}/health, /faults, /reset, /requests, /status-changes", flush=True)
        print(
            f"public demo credentials: client_id={sandbox.client_id} client_secret={sandbox.client_secret}",
            flush=True,
        )
        while not stop_requested.wait(timeout=1):
            pass
    print("Starweb sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    main()
