"""The one scheduler of the contracts' deadlines (renewals, terminations, non-payment, devices'
condition checks, contract changes; and the monthly invoice run when it is scheduled:
centrex/billing/schedule.py): steps
are rows of ``scheduled_steps``. Each is claimed ``FOR UPDATE SKIP LOCKED`` and marked done in
the same transaction as its effect, so a process killed at any point leaves every step either done
once or pending (done by the next run), and several processes share the work.

Runs inside the API process (``ContractScheduler.run_forever``) or on its own:
``python -m centrex.contracts.scheduler [--now ISO]`` does every step due and exits (the
injected clock: replays, tests)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from centrex.billing import schedule as billing_schedule
from centrex.config import Settings
from centrex.contracts import changes, equipment, nonpayment, service
from centrex.contracts.models import ScheduledStep
from centrex.db.session import SessionMaker, make_engine, make_sessionmaker

log = logging.getLogger(__name__)
RETRY_AFTER = timedelta(minutes=5)  # a step whose email could not go out


def utcnow() -> datetime:
    return datetime.now(UTC)


async def run_one(sessions: SessionMaker, settings: Settings, now: datetime) -> int | None:
    """Do the oldest step due at ``now`` that no one else holds: 1 when done, 0 when put off
    (its email could not go out), None when no step is left."""
    async with sessions() as session:
        step = await session.scalar(
            select(ScheduledStep)
            .where(ScheduledStep.status == "pending", ScheduledStep.due_at <= now)
            .order_by(ScheduledStep.due_at, ScheduledStep.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if step is None:
            return None
        step_id, kind, subject = step.id, step.kind, step.subject_id
        try:
            outcome = await _apply(session, settings, step, now, sessions)
        except OSError as exc:  # a mail server down: this step later, the others now
            await session.rollback()
            log.warning("step %s %s: %s; tried again in %s", kind, subject, exc, RETRY_AFTER)
            await session.execute(
                update(ScheduledStep)
                .where(ScheduledStep.id == step_id, ScheduledStep.status == "pending")
                .values(due_at=now + RETRY_AFTER)
                .execution_options(audited="a schedule entry, not a business object")
            )
            await session.commit()
            return 0
        if outcome is None:
            return None
        step.status = "done"
        step.done_at = now
        step.outcome = outcome
        await session.commit()  # the effect and "done" together, or neither
        log.info("step %s %s: %s", kind, subject, outcome)
        return 1


async def _apply(
    session, settings: Settings, step: ScheduledStep, now: datetime, sessions: SessionMaker
) -> str | None:
    if step.kind == "renew":
        return await service.renew(session, step, now)
    if step.kind == "terminate":
        return await service.terminate(session, step, now, settings.number_quarantine_s)
    if step.kind == "unreturned":
        return await equipment.bill_unreturned(session, step, now)
    if step.kind == "condition_lapsed":
        return await equipment.condition_lapsed(session, step, now)
    if step.kind == "change_notify":
        return await changes.send_notice(session, step, now, settings)
    if step.kind == "change_effective":
        return await changes.take_effect(session, step, now)
    if step.kind == "reminder":
        return await nonpayment.remind(session, step, now, settings)
    if step.kind == "suspend":
        return await nonpayment.suspend(session, step, now, settings)
    if step.kind == "nonpayment_end":
        return await nonpayment.end_if_persisting(session, step, now, settings)
    if step.kind == billing_schedule.KIND:  # the month's invoices: in their own transactions
        return await billing_schedule.run_step(sessions, step, now, settings)
    # A step of a kind this version does not know: left for one that does.
    log.error("scheduled step %s: unknown kind %r", step.id, step.kind)
    return None


async def run_due(sessions: SessionMaker, settings: Settings, now: datetime) -> int:
    """Every step due at ``now`` (including those a step schedules for on or before it: a
    contract renewed twice in a replay). Returns how many were done."""
    async with sessions() as session:  # invoices fallen past due get their reminder step
        await nonpayment.schedule_reminders(session, now)
        await billing_schedule.schedule_month_run(session, now, settings)  # if it is scheduled
        await session.commit()
    done = 0
    while (result := await run_one(sessions, settings, now)) is not None:
        done += result
    return done


class ContractScheduler:
    def __init__(
        self, settings: Settings, sessions: SessionMaker, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings, self.sessions, self.clock = settings, sessions, clock

    async def run_forever(self) -> None:
        while True:
            try:
                await run_due(self.sessions, self.settings, self.clock())
            except Exception:
                log.exception("contracts' scheduler pass failed; next one shortly")
            await asyncio.sleep(self.settings.contracts_interval_s)  # a period, not a sync


async def _main(now: datetime) -> int:
    settings = Settings()
    engine = make_engine(settings.database_url_required)
    try:
        return await run_due(make_sessionmaker(engine), settings, now)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--now",
        type=datetime.fromisoformat,
        default=None,
        help="act as if it were this instant (ISO 8601 with its offset)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    done = asyncio.run(_main(args.now or utcnow()))
    print(f"{done} steps done")


if __name__ == "__main__":
    main()
