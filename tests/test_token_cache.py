"""Starweb tokens shared by a shop's clients through staging (starweb/token_cache.py).

Two clients of one shop at once (threads) and a third in another process cost one ``/token``; a token Starweb
refuses is replaced once for all of them; the row never holds the token in the clear, and a row sealed under
another client secret reads as absent.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from starmamut.staging import tables
from starmamut.staging.store import StagingStore
from starmamut.starweb.client import StarwebClient, StarwebCredentials
from starmamut.starweb.token_cache import StagingTokenCache, seal, unseal
from starmamut_devtools.sandbox import Sandbox, start_sandbox

REPO = Path(__file__).resolve().parent.parent
SHOP = "demo"


@pytest.fixture
def shop() -> Iterator[Sandbox]:
    with start_sandbox(seed="demo") as running:
        yield running


def shared_client(sandbox: Sandbox, store: StagingStore) -> StarwebClient:
    credentials = StarwebCredentials(sandbox.base_url, sandbox.client_id, sandbox.client_secret)
    tokens = StagingTokenCache(store, SHOP, sandbox.client_id, sandbox.client_secret)
    return StarwebClient(credentials, token_cache=tokens, backoff_base=0.01, backoff_cap=0.05)


def token_requests(sandbox: Sandbox) -> int:
    return sum(1 for recorded in sandbox.requests if recorded.path == "/token")


def stored_row(store: StagingStore) -> sa.Row:
    with store._read() as connection:
        return connection.execute(sa.select(tables.starweb_token)).one()


def read_shop_in_another_process(sandbox: Sandbox, url: str) -> None:
    code = (
        "import sys\n"
        "from starmamut.staging.store import StagingStore\n"
        "from starmamut.starweb.client import StarwebClient, StarwebCredentials\n"
        "from starmamut.starweb.token_cache import StagingTokenCache\n"
        "base, client_id, secret, url = sys.argv[1:]\n"
        "tokens = StagingTokenCache(StagingStore.from_url(url), 'demo', client_id, secret)\n"
        "with StarwebClient(StarwebCredentials(base, client_id, secret), token_cache=tokens) as client:\n"
        "    client.get_shop()\n"
        "    assert client.stats.token_fetches == 0, client.stats\n"
    )
    env_path = f"{REPO / 'include'}:{REPO / 'devtools'}:{REPO}"
    subprocess.run(
        [sys.executable, "-c", code, sandbox.base_url, sandbox.client_id, sandbox.client_secret, url],
        check=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_clients_and_processes_of_a_shop_share_one_token_and_a_refused_one_is_renewed_once(
    shop: Sandbox, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'staging.db'}"
    store = StagingStore.from_url(url)
    store.migrate()
    shop.faults.latency_ms = 50  # the /token answer takes long enough for both clients to want one meanwhile
    clients = [shared_client(shop, store), shared_client(shop, store)]
    start = threading.Barrier(len(clients))

    def read_shop(client: StarwebClient) -> None:
        start.wait()
        client.get_shop()

    threads = [threading.Thread(target=read_shop, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert token_requests(shop) == 1
    assert sum(client.stats.token_fetches for client in clients) == 1
    read_shop_in_another_process(shop, url)
    assert token_requests(shop) == 1, "another process of the shop used the stored token"

    shop.expire_tokens()  # Starweb refuses the shared token: every client meets a 401
    threads = [threading.Thread(target=read_shop, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert token_requests(shop) == 2, "the refused token was renewed once, for both clients"
    assert [recorded.status for recorded in shop.requests].count(401) == 2

    token = clients[0]._token
    assert token is not None and clients[1]._token == token
    row = stored_row(store)
    assert token not in row.sealed_token, "the stored row never holds the token in the clear"
    for client in clients:
        client.close()
    store.close()


def test_a_sealed_token_opens_only_with_its_key_and_a_damaged_one_reads_as_absent() -> None:
    key, other = b"k" * 32, b"o" * 32
    sealed = seal("secret-token-123", key)
    assert "secret-token-123" not in sealed
    assert unseal(sealed, key) == "secret-token-123"
    assert unseal(sealed, other) is None
    assert unseal(sealed[:-4] + "AAAA", key) is None
    assert unseal("not base64 !", key) is None
    assert seal("secret-token-123", key) != sealed, "a fresh nonce each time"
