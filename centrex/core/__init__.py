"""Business rules: plain functions and dataclasses, no I/O."""
