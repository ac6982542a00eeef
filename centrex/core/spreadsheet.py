"""Cells of an export a spreadsheet opens: data, never a formula (CSV injection).

A caller controls text that reaches the CDR export (a caller ID from the network, what a device
dialled); a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (tab and CR
too, for some) as a formula. Such a cell gets a leading ``'`` (OWASP's advice): shown as text.
A number (``+33123456789``, ``42``) stays as it is: it is data, and what the operator's
tools expect.
"""

from __future__ import annotations

import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"\+?[0-9]+")


def safe_cell(value: str) -> str:
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
