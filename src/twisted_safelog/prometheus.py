# -*- test-case-name: tests.test_prometheus -*-
"""
Prometheus metrics for every hardened sink in the process, through
C{prometheus_client} (C{pip install 'twisted-safelog[prometheus]'})::

    from twisted_safelog.prometheus import register
    register()  # on prometheus_client.REGISTRY

Then serve the registry as usual; in a twistd application with
C{prometheus_client.twisted.MetricsResource} (see C{examples/metrics.tac}),
or let the twistd factory do it with C{TWISTED_SAFELOG_METRICS_PORT}.

Metrics (the C{sink} label is the sink's name, made unique with C{" #2"}...):

 - C{twisted_safelog_events_total{sink, outcome}}: events by outcome,
   C{delivered}, C{failed} or C{dropped}.
 - C{twisted_safelog_events_received_total{sink}}: every event the sink was
   given; C{received = delivered + failed + dropped + buffered}.
 - C{twisted_safelog_events_dropped_total{sink, reason}}: drops by reason
   (one series per L{DropReason}: reentry, overflow, quarantine, ...).
 - C{twisted_safelog_events_buffered{sink}}: events held for replay or
   queued.
 - C{twisted_safelog_sink_state{sink, state}}: 1 for the sink's state, 0
   for the others: C{closed} (healthy), C{open} and C{half-open}
   (quarantined), C{stalled} (a non-blocking sink whose worker is stuck),
   and any other state a sink reports.
 - C{twisted_safelog_sink_state_since_timestamp_seconds{sink}}: since when
   the sink has been healthy or quarantined (probes do not move it).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ._stats import DropReason
from ._status import shownState, status, uniqueNames

__all__ = ["SafelogCollector", "register"]

#: Outcomes of C{twisted_safelog_events_total}; their sum and the buffered
#: events make up what was received.
OUTCOMES = ("delivered", "failed", "dropped")
#: Every state gets a series, 0 or 1, so alerts need no absent().
STATES = ("closed", "open", "half-open", "stalled")

_registered: weakref.WeakKeyDictionary[CollectorRegistry, SafelogCollector] = (
    weakref.WeakKeyDictionary()
)


class SafelogCollector:
    """
    A C{prometheus_client} collector that reads L{twisted_safelog.status} on
    every scrape, so it holds no sink and sees every sink made later.
    """

    def __repr__(self) -> str:
        return "SafelogCollector()"

    def describe(self) -> Iterator[Metric]:
        """
        The metric families, without samples (for the registry's checks).
        """
        # Empty families: the registry learns the names (and refuses a
        # second collector that would export them) without a scrape.
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        """
        The metric families, read from L{twisted_safelog.status} now.
        """
        families = _families()
        events, received, dropped, buffered, state, since = families
        for name, stats in uniqueNames(status()):
            events.add_metric([name, "delivered"], stats.delivered)
            events.add_metric([name, "failed"], stats.failed)
            events.add_metric([name, "dropped"], stats.dropped)
            received.add_metric([name], stats.received)
            for reason in DropReason:
                dropped.add_metric([name, reason.value], stats.droppedByReason.get(reason.value, 0))
            buffered.add_metric([name], stats.buffered)
            current = shownState(stats)
            for value in (*STATES, *([current] if current not in STATES else [])):
                state.add_metric([name, value], 1 if value == current else 0)
            since.add_metric([name], stats.since)
        yield from families


def _families() -> list[Any]:
    """
    The metric families, without samples yet.
    """
    return [
        CounterMetricFamily(
            "twisted_safelog_events",
            "Events given to a hardened log sink, by outcome (delivered, failed, dropped).",
            labels=["sink", "outcome"],
        ),
        CounterMetricFamily(
            "twisted_safelog_events_received",
            "Events given to a hardened log sink (delivered + failed + dropped + buffered).",
            labels=["sink"],
        ),
        CounterMetricFamily(
            "twisted_safelog_events_dropped",
            "Events a hardened log sink dropped, by reason.",
            labels=["sink", "reason"],
        ),
        GaugeMetricFamily(
            "twisted_safelog_events_buffered",
            "Events a hardened log sink holds for replay or has queued.",
            labels=["sink"],
        ),
        GaugeMetricFamily(
            "twisted_safelog_sink_state",
            "1 for the state a hardened log sink's circuit breaker is in "
            "(closed is healthy; open and half-open are quarantined), 0 for the others.",
            labels=["sink", "state"],
        ),
        GaugeMetricFamily(
            "twisted_safelog_sink_state_since_timestamp_seconds",
            "Since when a hardened log sink has been healthy or quarantined "
            "(or since it was made), in seconds since the epoch.",
            labels=["sink"],
        ),
    ]


def register(registry: CollectorRegistry = REGISTRY) -> SafelogCollector:
    """
    Register the twisted-safelog collector on C{registry} (the default
    registry unless told otherwise) and return it. Registering again on the
    same registry returns the collector already there.

    @param registry: the registry to register on (C{prometheus_client.REGISTRY} by default).
    """
    existing = _registered.get(registry)
    if existing is not None:
        return existing
    collector = SafelogCollector()
    registry.register(collector)
    _registered[registry] = collector
    return collector
