"""The session read's data: connect-redis sessions of seeded users, and their cookies.

The platform's Express app keeps a session as connect-redis does (``<prefix><sid>`` ->
the session's JSON, with a TTL) and signs the cookie with the shared secret; this writes
sessions the same way for ``--sessions`` random users of the seed, each carrying the
user's external id (``seed.external_id``) as ``passport.user``. The
cookies go to a file, one ``connect.sid=...`` a line, for wrk (``usage.lua`` with
``BENCH_HEADER=Cookie``). Redis is ``FLAMEL_TEST_REDIS_URL`` (default the local one);
the keys live under a prefix of the run's own and are deleted at its end.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import redis
import seed

from flamel_usage.auth.cookies import new_session_id, session_cookie_value

REDIS_URL = os.environ.get("FLAMEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: A session's lifetime in Redis: longer than any run.
TTL_SECONDS = 4 * 3600


def write_sessions(prefix: str, secret: str, users: int, count: int, cookies: Path) -> None:
    """``count`` sessions of random users among ``1..users`` into Redis; their cookies
    into the file ``cookies``."""
    rng = random.Random(20261202)
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=30)
    lines = []
    try:
        pipe = client.pipeline(transaction=False)
        for _ in range(count):
            session_id = new_session_id()
            session = {
                "cookie": {"originalMaxAge": None, "expires": None, "httpOnly": True, "path": "/"},
                "passport": {"user": seed.external_id(rng.randint(1, users))},
            }
            pipe.set(prefix + session_id, json.dumps(session), ex=TTL_SECONDS)
            lines.append("connect.sid=" + session_cookie_value(session_id, secret))
        pipe.execute()
    finally:
        client.close()
    cookies.write_text("\n".join(lines) + "\n")


def remove_sessions(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=30)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
        for start in range(0, len(keys), 5000):
            client.delete(*keys[start : start + 5000])
    finally:
        client.close()
