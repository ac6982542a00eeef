"""The portability loop, inside the API process: sends new requests to the donor, applies its
answers (emailing the customer the date and slot at once), and activates each number when its
slot comes, with no one awake. Every step locks its row (SKIP LOCKED), so several API processes
share the work without doing anything twice. The clock is injected (tests, replays).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from centrex.config import Settings
from centrex.db.models import Customer
from centrex.db.session import SessionMaker
from centrex.portability import mailer, port_out
from centrex.portability import service as port_service
from centrex.portability.donor import Donor, DonorRequest, DonorUnavailable
from centrex.portability.models import PortIn, PortOut
from centrex.portability.rules import PortStatus

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class PortingLoop:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: SessionMaker,
        donor: Donor | None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.donor = donor
        self.clock = clock
        self.wake = asyncio.Event()  # set by the API when a request arrives: no wait for it

    async def run_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("portability pass failed; next one shortly")
            delay = self.settings.portability_interval_s
            next_slot = await self._next_slot_in()
            if next_slot is not None:
                delay = max(0.0, min(delay, next_slot))  # wake at the slot, not up to 1 s late
            try:
                await asyncio.wait_for(self.wake.wait(), delay)
            except TimeoutError:
                pass
            self.wake.clear()

    async def _next_slot_in(self) -> float | None:
        async with self.sessionmaker() as session:
            starts = [
                await session.scalar(
                    select(model.slot_start)
                    .where(model.status == PortStatus.accepted)
                    .order_by(model.slot_start)
                    .limit(1)
                )
                for model in (PortIn, PortOut)
            ]
        starts = [s for s in starts if s is not None]
        if not starts:
            return None
        return (min(starts) - self.clock()).total_seconds()

    async def tick(self) -> None:
        await self.activate_due()
        if self.donor is not None:
            await self.submit_new()
            await self.poll_answers()
        await self.activate_due()
        await self.notify_slots()

    async def submit_new(self) -> None:
        async with self.sessionmaker() as session:
            for port in await port_service.port_ins_due(session, PortStatus.requested):
                if port.donor_reference is not None:
                    continue
                request = DonorRequest(port.national, port.rio or "", port.holder_name,
                                       port.porting_date)  # fmt: skip
                try:
                    port.donor_reference = await self.donor.submit(request)
                except DonorUnavailable as exc:
                    log.warning("port-in %s not sent to the donor yet: %s", port.id, exc)
                    break
            await session.commit()

    async def poll_answers(self) -> None:
        async with self.sessionmaker() as session:
            ids = list(
                await session.scalars(
                    select(PortIn.id).where(
                        PortIn.status == PortStatus.requested, PortIn.donor_reference.is_not(None)
                    )
                )
            )
        for port_id in ids:  # one transaction each: a row is locked only while it is handled
            async with self.sessionmaker() as session:
                port = await session.scalar(
                    select(PortIn)
                    .where(PortIn.id == port_id, PortIn.status == PortStatus.requested)
                    .with_for_update(skip_locked=True)
                )
                if port is None:
                    continue
                try:
                    answer = await self.donor.status(port.donor_reference)
                except DonorUnavailable as exc:
                    log.warning("port-in %s: no donor answer yet: %s", port.id, exc)
                    return
                async with self.sessionmaker() as allocation_session:
                    changed = await port_service.apply_donor_answer(
                        session, port, answer, self.clock(), allocation_session=allocation_session
                    )
                if not changed:
                    continue
                log.info("port-in %s (%s): %s", port.id, port.national, port.status)
            await self.notify_slots()  # at once, not at the next pass

    async def withdraw(self, reference: str) -> None:
        """Tell the donor a request was cancelled; it learns it at the latest from the slot
        never being used, so a donor that does not answer now is only logged."""
        try:
            await self.donor.cancel(reference)
        except DonorUnavailable as exc:
            log.warning("cancellation not passed to the donor: %s", exc)

    async def notify_slots(self) -> None:
        """The customer is told the porting date and slot as soon as they are known; a mail
        server that refuses is tried again at the next pass (the row stays locked while its
        message is sent, so no other process sends it twice)."""
        while True:
            async with self.sessionmaker() as session:
                port = await session.scalar(
                    select(PortIn)
                    .join(Customer, Customer.id == PortIn.customer_id)
                    .where(
                        PortIn.status == PortStatus.accepted,  # a slot gone by is news no more
                        PortIn.notified_at.is_(None),
                        Customer.email.is_not(None),
                    )
                    .order_by(PortIn.created_at)
                    .limit(1)
                    .with_for_update(of=PortIn, skip_locked=True)
                )
                if port is None:
                    return
                customer = await session.get(Customer, port.customer_id)
                body = (
                    f"The number {port.national} will be ported to us on {port.porting_date}, "
                    f"between {port.slot_start.isoformat()} and {port.slot_end.isoformat()}.\n"
                    f"Your contract with your previous operator for this number ends that day.\n"
                    f"Port-in request: {port.id}\n"
                )
                subject = f"Porting of {port.national}: date and slot"
                try:
                    await mailer.send(self.settings, customer.email, subject, body)
                except OSError as exc:
                    log.warning("port-in %s: slot email not sent yet: %s", port.id, exc)
                    return
                port.notified_at = self.clock()
                await session.commit()

    async def activate_due(self) -> None:
        await self.port_in_due()
        await self.port_out_due()

    async def port_out_due(self) -> None:
        while True:
            async with self.sessionmaker() as session:
                now = self.clock()
                due = await session.scalar(
                    select(PortOut)
                    .where(PortOut.status == "accepted", PortOut.slot_start <= now)
                    .order_by(PortOut.slot_start)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if due is None:
                    return
                await port_out.execute(session, due, now)
                log.info("port-out %s: %s left for operator %s", due.id, due.national,
                         due.recipient_operator)  # fmt: skip

    async def port_in_due(self) -> None:
        while True:
            async with self.sessionmaker() as session:
                now = self.clock()
                due = await session.scalar(
                    select(PortIn)
                    .where(PortIn.status == PortStatus.accepted, PortIn.slot_start <= now)
                    .order_by(PortIn.slot_start)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if due is None:
                    return
                await port_service.activate(session, due, now)
                late = (now - due.slot_start).total_seconds()
                log.info("port-in %s: %s active, %.3f s after its slot began", due.id,
                         due.national, late)  # fmt: skip
