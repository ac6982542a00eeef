"""The monthly invoice run as a step of the contracts' scheduler (centrex/contracts/scheduler.py):
once ``CENTREX_BILLING_RUN_DAY`` is set, every scheduler pass makes sure the run of the month
before has its step (``invoice_run:YYYY-MM``, one per month: the key is unique), due that day of
the month at ``CENTREX_BILLING_RUN_HOUR``, Paris time. The step runs :func:`run_month` (which
rates first, then invoices, archives and emails) with the scheduler's clock as the issue date.

Why the scheduler and not a timer of the host: the step is a row, so it is done once whichever
API process claims it, survives restarts (a pass finds it still pending), is visible with its
outcome, and a test drives it with an injected clock. The run is safe to repeat: each customer
is its own transaction, a re-run completes what is missing; so a crash mid-run leaves the step
pending and the next pass finishes the month. The run holds the scheduler of its process for
its length (minutes at the issue's scale, once a month); the API is not held (it is async)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.invoicing import run_month
from centrex.billing.rules.rating import BILLING_ZONE, billing_day, billing_month
from centrex.config import Settings
from centrex.contracts.models import ScheduledStep
from centrex.db.session import SessionMaker
from centrex.services.errors import ServiceError

KIND = "invoice_run"
NAMESPACE = uuid.UUID("5e1b0c36-8d0e-4c1e-9a57-6a1d5b7c0f17")  # subject ids of the runs


def previous_month(period: date) -> date:
    return (period - timedelta(days=1)).replace(day=1)


def run_due_at(period: date, day: int, hour: int) -> datetime:
    """When the run of usage month ``period`` is due: ``day`` of the month after, ``hour``
    o'clock in Paris (an aware instant)."""
    following = (period.replace(day=28) + timedelta(days=4)).replace(day=day)
    return datetime.combine(following, time(hour), BILLING_ZONE)


def step_key(period: date) -> str:
    return f"{KIND}:{period:%Y-%m}"


async def schedule_month_run(session: AsyncSession, now: datetime, settings: Settings) -> None:
    """The step of the run of last month (Paris), if the run is scheduled; a no-op when the
    step exists (done or not)."""
    if settings.billing_run_day is None:
        return
    period = previous_month(billing_month(now))
    key = step_key(period)
    due = run_due_at(period, settings.billing_run_day, settings.billing_run_hour)
    step = dict(id=uuid.uuid4(), key=key, kind=KIND, subject_id=uuid.uuid5(NAMESPACE, key),
                due_at=due, status="pending")  # fmt: skip
    await session.execute(
        insert(ScheduledStep)
        .values(**step)
        .on_conflict_do_nothing(index_elements=["key"])
        .execution_options(audited="a schedule entry, not a business object")
    )


async def run_step(sessions: SessionMaker, step: ScheduledStep, now: datetime,
                   settings: Settings) -> str:  # fmt: skip
    """The month's run, issued on ``now``'s Paris day; what it did, as the step's outcome."""
    period = date.fromisoformat(step.key.removeprefix(f"{KIND}:") + "-01")
    try:
        result = await run_month(sessions, period, billing_day(now), settings)
    except ServiceError as exc:  # e.g. documents issued on a later day: left to the operator
        return f"not run: {exc.message}"
    return (f"{period:%Y-%m}: {len(result.issued)} issued, {result.not_issued} already there, "
            f"{len(result.unpriced)} held back, {result.documents} documents, "
            f"{result.emailed} emailed")  # fmt: skip
