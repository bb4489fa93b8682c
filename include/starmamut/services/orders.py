"""Web orders in Mamut: the shop's order transforms and the Mamut number written back to the Starweb order.

Shared by ``orders_to_mamut``'s two loads: rows written over SQL, and Import/Export files confirmed over SQL
(:mod:`starmamut.services.mamut_import`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starmamut.config import TransformEntity, TransformPoint
from starmamut.failpoints import failpoint
from starmamut.jobs.common import JobContext
from starmamut.services.reference import resolve_statuses
from starmamut.starweb.client import StarwebClient
from starmamut.transforms import RecordTransforms

JOB = "orders_to_mamut"
ORDER = "order"  # staged rows, quarantine and order links, keyed by the Starweb orderId
WRITE_BACK = "write_back"  # ledger dimension: the Mamut number last written to the Starweb order


class OrderTransforms:
    """The shop's order transforms, then its customer transforms, at one point (``order_id`` stays fixed).

    A customer is transformed as the order's ``customer`` fields plus its addresses, and goes back into the
    order; a customer that is skipped or rejected holds its order back with it (it cannot go without one).
    """

    def __init__(self, ctx: JobContext, batch_id: str, point: TransformPoint) -> None:
        def hook(entity: TransformEntity) -> RecordTransforms:
            return RecordTransforms(
                ctx,
                batch_id,
                job=JOB,
                entity=entity,
                point=point,
                staged_entity=ORDER,
                key=lambda record: str(record["order_id"]),
                fixed=("order_id",),
            )

        self._orders, self._customers = hook("orders"), hook("customers")

    def __bool__(self) -> bool:
        return bool(self._orders) or bool(self._customers)

    def finish(self) -> dict[str, int]:
        orders, customers = self._orders.finish(), self._customers.finish()
        return {name: orders[name] + customers[name] for name in orders}

    def apply(self, record: dict[str, Any], *, source: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        order = self._orders.apply(record, source=source)
        if order is None or not self._customers:
            return order
        customer = self._customers.apply(
            {
                "order_id": order["order_id"],
                **order["customer"],
                "invoice_address": order["invoice_address"],
                "delivery_address": order["delivery_address"],
            },
            source=source,
        )
        if customer is None:
            return None
        return {
            **order,
            "customer": {field: customer.get(field) for field in order["customer"]},
            "invoice_address": customer["invoice_address"],
            "delivery_address": customer["delivery_address"],
        }


def status_after_transfer(ctx: JobContext, client: StarwebClient) -> int | None:
    """The status a transferred order moves to with its write-back (``status_after_transfer``), if any."""
    wanted = ctx.shop.orders_to_mamut.status_after_transfer
    if wanted is None or ctx.params.dry_run:
        return None
    (status_id,) = resolve_statuses(client.list_order_statuses(), [wanted], ctx.shop.id)
    return status_id


def write_back(ctx: JobContext, client: StarwebClient, key: str, number: int, status_after: int | None) -> bool:
    """Put the Mamut number on the Starweb order (once; again when re-synced by id, to repair a hand edit),
    optionally moving it to a status without e-mail."""
    store, shop = ctx.store, ctx.shop
    written = store.get_ledger(shop.id, WRITE_BACK, [key]).get((key, "order")) == str(number)
    if written and int(key) not in ctx.params.resync_ids:
        return False
    body: dict[str, Any] = {"externalId": str(number), "externalIdType": f"mamut_{shop.orders_to_mamut.document}"}
    if status_after is not None:
        body |= {
            "statusId": status_after,
            "onOrderStatusChangeSendEmail": False,
            "onOrderStatusChangeProcessPayment": False,
        }
    client.patch(f"/orders/{int(key)}", body)
    failpoint("orders_to_mamut.after_write_back")
    store.set_ledger(shop.id, WRITE_BACK, {(key, "order"): str(number)})
    return True
