"""Reading a request body into its declaration, or a 400 that says what is wrong with it.

The one place where msgspec's validation errors become our envelope: ``bad_request``
with a ``message`` that names the field (``maxCredit must be positive``). A valid body
is decoded in one pass (msgspec, straight into the ``Struct``). Only a refused one is
looked at again, so that the message answers the first question a client would ask:
is it JSON at all (orjson, the parser the service has always judged that with), is it
an object, does it have fields we do not know, and only then what is wrong with a field.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as types
import orjson

from flamel_usage.core.errors import Refusal
from flamel_usage.http.bodies.fields import NO_NUL, decode_value
from flamel_usage.http.bodies.inbound import RequestBody
from flamel_usage.http.routing import Request

Body = TypeVar("Body", bound=RequestBody)

_DECODERS: dict[type[RequestBody], msgspec.json.Decoder[Any]] = {}


async def read_body(request: Request, body_type: type[Body]) -> Body:
    """The request's JSON body as ``body_type``, or ``bad_request``."""
    raw = await request.json_bytes()
    decoder = _DECODERS.get(body_type)
    if decoder is None:
        decoder = _DECODERS[body_type] = msgspec.json.Decoder(body_type, dec_hook=decode_value)
    try:
        body: Body = decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise Refusal("bad_request", _explain(raw, body_type, str(error))) from None
    return body


def _explain(raw: bytes, body_type: type[RequestBody], error: str) -> str:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "the body is not valid JSON"
    if not isinstance(data, dict):
        return "the body must be a JSON object"
    known = {field.encode_name for field in msgspec.structs.fields(body_type)}
    unknown = sorted(set(data) - known)
    if unknown:
        return f"unknown field {unknown[0]!r}"
    return _field_error(error, body_type)


#: msgspec's error text: what is wrong, then where (``$.maxCredit``; ``$`` for the body).
_WHERE = re.compile(r"(?P<detail>.*?)(?: - at `\$(?:\.(?P<field>[^`]*))?`)?", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<field>.*)`")
_LENGTH = re.compile(r"Expected `str` of length (?P<op>[<>]=) (?P<limit>\d+)")
_BOUND = re.compile(r"Expected `(?:int|float)` (?P<op>[<>]=?) (?P<limit>\S+)")
_TYPE = re.compile(r"Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`")
_BOUND_WORDS = {">=": "at least", ">": "greater than", "<=": "at most", "<": "less than"}
_TYPE_WORDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "object": "an object",
    "array": "an array",
}


def _field_error(error: str, body_type: type[RequestBody]) -> str:
    where = _WHERE.fullmatch(error)
    assert where is not None  # every text matches: the location is optional
    detail, field = where["detail"], where["field"] or ""
    missing = _MISSING.fullmatch(detail)
    if missing:
        return f"{missing['field']} is required"
    return f"{field} {_predicate(detail, body_type, field)}".strip()


def _predicate(detail: str, body_type: type[RequestBody], field: str) -> str:
    """What msgspec said of a field, said after its name ("must be positive").

    Our own checks (``fields.decode_value``, a body's ``__post_init__``) already speak
    in predicates, which start in lower case; msgspec's sentences start upper case.
    """
    if detail[:1].islower():
        return detail
    if match := _LENGTH.fullmatch(detail):
        limit = int(match["limit"])
        if match["op"] == "<=":
            return f"is longer than {limit} characters"
        return "must not be empty" if limit == 1 else f"is shorter than {limit} characters"
    if detail.startswith("Expected `str` matching regex"):
        # The only pattern msgspec itself checks; the domain checks the others.
        assert repr(NO_NUL) in detail, detail
        return "must not contain NUL characters"
    if match := _BOUND.fullmatch(detail):
        return f"must be {_BOUND_WORDS[match['op']]} {match['limit']}"
    if match := _TYPE.fullmatch(detail):
        expected = match["expected"].split(" | ")
        return "must be " + " or ".join(_TYPE_WORDS.get(name, name) for name in expected)
    if detail.startswith("Invalid enum value"):
        return "must be one of " + ", ".join(map(repr, _choices(body_type, field)))
    if detail == "Number out of range":
        return "is out of range"
    return f"is invalid ({detail})"


def _choices(body_type: type[RequestBody], field: str) -> tuple[object, ...]:
    """The values a ``Literal`` field takes."""
    info = types.type_info(body_type)
    assert isinstance(info, types.StructType)
    (declared,) = (found.type for found in info.fields if found.encode_name == field)
    pending = [declared]
    while pending:
        kind = pending.pop()
        if isinstance(kind, types.LiteralType):
            return tuple(kind.values)
        if isinstance(kind, types.Metadata):
            pending.append(kind.type)
        elif isinstance(kind, types.UnionType):
            pending.extend(kind.types)
    return ()
