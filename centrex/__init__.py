"""centrex: a SIP Centrex softswitch control plane around Asterisk."""

__version__ = "0.1.0"
