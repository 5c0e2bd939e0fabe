"""The OpenAPI document we serve, and its human-readable docs."""
