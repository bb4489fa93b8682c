"""What several jobs share, below the jobs: a job module imports these (and jobs.common/jobs.base), never another job.

* :mod:`~starmamut.services.reference` — the shop's reference data and the checks of a shop's mappings against
  it (master price list, VAT, attribute names, stock statuses and locations, price lists, order statuses).
* :mod:`~starmamut.services.articles` — Starweb products as Mamut articles: checks, transforms, the family write.
* :mod:`~starmamut.services.families` — Mamut families as Starweb products: checks, transforms, family sync.
* :mod:`~starmamut.services.binder` — SKUs bound to Starweb variants (id map first, then the shop).
* :mod:`~starmamut.services.ledger` — values Mamut governs pushed to Starweb against a ledger (prices, stock).
"""
