"""What a shop's people hear, sent through Airflow notifiers: a failed task, a growing quarantine, a daily report.

Every message goes to each channel of the shop's ``alerts`` section: e-mail through the smtp provider's
``SmtpNotifier`` (the provider Airflow ships with), Slack through ``SlackWebhookNotifier`` and Teams through
``AppriseNotifier`` when their providers are installed (config.py refuses the setting otherwise). The text is
built here from the run's own facts only (shop, job, task, counts, record keys and reasons), never from a
Connection, and is passed through Airflow's secrets masker before it leaves, so no secret reaches a mail.

The channel notifiers are called through ``notify()``, not ``__call__``: the latter renders every field as a Jinja
template, and a reason quoting a shop's data (``{{``) must arrive as written.
"""

from __future__ import annotations

import html
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from airflow.sdk import BaseNotifier

from starmamut.config import AlertSettings, Settings, ShopConfig

if TYPE_CHECKING:  # the DAG file imports this module: the store stays out of parsing
    from starmamut.staging.store import Batch, QuarantineEntry, StagingStore

log = logging.getLogger(__name__)

OPEN_QUARANTINE = "open_quarantine"
"""Batch count the report step records: the shop's open quarantine after the batch (the next run compares)."""
LISTED_ENTRIES = 50
"""Quarantine entries a message lists before it says how many more there are."""
NOT_ADDED_UP = {OPEN_QUARANTINE, "seconds_since_start"}
"""Counts the daily report does not add up over a day's runs (a state, not an amount)."""


@dataclass(frozen=True)
class Message:
    """One alert: a subject line and a plain-text body (mails get it as preformatted HTML)."""

    subject: str
    text: str

    def redacted(self) -> Message:
        """The message with every secret Airflow's masker knows in this process replaced by ***."""
        try:
            from airflow.sdk.log import redact
        except ImportError:  # pragma: no cover - the task SDK always has it
            return self
        return Message(str(redact(self.subject)), str(redact(self.text)))


def _notifiers(alerts: AlertSettings, message: Message) -> list[tuple[str, BaseNotifier]]:
    """One Airflow notifier per configured channel, carrying the message."""
    notifiers: list[tuple[str, BaseNotifier]] = []
    if alerts.email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        body = f'<pre style="font-family: monospace">{html.escape(message.text)}</pre>'
        notifiers.append(
            (
                "email",
                SmtpNotifier(
                    to=list(alerts.email),
                    from_email=alerts.from_email,
                    subject=message.subject,
                    html_content=body,
                    smtp_conn_id=alerts.smtp_conn_id,
                ),
            )
        )
    if alerts.slack_webhook_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        text = f"*{message.subject}*\n```{message.text}```"
        notifiers.append(("slack", SlackWebhookNotifier(slack_webhook_conn_id=alerts.slack_webhook_conn_id, text=text)))
    if alerts.teams_conn_id:
        from airflow.providers.apprise.notifications.apprise import AppriseNotifier

        notifiers.append(
            ("teams", AppriseNotifier(title=message.subject, body=message.text, apprise_conn_id=alerts.teams_conn_id))
        )
    return notifiers


class AlertNotSent(RuntimeError):
    """A channel refused or could not be reached; the message names the channels, never a secret."""


def send(alerts: AlertSettings, message: Message, context: Mapping[str, Any] | None = None) -> list[str]:
    """Send the message to every channel of the shop; return the channels it reached.

    A channel that fails does not keep the others from getting it; afterwards :class:`AlertNotSent` names it.
    """
    message = message.redacted()
    sent, failed = [], []
    for channel, notifier in _notifiers(alerts, message):
        try:
            notifier.notify(dict(context or {}))  # type: ignore[arg-type]
        except Exception as exc:
            log.error("alert %r not sent by %s: %s: %s", message.subject, channel, type(exc).__name__, exc)
            failed.append(f"{channel} ({type(exc).__name__})")
        else:
            sent.append(channel)
    if failed:
        raise AlertNotSent(f"alert {message.subject!r} not sent by {', '.join(failed)}; sent by {sent or 'none'}")
    if sent:
        log.info("alert %r sent by %s", message.subject, ", ".join(sent))
    return sent


def _shop_line(shop: ShopConfig) -> str:
    mode = "" if shop.live else "  [shadow mode: shop not live, every run is a dry run]"
    return f"{shop.name} ({shop.id}, flow {shop.flow}){mode}"


def _log_url(context: Mapping[str, Any]) -> str:
    ti = context.get("ti") or context.get("task_instance")
    return str(getattr(ti, "log_url", "") or "(no log link: not run as an Airflow task)")


# ------------------------------------------------------------------------------------------------ task failure


def failure_message(shop: ShopConfig, job: str, context: Mapping[str, Any]) -> Message:
    """What failed where, the error and the notes naming the shop's Connections, and the link to the task log."""
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", "?")
    dag_id = getattr(ti, "dag_id", "?")
    try_number = getattr(ti, "try_number", None)
    error = context.get("exception")
    if isinstance(error, BaseException):
        described = f"{type(error).__name__}: {error}"
        notes = getattr(error, "__notes__", ())
    else:
        described, notes = str(error or "(no exception recorded)"), ()
    lines = [
        f"Shop:     {_shop_line(shop)}",
        f"Job:      {job}",
        f"Task:     {task_id}" + (f" (try {try_number})" if try_number else ""),
        f"DAG run:  {dag_id} / {run_id}",
        f"Log:      {_log_url(context)}",
        "",
        f"Error:    {described}",
        *(f"          {note}" for note in notes),
        "",
        "The task failed after its retries. The log link shows the whole story; README 'Troubleshooting' lists",
        "the usual causes and fixes.",
    ]
    return Message(f"[starmamut] shop {shop.id}: {job} · task {task_id} failed", "\n".join(lines))


class ShopFailureNotifier(BaseNotifier):
    """The ``on_failure_callback`` of every task of a shop's DAGs: one message to the shop's channels."""

    def __init__(self, shop: ShopConfig, job: str) -> None:
        super().__init__()
        self.shop = shop
        self.job = job

    def notify(self, context: Any) -> None:
        send(self.shop.alerts, failure_message(self.shop, self.job, context), context)


def failure_callbacks(shop: ShopConfig, job: str) -> list[BaseNotifier]:
    """The failure notifiers a shop's DAG gets: none when the shop has no channel or turned them off."""
    alerts = shop.alerts
    return [ShopFailureNotifier(shop, job)] if alerts.on_failure and alerts.channels else []


# ------------------------------------------------------------------------------------------- quarantine growth


@dataclass(frozen=True)
class Growth:
    """The shop's open quarantine grew: from how many to how many, and the entries opened since."""

    previous: int
    now: int
    new_entries: list[QuarantineEntry]


def record_open_quarantine(store: StagingStore, shop_id: str, batch_id: str) -> Growth | None:
    """Record the shop's open quarantine count on the batch and compare it with the previous recorded count
    (the shop's latest other batch that has one; none yet counts as 0). Returns the growth, if any."""
    entries = store.open_quarantine(shop_id)
    previous_batch = next(
        (
            batch
            for batch in store.latest_batches(shop_id, limit=100)
            if batch.batch_id != batch_id and OPEN_QUARANTINE in batch.counts
        ),
        None,
    )
    batch = store.get_batch(batch_id)
    store.set_batch_progress(batch_id, {**batch.counts, OPEN_QUARANTINE: len(entries)})
    previous = int(previous_batch.counts[OPEN_QUARANTINE]) if previous_batch else 0
    if len(entries) <= previous:
        return None
    since = (previous_batch.finished_at or previous_batch.started_at) if previous_batch else None
    new_entries = sorted(
        (entry for entry in entries if since is None or entry.first_seen > since),
        key=lambda entry: (entry.first_seen, entry.entity, entry.key),
    )
    return Growth(previous, len(entries), new_entries)


def _entry_lines(entries: Sequence[QuarantineEntry]) -> list[str]:
    lines = [
        f"  {entry.entity} {entry.key}  (first seen {entry.first_seen:%Y-%m-%d %H:%M} UTC, batch {entry.batch_id}): "
        + "; ".join(f"[{reason['check']}] {reason['reason']}" for reason in entry.reasons)
        for entry in entries[:LISTED_ENTRIES]
    ]
    if len(entries) > LISTED_ENTRIES:
        lines.append(f"  … and {len(entries) - LISTED_ENTRIES} more (python -m starmamut summary lists them all)")
    return lines


def growth_message(shop: ShopConfig, job: str, batch_id: str, growth: Growth, context: Mapping[str, Any]) -> Message:
    lines = [
        f"Shop:     {_shop_line(shop)}",
        f"Job:      {job} (batch {batch_id})",
        f"Log:      {_log_url(context)}",
        "",
        f"The shop's open quarantine grew from {growth.previous} to {growth.now} record(s).",
        f"Opened since the previous report ({len(growth.new_entries)}):",
        *_entry_lines(growth.new_entries),
        "",
        "Each reason names the record and the rule. Fix the record at its source: the next run checks it again",
        "and closes the entry. README 'Troubleshooting' explains the reasons.",
    ]
    return Message(
        f"[starmamut] shop {shop.id}: open quarantine grew from {growth.previous} to {growth.now} ({job})",
        "\n".join(lines),
    )


def after_report(
    shop: ShopConfig, job: str, store: StagingStore, batch_id: str, context: Mapping[str, Any]
) -> Growth | None:
    """The report step's last act: record the open quarantine and alert when it grew. An alert that cannot be
    sent is logged as an error and does not fail the sync (the count is recorded either way)."""
    growth = record_open_quarantine(store, shop.id, batch_id)
    if growth is None:
        return None
    log.warning("shop %s: open quarantine grew from %d to %d", shop.id, growth.previous, growth.now)
    if shop.alerts.on_quarantine_growth and shop.alerts.channels:
        try:
            send(shop.alerts, growth_message(shop, job, batch_id, growth, context), context)
        except AlertNotSent as exc:
            log.error("shop %s: %s", shop.id, exc)
    return growth


# ------------------------------------------------------------------------------------------------ daily report


def report_day(logical_date: datetime | None, requested: str | None, timezone: ZoneInfo) -> date:
    """The day a daily report covers: the requested one (YYYY-MM-DD), else the day before the run's date."""
    if requested:
        return date.fromisoformat(requested)
    moment = logical_date or datetime.now(UTC)
    return moment.astimezone(timezone).date() - timedelta(days=1)


def _job_rows(batches: Sequence[Batch]) -> list[tuple[str, int, str, str]]:
    """Per job: runs, runs per status, and the day's counts added up (only the whole-number ones)."""
    by_job: dict[str, list[Batch]] = defaultdict(list)
    for batch in batches:
        by_job[batch.job].append(batch)
    rows = []
    for job, runs in sorted(by_job.items()):
        statuses = Counter(batch.status for batch in runs)
        totals: Counter[str] = Counter()
        for batch in runs:
            for key, value in batch.counts.items():
                if key not in NOT_ADDED_UP and isinstance(value, int) and not isinstance(value, bool):
                    totals[key] += value
        rows.append(
            (
                job,
                len(runs),
                ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())),
                ", ".join(f"{key} {value}" for key, value in totals.items()),
            )
        )
    return rows


def daily_report_text(
    shop: ShopConfig, day: date, timezone: ZoneInfo, batches: Sequence[Batch], quarantine: Sequence[QuarantineEntry]
) -> str:
    """The daily report as Markdown: the day's runs per job, then the open quarantine."""
    cell = lambda text: str(text).replace("|", "/").replace("\n", " ")  # noqa: E731
    out = [f"# Daily report · {shop.name} (`{shop.id}`) · {day.isoformat()} ({timezone.key})", ""]
    if not shop.live:
        out += ["**Shadow mode: the shop is not live; every run was a dry run and wrote nothing.**", ""]
    rows = _job_rows(batches)
    out += [f"## Runs per job ({len(batches)} run(s))", ""]
    if rows:
        out += ["| job | runs | status | counts, added up |", "|---|---|---|---|"]
        out += [f"| {job} | {runs} | {statuses} | {cell(totals)} |" for job, runs, statuses, totals in rows]
    else:
        out.append("No run started that day.")
    out += ["", f"## Open quarantine ({len(quarantine)})", ""]
    if quarantine:
        out += ["| entity | key | check | reason | first seen (UTC) | last seen (UTC) |", "|---|---|---|---|---|---|"]
        for entry in list(quarantine)[:LISTED_ENTRIES]:
            checks = ", ".join(reason["check"] for reason in entry.reasons)
            reasons = "; ".join(reason["reason"] for reason in entry.reasons)
            out.append(
                f"| {entry.entity} | {cell(entry.key)} | {cell(checks)} | {cell(reasons)} | "
                f"{entry.first_seen:%Y-%m-%d %H:%M} | {entry.last_seen:%Y-%m-%d %H:%M} |"
            )
        if len(quarantine) > LISTED_ENTRIES:
            out.append(f"\n… and {len(quarantine) - LISTED_ENTRIES} more (`python -m starmamut summary`).")
    else:
        out.append("Nothing is quarantined.")
    return "\n".join(out) + "\n"


def daily_report_path(shop_id: str, day: date) -> Path:
    """Where the daily report is stored: beside the initial migration's reports (``reports/<shop>/``)."""
    from starmamut.jobs.initial_product_sync import reports_dir

    return reports_dir() / shop_id / f"daily-report-{day.isoformat()}.md"


def run_daily_report(
    settings: Settings, shop: ShopConfig, store: StagingStore, day: date, context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build the shop's report for ``day``, store it as a file and send it to the shop's channels."""
    timezone = ZoneInfo(settings.mamut.timezone)
    start = datetime.combine(day, time(), timezone)
    batches = store.batches_started_between(shop.id, start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC))
    quarantine = store.open_quarantine(shop.id)
    text = daily_report_text(shop, day, timezone, batches, quarantine)
    path = daily_report_path(shop.id, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    log.info("shop %s: daily report for %s written to %s", shop.id, day, path)
    subject = f"[starmamut] shop {shop.id}: daily report {day.isoformat()} · {len(batches)} run(s), " + (
        f"{len(quarantine)} open quarantine" + ("" if shop.live else " · shadow mode")
    )
    sent = send(shop.alerts, Message(subject, text), context) if shop.alerts.channels else []
    return {
        "day": day.isoformat(),
        "runs": len(batches),
        "open_quarantine": len(quarantine),
        "file": str(path),
        "sent": sent,
    }
