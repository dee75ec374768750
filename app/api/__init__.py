"""The HTTP API: auth (bearer JWTs, roles), studies and reports, operations (outbox, models, audit)."""
