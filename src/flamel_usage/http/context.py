"""What every handler is given: settings, database, session store, clock and metrics, one
set per process."""

from __future__ import annotations

import time
from collections.abc import Callable

from flamel_usage.auth.last_used import LastUsed
from flamel_usage.auth.platform_sessions import Sessions, sessions_for
from flamel_usage.auth.throttle import Budget
from flamel_usage.core.config import Secret, Settings
from flamel_usage.db.gateway import Database
from flamel_usage.http.drain import DrainFlag
from flamel_usage.http.metrics import Metrics

Clock = Callable[[], int]


def system_clock() -> int:
    """Now, in integer microseconds since the epoch: the unit every instant is stored in."""
    return time.time_ns() // 1000


class Services:
    def __init__(self, settings: Settings, db: Database, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        #: Every secret a session cookie is accepted under; the first signs.
        self.session_secrets: tuple[Secret, ...] = settings.resolved_session_secrets()
        self.session_secret: Secret = self.session_secrets[0]
        self.sessions: Sessions = sessions_for(settings)
        self.last_used = LastUsed()
        self.metrics = Metrics()
        self.drain = DrainFlag.from_environ()
        window = settings.throttle_window_seconds
        self.key_budget = Budget(settings.key_failure_budget, window)
        self.login_budget = Budget(settings.login_failure_budget, window)
