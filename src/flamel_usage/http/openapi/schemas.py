"""The document's schemas, generated from the body declarations of ``http/bodies``.

msgspec writes JSON Schema 2020-12; the seed, and so the whole document, is OpenAPI
3.0, which speaks an older dialect. ``_openapi_3_0`` translates the few words that
differ: a union with ``null`` becomes ``nullable``, a numeric ``exclusiveMinimum``
becomes the boolean form, ``examples`` becomes ``example``, an empty ``required`` goes;
``title`` (the class name, already the schema's name) is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from flamel_usage.http.bodies.fields import value_schema

REF_PREFIX = "#/components/schemas/"


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF_PREFIX + name}


def component_schemas(bodies: Iterable[type[msgspec.Struct]]) -> dict[str, Any]:
    """The schemas of ``bodies`` and of every body they contain, by class name."""
    bodies = list(bodies)
    _, components = msgspec.json.schema_components(
        bodies, schema_hook=value_schema, ref_template=REF_PREFIX + "{name}"
    )
    extras = {body.__name__: getattr(body, "json_schema_extra", {}) for body in bodies}
    return {
        name: {**_openapi_3_0(schema), **extras.get(name, {})}
        for name, schema in components.items()
    }


def schema_of(annotation: Any) -> dict[str, Any]:
    """The schema of one field type of ``http/bodies`` (a parameter's, say)."""
    schema: dict[str, Any] = _openapi_3_0(msgspec.json.schema(annotation, schema_hook=value_schema))
    return schema


def _openapi_3_0(schema: Any) -> Any:
    """``schema``, and every schema in it, in OpenAPI 3.0's words."""
    if isinstance(schema, list):
        return [_openapi_3_0(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    converted = {key: _openapi_3_0(value) for key, value in schema.items() if key != "title"}
    if converted.get("required") == []:
        del converted["required"]  # OpenAPI 3.0 forbids an empty list
    if "anyOf" in converted:
        converted = _nullable(converted)
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        value = converted.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            side = "minimum" if bound == "exclusiveMinimum" else "maximum"
            converted[side] = converted.pop(bound)
            converted[bound] = True
    if "examples" in converted:
        converted["example"] = converted.pop("examples")[0]
    strings = all(isinstance(value, str | None) for value in converted.get("enum", [0]))
    if strings and "type" not in converted:
        converted = {"type": "string", **converted}
    return converted


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` as X with ``nullable: true`` (and null in its enum).

    The schema's own keys (a field's description, its default) win over X's.
    """
    choices = [choice for choice in schema["anyOf"] if choice != {"type": "null"}]
    if len(choices) == len(schema["anyOf"]) or len(choices) != 1:
        return schema
    (inner,) = choices
    # A default of null says nothing that ``nullable`` does not.
    outer = {
        key: value
        for key, value in schema.items()
        if key != "anyOf" and not (key == "default" and value is None)
    }
    if "$ref" in inner:  # OpenAPI 3.0 ignores every key beside a $ref
        inner = {"allOf": [inner]}
    merged = {**inner, **outer, "nullable": True}
    if "enum" in merged:
        merged["enum"] = [*merged["enum"], None]
    return merged
