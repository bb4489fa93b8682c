"""Which jobs exist, which flows run them and their default schedules.

Kept free of heavy imports: the DAG factory reads it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobSpec:
    """A job: its module (with extract, validate, load and report steps), the flows that run it, its schedule."""

    name: str
    flows: frozenset[str]
    default_schedule: str | None
    summary: str

    @property
    def module(self) -> str:
        return f"starmamut.jobs.{self.name}"


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            name="products_to_mamut",
            flows=frozenset({"ecom", "combo"}),
            default_schedule="@hourly",
            summary="Starweb products with their variants become Mamut articles (Starweb governs articles).",
        ),
    )
}


def jobs_for_flow(flow: str) -> list[JobSpec]:
    """The jobs a shop with this flow runs, in a stable order."""
    return [spec for spec in JOBS.values() if flow in spec.flows]


def dag_id(shop_id: str, job: str) -> str:
    """The DAG id of a shop's job, e.g. ``demo__products_to_mamut``."""
    return f"{shop_id}__{job}"
