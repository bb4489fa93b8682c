"""Map a field the standard mapping leaves out: the buyer's custom info from Starweb to the Mamut order.

Starweb can ask the buyer for custom info at checkout (``customInfo1``, e.g. "your purchase order number");
the order keeps it as ``originalCustomerCustomInfo1``. This transform puts it in the Mamut order's "Er
referens" (your reference), where a B2B buyer expects to find it on the invoice.

The pattern for any such field: at ``after_mapping`` the job passes the source system's record as
``context.source`` (here the Starweb order as read from the API); read the field there and write it into the
record where the mapping picks it up (here the order's address ``reference``, which becomes "your reference").
"""

from __future__ import annotations

from typing import Any

from starmamut.transforms import Reject, TransformContext, applies_to

MAMUT_REFERENCE_MAX_LENGTH = 100  # G_ORDER.REFYOUR


@applies_to("orders", points=("after_mapping",))
def custom_info_to_your_reference(record: dict[str, Any], context: TransformContext) -> dict[str, Any] | Reject:
    """The order's custom info 1 as the Mamut order's "your reference" (orders without one are left alone)."""
    value = str((context.source or {}).get("originalCustomerCustomInfo1") or "").strip()
    if not value:
        return record
    if len(value) > MAMUT_REFERENCE_MAX_LENGTH:
        return Reject(
            f"custom info 1 has {len(value)} characters; Mamut's 'your reference' takes {MAMUT_REFERENCE_MAX_LENGTH}"
        )
    address = record["delivery_address"] or record["invoice_address"]
    if address is None:
        return record  # no address at all: the order checks quarantine it with their own reason
    address["reference"] = value
    return record
