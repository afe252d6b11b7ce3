# -*- test-case-name: tests.test_incident -*-
"""
The incident, reproducible: every measured shape of the Twisted/stdlib
logging feedback loop, run in a child process with plain Twisted or with
twisted-safelog, and what each did.

This is the demo behind C{python -m twisted_safelog demo} and the harness of
the incident suite, kept apart from the library's core: nothing in the core
imports it.
"""

from ._demo import runDemo
from ._harness import (
    IncidentResult,
    RunningIncident,
    loopProof,
    resultsOf,
    runIncident,
    startIncident,
)
from ._variants import VARIANTS, Context, Variant

__all__ = [
    # _variants
    "VARIANTS",
    "Context",
    "Variant",
    # _harness
    "IncidentResult",
    "RunningIncident",
    "loopProof",
    "resultsOf",
    "runIncident",
    "startIncident",
    # _demo
    "runDemo",
]
