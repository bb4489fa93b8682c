"""A local HTTP server that behaves like a Starweb shop's API v2, for the demo, tests and benchmarks.

``start_sandbox()`` serves a seeded shop on loopback; ``python -m starmamut_devtools.sandbox`` does the same
in the foreground for other processes.
"""

from starmamut_devtools.sandbox.demo_data import generate_catalogue
from starmamut_devtools.sandbox.seeds import SandboxState
from starmamut_devtools.sandbox.server import Faults, RecordedRequest, Sandbox, start_sandbox

__all__ = ["Faults", "RecordedRequest", "Sandbox", "SandboxState", "generate_catalogue", "start_sandbox"]
