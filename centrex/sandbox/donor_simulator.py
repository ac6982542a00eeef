"""A donor operator for the tests and the sandbox: the HTTP+JSON interface
``centrex.portability.donor_http`` speaks, with answers fixed by documented rules.

    python -m centrex.sandbox.donor_simulator --port 8099 [--delay-s 1] [--slot-in-s S]

Rules (docs/portability.md), by the number's last two digits, answered ``--delay-s`` seconds
after the request (``pending`` until then):

- ``01``: inactive at the donor;  ``02``: the requester is not the holder;
- ``03``: a port request is already in progress at the donor;  ``04``: refused (other reason);
- anything else: accepted; and a second request for a number the donor has a request for in
  progress answers ``in_progress``.

An accepted request gets the porting date asked, slot 09:00-12:00 Paris time; with
``--slot-in-s S`` the slot starts S seconds after the request instead (the sandbox's fast
clock, so a port can be watched from end to end).
"""

from __future__ import annotations

import argparse
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import uvicorn
from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, Field

READY = "donor simulator ready"
PARIS = ZoneInfo("Europe/Paris")
ANSWERS_BY_SUFFIX = {"01": "inactive", "02": "not_holder", "03": "in_progress", "04": "refused"}


class PortRequestIn(BaseModel):
    national: str = Field(pattern=r"^0[0-9]{9}$")
    rio: str = Field(max_length=32)
    holder_name: str = Field(max_length=200)
    porting_date: date


@dataclass
class Held:
    national: str
    answer: str
    received: float
    porting_date: date
    cancelled: bool = False


def make_app(delay_s: float, slot_in_s: float | None) -> FastAPI:
    app = FastAPI(title="donor operator simulator")
    requests: dict[str, Held] = {}

    @app.post("/port-requests", status_code=202)
    async def submit(body: PortRequestIn) -> dict[str, str]:
        busy = any(
            h.national == body.national and not h.cancelled and h.answer == "accepted"
            for h in requests.values()
        )
        answer = "in_progress" if busy else ANSWERS_BY_SUFFIX.get(body.national[-2:], "accepted")
        reference = uuid.uuid4().hex
        requests[reference] = Held(body.national, answer, time.time(), body.porting_date)
        return {"reference": reference}

    @app.get("/port-requests/{reference}")
    async def status(reference: str) -> dict[str, str | None]:
        held = requests.get(reference)
        if held is None:
            raise HTTPException(404, "no such request")
        if held.cancelled:
            return {"answer": "refused", "detail": "cancelled"}
        if time.time() < held.received + delay_s:
            return {"answer": "pending"}
        if held.answer != "accepted":
            return {"answer": held.answer, "detail": f"donor rule for ...{held.national[-2:]}"}
        if slot_in_s is not None:
            start = datetime.fromtimestamp(held.received + slot_in_s, UTC)
            end = start + timedelta(hours=3)
        else:
            start = datetime.combine(held.porting_date, datetime.min.time(), PARIS).replace(hour=9)
            end = start.replace(hour=12)
        return {
            "answer": "accepted",
            "porting_date": start.astimezone(PARIS).date().isoformat(),
            "slot_start": start.isoformat(),
            "slot_end": end.isoformat(),
        }

    @app.delete("/port-requests/{reference}", status_code=204)
    async def cancel(reference: str) -> Response:
        held = requests.get(reference)
        if held is None:
            raise HTTPException(404, "no such request")
        held.cancelled = True
        return Response(status_code=204)

    @app.on_event("startup")
    async def ready() -> None:
        print(READY, flush=True)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-s", type=float, default=1.0)
    parser.add_argument("--slot-in-s", type=float, default=None)
    args = parser.parse_args(argv)
    app = make_app(args.delay_s, args.slot_in_s)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
