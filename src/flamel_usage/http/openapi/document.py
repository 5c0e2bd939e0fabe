"""The OpenAPI document served at ``GET /api-json``.

The seed contract (``openapi-seed.yaml``, a byte-for-byte copy of the Flamel API's own
document for ``GET /api/users/me/usage``) is the base: clients were generated from it,
so everything it says is served unchanged. This module only *adds* to it: the
``connect.sid`` security scheme that the seed references but never defines, the admin
bearer scheme, the error envelope, and our own operations. Adding a key that the seed
already has is an error at build time, so the seed can never be overwritten by accident.

To document a new operation, declare its bodies in ``http/bodies``, its error reasons
in ``core.errors.REASONS``, and add one row to ``operations.OPERATIONS``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import msgspec
import orjson
import yaml

from flamel_usage.http.bodies.outbound import ErrorEnvelope
from flamel_usage.http.openapi.operations import OPERATIONS, SECURITY_SCHEMES, Operation
from flamel_usage.http.openapi.parameters import PATH_PARAMETERS
from flamel_usage.http.openapi.responses import JSON, error_responses
from flamel_usage.http.openapi.schemas import component_schemas, ref

_SEED_RESOURCE = "openapi-seed.yaml"

#: Errors any request can meet: its head (``http/protocol.py``), the database (``http/app.py``).
_ANY_REQUEST_ERRORS = ("request_header_fields_too_large", "service_unavailable")
#: Errors any request with a body can meet (``routing.Request.json_bytes``).
_BODY_ERRORS = ("payload_too_large", "unsupported_media_type")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The seed plus our additions, built once. Shared: callers must not mutate it."""
    document = _load_seed()
    components = document.setdefault("components", {})
    _add(components.setdefault("securitySchemes", {}), SECURITY_SCHEMES, "security scheme")
    _add(components.setdefault("schemas", {}), component_schemas(_bodies()), "schema")
    paths = document.setdefault("paths", {})
    for operation in OPERATIONS:
        path = paths.setdefault(operation.path, {})
        _add(path, {operation.method.lower(): _operation_object(operation)}, operation.path)
    return document


@functools.cache
def openapi_json() -> bytes:
    """The body of ``GET /api-json``."""
    return orjson.dumps(openapi_document())


def _bodies() -> Iterator[type[msgspec.Struct]]:
    """Every declared body the operations send or answer, and the error envelope."""
    yield ErrorEnvelope
    for operation in OPERATIONS:
        if operation.body is not None:
            yield operation.body
        if isinstance(operation.answer.body, type):
            yield operation.answer.body


def _operation_object(operation: Operation) -> dict[str, Any]:
    """The OpenAPI operation object of one row of the table."""
    audience = operation.audience
    reasons = [*audience.refusals, *operation.refusals]
    if operation.body is not None and "bad_request" not in reasons:
        reasons.insert(0, "bad_request")  # every JSON body can be malformed
    reasons += _ANY_REQUEST_ERRORS
    if operation.body is not None:
        reasons += _BODY_ERRORS
    found: dict[str, Any] = {
        "tags": [audience.tag],
        "summary": operation.summary,
        "operationId": operation.operation_id,
    }
    if operation.description:
        found["description"] = operation.description
    in_path = [PATH_PARAMETERS[name] for name in re.findall(r"\{(\w+)\}", operation.path)]
    parameters = [*in_path, *operation.parameters]
    if parameters:
        found["parameters"] = parameters
    if operation.body is not None:
        schema = ref(operation.body.__name__)
        found["requestBody"] = {"required": True, "content": {JSON: {"schema": schema}}}
    errors = error_responses(reasons, operation.error_headers)
    found["responses"] = {**operation.answer.response(), **errors}
    found["security"] = audience.security
    return found


def _add(target: dict[str, Any], additions: Mapping[str, Any], what: str) -> None:
    """Add entries, refusing to replace anything (the seed's parts must stay exact)."""
    for name, value in additions.items():
        if name in target:
            raise RuntimeError(f"OpenAPI {what} {name!r} is already defined")
        target[name] = value


def _load_seed() -> dict[str, Any]:
    text = resources.files("flamel_usage.http.openapi").joinpath(_SEED_RESOURCE).read_text("utf-8")
    seed = yaml.safe_load(text)
    if not isinstance(seed, dict):
        raise RuntimeError(f"{_SEED_RESOURCE} is not a mapping")
    return seed
