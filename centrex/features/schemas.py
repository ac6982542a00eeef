"""The API's shapes for a line's features."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from centrex.api.schemas import StrictInput

Target = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=24),
    Field(
        description="An extension of the line's customer, a phone number (national or E.164: "
        "one of the platform's stays on-net, others are calls of this line through the "
        "trunk), or 'voicemail'. null: no forward."
    ),
]
NoAnswerSeconds = Annotated[int, Field(ge=5, le=120, description="Rings before forwarding.")]


class LineFeaturesPatch(StrictInput):
    """Only the fields given change."""

    forward_unconditional: Target | None = None
    forward_busy: Target | None = None
    forward_no_answer: Target | None = None
    forward_no_answer_s: NoAnswerSeconds | None = None
    forward_unregistered: Target | None = None
    dnd: bool | None = Field(None, description="Do-not-disturb: calls get busy (or the busy "
                             "forward); emergency calls out are never affected.")  # fmt: skip
    privacy: bool | None = Field(
        None, description="Hide the line's number from those it calls (the carrier still gets "
        "it, with Privacy: id); per call: dial 3651 before the number."
    )  # fmt: skip


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
