"""The OpenAPI document we serve, and its human-readable docs.

``document`` puts the seed and our additions together; ``operations`` is the table of
our operations it reads; ``schemas`` generates the schemas from the body declarations of
``http/bodies``; ``parameters`` and ``responses`` hold the other parts an operation
names; ``texts`` the longer descriptions; ``docs`` serves the document and Swagger UI.
"""
