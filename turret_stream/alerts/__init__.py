"""Alerts: per-project rules on topic events, delivered to webhooks (signed, retried, logged).

- ``urls``: which webhook URLs may be called (allow-list; public addresses only by default).
- ``rules``: the rules, their validation and the store that keeps them (written by the API).
- ``delivery``: the bounded queue, the HMAC signature, retries with backoff, the log.
- ``evaluate``: which rules a topic event (or a count check) fires.
"""
