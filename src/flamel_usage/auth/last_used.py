"""When each API key was last used, written in batches.

Writing ``last_used_at`` on every authenticated read would turn the hottest read into a
write (with random keys almost every request would be a key's first in a minute), and
on SQLite writes queue behind each other across processes. So each process notes the
times in memory and writes them once a minute, and when it stops, as one statement
over all of them (the pairs go in as one JSON parameter) that does not hold up requests
(``Database.write_in_background``): one statement rather than one per key, because a
Python loop of tens of thousands of updates in a thread takes the GIL from the event
loop between rows, which showed as stalls of a hundred milliseconds. A minute, because
the rows written are the keys used in the interval: a key polled every few seconds is
written once a minute instead of a dozen times. The time is exact (the latest use);
only its recording lags, and a crash loses at most one interval of it. Nothing that decides
whether a key works or what a balance is ever comes from this buffer.
"""

from __future__ import annotations

import orjson

from flamel_usage.db.gateway import Database, Dialect

FLUSH_INTERVAL_SECONDS = 60.0

#: Each store's one statement for a JSON array of ``[key_id, used_at]`` pairs.
_RECORD: dict[Dialect, str] = {
    "sqlite": (
        "UPDATE api_keys SET last_used_at = used.at FROM (SELECT json_extract(value, '$[0]')"
        " AS id, json_extract(value, '$[1]') AS at FROM json_each(?)) AS used"
        " WHERE api_keys.id = used.id"
        " AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < used.at)"
    ),
    "postgresql": (
        "UPDATE api_keys SET last_used_at = used.at FROM (SELECT (pair->>0)::bigint AS id,"
        " (pair->>1)::bigint AS at FROM json_array_elements(?::json) AS pair) AS used"
        " WHERE api_keys.id = used.id"
        " AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < used.at)"
    ),
}


class LastUsed:
    def __init__(self) -> None:
        self._pending: dict[int, int] = {}

    def note(self, key_id: int, now: int) -> None:
        if now > self._pending.get(key_id, 0):
            self._pending[key_id] = now

    async def flush(self, db: Database) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            await db.write_in_background(
                _RECORD[db.dialect], orjson.dumps(sorted(pending.items())).decode()
            )
        except BaseException:
            for key_id, used_at in pending.items():  # kept for the next flush
                self.note(key_id, used_at)
            raise
