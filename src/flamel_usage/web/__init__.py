"""The HTTP face of the service: a small ASGI application and its handlers."""
