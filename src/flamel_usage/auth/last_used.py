"""When each API key was last used, written in batches.

Writing ``last_used_at`` on every authenticated read would turn the hottest read into a
write (with random keys almost every request would be a key's first in a minute), and
on SQLite writes queue behind each other across processes. So each process notes the
times in memory and writes them every few seconds, and when it stops, in one batch that
does not hold up requests (``Database.write_many``). The time is
informational: a crash loses at most one interval of it, and nothing that decides
whether a key works or what a balance is ever comes from this buffer.
"""

from __future__ import annotations

from flamel_usage.db import Database

FLUSH_INTERVAL_SECONDS = 5.0


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
            await db.write_many(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ?"
                " AND (last_used_at IS NULL OR last_used_at < ?)",
                [(used_at, key_id, used_at) for key_id, used_at in sorted(pending.items())],
            )
        except BaseException:
            for key_id, used_at in pending.items():  # kept for the next flush
                self.note(key_id, used_at)
            raise
