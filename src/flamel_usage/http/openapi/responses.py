"""The responses of our operations: the success one (``Answer``) and the error ones.

Error responses come from ``core.errors.REASONS`` alone: an operation names its
reasons, and each one's status and description are the table's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import msgspec

from flamel_usage.core.errors import REASONS
from flamel_usage.http.bodies.outbound import ErrorEnvelope
from flamel_usage.http.openapi.schemas import ref

JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    """An operation's success response.

    ``body`` is a response declaration of ``http/bodies``, or the name of a seed schema
    (the usage read's ``UsageInfoDto``); ``links`` name the operations a client can call
    next with values from this answer; ``other_media`` adds bodies of other types.
    """

    status: int
    description: str
    body: type[msgspec.Struct] | str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    links: Mapping[str, Any] = field(default_factory=dict)
    other_media: Mapping[str, Any] = field(default_factory=dict)

    def response(self) -> dict[str, Any]:
        """``{status: response object}``."""
        response: dict[str, Any] = {"description": self.description}
        if self.headers:
            response["headers"] = dict(self.headers)
        if self.body is not None:
            name = self.body if isinstance(self.body, str) else self.body.__name__
            response["content"] = {JSON: {"schema": ref(name)}, **self.other_media}
        if self.links:
            response["links"] = dict(self.links)
        return {str(self.status): response}


def error_responses(
    reasons: Iterable[str], headers: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    """Error responses grouped by status, one named example per reason.

    ``headers`` adds response headers to the responses of the given statuses.
    """
    by_status: dict[int, list[str]] = {}
    for reason in reasons:
        by_status.setdefault(REASONS[reason].status, []).append(reason)
    responses: dict[str, Any] = {}
    for status, names in sorted(by_status.items()):
        examples = {
            name: {
                "summary": REASONS[name].description,
                "value": {"success": False, "code": status, "data": name},
            }
            for name in names
        }
        response: dict[str, Any] = {"description": HTTPStatus(status).phrase}
        if status in headers:
            response["headers"] = dict(headers[status])
        response["content"] = {JSON: {"schema": ref(ErrorEnvelope.__name__), "examples": examples}}
        responses[str(status)] = response
    return responses


def link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to one of our operations, its parameters from runtime expressions."""
    return {"operationId": operation_id, "description": description, "parameters": parameters}


#: The id in an answer's body, for links.
BODY_ID = "$response.body#/id"

REPLAYED = {
    "Idempotent-Replayed": {
        "description": "Present, as true, only when this is the first answer for the"
        " Idempotency-Key given again: nothing was charged, held or sold this time.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}

SET_SESSION_COOKIE = {
    "Set-Cookie": {
        "description": "The session cookie, and flamel_device, which lets this browser"
        " sign in to the account while others' failed sign-ins throttle it (both HttpOnly,"
        " signed).",
        "schema": {"type": "string"},
        "example": "connect.sid=s%3A<session id>.<signature>; Path=/; HttpOnly; SameSite=Lax",
    }
}

CLEAR_SESSION_COOKIE = {
    "Set-Cookie": {
        "description": "Clears the session cookie.",
        "schema": {"type": "string"},
        "example": "connect.sid=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
    }
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}

HISTORY_CSV = {
    "text/csv": {
        "schema": {"type": "string"},
        "example": "start,end,plan,purchased,postpaid,ttp,edit,image\r\n"
        "2026-11-01T00:00:00+09:00,2026-11-02T00:00:00+09:00,3,0,0,3,0,0\r\n",
    }
}
