"""The exporter's own metrics, with prometheus_client (its process metrics included)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics


class ExporterMetrics:
    """turncheck_exporter_*: probes by module and result, in flight, allocations created,
    deleted and failed to delete, config reloads; process_* from prometheus_client."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # as blackbox: no *_created
        self.registry = CollectorRegistry()
        self.probes = Counter(
            "turncheck_exporter_probes",
            "Probes answered, by module and result (success, failure, or the HTTP status of "
            "a refused probe).",
            ["module", "result"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "turncheck_exporter_probes_in_flight",
            "Probes running now.",
            registry=self.registry,
        )
        self.allocations = Counter(
            "turncheck_exporter_allocations",
            "TURN allocations made by probes, by event: created, deleted, delete_failed.",
            ["event"],
            registry=self.registry,
        )
        for event in ("created", "deleted", "delete_failed"):
            self.allocations.labels(event=event)
        self.reloads = Counter(
            "turncheck_exporter_config_reloads",
            "Config reloads (POST /-/reload or SIGHUP), by result.",
            ["result"],
            registry=self.registry,
        )
        self.reload_ok = Gauge(
            "turncheck_exporter_config_last_reload_successful",
            "1 when the last config reload worked (or none was tried), else 0.",
            registry=self.registry,
        )
        self.reload_ok.set(1)
        self.test_results = Counter(
            "turncheck_exporter_test_results",
            "Results the test pages posted, by profile and outcome (calls_connect, "
            "calls_fail, refused: the post was turned away).",
            ["profile", "outcome"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def allocation_event(self, event: str) -> None:
        self.allocations.labels(event=event).inc()

    def render(self, openmetrics: bool) -> tuple[bytes, str]:
        if openmetrics:
            body: bytes = generate_openmetrics(self.registry)  # type: ignore[no-untyped-call]
            return body, OPENMETRICS_TYPE
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
