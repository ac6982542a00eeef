"""Short extensions inside a customer (issue 15): what one may be, and which is next free.

An extension is 2 to 6 digits, first digit 2-9: every French emergency and operator short
number starts with 1 (15, 17, 18, 112, 114, 115, 119, 116xxx, 118xxx, 10xx), national numbers
with 0, so none is ever shadowed. Four digits starting with 3 stay the public network's
(3949, 3651 the caller-ID privacy prefix, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_EXTENSION = re.compile(r"[2-9][0-9]{1,5}")
_PUBLIC_SHORT = re.compile(r"3[0-9]{3}")
FIRST_ASSIGNED = 200  # lines without a chosen extension get the lowest free from here


def is_extension(text: str) -> bool:
    return bool(_EXTENSION.fullmatch(text)) and not _PUBLIC_SHORT.fullmatch(text)


def extension_error(text: str) -> str | None:
    """Why ``text`` cannot be an extension, or None."""
    if not _EXTENSION.fullmatch(text):
        return "2 to 6 digits, the first 2-9 (1 and 0 begin public short and national numbers)"
    if _PUBLIC_SHORT.fullmatch(text):
        return "4 digits starting with 3 are public short numbers (3949, 3651 ...)"
    return None


def next_free(taken: Iterable[str]) -> str:
    """The lowest free extension from FIRST_ASSIGNED up (3-digit ones first, as people
    expect), skipping the reserved ones."""
    used = set(taken)
    for candidate in range(FIRST_ASSIGNED, 1_000_000):
        text = str(candidate)
        if text not in used and is_extension(text):
            return text
    raise ValueError("no free extension left")  # a million extensions in one customer
