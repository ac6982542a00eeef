"""Constrained input types shared by the API's bodies and parameters: the rules a client can
check are in the OpenAPI document, and the server checks exactly those.

- Numbers and booleans are JSON's own: ``"2"`` for an integer, ``1`` for a boolean, ``true``
  for an integer are refused (pydantic's lax mode would take them, the schema does not). A bulk
  import's CSV cells are text by nature: validated with ``context={"text_cells": True}``
  (centrex.core.bulk_rows), they are read as pydantic always did.
- Text refuses the NUL character (PostgreSQL cannot store it) and, where it is stripped, text
  that is only whitespace; both are patterns of the schema.
- A field that may be omitted but not set to null (:func:`omittable`) has no null in its schema.
- Date-times are ISO 8601 text (pydantic would also read a number as a Unix time).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StringConstraints, ValidationInfo
from pydantic_core import PydanticCustomError

#: Whitespace as stripped (Unicode's White_Space, what pydantic's strip removes), spelt out:
#: each regular expression engine has its own ``\s`` (Python's, the clients', PostgreSQL's).
WHITESPACE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: No NUL anywhere.
NO_NUL = r"^[^\x00]*$"
#: No NUL, and something other than whitespace (what is left once stripped).
NOT_BLANK = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"
#: Something, an @, something with a dot: no whitespace, no NUL.
EMAIL = rf"^[^@\x00{WHITESPACE}]+@[^@\x00{WHITESPACE}]+\.[^@\x00{WHITESPACE}]+$"
#: A phone number as written: digits, an optional leading +, the usual separators.
NUMBER_TEXT = r"^\+?[0-9][0-9 .()-]{0,30}$"
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def text_cells(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("text_cells"))


def _json_int(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, bool) or (isinstance(value, str) and not text_cells(info)):
        # pydantic's own type for it, as its strict mode would name it
        raise PydanticCustomError("int_type", "Input should be a JSON integer, not text")
    return value


def _json_bool(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, bool) and not (isinstance(value, str) and text_cells(info)):
        raise PydanticCustomError("bool_type", "Input should be true or false")
    return value


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be an ISO 8601 date-time (2026-12-03T07:00:00Z)")
    return value


Int = Annotated[int, BeforeValidator(_json_int)]


def IntRange(ge: int, le: int, description: str | None = None) -> Any:
    """An Int in [ge, le] (a Field on Int itself would not reach the schema's bounds)."""
    return Annotated[int, Field(ge=ge, le=le, description=description), BeforeValidator(_json_int)]


Bool = Annotated[bool, BeforeValidator(_json_bool)]
DateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]


def _at_most(max_length: int) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > max_length:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": max_length},
            )
        return value

    return BeforeValidator(check)


def Text(max_length: int, *, min_length: int = 1, strip: bool = True) -> Any:
    """A str of ``min_length`` to ``max_length`` characters. Stripped, when ``strip``: then
    ``min_length`` counts what is left (and the pattern wants more than whitespace), but
    ``max_length`` what was sent, as the schema's maxLength does."""
    return Annotated[
        str,
        StringConstraints(
            strip_whitespace=strip,
            min_length=min_length,
            max_length=max_length,
            pattern=NOT_BLANK if strip and min_length else NO_NUL,
        ),
        _at_most(max_length),  # last: it runs first, on the text as sent
    ]


NumberText = Annotated[
    str,
    StringConstraints(pattern=NUMBER_TEXT, max_length=32),
    Field(description="A French number: national (01 42 34 56 78) or E.164 (+33142345678)."),
]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def omittable(description: str | None = None, **constraints: Any) -> Any:
    """A field that may be left out (it then changes nothing) but is never null."""
    return Field(None, description=description, json_schema_extra=_no_default, **constraints)
