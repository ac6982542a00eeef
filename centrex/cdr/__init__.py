"""CDRs: Asterisk's CEL journal shipped into PostgreSQL, exactly once (docs/cdrs.md)."""
