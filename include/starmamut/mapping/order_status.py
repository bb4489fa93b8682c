"""Which Starweb status a Mamut order's states call for, and the PATCH that reports it. Pure: no I/O.

Given the states an order is in (see :mod:`starmamut.mamut.order_states` for the rules and their ranks), the
shop's transitions and the states already reported for the order, :func:`decide` picks one action:

1. no state of the order has a transition → ``nothing``;
2. the furthest state that has one (highest rank; cancelled and credited rank above all) is the target;
   if it was reported before → ``nothing`` (a state is reported once, ever);
3. the target ranks below a state already reported and the shop does not allow backwards → ``behind``;
4. the transition requires a tracking number and Mamut has none yet → ``wait``;
5. otherwise → ``report``.

Only the furthest state is reported: an order that became invoiced, paid and delivered between two runs gets
the delivered status (with its e-mail and capture), not three status changes in a row. States it passed on
the way are not reported later either, because they rank below the reported one.

A state the order is in with no transition is ignored where its rule allows (``must_map`` False) and is an
error otherwise (:func:`unmapped_states`): the job quarantines the order, naming shop, order and state, and
reports nothing for it until the shop maps the state.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starmamut.config import StatusTransition
from starmamut.mamut.order_states import OrderState, StateRule
from starmamut.mapping.products import content_hash

Action = Literal["report", "nothing", "behind", "wait"]


@dataclass(frozen=True)
class Decision:
    """What to do about one order now: the action, the state it concerns (if any) and why, for the log."""

    action: Action
    state: str | None
    reason: str


def unmapped_states(
    states: Collection[str], transitions: Mapping[str, StatusTransition], rules: Sequence[StateRule]
) -> list[str]:
    """The order's states that have no transition although their rule says a shop must map them."""
    must_map = {rule.name for rule in rules if rule.must_map}
    return sorted(state for state in states if state in must_map and state not in transitions)


def decide(
    states: Collection[str],
    *,
    transitions: Mapping[str, StatusTransition],
    rules: Sequence[StateRule],
    reported: Collection[str],
    allow_backwards: bool,
    has_tracking: bool,
) -> Decision:
    """The action for an order in ``states`` that has had ``reported`` reported (see the module docstring)."""
    rank = {rule.name: rule.rank for rule in rules}
    mapped = [state for state in states if state in transitions]
    if not mapped:
        return Decision("nothing", None, f"no transition for Mamut state(s) {sorted(states) or 'none'}")
    target = max(mapped, key=lambda state: rank[state])
    if target in reported:
        return Decision("nothing", target, f"Mamut state {target!r} was reported before")
    furthest = max(reported, key=lambda state: rank.get(state, -1), default=None)
    if furthest is not None and rank[target] < rank.get(furthest, -1) and not allow_backwards:
        return Decision(
            "behind",
            target,
            f"Mamut state {target!r} is behind {furthest!r}, which was reported; "
            "the shop does not allow going backwards",
        )
    if transitions[target].require_tracking and not has_tracking:
        return Decision("wait", target, f"Mamut state {target!r} waits for a tracking number in Mamut")
    return Decision("report", target, f"Mamut state {target!r} is new")


def status_patch(
    transition: StatusTransition, status_id: int, tracking_no: str | None, tracker_type: int | None
) -> dict[str, Any]:
    """The ``PATCH /orders/{id}`` body: the status and both switches, always explicit (Starweb defaults them to
    true), and the tracking number with its tracker type when the transition attaches tracking and Mamut has one."""
    body: dict[str, Any] = {
        "statusId": status_id,
        "onOrderStatusChangeSendEmail": transition.send_email,
        "onOrderStatusChangeProcessPayment": transition.process_payment,
    }
    if transition.attach_tracking and tracking_no:
        body["shippingTrackingNo"] = tracking_no
        if tracker_type is not None:
            body["shippingTrackerType"] = tracker_type
    return body


def state_fingerprint(order: OrderState) -> str:
    """A digest of everything a report depends on (states, tracking): equal digests need no new decision."""
    return content_hash(
        {"states": sorted(order.states), "tracking_no": order.tracking_no, "tracker_type": order.tracker_type}
    )
