"""Per-customer music on hold (issue 15)."""
