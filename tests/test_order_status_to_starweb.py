"""order_status_to_starweb end to end: Mamut mock over ODBC, sandbox over loopback, real staging.

The sandbox's demo orders go to Mamut through products_to_mamut and orders_to_mamut, then the back office moves
them along (starmamut_devtools.mamut_mock.DEMO_ORDER_PROGRESS). The sandbox records every request body and status
change, so the tests check what the shop received, not what the job says it sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from starmamut.config import Settings
from starmamut.failpoints import SimulatedCrash
from starmamut.jobs import order_status_to_starweb, orders_to_mamut, products_to_mamut
from starmamut.jobs.common import JobContext, QualityGateFailed
from starmamut.mamut.gateway import MamutGateway
from starmamut.mamut.schema_map import SchemaMap
from starmamut.services.reference import UnknownOrderStatus
from starmamut.staging.store import StagingStore
from starmamut_devtools.mamut_mock import progress_demo_orders, progress_order
from tests.fixtures.jobs import sandbox_job_context
from tests.fixtures.mamut import MamutTestDatabase, fresh_mock_database
from tests.fixtures.openapi_contract import assert_request_conforms

ELIGIBLE = ["created", "picking", "completed", 5, 6]
CREATED, PICKING, COMPLETED, CANCELED, PAID, SHIPPED = 1, 2, 3, 4, 5, 6
DELIVERED = {"status": "completed", "send_email": True, "attach_tracking": True, "process_payment": True}
EVERY_STATE = {
    "picked": {"status": "picking"},
    "paid": {"status": PAID},
    "delivered": DELIVERED,
    "cancelled": {"status": "canceled", "send_email": True, "process_payment": True},
    "credited": {"status": "canceled"},
}
SWITCHES_OFF = {"onOrderStatusChangeSendEmail": False, "onOrderStatusChangeProcessPayment": False}
SWITCHES_ON = {"onOrderStatusChangeSendEmail": True, "onOrderStatusChangeProcessPayment": True}
# What the shop must receive for DEMO_ORDER_PROGRESS under EVERY_STATE; 1001 is completed in the shop already.
EXPECTED_PATCHES = {
    1002: {"statusId": COMPLETED, **SWITCHES_ON, "shippingTrackingNo": "JJD000390007771234", "shippingTrackerType": 2},
    1003: {
        "statusId": COMPLETED,
        **SWITCHES_ON,
        "shippingTrackingNo": "JVGL0620000012345678",
        "shippingTrackerType": 3,
    },
    1004: {"statusId": CANCELED, **SWITCHES_OFF},
    1005: {"statusId": CANCELED, **SWITCHES_ON},
    1006: {"statusId": PICKING, **SWITCHES_OFF},
    1009: {"statusId": COMPLETED, **SWITCHES_ON},
    1010: {"statusId": PAID, **SWITCHES_OFF},
}

MakeContext = Callable[..., JobContext]


def settings_for(status: dict[str, Any]) -> Settings:
    shop = {
        "name": "Demo",
        "flow": "combo",
        "starweb_conn_id": "unused",
        "orders_to_mamut": {"eligible_statuses": ELIGIBLE},
        "order_status_to_starweb": status,
    }
    return Settings.model_validate(
        {"version": 1, "mamut": {"vat_codes": {25: 1, 12: 2, 6: 3, 0: 4, 25.5: 5}}, "shops": {"demo": shop}}
    )


def context_factory(sandbox: Any, gateway: MamutGateway, store: StagingStore) -> MakeContext:
    def make(transitions: dict[str, Any] | None = None, **options: Any) -> JobContext:
        params = {
            name: options.pop(name)
            for name in ("dry_run", "full_refresh", "resync_ids", "since", "accept_quarantine")
            if name in options
        }
        settings = settings_for({"transitions": EVERY_STATE if transitions is None else transitions, **options})
        return sandbox_job_context(settings, sandbox, store, gateway, params)

    return make


def transfer_and_progress(make: MakeContext, sandbox: Any, gateway: MamutGateway) -> None:
    """The demo orders into Mamut, the back office's steps on them, and a clean request log."""
    products_to_mamut.run(make())
    orders_to_mamut.run(make())
    assert len(progress_demo_orders(gateway, "demo", now=datetime.now(UTC))) == 8
    sandbox.reset_requests()


@pytest.fixture
def make_ctx(sandbox: Any, mamut_db: MamutTestDatabase, staging_store: StagingStore) -> Iterator[MakeContext]:
    make = context_factory(sandbox, mamut_db.gateway, staging_store)
    transfer_and_progress(make, sandbox, mamut_db.gateway)
    yield make


def status_patches(sandbox: Any) -> dict[int, list[dict[str, Any]]]:
    """PATCH bodies per order that carry a status (orders_to_mamut's write-back carries none)."""
    patches: dict[int, list[dict[str, Any]]] = {}
    for request in sandbox.write_requests():
        assert request.method == "PATCH" and request.path.startswith("/orders/"), request
        patches.setdefault(int(request.path.rsplit("/", 1)[1]), []).append(request.body)
    return patches


def ledger_states(store: StagingStore) -> dict[str, dict[str, str]]:
    states: dict[str, dict[str, str]] = {}
    for (order_id, target), value in store.get_ledger("demo", order_status_to_starweb.ENTITY).items():
        if target.startswith("state:"):
            states.setdefault(order_id, {})[target.removeprefix("state:")] = value
    return states


def test_each_demo_change_reaches_the_shop_as_one_patch_with_the_configured_fields(make_ctx, sandbox, staging_store):
    state = sandbox.state
    before = {order_id: state.order(order_id) for order_id in state.order_ids()}

    result = order_status_to_starweb.run(make_ctx())

    assert status_patches(sandbox) == {order_id: [body] for order_id, body in EXPECTED_PATCHES.items()}
    assert result["loaded"] == len(EXPECTED_PATCHES) and result["already_in_status"] == 1
    assert result["quarantined"] == result["failed"] == 0
    changes = {change.order_id: change for change in state.status_changes}
    assert set(changes) == set(EXPECTED_PATCHES)
    for order_id, body in EXPECTED_PATCHES.items():
        change = changes[order_id]
        assert (change.from_status_id, change.to_status_id) == (before[order_id]["statusId"], body["statusId"])
        assert change.send_email is body["onOrderStatusChangeSendEmail"]
        assert change.process_payment is body["onOrderStatusChangeProcessPayment"]
        had = before[order_id]  # tracking the order had stays unless the PATCH brings a number
        assert (change.tracking_no, change.tracker_type) == (
            body.get("shippingTrackingNo", had["shippingTrackingNo"] or None),
            body.get("shippingTrackerType", had.get("shippingTrackerType")),
        )
    # Klarna: the delivered order's reserved payment is captured, the cancelled order's is cancelled.
    assert (changes[1003].payment_status_before, changes[1003].payment_status_after) == ("reserved", "captured")
    assert (changes[1005].payment_status_before, changes[1005].payment_status_after) == ("reserved", "cancelled")
    assert changes[1009].email_sent and not changes[1006].email_sent
    assert ledger_states(staging_store)["1001"] == {"delivered": str(COMPLETED)}  # recorded, nothing sent
    for recorded in sandbox.requests:
        if recorded.path != "/token":
            assert_request_conforms(recorded)


def test_running_again_sends_nothing_even_on_a_full_refresh(make_ctx, sandbox, staging_store):
    order_status_to_starweb.run(make_ctx())
    sandbox.reset_requests()

    again = order_status_to_starweb.run(make_ctx())
    refreshed = order_status_to_starweb.run(make_ctx(full_refresh=True))

    assert sandbox.write_requests() == []
    assert again["changed"] == 0 and again["unchanged"] == again["read"] == 8
    assert refreshed["changed"] == 8 and refreshed["loaded"] == 0 and refreshed["nothing_to_report"] == 8
    assert [request.path for request in sandbox.requests if request.path.startswith("/orders")] == []


@pytest.mark.parametrize("crash_at", [1, 3])
def test_a_crash_between_patch_and_ledger_then_retry_sends_each_change_once(make_ctx, sandbox, monkeypatch, crash_at):
    ctx = make_ctx()
    extracted = order_status_to_starweb.extract(ctx)
    order_status_to_starweb.validate(ctx, extracted["batch_id"])
    monkeypatch.setenv("STARMAMUT_FAILPOINT", f"order_status_to_starweb.after_patch@{crash_at}")
    with pytest.raises(SimulatedCrash):
        order_status_to_starweb.load(ctx, extracted["batch_id"])
    monkeypatch.delenv("STARMAMUT_FAILPOINT")
    patched = status_patches(sandbox)
    sandbox.reset_requests()
    retried = order_status_to_starweb.load(ctx, extracted["batch_id"])  # the Airflow retry

    patched_on_retry = status_patches(sandbox)
    assert patched.keys().isdisjoint(patched_on_retry)
    assert patched | patched_on_retry == {order_id: [body] for order_id, body in EXPECTED_PATCHES.items()}
    # what the crashed try recorded is not even read again; every pass before the crash recorded its change
    assert retried["recorded_before"] >= crash_at - 1
    order_reads = [r for r in sandbox.requests if r.method == "GET" and r.path.startswith("/orders/")]
    assert len(order_reads) == len(EXPECTED_PATCHES) + 1 - retried["recorded_before"]
    assert sorted(change.order_id for change in sandbox.state.status_changes) == sorted(EXPECTED_PATCHES)
    assert retried["already_in_status"] >= 1  # the order whose PATCH went out just before the crash
    assert order_status_to_starweb.run(make_ctx())["changed"] == 0


def test_unmapped_state_unknown_status_or_tracker_quarantines_that_order_naming_shop_order_and_state(
    make_ctx, sandbox, mamut_db, staging_store
):
    progress_order(
        mamut_db.gateway, "demo:1002", now=datetime.now(UTC), tracking_no="JJD000390007771234", tracker_type=99
    )
    without_credit = {state: transition for state, transition in EVERY_STATE.items() if state != "credited"}
    first = order_status_to_starweb.run(make_ctx({**without_credit, "cancelled": {"status": "avbruten"}}))

    reasons = {entry.key: entry.reasons for entry in staging_store.open_quarantine("demo", "order_status")}
    assert set(reasons) == {"1002", "1004", "1005"} and first["quarantined"] == 3
    assert {key: [reason["check"] for reason in entry] for key, entry in reasons.items()} == {
        "1002": ["tracker_ok"],
        "1004": ["unmapped_ok"],
        "1005": ["status_ok"],
    }
    texts = {key: entry[0]["reason"] for key, entry in reasons.items()}
    for key, text in texts.items():
        assert text.startswith(f"shop demo: order {key} (Mamut order "), text
    assert "Mamut state(s) credited with no transition" in texts["1004"]
    assert "Mamut state 'cancelled'" in texts["1005"] and "'avbruten' does not exist" in texts["1005"]
    assert "tracker type 99 is not one of the shop's shipping tracking types (1 PostNord" in texts["1002"]
    assert set(status_patches(sandbox)) == set(EXPECTED_PATCHES) - {1002, 1004, 1005}  # the others went on
    held = order_status_to_starweb.run(make_ctx({**without_credit, "cancelled": {"status": "avbruten"}}))
    assert held["changed"] == held["quarantined"] == 3 and held["loaded"] == 0  # held orders alone pass the gate

    # The owner maps both states and fixes the carrier in Mamut: the quarantined orders go through.
    progress_order(
        mamut_db.gateway,
        "demo:1002",
        now=datetime.now(UTC) + timedelta(seconds=1),
        tracking_no="JJD000390007771234",
        tracker_type=2,
    )
    fixed = order_status_to_starweb.run(make_ctx())

    assert fixed["loaded"] == 3 and staging_store.open_quarantine("demo", "order_status") == []
    for order_id in (1002, 1004, 1005):
        assert status_patches(sandbox)[order_id] == [EXPECTED_PATCHES[order_id]]


def test_a_status_starweb_refuses_is_quarantined_with_starwebs_reason(make_ctx, sandbox, staging_store):
    custom = sandbox.state.add_order_status({"languages": {"data": [{"langCode": "sv", "name": "Betald i Mamut"}]}})[
        "statusId"
    ]
    ctx = make_ctx({**EVERY_STATE, "paid": {"status": custom}})
    extracted = order_status_to_starweb.extract(ctx)
    order_status_to_starweb.validate(ctx, extracted["batch_id"])
    sandbox.state.delete_order_status(custom)  # gone between the check and the PATCH

    loaded = order_status_to_starweb.load(ctx, extracted["batch_id"])

    assert loaded["failed"] == 1 and loaded["loaded"] == len(EXPECTED_PATCHES) - 1
    [entry] = staging_store.open_quarantine("demo", "order_status")
    assert entry.key == "1010" and entry.reasons[0]["check"] == "starweb_accepts"
    assert f"Starweb refused status {custom} for Mamut state 'paid'" in entry.reasons[0]["reason"]
    assert f"no order status {custom}" in entry.reasons[0]["reason"]
    assert ("1010", "state:paid") not in staging_store.get_ledger("demo", "order_status", ["1010"])


def test_a_misspelt_state_or_final_status_stops_the_run_before_anything_is_staged(make_ctx, staging_store):
    with pytest.raises(order_status_to_starweb.UnknownMamutState, match=r"shop demo: .*\['deliverd'\]"):
        order_status_to_starweb.run(make_ctx({"deliverd": DELIVERED}))
    with pytest.raises(UnknownOrderStatus, match="shop demo: order status 'avslutad' does not exist"):
        order_status_to_starweb.run(make_ctx(final_statuses=["completed", "avslutad"]))
    assert staging_store.latest_batches("demo", order_status_to_starweb.JOB) == []


def test_too_many_unreportable_orders_stop_every_run_until_released(make_ctx, sandbox, staging_store):
    with pytest.raises(QualityGateFailed, match="shop demo: 7 of 8 orders"):
        order_status_to_starweb.run(make_ctx({"picked": {"status": "saknas"}}))
    assert sandbox.write_requests() == [] and len(staging_store.open_quarantine("demo", "order_status")) == 7
    with pytest.raises(QualityGateFailed, match="shop demo: 7 of 8 orders"):  # nobody has acted yet
        order_status_to_starweb.run(make_ctx({"picked": {"status": "saknas"}}))
    assert sandbox.write_requests() == []

    released = order_status_to_starweb.run(make_ctx({"picked": {"status": "saknas"}}, accept_quarantine=True))

    assert released["quarantined"] == 7  # kept in quarantine, no longer stopping the runs


def test_a_required_tracking_number_holds_the_report_until_mamut_has_one(make_ctx, sandbox, mamut_db):
    ctx = make_ctx({"delivered": {**DELIVERED, "require_tracking": True}})
    waiting = order_status_to_starweb.run(ctx)
    assert waiting["awaiting_tracking"] == 2  # 1001 and 1009 were delivered without a parcel number
    assert {1001, 1009}.isdisjoint(status_patches(sandbox))

    progress_order(
        mamut_db.gateway,
        "demo:1009",
        now=datetime.now(UTC) + timedelta(seconds=1),
        tracking_no="00370712345678909999",
        tracker_type=1,
    )
    later = order_status_to_starweb.run(make_ctx({"delivered": {**DELIVERED, "require_tracking": True}}))

    assert later["loaded"] == 1 and later["awaiting_tracking"] == 1
    assert status_patches(sandbox)[1009] == [
        {"statusId": COMPLETED, **SWITCHES_ON, "shippingTrackingNo": "00370712345678909999", "shippingTrackerType": 1}
    ]


@pytest.mark.parametrize("allow_backwards", [False, True])
def test_going_backwards_is_reported_only_where_the_shop_allows_it(make_ctx, sandbox, mamut_db, allow_backwards):
    order_status_to_starweb.run(make_ctx(allow_backwards=allow_backwards))
    assert status_patches(sandbox)[1010] == [{"statusId": PAID, **SWITCHES_OFF}]
    progress_order(mamut_db.gateway, "demo:1010", "picked", now=datetime.now(UTC) + timedelta(seconds=1))
    with mamut_db.gateway.transaction() as tx:  # the payment is reversed: only "picked" remains reportable
        tx.update("order", {"paid": False}, where={"external_id": "demo:1010"})
    sandbox.reset_requests()

    result = order_status_to_starweb.run(make_ctx(allow_backwards=allow_backwards))

    assert status_patches(sandbox) == ({1010: [{"statusId": PICKING, **SWITCHES_OFF}]} if allow_backwards else {})
    assert result["behind"] == (0 if allow_backwards else 1)


def test_deleted_orders_and_orders_in_a_final_status_are_recorded_and_never_retried(make_ctx, sandbox, staging_store):
    sandbox.state.delete_order(1003)
    sandbox.state.set_order_status(1005, "completed", send_email=False)  # final: the cancellation cannot apply
    sandbox.reset_requests()

    first = order_status_to_starweb.run(make_ctx())

    assert set(status_patches(sandbox)) == set(EXPECTED_PATCHES) - {1003, 1005} and first["skipped"] == 2
    ledger = staging_store.get_ledger("demo", order_status_to_starweb.ENTITY, ["1003", "1005"])
    assert ledger[("1003", "skipped")] == "the order no longer exists in Starweb"
    assert ledger[("1005", "skipped")] == "the order is in final status completed already"
    sandbox.reset_requests()
    again = order_status_to_starweb.run(make_ctx())
    assert again["skipped"] == 2 and [r for r in sandbox.requests if r.path.startswith("/orders")] == []

    sandbox.state.set_order_status(1005, "picking", send_email=False)  # the shop reopened it: the owner resyncs
    resynced = order_status_to_starweb.run(make_ctx(resync_ids=[1003, 1005]))
    assert resynced["loaded"] == 1 and resynced["skipped"] == 1
    assert status_patches(sandbox) == {1005: [EXPECTED_PATCHES[1005]]}
    ledger = staging_store.get_ledger("demo", order_status_to_starweb.ENTITY, ["1005"])
    assert ledger[("1005", "skipped")] == "" and ledger[("1005", "state:cancelled")] == str(CANCELED)


def test_dry_run_reads_but_sends_and_records_nothing(make_ctx, sandbox, staging_store):
    result = order_status_to_starweb.run(make_ctx(dry_run=True))

    assert sandbox.write_requests() == [] and sandbox.state.status_changes == []
    assert result["would_write"] == len(EXPECTED_PATCHES)
    assert sorted(result["planned"]) == sorted(
        f"PATCH /orders/{order_id} {body}" for order_id, body in EXPECTED_PATCHES.items()
    )
    assert staging_store.get_ledger("demo", order_status_to_starweb.ENTITY) == {}
    assert staging_store.get_watermark("demo", order_status_to_starweb.JOB) is None
    assert order_status_to_starweb.run(make_ctx())["loaded"] == len(EXPECTED_PATCHES)


def test_resync_reads_only_the_given_orders(make_ctx, sandbox):
    result = order_status_to_starweb.run(make_ctx(resync_ids=[1003, 1005, 4242]))

    assert result["read"] == 2 and set(status_patches(sandbox)) == {1003, 1005}
    sandbox.reset_requests()
    assert order_status_to_starweb.run(make_ctx(resync_ids=[1003]))["loaded"] == 0  # reported once, ever
    assert sandbox.write_requests() == []


def test_only_orders_changed_since_the_watermark_are_read(make_ctx, mamut_db):
    order_status_to_starweb.run(make_ctx())
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    progress_order(mamut_db.gateway, "demo:1002", now=tomorrow, tracking_no="JJD000390007770000", tracker_type=2)
    second = order_status_to_starweb.run(make_ctx())
    assert second["read"] == 8 and second["changed"] == 1  # all within the overlap; 1002 has a new parcel number
    assert second["loaded"] == 0  # ... but its delivery was reported already
    progress_order(mamut_db.gateway, "demo:1006", "delivered", now=tomorrow + timedelta(hours=1))

    third = order_status_to_starweb.run(make_ctx())

    assert third["read"] == 2 and third["changed"] == 1 and third["loaded"] == 1  # 1002 (unchanged) and 1006


def test_without_a_change_timestamp_changes_are_found_by_their_fingerprint(sandbox, staging_store, tmp_path: Path):
    schema_map = SchemaMap.load(overrides={"tables": {"order": {"columns": {"edit_date": None}}}})
    with fresh_mock_database("sqlite", tmp_path, schema_map=schema_map) as odbc:
        gateway = MamutGateway(odbc, schema_map)
        try:
            make = context_factory(sandbox, gateway, staging_store)
            transfer_and_progress(make, sandbox, gateway)
            first = order_status_to_starweb.run(make())
            progress_order(gateway, "demo:1006", "delivered", now=datetime.now(UTC))
            second = order_status_to_starweb.run(make())
        finally:
            gateway.close()

    assert first["loaded"] == len(EXPECTED_PATCHES)
    assert second["read"] == 8 and second["unchanged"] == 7 and second["loaded"] == 1
    assert status_patches(sandbox)[1006] == [EXPECTED_PATCHES[1006], {"statusId": COMPLETED, **SWITCHES_ON}]
    assert staging_store.get_watermark("demo", order_status_to_starweb.JOB) is None
