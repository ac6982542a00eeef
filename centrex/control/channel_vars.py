"""Channel variables the daemon and the dialplan (asterisk-config/extensions.conf.j2) share, and
the daemon's clock."""

from __future__ import annotations

from datetime import UTC, datetime

ANSWERED_VAR = "CENTREX_ANSWERED_AT"  # stamped on the caller's channel by the dialplan
ANSWERED_BY_VAR = "CENTREX_ANSWERED_BY"  # the endpoint that answered, likewise
# The called line's mailbox, for the dialplan to take an unanswered call there (centrex-dial);
# the calling line's own, for VoiceMailMain (centrex-voicemail-main, reached by *98).
VOICEMAIL_VAR = "CENTREX_VOICEMAIL"


def now() -> datetime:
    return datetime.now(UTC)
