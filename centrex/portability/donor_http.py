"""The donor adapter over HTTP+JSON: what ``centrex.sandbox.donor_simulator`` serves, and what a
real inter-operator gateway would be wrapped into.

    POST   /port-requests            {national, rio, holder_name, porting_date} -> 202 {reference}
    GET    /port-requests/{ref}      -> {answer, porting_date, slot_start, slot_end, detail}
    DELETE /port-requests/{ref}      -> 204
"""

from __future__ import annotations

from datetime import date, datetime
from urllib.parse import quote

import httpx

from centrex.portability.donor import DonorAnswer, DonorRequest, DonorStatus, DonorUnavailable


class HttpDonor:
    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def _call(self, method: str, path: str, **kw: object) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise DonorUnavailable(f"donor unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise DonorUnavailable(f"donor answered {response.status_code}")
        return response

    async def submit(self, request: DonorRequest) -> str:
        body = {
            "national": request.national,
            "rio": request.rio,
            "holder_name": request.holder_name,
            "porting_date": request.porting_date.isoformat(),
        }
        response = await self._call("POST", "/port-requests", json=body)
        reference = response.json().get("reference")
        if not isinstance(reference, str) or not 0 < len(reference) <= 64:
            raise DonorUnavailable("donor gave no usable reference")
        return reference

    async def status(self, reference: str) -> DonorStatus:
        data = (await self._call("GET", f"/port-requests/{quote(reference, safe='')}")).json()
        try:
            answer = DonorAnswer(data["answer"])
            day = data.get("porting_date")
            start, end = data.get("slot_start"), data.get("slot_end")
            status = DonorStatus(
                answer,
                date.fromisoformat(day) if day else None,
                datetime.fromisoformat(start) if start else None,
                datetime.fromisoformat(end) if end else None,
                str(data.get("detail") or "")[:500] or None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise DonorUnavailable(f"donor answer unreadable: {exc}") from exc
        if answer is DonorAnswer.accepted and (
            status.slot_start is None or status.slot_end is None
        ):
            raise DonorUnavailable("donor accepted without a slot")
        if status.slot_start is not None and status.slot_start.tzinfo is None:
            raise DonorUnavailable("donor slot without a time zone")
        return status

    async def cancel(self, reference: str) -> None:
        await self._call("DELETE", f"/port-requests/{quote(reference, safe='')}")

    async def aclose(self) -> None:
        await self._client.aclose()
