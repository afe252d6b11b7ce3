"""
The Prometheus collector, through prometheus_client's own exposition
(C{generate_latest}) and parser, on a fresh C{CollectorRegistry}.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from twisted_safelog import SafeHandler, SafeObserver
from twisted_safelog.prometheus import SafelogCollector, register

from .helpers import BrokenHandler, RecordingReporter, event


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """
    Every sample of the exposition, keyed by name and sorted labels, as
    Prometheus would read it.
    """
    text = generate_latest(registry).decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def record() -> logging.LogRecord:
    return logging.LogRecord("app", logging.ERROR, __file__, 1, "boom", None, None)


def test_aQuarantinedHandlerAndAHealthyObserver() -> None:
    clock = Clock()
    handler = SafeHandler(
        BrokenHandler(), name=unique("app.log"), reporter=RecordingReporter(), clock=clock
    )
    healthy = SafeObserver(lambda e: None, name=unique("twistd.log"), reporter=RecordingReporter())
    for n in range(8):
        handler.handle(record())
        healthy(event(n))
    registry = CollectorRegistry()
    register(registry)
    samples = scrape(registry)
    broken = handler.core.name

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("twisted_safelog_events_total", sink=broken, outcome="failed") == 5
    assert value("twisted_safelog_events_total", sink=broken, outcome="delivered") == 0
    assert value("twisted_safelog_events_total", sink=broken, outcome="dropped") == 0
    assert value("twisted_safelog_events_received_total", sink=broken) == 8
    assert value("twisted_safelog_events_buffered", sink=broken) == 3
    assert value("twisted_safelog_sink_state", sink=broken, state="open") == 1
    assert value("twisted_safelog_sink_state", sink=broken, state="closed") == 0
    assert value("twisted_safelog_sink_state", sink=broken, state="half-open") == 0
    assert value("twisted_safelog_sink_state", sink=broken, state="stalled") == 0
    assert value("twisted_safelog_sink_state_since_timestamp_seconds", sink=broken) == (
        handler.stats().since
    )
    name = healthy.name
    assert value("twisted_safelog_events_total", sink=name, outcome="delivered") == 8
    assert value("twisted_safelog_sink_state", sink=name, state="closed") == 1


def test_dropsByReason() -> None:
    sink = SafeObserver(
        lambda e: None, name=unique("small"), reporter=RecordingReporter(), bufferSize=0
    )
    sink.breaker.trip()
    for n in range(4):
        sink(event(n))
    registry = CollectorRegistry()
    register(registry)
    samples = scrape(registry)
    key = ("twisted_safelog_events_dropped_total",)
    dropped = {
        dict(labels)["reason"]: v
        for (metric, labels), v in samples.items()
        if (metric,) == key and dict(labels)["sink"] == sink.name
    }
    assert dropped == {
        "reentry": 0,
        "overflow": 0,
        "quarantine": 4,
        "shutdown": 0,
        "discarded": 0,
        "fork": 0,
        "repeated": 0,
    }
    assert (
        samples[("twisted_safelog_events_total", (("outcome", "dropped"), ("sink", sink.name)))]
        == 4
    )


def test_sinksWithOneNameGetSeriesOfTheirOwn() -> None:
    name = unique("twin")
    twins = [SafeObserver(lambda e: None, name=name, reporter=RecordingReporter()) for _ in "ab"]
    twins[0](event())
    registry = CollectorRegistry()
    register(registry)
    samples = scrape(registry)
    delivered = ("outcome", "delivered")
    assert samples[("twisted_safelog_events_total", (delivered, ("sink", name)))] == 1
    assert samples[("twisted_safelog_events_total", (delivered, ("sink", f"{name} #2")))] == 0


def test_namesFollowPrometheusConventions() -> None:
    sink = SafeObserver(lambda e: None, name=unique("conventions"), reporter=RecordingReporter())
    sink(event())
    registry = CollectorRegistry()
    register(registry)
    text = generate_latest(registry).decode("utf-8")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) == {
        "twisted_safelog_events",
        "twisted_safelog_events_received",
        "twisted_safelog_events_dropped",
        "twisted_safelog_events_buffered",
        "twisted_safelog_sink_state",
        "twisted_safelog_sink_state_since_timestamp_seconds",
    }
    for family in families.values():
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name == family.name + "_total" for s in family.samples)


def test_registerIsIdempotentPerRegistryAndLivesBesideOtherMetrics() -> None:
    registry = CollectorRegistry()
    appRequests = Counter("app_requests", "The application's own metric.", registry=registry)
    appRequests.inc()
    collector = register(registry)
    assert isinstance(collector, SafelogCollector)
    assert register(registry) is collector
    other = CollectorRegistry()
    assert register(other) is not collector
    text = generate_latest(registry).decode("utf-8")
    assert "app_requests_total 1.0" in text
    assert text.count("# TYPE twisted_safelog_events_total counter") == 1
    # A second collector exporting the same names is refused by the registry.
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(SafelogCollector())


def test_sinksMadeAfterRegisteringAreScraped() -> None:
    registry = CollectorRegistry()
    register(registry)
    late = SafeObserver(lambda e: None, name=unique("late"), reporter=RecordingReporter())
    late(event())
    samples = scrape(registry)
    assert (
        samples[("twisted_safelog_events_total", (("outcome", "delivered"), ("sink", late.name)))]
        == 1
    )
