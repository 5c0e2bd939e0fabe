"""The bodies of our operations, each declared once as a msgspec ``Struct``.

One declaration does three jobs: ``reading.read_body`` decodes and validates a request
body with it, ``outbound.body_response`` encodes a response body with it, and
``http/openapi`` generates the document's schema from it
(``msgspec.json.schema_components``). So the document cannot say one thing while the
server does another.

Why msgspec: it decodes JSON straight into typed objects, validating as it goes, and
generates JSON Schema from the same classes; ``bench/bodies.py`` measures it against the
hand-written reading it replaced (orjson, then a check per field) on a charge body:
faster, not slower. pydantic would do the same jobs with a larger dependency and a
slower path; hand-written schemas were what this replaces.

The seed operation (``GET /api/users/me/usage``) is not here: its schema is the seed's,
served as given, and its body is the ledger's ``Usage.to_dto``, encoded with orjson on
the hot path (measured faster than msgspec for a dict).
"""
