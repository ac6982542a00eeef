"""The donor operator's side of a port-in, as the core sees it: an adapter with four verbs.

Nothing in the core knows who the donor is or how it is reached: the API process builds an
adapter from configuration (``donor_http.HttpDonor`` when ``CENTREX_DONOR_URL`` is set).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol


class DonorUnavailable(RuntimeError):
    """The donor did not answer (or answered nonsense): try again at the next pass."""


class DonorAnswer(enum.StrEnum):
    pending = "pending"  # no answer yet
    accepted = "accepted"  # porting date and slot fixed
    inactive = "inactive"  # the number is not active at the donor
    not_holder = "not_holder"  # the requester is not the line's holder
    in_progress = "in_progress"  # another port request for the number at the donor
    refused = "refused"  # any other reason the donor gives


@dataclass(frozen=True)
class DonorRequest:
    national: str
    rio: str
    holder_name: str
    porting_date: date


@dataclass(frozen=True)
class DonorStatus:
    answer: DonorAnswer
    porting_date: date | None = None
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    detail: str | None = None


class Donor(Protocol):
    async def submit(self, request: DonorRequest) -> str:
        """Send the request; the donor's reference for it."""

    async def status(self, reference: str) -> DonorStatus:
        """The donor's answer so far."""

    async def cancel(self, reference: str) -> None:
        """Withdraw the request (before the slot)."""

    async def aclose(self) -> None: ...
