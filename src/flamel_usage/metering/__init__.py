"""Charging and refunding operations, exactly once per idempotency key."""
