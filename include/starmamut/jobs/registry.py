"""Which jobs exist, which flows run them and their default schedules.

Kept free of heavy imports: the DAG factory reads it at parse time, so a job's class is named here as
``"module:Class"`` and imported only when a task runs it (:attr:`JobSpec.job_class`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starmamut.jobs.base import Job


@dataclass(frozen=True)
class JobSpec:
    """A job: its class (a :class:`~starmamut.jobs.base.Job` with extract, validate, load and report steps), the
    flows that run it, its schedule, and what its load writes: the entities whose shop lease it holds, so no other
    loader writes them meanwhile."""

    name: str
    job: str | type[Job]  # the Job subclass, as "package.module:Class" (imported on first use) or the class itself
    flows: frozenset[str]
    default_schedule: str | None
    summary: str
    writes: tuple[str, ...]
    params: tuple[str, ...] = ("dry_run", "full_refresh", "accept_quarantine")
    optional_flows: frozenset[str] = frozenset()  # flows where a shop may turn the job on (extra_jobs)

    @property
    def job_class(self) -> type[Job]:
        """The job's class, imported now if named by path; its ``name`` must be this spec's."""
        if isinstance(self.job, str):
            module, _, attribute = self.job.partition(":")
            job_class = getattr(importlib.import_module(module), attribute)
        else:
            job_class = self.job
        if getattr(job_class, "name", None) != self.name:
            raise TypeError(f"job {self.name!r} is registered with {self.job!r}, whose name is not {self.name!r}")
        return job_class

    def steps(self) -> Job:
        """An instance of the job's class: its extract, validate, load, report and run (see ``run_step``)."""
        return self.job_class()

    @property
    def module(self) -> str:
        """The module defining the job's class."""
        return self.job.partition(":")[0] if isinstance(self.job, str) else self.job.__module__


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            name="products_to_mamut",
            job="starmamut.jobs.products_to_mamut:ProductsToMamut",
            flows=frozenset({"ecom", "combo"}),
            default_schedule="@hourly",
            summary="Starweb products with their variants become Mamut articles (Starweb governs articles).",
            writes=("products",),
            params=("dry_run", "full_refresh", "resync_ids", "accept_quarantine"),
        ),
        JobSpec(
            name="products_to_starweb",
            job="starmamut.jobs.products_to_starweb:ProductsToStarweb",
            flows=frozenset({"erp"}),
            default_schedule="@hourly",
            summary="Mamut articles with their variants become Starweb products (Mamut governs articles).",
            writes=("products",),
            params=("dry_run", "full_refresh", "skus", "since", "accept_quarantine", "on_conflict"),
        ),
        JobSpec(
            name="prices_to_starweb",
            job="starmamut.jobs.prices_to_starweb:PricesToStarweb",
            flows=frozenset({"erp", "combo"}),
            default_schedule="@hourly",
            summary="Mamut prices, price lists and quantity breaks go to the shop's price lists (only changed values).",
            writes=("prices",),
            params=("dry_run", "full_refresh", "skus", "accept_quarantine"),
        ),
        JobSpec(
            name="stock_to_starweb",
            job="starmamut.jobs.stock_to_starweb:StockToStarweb",
            flows=frozenset({"erp", "combo"}),
            default_schedule="*/10 * * * *",
            summary="Mamut stock per warehouse group goes to the shop's stock locations (only changed values).",
            writes=("stock",),
            params=("dry_run", "full_refresh", "skus", "accept_quarantine"),
        ),
        JobSpec(
            name="orders_to_mamut",
            job="starmamut.jobs.orders_to_mamut:OrdersToMamut",
            flows=frozenset({"ecom", "erp", "combo"}),
            default_schedule="*/5 * * * *",
            summary="Web orders with their customers become Mamut orders or invoices, exactly once.",
            writes=("orders",),
            params=("dry_run", "full_refresh", "resync_ids", "since", "accept_quarantine"),
        ),
        JobSpec(
            name="order_status_to_starweb",
            job="starmamut.jobs.order_status_to_starweb:OrderStatusToStarweb",
            flows=frozenset({"erp", "combo"}),
            optional_flows=frozenset({"ecom"}),
            default_schedule="*/10 * * * *",
            summary="Mamut order states (delivered, cancelled, …) reported to Starweb as statuses, with the buyer's "
            "e-mail, tracking number and payment capture, once each.",
            writes=("order_status",),
            params=("dry_run", "full_refresh", "resync_ids", "since", "accept_quarantine"),
        ),
    )
}


MIGRATION = "initial_product_sync"
"""The manual-only bulk product migration every shop has (its own DAG shape: chunks mapped as tasks)."""
MIGRATION_WRITES = ("products", "prices", "stock")
"""What a migration chunk writes (a new product carries its prices and stock): it holds all three leases, so a
migration never overlaps the regular product, price and stock loads of its shop."""

DAILY_REPORT = "daily_report"
"""Every shop's daily report DAG: yesterday's runs per job and the open quarantine, stored and sent (alerts.py)."""


def jobs_for_shop(flow: str, extra_jobs: Iterable[str] = ()) -> list[JobSpec]:
    """The jobs a shop runs: those of its flow plus the optional ones it turned on, in a stable order."""
    extra = set(extra_jobs)
    return [
        spec for spec in JOBS.values() if flow in spec.flows or (flow in spec.optional_flows and spec.name in extra)
    ]


def dag_id(shop_id: str, job: str) -> str:
    """The DAG id of a shop's job, e.g. ``demo__products_to_mamut``."""
    return f"{shop_id}__{job}"
