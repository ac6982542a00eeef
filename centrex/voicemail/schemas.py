"""The voicemail API's boundary. The PIN goes in, never out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictBool

from centrex.api.schemas import StrictInput
from centrex.voicemail.rules import EMAIL_PATTERN, PIN_PATTERN, email_error


def _valid(rule):  # type: ignore[no-untyped-def]
    def check(value: str | None) -> str | None:
        if value is not None and (why := rule(value)):
            raise ValueError(why)
        return value

    return check


# The shape of each is in the document (so a client knows it); a PIN of the right shape that
# a stranger would try first is refused by the service (400), not by the schema.
Pin = Annotated[str, Field(pattern=PIN_PATTERN)]
MailboxEmail = Annotated[
    str, Field(max_length=254, pattern=EMAIL_PATTERN), AfterValidator(_valid(email_error))
]


class VoicemailPatch(StrictInput):
    """Only the fields given change; ``email: null`` stops the emails."""

    enabled: StrictBool | None = None
    pin: Pin | None = Field(
        None, description="4 to 8 digits, to open the mailbox from the line (*98). Never shown."
    )
    email: MailboxEmail | None = Field(None, description="Where each message is sent, as WAV.")


class VoicemailOut(BaseModel):
    enabled: bool = Field(description="Calls not answered, busy or unregistered go to it.")
    pin_set: bool = Field(description="A PIN is set (it is never shown).")
    email: str | None
    greeting: Literal["default", "uploaded"]
    greeting_seconds: float | None


class VoicemailMessage(BaseModel):
    id: str = Field(description="app_voicemail's msg_id: stable while the message exists.")
    folder: Literal["INBOX", "Old"] = Field(description="INBOX: new; Old: listened to.")
    caller_id: str
    received_at: datetime
    duration_s: int
    size_bytes: int


class VoicemailList(BaseModel):
    items: list[VoicemailMessage]
