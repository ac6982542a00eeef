"""The API's shapes for a line's features (types from centrex/api/fields.py: what the OpenAPI
document says is what is checked)."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from centrex.api.fields import Bool, IntRange, omittable
from centrex.api.schemas import StrictInput

#: An extension, a number as written, or "voicemail": whether the line may forward there is
#: a deeper rule (centrex.api.openapi.DEEPER_RULES), checked against the database.
TARGET_PATTERN = r"^(voicemail(:[0-9]{2,6})?|\+?[0-9][0-9 .()-]{1,23})$"
Target = Annotated[
    str,
    StringConstraints(pattern=TARGET_PATTERN, max_length=24),
    Field(
        description="An extension of the line's customer, a phone number (national or E.164: "
        "one of the platform's stays on-net, others are calls of this line through the "
        "trunk), 'voicemail' (the line's own mailbox) or 'voicemail:<extension>' (the "
        "mailbox of another line of the customer). null: no forward."
    ),
]
NoAnswerSeconds = IntRange(5, 120, "Seconds the line rings before the no-answer forward.")


class LineFeaturesPatch(StrictInput):
    """Only the fields given change."""

    forward_unconditional: Target | None = None
    forward_busy: Target | None = None
    forward_no_answer: Target | None = None
    forward_no_answer_s: NoAnswerSeconds = omittable()
    forward_unregistered: Target | None = None
    dnd: Bool = omittable(
        "Do-not-disturb: calls get busy (or the busy forward); emergency calls out are never "
        "affected."
    )
    privacy: Bool = omittable(
        "Hide the line's number from those it calls (the carrier still gets it, with "
        "Privacy: id); per call: dial 3651 before the number."
    )


class LineFeaturesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_id: uuid.UUID
    forward_unconditional: str | None = None
    forward_busy: str | None = None
    forward_no_answer: str | None = None
    forward_no_answer_s: int = 20
    forward_unregistered: str | None = None
    dnd: bool = False
    privacy: bool = False
