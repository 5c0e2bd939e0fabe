"""The service's counters, served as Prometheus text at ``GET /metrics``: the server's sum.

``prometheus_client`` counts. ``flamel-usage serve`` gives each server run a fresh
private directory (``shared_by_workers``) and names it in ``PROMETHEUS_MULTIPROC_DIR``
before any worker starts, so every worker's ``prometheus_client`` keeps its counts in
files there (its multiprocess mode), and a scrape, whichever worker answers it, sums
them all: the numbers add up across workers and do not move back when a worker is
replaced. Where nothing set that variable before ``prometheus_client`` was imported (an
app in the tests' process, one worker in the server's own process), the counts are in
memory, each app its own.

Recording is a dict lookup and an increment or two. Every label has a bounded set of
values: a route is its pattern (``/api/admin/users/{userId}/keys``, never the path
sent) or ``unmatched``, a method outside the usual few is ``other``, a charge kind is a
configured one, and a reason is a name of ``core.errors.REASONS``.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

from flamel_usage.metering.outcomes import Charged, ChargeOutcome

#: Upper bounds (seconds) of the latency buckets: from half a millisecond to ten seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The reasons counted by ``flamel_auth_failures_total``: a credential refused, or a
#: client refused for having sent too many wrong ones.
AUTH_FAILURE_REASONS = (
    "wrong_api_key",
    "api_key_expired",
    "not_logged_in",
    "invalid_credentials",
    "too_many_requests",
    "admin_unauthorized",
)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: prometheus_client's own name for the directory its workers count in.
SHARED_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


def charge_outcome(outcome: ChargeOutcome) -> str:
    """``charged``, ``replayed``, or the reason of the refusal (``insufficient_credit``,
    ``ttp_limit_exceeded``, ...)."""
    if outcome.replayed:
        return "replayed"
    return "charged" if isinstance(outcome, Charged) else outcome.reason


@contextmanager
def shared_by_workers() -> Iterator[str]:
    """A fresh directory, readable by this user only, named in ``PROMETHEUS_MULTIPROC_DIR``
    for the workers started inside the block; removed, with what it holds, at its end.

    Fresh for each server run, so no count of an earlier run, or of another server, is
    ever added in.
    """
    with tempfile.TemporaryDirectory(prefix="flamel-metrics-") as directory:
        os.environ[SHARED_DIRECTORY_VARIABLE] = directory
        try:
            yield directory
        finally:
            del os.environ[SHARED_DIRECTORY_VARIABLE]


class Metrics:
    """One app's metrics: the worker's share of the server's counts, or its own counts."""

    def __init__(self) -> None:
        # The *_created series would double the page and say nothing a scrape needs.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self._shared = _shared_directory()
        self._registry = CollectorRegistry(auto_describe=False)
        if self._shared is not None:
            multiprocess.MultiProcessCollector(self._registry, path=self._shared)  # type: ignore[no-untyped-call]
        own = None if self._shared is not None else self._registry
        self._requests = Counter(
            "flamel_http_requests",
            "HTTP requests answered.",
            ("route", "method", "status"),
            registry=own,
        )
        self._durations = Histogram(
            "flamel_http_request_duration_seconds",
            "Time from receiving a request to having sent its response, by route.",
            ("route",),
            buckets=BUCKETS,
            registry=own,
        )
        self._charges = Counter(
            "flamel_charges",
            "Charges answered, by operation kind and outcome (charged, replayed, or the"
            " refusal's reason).",
            ("kind", "outcome"),
            registry=own,
        )
        self._auth_failures = Counter(
            "flamel_auth_failures",
            "Credentials refused by the API, and clients refused for too many wrong ones.",
            ("reason",),
            registry=own,
        )
        for reason in AUTH_FAILURE_REASONS:
            self._auth_failures.labels(reason)
        self._request_series: dict[tuple[str, str, int], Any] = {}
        self._duration_series: dict[str, Any] = {}
        self._describe_process(own)

    def _describe_process(self, own: CollectorRegistry | None) -> None:
        """Which workers' counts these are (one series per live worker, by pid), and when
        counting started (the earliest worker's start: the server's)."""
        info = Gauge(
            "flamel_process_info",
            "The live worker processes whose counts these are.",
            () if self._shared is not None else ("pid",),
            registry=own,
            multiprocess_mode="liveall",  # prometheus_client adds the pid label
        )
        (info if self._shared is not None else info.labels(str(os.getpid()))).set(1)
        Gauge(
            "flamel_process_start_time_seconds",
            "When counting started, in seconds since the epoch.",
            registry=own,
            multiprocess_mode="min",
        ).set(time.time())

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method_label(method), status)
        counter = self._request_series.get(key)
        if counter is None:
            counter = self._request_series[key] = self._requests.labels(*key[:2], str(status))
        counter.inc()
        histogram = self._duration_series.get(route)
        if histogram is None:
            histogram = self._duration_series[route] = self._durations.labels(route)
        histogram.observe(seconds)

    def auth_failure(self, reason: str) -> None:
        """Count ``reason`` if it is one of ``AUTH_FAILURE_REASONS``; ignore any other."""
        if reason in AUTH_FAILURE_REASONS:
            self._auth_failures.labels(reason).inc()

    def charge(self, kind: str, outcome: str) -> None:
        self._charges.labels(kind, outcome).inc()

    def render(self) -> bytes:
        """Everything, in the Prometheus text exposition format (version 0.0.4)."""
        if self._shared is not None:
            _forget_dead_workers(self._shared)
        return generate_latest(self._registry)


def _shared_directory() -> str | None:
    """The directory the workers count in, when ``prometheus_client`` counts in files: it
    does when ``PROMETHEUS_MULTIPROC_DIR`` was set as it was imported."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ[SHARED_DIRECTORY_VARIABLE]


def _forget_dead_workers(directory: str) -> None:
    """``mark_process_dead`` for each worker that has exited, as prometheus_client asks:
    its live-process series go, its counts stay in the sums (uvicorn's supervisor,
    which replaces workers, has no hook to call it from)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = int(os.path.basename(path).rsplit("_", 1)[1].removesuffix(".db"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            continue  # alive, as another user
