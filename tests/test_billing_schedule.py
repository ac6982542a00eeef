"""Issue 17 (billing), runs without an HTTP request: ``centrex billing rate`` and
``centrex billing invoice-run`` as the operator types them (a child process on the database),
and the monthly run as a step of the contracts' scheduler, driven by an injected clock: not
before its hour, once at it, never twice. A database of its own: its invoices are dated in 2026
whatever the other modules issued."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import select

from centrex.billing import service
from centrex.billing.models import Invoice, Payment
from centrex.billing.schedule import run_due_at
from centrex.billing.schemas import PlanIn, SubscriptionIn
from centrex.config import Settings
from centrex.contracts.models import ScheduledStep
from centrex.contracts.scheduler import run_due
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from centrex.sandbox.postgres import scratch_database

pytestmark = pytest.mark.integration

PLAN = PlanIn(
    code="sched", name="Scheduled", effective_from=date(2026, 1, 1), prices_include_vat=False,
    line_fee=Decimal("10"), tariff=[{"prefix": "33", "per_minute": "0.06"}],
)  # fmt: skip


async def cli(url: str, *args: str) -> tuple[int, str]:
    """The command's exit status, and what it printed: its answer (stdout), else its error."""
    env = {**os.environ, "CENTREX_DATABASE_URL": url, "PYTHONPATH": os.getcwd()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "centrex", "billing", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, (out or err).decode()


def test_the_run_is_due_on_its_day_and_hour_paris_time():
    assert run_due_at(date(2026, 11, 1), 1, 6) == datetime(2026, 12, 1, 5, tzinfo=UTC)
    assert run_due_at(date(2026, 6, 1), 3, 6) == datetime(2026, 7, 3, 4, tzinfo=UTC)  # summer


async def test_cli_runs_and_the_scheduled_monthly_run(tmp_path):
    async with scratch_database(tmp_path, prefix="centrex_sched") as db:
        conn = await asyncpg.connect(asyncpg_dsn(db.url))
        customer, line = uuid.uuid4(), uuid.uuid4()
        await conn.execute("INSERT INTO customers (id, name) VALUES ($1, 'Scheduled')", customer)
        await conn.execute(
            "INSERT INTO lines (id, customer_id, label, sip_username, sip_ha1, sip_realm, "
            "sync_state, created_at) VALUES ($1, $2, 'desk', 'sched1', $3, 'r', 'pending', $4)",
            line, customer, "0" * 32, datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip
        # One answered call out in October: 90 s at 0.06 €/min, 60/60 -> 2 min, 12 cents.
        at = datetime(2026, 10, 5, 9, tzinfo=UTC)
        await conn.execute(
            "INSERT INTO cdrs (id, node, linkedid, customer_id, caller_line_id, direction, "
            "caller, callee, start_at, answer_at, end_at, duration_ms, billed_s, disposition, "
            "sip_code) VALUES ($1, 'n', 'sched-1', $2, $3, 'outbound', '+33200000000', "
            "'+33145678901', $4, $4, $4, 90000, 90, 'answered', 200)",
            uuid.uuid4(), customer, line, at,
        )  # fmt: skip
        await conn.close()
        engine = make_engine(db.url)
        sessions = make_sessionmaker(engine)
        try:
            async with sessions() as session:
                await service.create_plan_version(session, PLAN, today=date(2026, 1, 1))
                sub = SubscriptionIn(customer_id=customer, plan_code="sched",
                                     starts_on=date(2026, 10, 1))  # fmt: skip
                await service.subscribe(session, sub)
                await session.commit()

            async def invoices() -> list[Invoice]:
                async with sessions() as session:
                    return list(await session.scalars(select(Invoice).order_by(Invoice.number)))

            assert await cli(db.url, "rate") == (0, "rated 1, unpriced 0\n")
            assert (await cli(db.url, "rate"))[1] == "rated 0, unpriced 0\n"  # once
            code, out = await cli(db.url, "invoice-run", "--month", "2026-10",
                                  "--issued-on", "2026-11-02")  # fmt: skip
            assert code == 0 and out.startswith("issued 1, already there 0"), out
            (october,) = await invoices()
            assert october.issued_on == date(2026, 11, 2)
            assert [x.amount_cents for x in october.lines if x.kind == "usage"] == [12]
            code, out = await cli(db.url, "invoice-run", "--month", "2026-10",
                                  "--issued-on", "2026-11-02")  # fmt: skip
            assert code == 0 and out.startswith("issued 0, already there 1"), out
            code, out = await cli(db.url, "invoice-run", "--month", "2026-13")
            assert code == 2 and "month must be in 1..12" in out, out
            code, out = await cli(db.url, "invoice-run", "--month", "2026-12")  # not ended yet
            assert code == 1 and "month: a month is invoiced once it has ended" in out, out

            async with sessions() as session:  # paid: no late-payment charge in December
                session.add(Payment(invoice_id=october.id, customer_id=customer, kind="payment",
                                    method="sepa", amount_cents=october.ttc_cents,
                                    received_on=date(2026, 11, 12)))  # fmt: skip
                await session.commit()

            # The scheduler, unscheduled: no step. Scheduled on the 1st at 06:00 Paris: the
            # step for November exists from any pass, runs at its hour, once.
            off = Settings(_env_file=None, database_url=db.url)
            await run_due(sessions, off, datetime(2026, 12, 1, 8, tzinfo=UTC))
            on = off.model_copy(update={"billing_run_day": 1, "billing_run_hour": 6})
            await run_due(sessions, on, datetime(2026, 12, 1, 4, 59, tzinfo=UTC))  # 05:59 Paris
            assert len(await invoices()) == 1
            await run_due(sessions, on, datetime(2026, 12, 1, 5, 0, tzinfo=UTC))  # 06:00 Paris
            november = (await invoices())[1]
            assert (november.period, november.issued_on) == (date(2026, 11, 1), date(2026, 12, 1))
            await run_due(sessions, on, datetime(2026, 12, 2, 5, 0, tzinfo=UTC))
            assert len(await invoices()) == 2
            async with sessions() as session:
                steps = list(await session.scalars(
                    select(ScheduledStep).where(ScheduledStep.kind == "invoice_run")))  # fmt: skip
            assert [(s.key, s.status) for s in steps] == [("invoice_run:2026-11", "done")]
            assert steps[0].outcome.startswith("2026-11: 1 issued"), steps[0].outcome
        finally:
            await engine.dispose()
