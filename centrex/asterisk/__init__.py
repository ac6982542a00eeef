"""Adapters to Asterisk: ARI (REST + events) and AMI."""
