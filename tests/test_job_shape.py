"""The shape of the jobs: one Job base, one vocabulary of counts, a registry of classes, a services layer below.

- Every registered job is a :class:`~starmamut.jobs.base.Job` subclass named as registered.
- No module under ``jobs/`` imports another job module: what several jobs share lives in ``services/`` (or in
  ``jobs/common.py`` and ``jobs/base.py``), and the services import no job either (read from the source, so a
  lazy import inside a function counts too).
- Step results pass between Airflow tasks as JSON; the report reads them back into the same counts.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from starmamut.jobs.base import BatchCounts, Job
from starmamut.jobs.registry import JOBS
from tests.conftest import REPO_ROOT

ENGINE = REPO_ROOT / "include" / "starmamut"
SHARED = {"starmamut.jobs", "starmamut.jobs.common", "starmamut.jobs.base", "starmamut.jobs.registry"}
"""What a job module (or a service) may import from ``starmamut.jobs``."""


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, anywhere in it; ``from package import name``
    counts as ``package.name`` too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def job_imports(source: str, package: str) -> list[str]:
    """The job modules ``source`` imports: any module of ``starmamut.jobs`` but the shared ones."""
    return sorted(
        {
            ".".join(module.split(".")[:3])
            for module in imported_modules(source, package)
            if module.startswith("starmamut.jobs.")
            and ".".join(module.split(".")[:3]) not in SHARED
            and (ENGINE / "jobs" / f"{module.split('.')[2]}.py").exists()
        }
    )


@pytest.mark.parametrize(
    "path",
    sorted((ENGINE / "jobs").glob("*.py")) + sorted((ENGINE / "services").glob("*.py")),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_no_job_module_imports_another_job(path: Path) -> None:
    package = f"starmamut.{path.parent.name}"
    assert job_imports(path.read_text(encoding="utf-8"), package) == [], (
        f"{path.relative_to(REPO_ROOT)} imports job module(s); move what they share to starmamut/services/"
    )


def test_the_import_check_sees_every_way_of_importing_a_job() -> None:
    """Not vacuous: absolute, from-package, relative and function-level imports of a job are caught; the shared
    modules are not."""
    source = (
        "from starmamut.jobs import orders_to_mamut, common\n"
        "from starmamut.jobs.common import chunked\n"
        "from . import base\n"
        "def f():\n"
        "    import starmamut.jobs.stock_to_starweb\n"
        "    from .products_to_starweb import ProductsToStarweb\n"
    )
    assert job_imports(source, "starmamut.jobs") == [
        "starmamut.jobs.orders_to_mamut",
        "starmamut.jobs.products_to_starweb",
        "starmamut.jobs.stock_to_starweb",
    ]
    assert job_imports("from ..jobs import prices_to_starweb\n", "starmamut.services") == [
        "starmamut.jobs.prices_to_starweb"
    ]


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_registered_job_is_a_job_class_of_its_name(name: str) -> None:
    spec = JOBS[name]
    job_class = spec.job_class
    assert issubclass(job_class, Job) and job_class.name == name
    assert isinstance(spec.steps(), job_class)
    for step in ("extract", "validate", "load", "report", "run"):
        assert callable(getattr(spec.steps(), step))


def test_a_spec_naming_a_class_of_another_name_is_refused() -> None:
    from dataclasses import replace

    spec = replace(JOBS["orders_to_mamut"], job="starmamut.jobs.stock_to_starweb:StockToStarweb")
    with pytest.raises(TypeError, match="orders_to_mamut"):
        _ = spec.job_class


def test_counts_cross_task_boundaries_as_json_and_add_up() -> None:
    extracted = BatchCounts(read=5, unchanged=1, requests=3, details={"not_eligible": 1})
    validated = BatchCounts(valid=3, quarantined=1)
    loaded = BatchCounts(loaded=2, failed=1, requests=4, would_write=0, details={"customers_created": 2})
    loaded.note("planned", ["PATCH /orders/1 {}"])
    steps = [
        json.loads(json.dumps({"batch_id": "b1", **counts.as_dict()})) for counts in (extracted, validated, loaded)
    ]
    total = BatchCounts.from_dict(steps[0]) + BatchCounts.from_dict(steps[1]) + BatchCounts.from_dict(steps[2])
    report = total.as_dict()
    assert (report["read"], report["valid"], report["quarantined"], report["loaded"], report["failed"]) == (
        5,
        3,
        1,
        2,
        1,
    )
    assert (report["unchanged"], report["requests"]) == (1, 7)
    assert (report["not_eligible"], report["customers_created"], report["planned"]) == (1, 2, ["PATCH /orders/1 {}"])
    assert "would_write" not in report and "would_write" in total.as_dict(dry_run=True)
    assert "planned" not in total.as_dict(lists=False)


def test_a_transform_reject_is_quarantined_at_extract_and_failed_at_load() -> None:
    counts = BatchCounts()
    counts.add_transforms({"skipped": 1, "rejected": 2}, at_load=False)
    counts.add_transforms({"skipped": 1, "rejected": 3}, at_load=True)
    assert (counts.skipped, counts.quarantined, counts.failed) == (2, 2, 3)
