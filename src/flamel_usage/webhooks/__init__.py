"""Alerts as signed webhooks (SPEC 9): endpoints, the events a change of balance fires,
their outbox, and the dispatcher that delivers them at least once.

``events.emit_usage_alerts`` is the one way an alert is raised: the code that changes a
balance calls it in its own transaction with the account's numbers before and after, so
an event exists exactly when the change committed (the outbox). ``dispatcher`` sends
what is due from every worker, ``signing`` signs per Standard Webhooks, ``addresses``
keeps endpoints off private networks.
"""
