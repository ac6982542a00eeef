"""Issue 18, contracts on real PostgreSQL (a database of this module's own: its clock is
injected, so its dates are years ahead of the others'): acceptance, tacit renewal, notice in
time and late, early termination in month 20 with its fee, lines ended and numbers quarantined
at the effective date by the scheduler, and the scheduler killed with SIGKILL mid-run."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select

from centrex.billing.models import Invoice, Subscription
from centrex.config import Settings
from centrex.contracts import equipment, gdpr, rules, service
from centrex.contracts.models import ContractCharge, ContractEvent, ScheduledStep
from centrex.contracts.scheduler import run_due
from centrex.contracts.schemas import (
    ContractIn,
    EarlyTerminationIn,
    EquipmentIn,
    NoticeIn,
    ReturnIn,
)
from centrex.db.models import Line, NumberStatus, PhoneNumber, PolicyRestriction
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from centrex.portability.rules import own_rio_valid
from centrex.sandbox.postgres import scratch_database
from centrex.services.errors import ServiceError

pytestmark = pytest.mark.integration

SETTINGS = Settings(_env_file=None)
ACCEPTED = datetime(2026, 1, 15, 10, 30, tzinfo=rules.PARIS)
ROOT = Path(__file__).resolve().parent.parent


def midnight(day: date) -> datetime:
    return rules.paris_midnight(day)


@pytest.fixture(scope="module")
async def db(tmp_path_factory):
    async with scratch_database(
        tmp_path_factory.mktemp("contracts"), prefix="centrex_contracts"
    ) as db:
        engine = make_engine(db.url)
        try:
            yield db, make_sessionmaker(engine)
        finally:
            await engine.dispose()


async def new_customer(db, *, lines: int = 0) -> tuple[uuid.UUID, list[uuid.UUID], list[str]]:
    """A customer with ``lines`` lines, each with its main number assigned."""
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        customer = uuid.uuid4()
        await conn.execute("INSERT INTO customers (id, name) VALUES ($1, 'Contract Co')", customer)
        line_ids, numbers = [], []
        base = customer.int % 10**7 * 10  # this customer's numbers: +331 then 8 digits
        block = uuid.uuid4()
        if lines:
            await conn.execute(
                "INSERT INTO number_blocks (id, first_e164, last_e164, size, kind, zone) "
                "VALUES ($1, $2, $3, $4, 'geographic', '1')",
                block,
                f"+331{base:08d}",
                f"+331{base + lines - 1:08d}",
                lines,
            )
        for i in range(lines):
            line, e164 = uuid.uuid4(), f"+331{base + i:08d}"
            await conn.execute(
                "INSERT INTO lines (id, customer_id, label, sip_username, sip_ha1, sip_realm, "
                "sync_state) VALUES ($1, $2, 'desk', $3, $4, 'r', 'pending')",
                line,
                customer,
                f"c{line.hex[:12]}",
                "0" * 32,
            )
            await conn.execute(
                "INSERT INTO numbers (e164, national, block_id, kind, zone, status, customer_id, "
                "assigned_at, line_id) VALUES ($1, $2, $3, 'geographic', '1', 'assigned', $4, "
                "$5, NULL)",
                e164,
                "0" + e164[3:],
                block,
                customer,
                ACCEPTED,
            )
            await conn.execute("UPDATE lines SET main_number = $1 WHERE id = $2", e164, line)
            line_ids.append(line)
            numbers.append(e164)
        return customer, line_ids, numbers
    finally:
        await conn.close()


async def events_of(sessions, contract_id) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(ContractEvent.kind)
            .where(ContractEvent.contract_id == contract_id)
            .order_by(ContractEvent.at, ContractEvent.kind)
        )
        return list(rows)


async def test_renewed_tacitly_then_a_late_notice_refused_and_a_timely_one_accepted(db):
    db, sessions = db
    customer, _, _ = await new_customer(db)
    async with sessions() as session:
        contract = await service.create(
            session,
            ContractIn(
                customer_id=customer,
                evidence="signed order BC-2026-001",
                accepted_at=ACCEPTED,
                monthly_fee_cents=4999,
            ),
            now=ACCEPTED,
        )
    assert (contract.starts_on, contract.term_ends_on) == (date(2026, 1, 15), date(2029, 1, 15))

    # The day before the term nothing is due; at the term the contract renews by 12 months.
    assert (
        await run_due(sessions, SETTINGS, midnight(date(2029, 1, 15)) - timedelta(seconds=1)) == 0
    )
    assert await run_due(sessions, SETTINGS, midnight(date(2029, 1, 15))) == 1
    assert await run_due(sessions, SETTINGS, midnight(date(2029, 1, 15))) == 0  # done once
    async with sessions() as session:
        renewed = await service.get(session, contract.id)
        assert (renewed.status, renewed.renewals) == ("active", 1)
        assert renewed.term_ends_on == date(2030, 1, 15)

    # Two months before the term: refused, naming the day the letter needed to arrive by.
    late = datetime(2029, 11, 15, 9, tzinfo=rules.PARIS)
    async with sessions() as session:
        with pytest.raises(ServiceError) as refused:
            await service.give_notice(
                session, contract.id, NoticeIn(received_on=date(2029, 11, 15)), now=late
            )
    assert refused.value.field == "received_on"
    assert "2029-10-15" in refused.value.message and "2030-01-15" in refused.value.message
    async with sessions() as session:
        assert (await service.get(session, contract.id)).status == "active"  # nothing changed

    # 3 months and 1 day before the term: accepted; the contract ends at the term.
    in_time = datetime(2029, 10, 14, 9, tzinfo=rules.PARIS)
    async with sessions() as session:
        ending = await service.give_notice(
            session, contract.id, NoticeIn(received_on=date(2029, 10, 14)), now=in_time
        )
        assert (ending.status, ending.ends_on) == ("ending", date(2030, 1, 15))
    assert await run_due(sessions, SETTINGS, midnight(date(2030, 1, 15))) == 2  # renew: no-op
    async with sessions() as session:
        ended = await service.get(session, contract.id)
        assert (ended.status, ended.renewals) == ("terminated", 1)
        outcomes = set(
            await session.scalars(
                select(ScheduledStep.outcome).where(ScheduledStep.subject_id == contract.id)
            )
        )
    # Due at the same instant as the termination, before or after it: never a renewal.
    assert outcomes & {"not renewed: the contract is ending",
                       "not renewed: the contract is terminated"}  # fmt: skip
    assert "renewed until 2031-01-15" not in outcomes
    assert await events_of(sessions, contract.id) == ["accepted", "renewed", "notice", "terminated"]


async def test_early_termination_in_month_20_fee_lines_ended_numbers_quarantined(db):
    db, sessions = db
    customer, lines, numbers = await new_customer(db, lines=2)
    async with sessions() as session:
        session.add(
            Subscription(
                customer_id=customer,
                plan_code="any",
                starts_on=date(2026, 1, 15),
                payment_method="sepa",
            )
        )
        await session.commit()
        contract = await service.create(
            session,
            ContractIn(
                customer_id=customer,
                evidence="first service request #42",
                accepted_at=ACCEPTED,
                monthly_fee_cents=7500,
            ),
            now=ACCEPTED,
        )
    asked = datetime(2027, 8, 20, 15, tzinfo=rules.PARIS)  # month 20: 15 Aug - 14 Sep 2027
    async with sessions() as session:
        with pytest.raises(ServiceError) as past:
            await service.terminate_early(
                session,
                contract.id,
                EarlyTerminationIn(effective_on=date(2027, 8, 19), reason="moving"),
                now=asked,
            )
        assert past.value.field == "effective_on"
        await service.terminate_early(
            session,
            contract.id,
            EarlyTerminationIn(effective_on=date(2027, 9, 1), reason="moving out"),
            now=asked,
        )
        (charge,) = await session.scalars(
            select(ContractCharge).where(ContractCharge.contract_id == contract.id)
        )
        # Months 21..36 (15 Sep 2027 - 14 Jan 2029) are left: 16 monthly fees.
        assert (charge.quantity, charge.unit_cents, charge.amount_cents) == (16, 7500, 120000)

    # Nothing before the effective date; at its first instant, lines and numbers go.
    assert await run_due(sessions, SETTINGS, midnight(date(2027, 9, 1)) - timedelta(seconds=1)) == 0
    effective = midnight(date(2027, 9, 1))
    assert await run_due(sessions, SETTINGS, effective) == 1
    async with sessions() as session:
        assert (await service.get(session, contract.id)).status == "terminated"
        for line_id in lines:
            line = await session.get(Line, line_id)
            assert line.deleted_at == effective and line.main_number is None
        for e164 in numbers:
            number = await session.get(PhoneNumber, e164)
            assert (number.status, number.customer_id) == (NumberStatus.free, None)
            assert number.released_at == effective
            assert number.quarantine_until == effective + timedelta(
                seconds=SETTINGS.number_quarantine_s
            )
            # Its RIO still ports it out for 40 days (centrex/portability).
            assert own_rio_valid(False, number.released_at, effective + timedelta(days=39))
            assert not own_rio_valid(False, number.released_at, effective + timedelta(days=40))
        sub = await session.scalar(select(Subscription).where(Subscription.customer_id == customer))
        assert sub.ends_on == date(2027, 8, 31)  # billing stops at the last day of service
    assert await events_of(sessions, contract.id) == ["accepted", "early_termination", "terminated"]


async def test_input_refused_naming_the_field(db):
    db, sessions = db
    customer, _, _ = await new_customer(db)
    async with sessions() as session:
        contract = await service.create(
            session,
            ContractIn(
                customer_id=customer, evidence="order", accepted_at=ACCEPTED, monthly_fee_cents=100
            ),
            now=ACCEPTED,
        )
        contract_id = contract.id
        with pytest.raises(ServiceError) as second:
            await service.create(
                session,
                ContractIn(customer_id=customer, evidence="again", monthly_fee_cents=1),
                now=ACCEPTED,
            )
        assert second.value.field == "customer_id"
        with pytest.raises(ServiceError) as future:
            await service.create(session, ContractIn(
                customer_id=customer, evidence="x", accepted_at=ACCEPTED + timedelta(days=1),
                monthly_fee_cents=1), now=ACCEPTED)  # fmt: skip
        assert future.value.field == "accepted_at"
    async with sessions() as session:
        with pytest.raises(ServiceError) as future:
            await service.give_notice(
                session, contract_id, NoticeIn(received_on=date(2026, 2, 1)), now=ACCEPTED
            )
        assert future.value.field == "received_on"
        with pytest.raises(ServiceError) as beyond:
            await service.terminate_early(
                session,
                contract_id,
                EarlyTerminationIn(effective_on=date(2029, 1, 15), reason="x"),
                now=ACCEPTED,
            )
        assert beyond.value.field == "effective_on"
        assert (await service.get(session, contract_id)).status == "active"


async def test_provided_phone_refunded_after_2_5_years_and_one_not_returned_billed(db):
    db, sessions = db
    customer, (line_id,), _ = await new_customer(db, lines=1)
    async with sessions() as session:
        contract = await service.create(
            session,
            ContractIn(customer_id=customer, evidence="order with 2 phones",
                       accepted_at=ACCEPTED, monthly_fee_cents=3000),
            now=ACCEPTED,
        )  # fmt: skip
        contract_id = contract.id
        tag = customer.hex[:10]
        devices = []
        for n in range(2):
            body = EquipmentIn(
                customer_id=customer, model="Yealink T54W", serial=f"SN{tag}{n}",
                mac=":".join([tag[i : i + 2] for i in range(0, 10, 2)] + [f"0{n}"]),
                mode="provided", value_cents=15000, provided_on=date(2026, 1, 15),
                line_id=line_id if n == 0 else None,
            )  # fmt: skip
            devices.append((await equipment.add(session, body)).id)
        with pytest.raises(ServiceError) as twice:
            await equipment.add(session, body)
        assert twice.value.field == "serial"
    kept, lost = devices
    ends = date(2028, 7, 15)  # 2.5 years after the phones were provided
    async with sessions() as session:
        await service.terminate_early(session, contract_id, EarlyTerminationIn(
            effective_on=ends, reason="closing"), now=midnight(date(2028, 6, 1)))  # fmt: skip
    assert await run_due(sessions, SETTINGS, midnight(ends)) == 1
    async with sessions() as session:
        device = await equipment.record_return(
            session, kept, ReturnIn(returned_on=ends, condition="good"), today=ends
        )
        assert device.status == "returned"
    # 10 days after the end, the other is billed its value; not one second before.
    deadline = midnight(ends + timedelta(days=10))
    assert await run_due(sessions, SETTINGS, deadline - timedelta(seconds=1)) == 0
    assert await run_due(sessions, SETTINGS, deadline) == 2  # the returned one: nothing to do
    async with sessions() as session:
        charges = {
            (c.kind, c.equipment_id): c.amount_cents
            for c in await session.scalars(
                select(ContractCharge).where(ContractCharge.customer_id == customer))
        }  # fmt: skip
        assert (await equipment.get(session, lost)).status == "not_returned"
    # 30 months of use: 50 % off the 150 € paid; the lost one: its value.
    assert charges[("equipment_refund", kept)] == -7500
    assert charges[("equipment_not_returned", lost)] == 15000
    assert ("equipment_not_returned", kept) not in charges


async def test_gdpr_export_then_erasure_keeps_invoices_and_cdrs(db):
    db, sessions = db
    customer, (line_id,), _ = await new_customer(db, lines=1)
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        await conn.execute("UPDATE customers SET name = 'Jeanne Martin SARL', email = "
                           "'jeanne@martin.example' WHERE id = $1", customer)  # fmt: skip
        await conn.execute(
            "INSERT INTO billing_invoices (id, number, reference, kind, customer_id, buyer_name, "
            "period, issued_on, due_on, payment_method, ht_cents, vat_cents, ttc_cents, vat) "
            "VALUES ($1, $2, $3, 'invoice', $4, 'Jeanne Martin SARL', '2026-02-01', "
            "'2026-02-25', '2026-03-07', 'sepa', 100, 20, 120, '[]')",
            uuid.uuid4(), 800_000 + customer.int % 90_000, f"GD{customer.hex[:8]}", customer,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO cdrs (id, node, linkedid, customer_id, caller_line_id, direction, caller, "
            "callee, start_at, end_at, duration_ms, billed_s, disposition, sip_code) VALUES "
            "($1, 'n', $2, $3, $4, 'outbound', '+33170000000', '+33145678901', $5, $5, 60000, "
            "60, 'answered', 200)",
            uuid.uuid4(), customer.hex, customer, line_id, ACCEPTED,
        )  # fmt: skip
    finally:
        await conn.close()
    async with sessions() as session:
        contract = await service.create(session, ContractIn(
            customer_id=customer, evidence="order signed by Jeanne Martin", accepted_at=ACCEPTED,
            monthly_fee_cents=100), now=ACCEPTED)  # fmt: skip
        contract_id = contract.id
        data = await gdpr.export(session, customer)
    assert data["customer"]["email"] == "jeanne@martin.example"
    assert [line["id"] for line in data["lines"]] == [line_id]
    assert "sip_ha1" not in data["lines"][0]  # a credential, not personal data to hand out
    assert len(data["invoices"]) == 1 and data["cdrs"]["count"] == 1
    assert data["contracts"][0]["evidence"] == "order signed by Jeanne Martin"

    async with sessions() as session:  # not while the contract runs
        with pytest.raises(ServiceError) as running:
            await gdpr.erase(session, customer, now=ACCEPTED)
        assert running.value.field == "customer_id"
        await service.terminate_early(session, contract_id, EarlyTerminationIn(
            effective_on=date(2026, 3, 1), reason="closing"), now=ACCEPTED)  # fmt: skip
    await run_due(sessions, SETTINGS, midnight(date(2026, 3, 1)))
    async with sessions() as session:
        await gdpr.erase(session, customer, now=midnight(date(2026, 3, 2)))
    async with sessions() as session:
        after = await gdpr.export(session, customer)
    assert after["customer"]["name"].startswith("erased customer")
    assert after["customer"]["email"] is None
    assert after["lines"][0]["label"] == gdpr.ERASED
    assert after["contracts"][0]["evidence"] == gdpr.ERASED
    # Kept as documented: the invoice as issued (accounting), the CDR (evidence).
    assert after["invoices"][0]["buyer_name"] == "Jeanne Martin SARL"
    assert after["cdrs"]["count"] == 1


async def test_a_mail_server_down_puts_the_reminder_off_for_5_minutes(db):
    db, sessions = db
    customer, _, _ = await new_customer(db)
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        await conn.execute("UPDATE customers SET email = 'late@payer.example' WHERE id = $1",
                           customer)  # fmt: skip
        invoice = uuid.uuid4()
        await conn.execute(
            "INSERT INTO billing_invoices (id, number, reference, kind, customer_id, buyer_name, "
            "period, issued_on, due_on, payment_method, ht_cents, vat_cents, ttc_cents, vat) "
            "VALUES ($1, $2, $3, 'invoice', $4, 'Late', '2031-01-01', '2031-01-01', "
            "'2031-01-11', 'sepa', 100, 20, 120, '[]')",
            invoice, 700_000 + customer.int % 90_000, f"ML{customer.hex[:8]}", customer,
        )  # fmt: skip
    finally:
        await conn.close()
    with socket.socket() as closed:  # a port nothing listens on: the mail server is down
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = SETTINGS.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    now = midnight(date(2031, 1, 12))
    await run_due(sessions, down, now)  # this module's other steps due then are done: not this one
    async with sessions() as session:
        (step,) = await session.scalars(select(ScheduledStep).where(
            ScheduledStep.subject_id == invoice))  # fmt: skip
        assert (step.kind, step.status, step.due_at) == ("reminder", "pending",
                                                         now + timedelta(minutes=5))  # fmt: skip
    await run_due(sessions, down, now)  # not retried before then
    async with sessions() as session:
        step = await session.get(ScheduledStep, step.id)
        assert (step.status, step.due_at) == ("pending", now + timedelta(minutes=5))


async def _unpaid_invoice(db, customer: uuid.UUID, due: date) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        await conn.execute(
            "INSERT INTO billing_invoices (id, number, reference, kind, customer_id, buyer_name, "
            "period, issued_on, due_on, payment_method, ht_cents, vat_cents, ttc_cents, vat) "
            "VALUES ($1, $2, $3, 'invoice', $4, 'Unpaid', $5, $5, $6, 'sepa', 100, 20, 120, "
            "'[]')",
            uuid.uuid4(), 600_000 + customer.int % 90_000, f"UP{customer.hex[:8]}", customer,
            due - timedelta(days=10), due,
        )  # fmt: skip
    finally:
        await conn.close()


@pytest.mark.parametrize("automatic", [False, True])
async def test_unpaid_7_days_after_the_suspension_terminates_when_set(db, automatic):
    db, sessions = db
    customer, (line_id,), _ = await new_customer(db, lines=1)  # no email: nothing to send
    async with sessions() as session:
        contract = await service.create(session, ContractIn(
            customer_id=customer, evidence="order", accepted_at=ACCEPTED,
            monthly_fee_cents=1000), now=ACCEPTED)  # fmt: skip
        contract_id = contract.id
    due = date(2027, 3, 10) if automatic else date(2027, 5, 10)
    await _unpaid_invoice(db, customer, due)
    steps = rules.nonpayment_steps(due)
    settings = SETTINGS.model_copy(update={"contracts_nonpayment_terminate": automatic})
    for day in (steps.reminder_on, steps.suspension_on):
        await run_due(sessions, settings, midnight(day))
    async with sessions() as session:
        suspended = await session.scalars(
            select(PolicyRestriction).where(PolicyRestriction.target_id == customer,
                                            PolicyRestriction.lifted_at.is_(None)))  # fmt: skip
        assert [r.actor for r in suspended] == ["non-payment"]
    persists = midnight(steps.termination_possible_on)
    await run_due(sessions, settings, persists - timedelta(seconds=1))
    async with sessions() as session:
        assert (await service.get(session, contract_id)).status == "active"
    await run_due(sessions, settings, persists)
    async with sessions() as session:
        ended = await service.get(session, contract_id)
        line = await session.get(Line, line_id)
        if automatic:
            assert (ended.status, ended.termination_kind) == ("terminated", "breach")
            assert ended.ends_on == steps.termination_possible_on
            assert line.deleted_at is not None
            (fee,) = await session.scalars(
                select(ContractCharge).where(ContractCharge.contract_id == contract_id)
            )
            # Effective 2 April 2027, month 15 (15 March - 14 April) under way: 16..36 left.
            assert (fee.quantity, fee.amount_cents) == (21, 21 * 1000)
        else:
            assert ended.status == "active" and line.deleted_at is None
            outcome = await session.scalar(select(ScheduledStep.outcome).where(
                ScheduledStep.kind == "nonpayment_end",
                ScheduledStep.subject_id.in_(select(Invoice.id).where(
                    Invoice.customer_id == customer))))  # fmt: skip
            assert "operator's decision" in outcome


N_KILLED = 3000


def _scheduler(url: str, now: datetime) -> subprocess.Popen:
    env = {**os.environ, "CENTREX_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "centrex.contracts.scheduler", "--now", now.isoformat()],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def test_scheduler_killed_mid_run_loses_no_step_and_does_none_twice(db):
    db, _ = db
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        # N contracts all at their initial term on 15 January 2029 (written in bulk).
        await conn.execute(
            """
            WITH c AS (
                INSERT INTO customers (id, name)
                SELECT gen_random_uuid(), 'bulk ' || i FROM generate_series(1, $1) i
                RETURNING id
            ), k AS (
                INSERT INTO contracts (id, customer_id, accepted_at, evidence, starts_on,
                    initial_months, renewal_months, monthly_fee_cents, term_ends_on, renewals,
                    status)
                SELECT gen_random_uuid(), c.id, $2, 'bulk', DATE '2026-01-15', 36, 12, 1000,
                       DATE '2029-01-15', 0, 'active' FROM c
                RETURNING id
            )
            INSERT INTO scheduled_steps (id, key, kind, subject_id, due_at, status)
            SELECT gen_random_uuid(), 'renew:' || k.id || ':2029-01-15', 'renew', k.id, $3,
                   'pending' FROM k
            """,
            N_KILLED,
            ACCEPTED,
            midnight(date(2029, 1, 15)),
        )
        ids = [
            r["id"] for r in await conn.fetch("SELECT id FROM contracts WHERE evidence = 'bulk'")
        ]
        now = midnight(date(2029, 1, 16))

        async def done() -> int:
            return await conn.fetchval(
                "SELECT count(*) FROM scheduled_steps WHERE status = 'done' AND subject_id = "
                "ANY($1::uuid[]) AND kind = 'renew'",
                ids,
            )

        first = _scheduler(db.url, now)
        deadline = time.monotonic() + 120
        while await done() < 50:  # mid-run: some done, most not
            assert first.poll() is None, "the scheduler ended before it could be killed"
            assert time.monotonic() < deadline, "the scheduler did no step in 120 s"
            await asyncio.sleep(0.02)  # a poll's pace, with a deadline above
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        at_kill = await done()
        left = await conn.fetchval(
            "SELECT count(*) FROM scheduled_steps WHERE status = 'pending' AND due_at <= $1", now
        )
        assert first.returncode == -signal.SIGKILL and at_kill < N_KILLED

        # Restarted, twice at once (they share the steps through SKIP LOCKED).
        again = [_scheduler(db.url, now) for _ in range(2)]
        counts = []
        for proc in again:
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0
            counts.append(int(out.split()[-3]))
        assert await done() == N_KILLED  # no step lost
        # None twice: every contract renewed exactly once, one journal entry each, and each
        # next renewal scheduled once.
        rows = await conn.fetch(
            "SELECT renewals, term_ends_on, count(e.id) AS events FROM contracts k "
            "LEFT JOIN contract_events e ON e.contract_id = k.id WHERE k.id = ANY($1::uuid[]) "
            "GROUP BY k.id",
            ids,
        )
        assert {(r["renewals"], r["term_ends_on"], r["events"]) for r in rows} == {
            (1, date(2030, 1, 15), 1)
        }
        assert len(rows) == N_KILLED
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM scheduled_steps WHERE status = 'pending' AND subject_id = "
                "ANY($1::uuid[]) AND due_at = $2",
                ids,
                midnight(date(2030, 1, 15)),
            )
            == N_KILLED
        )
        # The restarted ones did exactly what the killed one left due, each step once.
        assert sum(counts) == left
        print(f"killed after {at_kill} of {N_KILLED} steps; restarts did {counts}")
    finally:
        await conn.close()
