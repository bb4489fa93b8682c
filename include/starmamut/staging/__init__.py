"""Staging database: the state the integration owns (see docs/DESIGN.md section 5)."""

from starmamut.staging.store import (
    Batch,
    Lease,
    LeaseHeld,
    LeaseLost,
    Link,
    QuarantineEntry,
    StagedRow,
    StagingError,
    StagingStore,
    UnknownBatchError,
    UnknownLinkError,
    UnknownStagedRowError,
    default_staging_url,
)

__all__ = [
    "Batch",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "Link",
    "QuarantineEntry",
    "StagedRow",
    "StagingError",
    "StagingStore",
    "UnknownBatchError",
    "UnknownLinkError",
    "UnknownStagedRowError",
    "default_staging_url",
]
