"""Errors raised by the Asterisk adapters."""


class AsteriskError(Exception):
    """Asterisk answered, but not what we asked for."""


class AsteriskUnavailable(AsteriskError):
    """Asterisk could not be reached (down, restarting, refusing connections, timing out)."""
