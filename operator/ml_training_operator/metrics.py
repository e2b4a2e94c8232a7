"""Prometheus metrics of the operator, served on the status endpoint's ``/metrics``.

A private registry keeps the exposition to the operator's own series (plus nothing a
library registers by import), so dashboards see a stable set of names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Gauge(
    "aiml_requests",
    "Requests known to the operator, by kind and 3GPP requestStatus.",
    ["kind", "request_status"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "aiml_reconcile_duration_seconds",
    "Time one reconciliation of a request took.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_ERRORS = Counter(
    "aiml_reconcile_errors_total",
    "Reconciliations that failed with an API or internal error, by kind and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
JOBS_LAUNCHED = Counter(
    "aiml_jobs_launched_total",
    "Trainer Jobs the operator created (adopted Jobs are not counted).",
    ["kind"],
    registry=REGISTRY,
)
PROGRESS_EVENTS = Counter(
    "aiml_progress_events_total",
    "Progress events received by the status endpoint, by result (accepted or the rejection reason).",
    ["result"],
    registry=REGISTRY,
)

# Last requestStatus seen per request, so the REQUESTS gauge counts each request once.
_request_states: dict[tuple[str, str, str], str] = {}


def record_request_status(kind: str, namespace: str, name: str, request_status: str | None) -> None:
    """Count a request under its current requestStatus; None removes it (the request was deleted)."""
    key = (kind, namespace, name)
    previous = _request_states.pop(key, None)
    if previous is not None:
        REQUESTS.labels(kind, previous).dec()
    if request_status is not None:
        _request_states[key] = request_status
        REQUESTS.labels(kind, request_status).inc()


def exposition() -> bytes:
    return generate_latest(REGISTRY)
