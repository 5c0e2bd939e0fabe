"""The one table of refusal reasons (``core.errors.REASONS``) against everything that names one.

Every reason the code refuses with is in the table (literally, by reading the source; any
other way, at construction); the OpenAPI document documents each error with the table's
status and description; the metrics label refusals with the table's names; and the SDK
turns every reason into one of its documented exceptions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import flamel_usage
import flamel_usage.client as sdk
from flamel_usage.client import _exceptions as sdk_exceptions
from flamel_usage.core.errors import REASONS, Refusal
from flamel_usage.http.metrics import AUTH_FAILURE_REASONS, charge_outcome
from flamel_usage.http.openapi.document import openapi_document
from flamel_usage.http.render import error_response
from flamel_usage.metering.charges import COUNTED, REFUSALS
from flamel_usage.metering.outcomes import Refused

SOURCE = Path(flamel_usage.__file__).parent
#: Calls whose first argument is a reason, and comparisons with a ``.reason``.
_TAKES_A_REASON = {"Refusal", "Refused", "CountedKind"}


def _reason_literals() -> Iterator[tuple[str, int, str]]:
    """``(file, line, reason)`` of every reason named literally in the service's code: the
    first argument of ``Refusal(...)`` and ``Refused(...)``, a ``CountedKind``'s refusal,
    and a string compared with something's ``.reason``."""
    for path in sorted(SOURCE.rglob("*.py")):
        if "client" in path.relative_to(SOURCE).parts:
            continue  # the SDK's reasons are checked below, against the table
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for literal in _named_reasons(node):
                yield str(path.relative_to(SOURCE)), node.lineno, literal


def _named_reasons(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in _TAKES_A_REASON:
            position = 2 if name == "CountedKind" else 0
            given = node.args[position : position + 1]
            return [arg.value for arg in given if isinstance(arg, ast.Constant)]
    if isinstance(node, ast.Compare):
        sides = [node.left, *node.comparators]
        if any(isinstance(side, ast.Attribute) and side.attr == "reason" for side in sides):
            return [side.value for side in sides if isinstance(side, ast.Constant)]
    return []


def test_every_reason_named_in_the_code_is_in_the_table() -> None:
    named = list(_reason_literals())
    assert len(named) > 40  # the walk finds the raise sites
    unknown = [(where, line, reason) for where, line, reason in named if reason not in REASONS]
    assert unknown == []


def test_a_reason_missing_from_the_table_cannot_be_raised() -> None:
    with pytest.raises(LookupError, match="not_a_reason"):
        Refusal("not_a_reason", "a typo")


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_each_reason_is_answered_with_its_status_and_envelope(reason: str) -> None:
    response = error_response(Refusal(reason, "detail"))
    assert response.status == REASONS[reason].status
    assert httpx.Response(response.status, content=response.body).json() == {
        "success": False,
        "code": REASONS[reason].status,
        "data": reason,
        "message": "detail",
    }
    retry_after = REASONS[reason].retry_after
    headers = dict(response.headers)
    assert headers.get(b"retry-after") == (None if retry_after is None else b"%d" % retry_after)


def test_a_refusal_carries_its_retry_after_and_allowed_methods() -> None:
    response = error_response(
        Refusal("method_not_allowed", allowed=["POST", "GET"], retry_after=None)
    )
    assert (b"allow", b"GET, POST") in response.headers
    throttled = error_response(Refusal("too_many_requests", retry_after=42))
    assert (b"retry-after", b"42") in throttled.headers


# --- the OpenAPI document ---------------------------------------------------------------


def _documented_errors() -> Iterator[tuple[str, str, str, Any]]:
    """``(operation, response status, example name, example)`` of every error example."""
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {}).get("application/json", {})
                for name, example in content.get("examples", {}).items():
                    value = example.get("value")
                    if isinstance(value, dict) and value.get("success") is False:
                        yield f"{method.upper()} {path}", status, name, example


def test_every_documented_error_is_a_reason_of_the_table_with_its_status() -> None:
    documented = list(_documented_errors())
    assert len(documented) > 30
    for operation, status, name, example in documented:
        reason = example["value"]["data"]
        assert reason in REASONS, (operation, reason)
        assert int(status) == example["value"]["code"] == REASONS[reason].status, operation
        if name == reason:  # the seed's own examples keep the seed's names and words
            assert example["summary"] == REASONS[reason].description, (operation, reason)


def test_the_charge_refusals_are_documented_on_the_charge_operation() -> None:
    charge = {
        example["value"]["data"]
        for operation, _, _, example in _documented_errors()
        if operation == "POST /api/admin/charges"
    }
    assert set(REFUSALS) <= charge


# --- the metrics ------------------------------------------------------------------------


def test_the_metrics_reason_labels_are_reasons_of_the_table() -> None:
    assert set(AUTH_FAILURE_REASONS) <= set(REASONS)
    assert set(REFUSALS) <= set(REASONS)
    assert {kind.refusal for kind in COUNTED.values()} <= set(REFUSALS)
    for reason in REFUSALS:
        assert charge_outcome(Refused(reason)) == reason
        assert charge_outcome(Refused(reason, replayed=True)) == "replayed"


# --- the SDK ----------------------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_becomes_a_documented_sdk_exception(reason: str) -> None:
    status = REASONS[reason].status
    raised = sdk_exceptions.error_class(status, reason)
    assert getattr(sdk, raised.__name__) is raised
    assert raised is sdk.FlamelError or raised.__name__ in (sdk.__doc__ or "")
    assert raised is not sdk.InvalidResponse  # the envelope is understood
    if status == 401:
        assert issubclass(raised, sdk.AuthenticationError)
    if status >= 500:
        assert issubclass(raised, sdk.ServerError)


def test_the_reasons_the_sdk_names_are_the_servers_with_their_status() -> None:
    named = sdk_exceptions.ERRORS_BY_REASON
    assert named
    for reason, (status, _) in named.items():
        assert reason in REASONS, reason
        assert REASONS[reason].status == status, reason
