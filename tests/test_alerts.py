"""Alerts and the daily report reach a real SMTP server on loopback, sent by Airflow's SMTP notifier from real DAG
runs (``dag.test()``): a failed task names shop, job, task and its log; a growing quarantine is told once; the
daily report arrives and is stored. No secret of any Connection is ever in a mail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from starmamut.staging.store import StagingStore
from tests.fixtures.airflow import REPO_ROOT, mamut_connection, run_dag, starweb_connection
from tests.fixtures.mamut import fresh_mock_database
from tests.fixtures.smtp import SmtpSink, body, subjects

RECIPIENT = "drift@example.se"
WRONG_SECRET = "wrong-secret-4711-do-not-mail"


def config(live: bool = True) -> dict[str, Any]:
    return {
        "version": 1,
        "staging_conn_id": "starmamut_staging",
        "mamut": {"conn_id": "mamut_default", "vat_codes": {25: 1, 12: 2, 6: 3, 0: 4, 25.5: 5}},
        "shops": {
            "demo": {
                "name": "Demobutiken",
                "flow": "ecom",
                "starweb_conn_id": "starweb_demo",
                "live": live,
                "products_to_mamut": {"quarantine_threshold": 0.9},
                "alerts": {"email": [RECIPIENT], "smtp_conn_id": "smtp_alerts"},
            }
        },
    }


@pytest.fixture
def wired(
    sandbox, smtp_sink: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shop_config, airflow_db
) -> Iterator[StagingStore]:
    with fresh_mock_database("sqlite", tmp_path, seed="demo") as odbc:
        shop_config(config())
        staging_url = f"sqlite:///{tmp_path / 'staging.db'}"
        monkeypatch.setenv(
            "AIRFLOW_CONN_STARWEB_DEMO", starweb_connection(sandbox.base_url, sandbox.client_id, sandbox.client_secret)
        )
        monkeypatch.setenv("AIRFLOW_CONN_MAMUT_DEFAULT", mamut_connection(odbc))
        monkeypatch.setenv(
            "AIRFLOW_CONN_STARMAMUT_STAGING",
            json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": staging_url}}),
        )
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", smtp_sink.connection())
        monkeypatch.setenv("STARMAMUT_REPORTS_DIR", str(tmp_path / "reports"))
        store = StagingStore.from_url(staging_url)
        try:
            yield store
        finally:
            store.close()


def assert_no_secret(sink: SmtpSink, *secrets: str) -> None:
    for message in sink.received():
        text = str(message["Subject"]) + body(message)
        for secret in secrets:
            assert secret not in text, f"a secret is in the mail {message['Subject']!r}"


def add_bad_product(sandbox: Any) -> int:
    product = sandbox.state.add_product(
        {
            "languages": [{"langCode": "sv", "name": "Felaktig"}],
            "variants": [{"sku": "BAD SKU!", "attributeValueLinks": []}],
        }
    )
    return product["productId"]


@pytest.mark.slow
def test_a_failed_task_mails_shop_job_task_and_its_log_but_no_secret(
    wired, sandbox, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(
        "AIRFLOW_CONN_STARWEB_DEMO", starweb_connection(sandbox.base_url, sandbox.client_id, WRONG_SECRET)
    )
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example.se:8443")
    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).dags["demo__products_to_mamut"]
    for task in dag.tasks:
        task.retries = 0  # the alert goes out when the task has failed for good
    run = dag.test()
    assert run.state == "failed"

    (mail,) = smtp_sink.wait_for(1)
    text = body(mail)
    assert mail["Subject"] == "[starmamut] shop demo: products_to_mamut · task extract failed"
    assert mail["X-Envelope-To"] == RECIPIENT and mail["From"] == "starmamut@example.se"
    assert "Shop:     Demobutiken (demo, flow ecom)" in text
    assert "Job:      products_to_mamut" in text and "Task:     extract" in text
    assert f"DAG run:  demo__products_to_mamut / {run.run_id}" in text
    log_url = f"http://airflow.example.se:8443/dags/demo__products_to_mamut/runs/{quote(run.run_id)}/tasks/extract"
    assert f"Log:      {log_url}" in text
    assert "StarwebAuthError" in text and "Starweb Connection 'starweb_demo'" in text
    assert_no_secret(smtp_sink, WRONG_SECRET, sandbox.client_secret)


@pytest.mark.slow
def test_a_growing_quarantine_is_told_once_and_the_daily_report_arrives_and_is_stored(
    wired: StagingStore, sandbox, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    bad = add_bad_product(sandbox)
    assert run_dag("demo__products_to_mamut").state == "success"
    (grew,) = smtp_sink.wait_for(1)
    text = body(grew)
    assert grew["Subject"] == "[starmamut] shop demo: open quarantine grew from 0 to 1 (products_to_mamut)"
    assert f"product {bad}" in text and "BAD SKU!" in text and "Log:      http" in text

    assert run_dag("demo__products_to_mamut").state == "success"  # the same record again: no new alert
    latest, first = wired.latest_batches("demo", job="products_to_mamut", limit=2)
    assert first.counts["open_quarantine"] == latest.counts["open_quarantine"] == 1

    today = datetime.now(ZoneInfo("Europe/Stockholm")).date().isoformat()
    assert run_dag("demo__daily_report", {"day": today}).state == "success"
    mails = smtp_sink.wait_for(2)
    assert subjects(smtp_sink) == [
        grew["Subject"],
        f"[starmamut] shop demo: daily report {today} · 2 run(s), 1 open quarantine",
    ]
    report = body(mails[1])
    stored = (tmp_path / "reports" / "demo" / f"daily-report-{today}.md").read_text(encoding="utf-8")
    assert report.strip() == stored.strip()
    assert f"# Daily report · Demobutiken (`demo`) · {today} (Europe/Stockholm)" in stored
    assert "| products_to_mamut | 2 | done 2 |" in stored
    assert f"| product | {bad} |" in stored and "BAD SKU!" in stored
    assert_no_secret(smtp_sink, sandbox.client_secret)


@pytest.mark.slow
def test_a_shop_in_shadow_mode_writes_nothing_and_its_report_says_dry_run(
    wired: StagingStore, sandbox, shop_config, smtp_sink: SmtpSink
) -> None:
    shop_config(config(live=False))
    run = run_dag("demo__products_to_mamut")  # a plain run, no dry_run Param: shadow mode makes it one
    assert run.state == "success"
    (batch,) = wired.latest_batches("demo")
    assert batch.status == "dry_run" and batch.dry_run
    assert batch.counts["would_create_articles"] > 0 and wired.get_links("demo", "product") == {}
    assert smtp_sink.received() == []  # nothing failed, nothing was quarantined


def fake_provider(monkeypatch: pytest.MonkeyPatch, module: str, cls: type) -> None:
    """Put a stand-in notifier module where a provider that is not installed would have it."""
    import sys
    import types
    from importlib.machinery import ModuleSpec

    parts = module.split(".")
    for depth in range(3, len(parts) + 1):  # airflow.providers.<name>...: airflow.providers itself is real
        name = ".".join(parts[:depth])
        fake = types.ModuleType(name)
        fake.__spec__ = ModuleSpec(name, None)
        fake.__path__ = []  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, fake)
    setattr(sys.modules[module], cls.__name__, cls)


def test_every_channel_gets_the_alert_as_written_and_a_failing_one_keeps_no_other_from_it(
    smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starmamut.alerts import AlertNotSent, Message, send
    from starmamut.config import AlertSettings

    slack: list[tuple[str, str]] = []

    class SlackWebhookNotifier:
        def __init__(self, slack_webhook_conn_id: str, text: str) -> None:
            self.conn_id, self.text = slack_webhook_conn_id, text

        def notify(self, context: Any) -> None:
            slack.append((self.conn_id, self.text))

    class AppriseNotifier:
        def __init__(self, title: str, body: str, apprise_conn_id: str) -> None:
            pass

        def notify(self, context: Any) -> None:
            raise ConnectionError("teams webhook unreachable")

    fake_provider(monkeypatch, "airflow.providers.slack.notifications.slack_webhook", SlackWebhookNotifier)
    fake_provider(monkeypatch, "airflow.providers.apprise.notifications.apprise", AppriseNotifier)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", smtp_sink.connection())
    alerts = AlertSettings(
        email=[RECIPIENT], smtp_conn_id="smtp_alerts", slack_webhook_conn_id="slack_ops", teams_conn_id="teams_ops"
    )
    assert alerts.channels == ["email", "slack", "teams"]

    text = "product 7: name '{{ Tröja }}' has </pre> in it"  # shop data is sent as written, never as a template
    with pytest.raises(AlertNotSent, match=r"not sent by teams \(ConnectionError\); sent by \['email', 'slack'\]"):
        send(alerts, Message("[starmamut] shop demo: {{ test }}", text))
    (mail,) = smtp_sink.wait_for(1)
    assert (mail["Subject"], body(mail)) == ("[starmamut] shop demo: {{ test }}", text)
    assert slack == [("slack_ops", f"*[starmamut] shop demo: {{{{ test }}}}*\n```{text}```")]


def test_a_secret_airflow_masks_never_reaches_a_mail(smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.log import mask_secret

    from starmamut.alerts import Message, send
    from starmamut.config import AlertSettings

    secret = "hunter2-" + "x" * 12
    mask_secret(secret)  # what Airflow does with every Connection password a task reads
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", smtp_sink.connection())
    alerts = AlertSettings(email=[RECIPIENT], smtp_conn_id="smtp_alerts")
    send(alerts, Message(f"login {secret} refused", f"PWD={secret};UID=sa"))
    (mail,) = smtp_sink.wait_for(1)
    assert (mail["Subject"], body(mail)) == ("login *** refused", "PWD=***;UID=sa")
