"""The HTTP edge: the only room that knows statuses, headers and response bytes."""
