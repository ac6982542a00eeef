"""The audit trail: every change made through the API, append-only (docs/audit.md)."""
