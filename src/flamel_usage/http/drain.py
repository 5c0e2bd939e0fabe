"""Whether this node is draining: stopping, so that a load balancer should move away.

``flamel-usage serve`` names a file in ``FLAMEL_DRAIN_FLAG`` for the server it runs, and
creates it when it is told to stop (``cli/serve.py``). A file, because every worker
process sees it at the cost of one ``stat``, whichever HTTP server runs the workers and
however it starts them; nothing has to reach into the workers. While it exists,
``/readyz`` answers ``503`` and every answer carries ``Connection: close``, so that a
proxy keeping connections open to this node opens its next ones elsewhere (or here,
until the node stops listening) instead of reusing one that is about to be closed.
"""

from __future__ import annotations

import os
import time

#: The variable naming the flag's file; unset (the tests' in-process apps): never draining.
DRAIN_FLAG_VARIABLE = "FLAMEL_DRAIN_FLAG"
#: How long an answer may go on trusting the last look at the flag.
_RECHECK_SECONDS = 0.1


class DrainFlag:
    def __init__(self, path: str | None) -> None:
        self._path = path
        self._seen = False
        self._checked_at = float("-inf")

    @classmethod
    def from_environ(cls) -> DrainFlag:
        return cls(os.environ.get(DRAIN_FLAG_VARIABLE) or None)

    def raised(self) -> bool:
        """Looked at now: what ``/readyz`` answers by."""
        if self._path is None:
            return False
        self._seen = self._seen or os.path.exists(self._path)
        self._checked_at = time.monotonic()
        return self._seen

    def raised_lately(self) -> bool:
        """As seen at most ``_RECHECK_SECONDS`` ago: what every answer goes by, so a
        request costs a ``stat`` only ten times a second."""
        if self._seen or self._path is None:
            return self._seen
        if time.monotonic() - self._checked_at >= _RECHECK_SECONDS:
            return self.raised()
        return False
