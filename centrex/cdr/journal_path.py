"""Where this node's CEL journal is: the one setting both its readers (the daemon, the shipper)
share."""

from __future__ import annotations

from pathlib import Path

from centrex.config import Settings


def journal_path(settings: Settings) -> Path:
    if settings.cel_journal is not None:
        return settings.cel_journal
    # Production code must not import the sandbox (the operator's own Asterisk sets
    # CENTREX_CEL_JOURNAL); this is the path `centrex up`'s sandbox writes to.
    from centrex.sandbox.asterisk import AsteriskSandbox

    return AsteriskSandbox(settings).cel_journal
