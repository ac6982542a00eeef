"""Transfers (SIP REFER) routed back through the control plane: docs/transfers.md."""
