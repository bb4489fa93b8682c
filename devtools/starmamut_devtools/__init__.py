"""Dev tooling for starmamut, kept out of the engine: the demo, the benchmarks and the tests use it.

``sandbox`` is a local Starweb shop (API v2) and ``mamut_mock`` a mock Mamut company database; ``cli`` is
``python -m starmamut_devtools``. The engine (``include/starmamut``) never imports this package
(tests/test_engine_boundary.py), and the Docker image does not contain it.
"""
