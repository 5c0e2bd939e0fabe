"""Decoding and validating a charge body: the msgspec declaration against hand-written reading.

Not part of ``scripts/bench`` (it needs no server): ``.venv/bin/python bench/bodies.py``.
Prints the median time per body of each way, for the body of ``POST /api/admin/charges``
with and without a cost. "hand-written" is how the service read bodies before the
declarations of ``http/bodies`` (orjson, then one check per field, as the removed
``core.inputs.JsonObject`` did them); "msgspec" is what ``read_body`` runs for a valid
body (one ``Decoder.decode`` straight into ``CreateChargeRequest``, the cost into
millicredits on the way).
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from flamel_usage.core.inputs import MAX_INT
from flamel_usage.core.money import parse_credits
from flamel_usage.http.bodies.fields import decode_value
from flamel_usage.http.bodies.inbound import CreateChargeRequest

BODIES = {
    "with cost": b'{"userId": 48213, "kind": "ttp", "cost": 1.5}',
    "default cost": b'{"userId": 48213, "kind": "edit"}',
}
REPEATS = 7
NUMBER = 20_000


def hand_written(raw: bytes) -> tuple[int, str, int | None]:
    """The reading that the declaration replaced, check for check."""
    data: Any = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(data) - {"userId", "kind", "cost"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    user_id = data.get("userId")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or not 0 < user_id <= MAX_INT:
        raise ValueError("userId must be a positive whole number")
    kind = data.get("kind")
    if not isinstance(kind, str) or "\x00" in kind or len(kind) > 32:
        raise ValueError("kind must be a string")
    cost = None
    if "cost" in data:
        value = data["cost"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("cost must be a number")
        cost = parse_credits(value, "cost")
    return user_id, kind, cost


def main() -> None:
    decoder = msgspec.json.Decoder(CreateChargeRequest, dec_hook=decode_value)
    ways: dict[str, Callable[[bytes], object]] = {
        "hand-written": hand_written,
        "msgspec": decoder.decode,
    }
    print(f"median of {REPEATS} x {NUMBER:,} decodes, microseconds per body")
    for label, raw in BODIES.items():
        figures = {}
        for name, decode in ways.items():
            runs = timeit.repeat(
                "decode(raw)", globals={"decode": decode, "raw": raw}, number=NUMBER, repeat=REPEATS
            )
            figures[name] = statistics.median(runs) / NUMBER * 1e6
        ratio = figures["hand-written"] / figures["msgspec"]
        line = ", ".join(f"{name} {us:.2f}" for name, us in figures.items())
        print(f"{label:>12}: {line} (msgspec {ratio:.1f}x as fast)")


if __name__ == "__main__":
    main()
