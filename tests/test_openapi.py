"""The served OpenAPI document and the offline Swagger UI page.

The seed contract is what clients were generated from, so the parts of it we serve must
stay exactly as the seed has them; these tests compare against the shared seed file and
check that the packaged copy is the same bytes. They also hold the document to the
routes the app really serves, in both directions.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from flamel_usage.core.errors import Refusal
from flamel_usage.http.openapi.docs import docs_asset, docs_page
from flamel_usage.http.openapi.document import openapi_document, openapi_json
from flamel_usage.metering.idempotency import IDEMPOTENCY_KEY_PATTERN, idempotency_key

SHARED_SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "openapi-usage.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SEED_OPERATION = ("get", "/api/users/me/usage")

#: Every operation of ours, as the issue defines it: (method, path, operationId, tag).
OUR_OPERATIONS = {
    (
        "get",
        "/api/users/me/usage/history",
        "UsersApiController_getMyUsageHistory",
        "users",
    ),
    ("post", "/api/auth/login", "AuthController_login", "auth"),
    ("post", "/api/auth/logout", "AuthController_logout", "auth"),
    ("get", "/api/users/me/keys", "KeysController_listMyKeys", "keys"),
    ("post", "/api/users/me/keys", "KeysController_createMyKey", "keys"),
    ("delete", "/api/users/me/keys/{keyId}", "KeysController_revokeMyKey", "keys"),
    ("post", "/api/admin/plans", "AdminController_createPlan", "admin"),
    ("get", "/api/admin/plans", "AdminController_listPlans", "admin"),
    ("post", "/api/admin/users", "AdminController_createUser", "admin"),
    ("get", "/api/admin/users/{userId}", "AdminController_getUser", "admin"),
    ("patch", "/api/admin/users/{userId}", "AdminController_updateUser", "admin"),
    ("delete", "/api/admin/users/{userId}", "AdminController_deleteUser", "admin"),
    ("get", "/api/admin/users/{userId}/usage", "AdminController_getUserUsage", "admin"),
    ("post", "/api/admin/users/{userId}/keys", "AdminController_createKey", "admin"),
    ("get", "/api/admin/users/{userId}/keys", "AdminController_listKeys", "admin"),
    ("patch", "/api/admin/keys/{keyId}", "AdminController_updateKey", "admin"),
    ("post", "/api/admin/keys/{keyId}/revoke", "AdminController_revokeKey", "admin"),
    ("post", "/api/admin/users/{userId}/credits", "AdminController_buyCredits", "admin"),
    ("put", "/api/admin/users/{userId}/plan", "AdminController_changePlan", "admin"),
    ("get", "/api/admin/reconcile", "AdminController_reconcile", "admin"),
    ("post", "/api/admin/charges", "AdminController_createCharge", "admin"),
    (
        "post",
        "/api/admin/charges/{idempotencyKey}/refund",
        "AdminController_refundCharge",
        "admin",
    ),
    ("post", "/api/admin/holds", "AdminController_createHold", "admin"),
    ("post", "/api/admin/holds/{holdId}/settle", "AdminController_settleHold", "admin"),
    ("post", "/api/admin/holds/{holdId}/release", "AdminController_releaseHold", "admin"),
    ("get", "/api/admin/users/{userId}/holds", "AdminController_listHolds", "admin"),
    ("post", "/api/admin/webhooks", "AdminController_createWebhook", "admin"),
    ("get", "/api/admin/webhooks", "AdminController_listWebhooks", "admin"),
    ("delete", "/api/admin/webhooks/{webhookId}", "AdminController_deleteWebhook", "admin"),
    (
        "post",
        "/api/admin/webhooks/{webhookId}/rotate",
        "AdminController_rotateWebhookSecret",
        "admin",
    ),
    (
        "get",
        "/api/admin/webhooks/{webhookId}/deliveries",
        "AdminController_listWebhookDeliveries",
        "admin",
    ),
    (
        "post",
        "/api/admin/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver",
        "AdminController_redeliverWebhook",
        "admin",
    ),
}

#: The type of every path parameter: ids are integers, an idempotency key is a string.
PATH_PARAMETER_TYPES = {
    "userId": "integer",
    "keyId": "integer",
    "holdId": "integer",
    "idempotencyKey": "string",
    "webhookId": "integer",
    "deliveryId": "integer",
}


def _packaged_seed_bytes() -> bytes:
    return resources.files("flamel_usage.http.openapi").joinpath("openapi-seed.yaml").read_bytes()


def _shared_seed_bytes() -> bytes:
    if not SHARED_SEED.is_file():
        pytest.skip(f"shared seed {SHARED_SEED} is absent (no shared/ beside the repo)")
    return SHARED_SEED.read_bytes()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# --- the seed, kept exactly ---------------------------------------------------------------


def test_packaged_seed_is_the_shared_seed_byte_for_byte() -> None:
    assert _packaged_seed_bytes() == _shared_seed_bytes()


@pytest.mark.parametrize("source", ["packaged", "shared"])
def test_seed_parts_are_served_unchanged(source: str) -> None:
    raw = _packaged_seed_bytes() if source == "packaged" else _shared_seed_bytes()
    seed = yaml.safe_load(raw)
    document = openapi_document()

    assert document["openapi"] == seed["openapi"]
    for key in ("info", "servers", "tags", "security"):
        assert document[key] == seed[key], key
    assert document["paths"]["/api/users/me/usage"] == seed["paths"]["/api/users/me/usage"]
    assert (
        document["components"]["schemas"]["UsageInfoDto"]
        == seed["components"]["schemas"]["UsageInfoDto"]
    )
    # Nothing anywhere in the seed was replaced.
    for path, item in seed["paths"].items():
        assert document["paths"][path] == item, path
    for section, entries in seed["components"].items():
        for name, value in entries.items():
            assert document["components"][section][name] == value, (section, name)


def test_served_json_is_the_document() -> None:
    assert orjson.loads(openapi_json()) == openapi_document()


# --- security schemes --------------------------------------------------------------------


def test_security_schemes() -> None:
    schemes = openapi_document()["components"]["securitySchemes"]
    assert schemes["connect.sid"]["type"] == "apiKey"
    assert schemes["connect.sid"]["in"] == "cookie"
    assert schemes["connect.sid"]["name"] == "connect.sid"
    assert schemes["apiKey"] == {"type": "apiKey", "name": "X-Api-Key", "in": "header"}
    assert schemes["adminToken"]["type"] == "http"
    assert schemes["adminToken"]["scheme"] == "bearer"


def test_every_security_requirement_names_a_defined_scheme() -> None:
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    requirements = list(document.get("security", []))
    for _, _, operation in _operations(document):
        requirements += operation.get("security", [])
    for requirement in requirements:
        for name in requirement:
            assert name in schemes, name


# --- validity and structure ---------------------------------------------------------------


def test_document_is_valid_openapi_3_0() -> None:
    from openapi_spec_validator import OpenAPIV30SpecValidator

    document = openapi_document()
    assert document["openapi"].startswith("3.0.")
    errors = [str(error) for error in OpenAPIV30SpecValidator(document).iter_errors()]
    assert errors == []


def test_every_ref_resolves() -> None:
    document = openapi_document()
    refs = [n["$ref"] for n in _walk(document) if isinstance(n, dict) and "$ref" in n]
    assert refs
    for ref in refs:
        _resolve(document, ref)


def test_operation_ids_are_unique() -> None:
    ids = [operation["operationId"] for _, _, operation in _operations(openapi_document())]
    assert len(ids) == len(set(ids)), sorted(ids)


def test_our_operations_are_all_there_and_nothing_else() -> None:
    found = {
        (method, path, operation["operationId"], operation["tags"][0])
        for method, path, operation in _operations(openapi_document())
        if (method, path) != SEED_OPERATION
    }
    assert found == OUR_OPERATIONS


def _our_operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [op for op in _operations(openapi_document()) if (op[0], op[1]) != SEED_OPERATION]


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    _our_operations(),
    ids=[op[2]["operationId"] for op in _our_operations()],
)
def test_our_operation_shape(method: str, path: str, operation: dict[str, Any]) -> None:
    document = openapi_document()
    assert operation["summary"]
    assert len(operation["tags"]) == 1
    assert "security" in operation
    responses = operation["responses"]
    assert any(status.startswith("2") for status in responses)

    # Path parameters: every {name} documented, required, with its type, in path order.
    names = re.findall(r"\{(\w+)\}", path)
    parameters = operation.get("parameters", [])
    in_path = [p for p in parameters if p["in"] == "path"]
    assert [p["name"] for p in in_path] == names
    for parameter in in_path:
        assert parameter["required"] is True
        assert parameter["schema"]["type"] == PATH_PARAMETER_TYPES[parameter["name"]]
    # Any other parameter is a header or a query field.
    for parameter in parameters:
        assert parameter["in"] in {"path", "header", "query"}, parameter
        assert parameter["description"]

    # Request bodies: JSON, closed to unknown fields, and a 400 for bad ones.
    if "requestBody" in operation:
        schema = _resolve(
            document, operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        )
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert "400" in responses

    # Errors: the envelope, one example per reason, each coherent with its status.
    for status, response in responses.items():
        if status.startswith("2"):
            continue
        content = response["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
        assert content["examples"]
        for name, example in content["examples"].items():
            value = example["value"]
            assert value == {"success": False, "code": int(status), "data": name}
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name)


def _reasons(operation: dict[str, Any], status: str) -> set[str]:
    return set(operation["responses"][status]["content"]["application/json"]["examples"])


def test_admin_operations_require_the_admin_token() -> None:
    admin = [op for _, _, op in _our_operations() if op["tags"] == ["admin"]]
    assert len(admin) == 26
    for operation in admin:
        assert operation["security"] == [{"adminToken": []}]
        assert "admin_unauthorized" in _reasons(operation, "401")
        assert "admin_disabled" in _reasons(operation, "403")
        assert "bad_request" in _reasons(operation, "400")


def test_documented_domain_errors() -> None:
    by_id = {op["operationId"]: op for _, _, op in _operations(openapi_document())}
    expected = {
        "AuthController_login": {
            "401": {"invalid_credentials"},
            "400": {"bad_request"},
            "404": {"not_found"},
        },
        "AuthController_logout": {"404": {"not_found"}},
        "AdminController_createPlan": {"409": {"plan_exists"}},
        "AdminController_createUser": {
            "404": {"plan_not_found"},
            "409": {"user_exists"},
        },
        "AdminController_updateUser": {
            "404": {"user_not_found"},
            "409": {"user_exists"},
        },
        "AdminController_deleteUser": {"404": {"user_not_found"}},
        "AdminController_getUser": {"404": {"user_not_found"}},
        "AdminController_getUserUsage": {"404": {"user_not_found"}},
        "AdminController_createKey": {"404": {"user_not_found"}},
        "AdminController_listKeys": {"404": {"user_not_found"}},
        "AdminController_updateKey": {"404": {"key_not_found"}},
        "KeysController_listMyKeys": {"403": {"session_required", "not_logged_in"}},
        "KeysController_createMyKey": {
            "403": {"session_required", "not_logged_in", "origin_not_allowed"},
            "409": {"too_many_keys"},
        },
        "KeysController_revokeMyKey": {
            "403": {"session_required", "not_logged_in", "origin_not_allowed"},
            "404": {"key_not_found"},
        },
        "AdminController_revokeKey": {"404": {"key_not_found"}},
        "AdminController_buyCredits": {"404": {"user_not_found"}},
        "AdminController_createCharge": {
            "400": {"bad_request", "unknown_kind", "invalid_idempotency_key"},
            "402": {"insufficient_credit"},
            "404": {"user_not_found"},
            "409": {"idempotency_key_reused"},
            "429": {"ttp_limit_exceeded", "edit_limit_exceeded"},
        },
        "UsersApiController_getMyUsageHistory": {
            "400": {"invalid_range", "range_too_long", "invalid_granularity", "invalid_format"},
            "401": {"wrong_api_key", "api_key_expired"},
            "403": {"not_logged_in"},
            "429": {"too_many_requests"},
        },
        "AdminController_refundCharge": {
            "400": {"bad_request", "invalid_idempotency_key"},
            "404": {"charge_not_found"},
            "409": {"already_refunded", "not_refundable"},
        },
        "AdminController_createHold": {
            "400": {"bad_request", "unknown_kind", "invalid_idempotency_key"},
            "402": {"insufficient_credit"},
            "404": {"user_not_found"},
            "409": {"idempotency_key_reused"},
            "429": {"ttp_limit_exceeded", "edit_limit_exceeded"},
        },
        "AdminController_settleHold": {
            "400": {"bad_request"},
            "404": {"hold_not_found"},
            "409": {"hold_not_active"},
        },
        "AdminController_createWebhook": {"400": {"bad_request"}},
        "AdminController_deleteWebhook": {"404": {"not_found"}},
        "AdminController_rotateWebhookSecret": {"404": {"not_found"}},
        "AdminController_listWebhookDeliveries": {"404": {"not_found"}},
        "AdminController_redeliverWebhook": {"404": {"not_found"}},
    }
    for operation_id, statuses in expected.items():
        for status, reasons in statuses.items():
            assert _reasons(by_id[operation_id], status) == reasons, (operation_id, status)


def test_login_sets_and_logout_clears_the_session_cookie() -> None:
    paths = openapi_document()["paths"]
    login = paths["/api/auth/login"]["post"]
    assert login["security"] == []
    assert "Set-Cookie" in login["responses"]["200"]["headers"]
    logout = paths["/api/auth/logout"]["post"]
    assert logout["security"] == [{"connect.sid": []}]
    assert "Set-Cookie" in logout["responses"]["204"]["headers"]


def test_self_service_key_operations_take_the_session_cookie_only() -> None:
    keys = [op for _, _, op in _our_operations() if op["tags"] == ["keys"]]
    assert len(keys) == 3
    for operation in keys:
        assert operation["security"] == [{"connect.sid": []}]
        assert "session_required" in _reasons(operation, "403")


def test_error_envelope_schema() -> None:
    envelope = openapi_document()["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["success", "code", "data"]
    assert envelope["properties"]["success"] == {"type": "boolean", "enum": [False]}
    assert envelope["properties"]["code"]["type"] == "integer"
    assert envelope["properties"]["data"]["type"] == "string"
    assert envelope["properties"]["message"]["type"] == "string"


def test_history_has_the_usage_reads_credentials_and_a_csv_face() -> None:
    paths = openapi_document()["paths"]
    history = paths["/api/users/me/usage/history"]["get"]
    assert history["security"] == paths["/api/users/me/usage"]["get"]["security"]
    assert set(history["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    names = [parameter["name"] for parameter in history["parameters"]]
    assert names == ["from", "to", "granularity", "format"]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2026-11-01", True),
        ("2026-11-01T00:00:00+09:00", True),
        ("2026-11-01T00:00:00.5Z", True),
        ("2026-11-01T00:00:00", False),
        ("2026-13-01", False),
        ("1969-12-31", False),
        ("", False),
    ],
)
def test_history_bounds_pattern(value: str, valid: bool) -> None:
    operation = openapi_document()["paths"]["/api/users/me/usage/history"]["get"]
    pattern = operation["parameters"][0]["schema"]["pattern"]
    assert (re.fullmatch(pattern, value) is not None) is valid


def test_admin_usage_reuses_the_seed_schema() -> None:
    operation = openapi_document()["paths"]["/api/admin/users/{userId}/usage"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/UsageInfoDto"}


# --- charges and refunds ------------------------------------------------------------------

CHARGES = "/api/admin/charges"
REFUND = "/api/admin/charges/{idempotencyKey}/refund"


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi_document()["components"]["schemas"][name]
    return schema


def _json_schema_ref(response: dict[str, Any]) -> Any:
    return response["content"]["application/json"]["schema"]


def test_charge_needs_an_idempotency_key_header() -> None:
    operation = openapi_document()["paths"][CHARGES]["post"]
    (header,) = operation["parameters"]
    assert header["name"] == "Idempotency-Key"
    assert header["in"] == "header"
    assert header["required"] is True
    schema = header["schema"]
    assert schema["type"] == "string"
    assert (schema["minLength"], schema["maxLength"]) == (1, 255)
    assert schema["pattern"] == f"^{IDEMPOTENCY_KEY_PATTERN}$"


def test_refund_names_the_charge_by_a_string_path_parameter() -> None:
    operation = openapi_document()["paths"][REFUND]["post"]
    (parameter,) = operation["parameters"]
    assert parameter["name"] == "idempotencyKey"
    assert parameter["in"] == "path"
    assert parameter["schema"]["type"] == "string"
    assert parameter["schema"]["pattern"] == f"^{IDEMPOTENCY_KEY_PATTERN}$"
    assert "URL-encoded" in parameter["description"]
    assert "requestBody" not in operation


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "x" * 255,
        "x" * 256,
        "",
        "job 42/ttp",
        "~!@#$%^&*()",
        "tab\tkey",
        "é",
        "\x7f",
        "line\n",
        " leading",
        "trailing ",
        " ",
        "a b",
        "x" * 254 + " ",
    ],
)
def test_documented_key_pattern_agrees_with_the_server(key: str) -> None:
    schema = openapi_document()["paths"][CHARGES]["post"]["parameters"][0]["schema"]
    documented = re.fullmatch(schema["pattern"], key) is not None
    documented = documented and schema["minLength"] <= len(key) <= schema["maxLength"]
    try:
        idempotency_key(key)
    except Refusal:
        accepted = False
    else:
        accepted = True
    assert documented == accepted


def test_charge_request_schema() -> None:
    schema = _schema("CreateChargeRequest")
    assert schema["required"] == ["userId", "kind"]
    assert schema["additionalProperties"] is False
    properties = schema["properties"]
    assert set(properties) == {"userId", "kind", "cost"}
    assert properties["userId"]["type"] == "integer"
    assert properties["userId"]["minimum"] == 1
    assert properties["kind"]["type"] == "string"
    assert properties["cost"]["type"] == "number"
    assert properties["cost"]["minimum"] == 0
    assert properties["cost"]["exclusiveMinimum"] is True
    assert "3 decimals" in properties["cost"]["description"]


def test_charge_and_refund_answer_a_charge_result() -> None:
    paths = openapi_document()["paths"]
    created = paths[CHARGES]["post"]["responses"]["201"]
    refunded = paths[REFUND]["post"]["responses"]["200"]
    for response in (created, refunded):
        assert _json_schema_ref(response) == {"$ref": "#/components/schemas/ChargeResult"}
    result = _schema("ChargeResult")
    assert result["properties"] == {
        "charge": {"$ref": "#/components/schemas/Charge"},
        "usage": {"$ref": "#/components/schemas/UsageInfoDto"},
    }
    charge = _schema("Charge")
    assert charge["required"] == [
        "id",
        "idempotencyKey",
        "userId",
        "kind",
        "cost",
        "fromPlanCredit",
        "fromPurchasedCredit",
        "postpaid",
        "createdAt",
        "refundedAt",
    ]
    properties = charge["properties"]
    for name in ("cost", "fromPlanCredit", "fromPurchasedCredit", "postpaid"):
        assert properties[name]["type"] == "number", name
    assert properties["createdAt"]["format"] == "date-time"
    assert "nullable" not in properties["createdAt"]
    assert properties["refundedAt"]["format"] == "date-time"
    assert properties["refundedAt"]["nullable"] is True


def test_remembered_answers_document_the_replay_header() -> None:
    responses = openapi_document()["paths"][CHARGES]["post"]["responses"]
    remembered = {"201", "402", "429"}
    for status, response in responses.items():
        headers = response.get("headers", {})
        if status in remembered:
            assert headers["Idempotent-Replayed"]["schema"] == {"type": "string", "enum": ["true"]}
        else:
            assert "Idempotent-Replayed" not in headers, status
    refund = openapi_document()["paths"][REFUND]["post"]["responses"]
    assert all("headers" not in response for response in refund.values())


def test_refund_description_states_what_is_not_restored() -> None:
    description = " ".join(openapi_document()["paths"][REFUND]["post"]["description"].split())
    assert "restores exactly what the charge took, to the pools it came from" in description
    assert "Purchased credit that has expired since the charge stays expired" in description
    assert "plan credit of a period that has ended is not restored" in description
    assert "the ledger records" in description


# --- every served route is documented, and only those -------------------------------------

UNDOCUMENTED_PAGES = {
    *("/api", "/api-json", "/", "/usage", "/login", "/logout", "/static/{name}"),
    *("/keys", "/keys/{keyId}/revoke"),
    # Operational endpoints, for probes and scrapers rather than API clients.
    *("/healthz", "/readyz", "/metrics"),
}


def test_every_route_is_documented_and_vice_versa() -> None:
    from flamel_usage.http.app import ROUTES

    served = {
        (method.upper(), path)
        for method, path, *_ in ROUTES
        if path not in UNDOCUMENTED_PAGES and not path.startswith("/api/static/")
    }
    documented = {(method.upper(), path) for method, path, _ in _operations(openapi_document())}
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


# --- the offline docs page ----------------------------------------------------------------


class _Links(HTMLParser):
    """Collects every URL-bearing attribute, scripts and the title of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.script_text: list[str] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href", "action", "data", "poster"} and value is not None:
                self.urls.append(value)
        if tag == "script":
            self.scripts.append(dict(attrs))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script" and data.strip():
            self.script_text.append(data)
        if self._in == "title":
            self.title += data


def _parsed_page() -> _Links:
    parser = _Links()
    parser.feed(docs_page().decode("utf-8"))
    return parser


def test_docs_page_loads_everything_from_our_server() -> None:
    page = docs_page().decode("utf-8")
    assert "http://" not in page
    assert "https://" not in page
    parser = _parsed_page()
    assert parser.urls
    for url in parser.urls:
        assert url.startswith("/api/static/"), url
        assert docs_asset(url.removeprefix("/api/static/")) is not None, url
    linked = {url.removeprefix("/api/static/") for url in parser.urls}
    assert {"swagger-ui.css", "swagger-ui-bundle.js", "init.js"} <= linked


def test_docs_page_has_no_inline_script() -> None:
    parser = _parsed_page()
    assert parser.scripts
    assert all(script.get("src") for script in parser.scripts)
    assert parser.script_text == []
    assert "onload=" not in docs_page().decode("utf-8").lower()


def test_docs_page_title_is_the_seed_title() -> None:
    assert _parsed_page().title == openapi_document()["info"]["title"]


def test_init_script_points_swagger_ui_at_our_document() -> None:
    asset = docs_asset("init.js")
    assert asset is not None
    content, content_type = asset
    text = content.decode("utf-8")
    assert content_type.startswith("text/javascript")
    assert '"/api-json"' in text
    assert "SwaggerUIBundle(" in text
    assert "http://" not in text
    assert "https://" not in text


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("swagger-ui.css", "text/css"),
        ("swagger-ui-bundle.js", "text/javascript"),
        ("favicon-32x32.png", "image/png"),
        ("favicon-16x16.png", "image/png"),
    ],
)
def test_bundled_assets_are_served(name: str, content_type: str) -> None:
    asset = docs_asset(name)
    assert asset is not None
    content, served_type = asset
    assert len(content) > 100
    assert served_type.split(";")[0] == content_type


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../swagger-ui.css",
        "../../../../etc/passwd",
        "..%2fswagger-ui.css",
        "/etc/passwd",
        "/swagger-ui.css",
        "static/swagger-ui.css",
        "./swagger-ui.css",
        "swagger-ui.css/",
        "swagger-ui.css/../swagger-ui.css",
        "SWAGGER-UI.CSS",
        "swagger-ui.css\x00",
        "index.html",
        "swagger-initializer.js",
        "swagger-ui-bundle.js.map",
        "oauth2-redirect.html",
        "../__init__.py",
        "unknown.js",
    ],
)
def test_docs_asset_refuses_anything_not_allowlisted(name: str) -> None:
    assert docs_asset(name) is None
