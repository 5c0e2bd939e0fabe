"""Counters of this worker process, served as Prometheus text at ``GET /metrics``.

Recording is a dict increment or two: no lock (one event loop per process, and the
GIL makes each increment whole), no clock beyond the two reads that time a request.
Every label has a bounded set of values: a route is its pattern
(``/api/admin/users/{userId}/keys``, never the path sent) or ``unmatched``, a method
outside the usual few is ``other``, a charge kind is a configured one.

The numbers are this process's own since it started: a server run with several
workers has as many sets of counters, and a scrape reaches whichever worker accepts
the connection. ``flamel_process_info{pid}`` and ``flamel_process_start_time_seconds``
say which one answered and since when.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from flamel_usage.metering.charges import Outcome

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

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


def charge_outcome(outcome: Outcome) -> str:
    """``charged``, ``replayed``, or the reason of the refusal (``insufficient_credit``,
    ``ttp_limit_exceeded``, ...) that the charge's answer carries."""
    if outcome.replayed:
        return "replayed"
    if outcome.status < 300:
        return "charged"
    reason = orjson.loads(outcome.body).get("data")
    return reason if isinstance(reason, str) else "refused"


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[str, _Histogram] = {}
        self.charges: dict[tuple[str, str], int] = {}
        self.auth_failures: dict[str, int] = dict.fromkeys(AUTH_FAILURE_REASONS, 0)
        self.started_at = time.time()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method_label(method), status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.durations.get(route)
        if histogram is None:
            histogram = self.durations[route] = _Histogram()
        histogram.counts[bisect_left(BUCKETS, seconds)] += 1
        histogram.total += seconds

    def auth_failure(self, reason: str) -> None:
        """Count ``reason`` if it is one of ``AUTH_FAILURE_REASONS``; ignore any other."""
        if reason in self.auth_failures:
            self.auth_failures[reason] += 1

    def charge(self, kind: str, outcome: str) -> None:
        key = (kind, outcome)
        self.charges[key] = self.charges.get(key, 0) + 1

    def render(self) -> bytes:
        """Everything, in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []
        _family(out, "flamel_http_requests_total", "counter", "HTTP requests answered.")
        for (route, method, status), count in sorted(self.requests.items()):
            labels = _labels(route=route, method=method, status=str(status))
            out.append(f"flamel_http_requests_total{labels} {count}")
        _family(
            out,
            "flamel_http_request_duration_seconds",
            "histogram",
            "Time from receiving a request to having sent its response, by route.",
        )
        name = "flamel_http_request_duration_seconds"
        for route, histogram in sorted(self.durations.items()):
            cumulative = 0
            for bound, count in zip((*BUCKETS, None), histogram.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound is None else repr(bound)
                out.append(f"{name}_bucket{_labels(route=route, le=le)} {cumulative}")
            out.append(f"{name}_sum{_labels(route=route)} {histogram.total!r}")
            out.append(f"{name}_count{_labels(route=route)} {cumulative}")
        _family(
            out,
            "flamel_charges_total",
            "counter",
            "Charges answered, by operation kind and outcome (charged, replayed, or the"
            " refusal's reason).",
        )
        for (kind, outcome), count in sorted(self.charges.items()):
            out.append(f"flamel_charges_total{_labels(kind=kind, outcome=outcome)} {count}")
        _family(
            out,
            "flamel_auth_failures_total",
            "counter",
            "Credentials refused by the API, and clients refused for too many wrong ones.",
        )
        for reason, count in self.auth_failures.items():
            out.append(f"flamel_auth_failures_total{_labels(reason=reason)} {count}")
        _family(out, "flamel_process_info", "gauge", "The worker process these numbers are of.")
        out.append(f"flamel_process_info{_labels(pid=str(os.getpid()))} 1")
        _family(
            out,
            "flamel_process_start_time_seconds",
            "gauge",
            "When this worker started counting, in seconds since the epoch.",
        )
        out.append(f"flamel_process_start_time_seconds {self.started_at!r}")
        out.append("")
        return "\n".join(out).encode()


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def _labels(**labels: str) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
