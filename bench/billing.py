"""Issue 17, "Must measure": rating throughput and one month's invoice run.

    .venv/bin/python bench/billing.py [--customers C] [--lines L] [--cdrs N]

1. **Rating, pure**: :func:`centrex.billing.rules.rating.rate_call` over N synthetic calls in
   memory (longest-prefix lookup, bundle, fraud ranks): calls/s.
2. **On PostgreSQL** (a fresh private cluster, default settings, fsync on): C customers with L
   lines between them on one plan (a pooled bundle, a 30-prefix tariff), N answered outbound
   CDRs in one past month, written with COPY; then the rating pass (every CDR rated once and
   stored: ``rate_pending``) and the month's invoice run (``run_month``: the invoices numbered,
   their Factur-X PDFs rendered and archived), each timed; peak RSS of this process.

The issue's figure is 10,000 customers, 100,000 lines and 5 million CDRs; the defaults are
smaller so the run fits a shared 2-CPU machine in minutes (docs/billing.md has the figures and
the extrapolation). Prints a table and writes ``bench/results/billing-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from centrex.billing.invoicing import run_month
from centrex.billing.rating import rate_pending
from centrex.billing.rules.rating import CallToRate, PeriodState, rate_call
from centrex.billing.rules.tariff import PrefixIndex, TariffLine
from centrex.config import Settings
from centrex.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from centrex.sandbox.postgres import migrated_test_database

RESULTS = Path(__file__).resolve().parent / "results"
PERIOD, ISSUED = date(2026, 10, 1), date(2026, 11, 1)
PREFIXES = [
    "33",
    "331",
    "332",
    "336",
    "337",
    "3389",
    "3380",
    "44",
    "447",
    "49",
    "1",
    "34",
    "39",
    "41",
    "32",
    "352",
    "351",
    "353",
    "31",
    "46",
    "47",
    "45",
    "358",
    "48",
    "420",
    "36",
    "40",
    "30",
    "90",
    "212",
]


def tariff() -> list[TariffLine]:
    return [
        TariffLine(
            p,
            Decimal(f"0.0{i % 9 + 1}"),
            Decimal("0.01"),
            0,
            30 if i % 2 else 60,
            1 if i % 2 else 60,
            p.startswith("33"),
            Decimal(20),
        )
        for i, p in enumerate(PREFIXES)
    ]


def callee(rng: random.Random) -> str:
    return f"+{rng.choice(PREFIXES)}{rng.randint(10_000_000, 99_999_999)}"


def pure_rating(n: int) -> dict:
    rng = random.Random(1)
    lines = [uuid.uuid4() for _ in range(100)]
    calls = [
        CallToRate(
            uuid.uuid4(), rng.choice(lines), datetime.now(UTC), callee(rng), rng.randint(1, 600)
        )
        for _ in range(n)
    ]
    index = PrefixIndex(tariff())
    state = PeriodState(bundle_total_s=100 * 3600 * 100)
    started = time.perf_counter()
    for call in calls:
        rate_call(call, index.find(call.callee), state)
    elapsed = time.perf_counter() - started
    return {"calls": n, "seconds": round(elapsed, 3), "calls_per_s": round(n / elapsed)}


async def load(url: str, customers: int, lines: int, cdrs: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rng = random.Random(2)
        plan_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO billing_plans (id, code, version, name, effective_from, entered_ttc,"
            " line_fee_cents, line_fee_vat, access_fee_cents, access_fee_vat, bundle_s,"
            " bundle_pooled) VALUES ($1, 'bench', 1, 'Bench', '2026-01-01', false,"
            " 2000, 20, 5000, 20, 3600, true)",
            plan_id,
        )
        await conn.copy_records_to_table(
            "billing_tariff_lines",
            records=[
                (
                    uuid.uuid4(),
                    plan_id,
                    t.prefix,
                    t.per_minute,
                    t.connection_fee,
                    t.min_s,
                    t.first_increment_s,
                    t.increment_s,
                    t.in_bundle,
                    t.vat_rate,
                )
                for t in tariff()
            ],
        )
        customer_ids = [uuid.uuid4() for _ in range(customers)]
        await conn.copy_records_to_table(
            "customers",
            columns=["id", "name", "created_at"],
            records=[
                (c, f"bench {i}", datetime(2026, 1, 1, tzinfo=UTC))
                for i, c in enumerate(customer_ids)
            ],
        )
        await conn.copy_records_to_table(
            "billing_subscriptions",
            records=[
                (uuid.uuid4(), c, "bench", date(2026, 1, 1), None, "sepa", datetime.now(UTC))
                for c in customer_ids
            ],
        )
        line_rows = [
            (
                uuid.uuid4(),
                customer_ids[i % customers],
                "bench",
                f"bench{i}",
                "0" * 32,
                "bench",
                "pending",
                datetime(2026, 1, 1, tzinfo=UTC),
            )
            for i in range(lines)
        ]
        await conn.copy_records_to_table(
            "lines",
            columns=[
                "id",
                "customer_id",
                "label",
                "sip_username",
                "sip_ha1",
                "sip_realm",
                "sync_state",
                "created_at",
            ],
            records=line_rows,
        )
        start = datetime(2026, 10, 1, tzinfo=UTC)
        batch = []
        for i in range(cdrs):
            line_id, customer_id = line_rows[rng.randrange(lines)][:2]
            at = start + timedelta(seconds=rng.randrange(29 * 86400))
            billed = rng.randint(1, 900)
            batch.append(
                (
                    uuid.uuid4(),
                    "bench",
                    f"b-{i}",
                    customer_id,
                    line_id,
                    "outbound",
                    "+33100000000",
                    callee(rng),
                    "33",
                    at,
                    at + timedelta(seconds=2),
                    at + timedelta(seconds=2 + billed),
                    (2 + billed) * 1000,
                    billed,
                    "answered",
                    200,
                )
            )
            if len(batch) == 50_000 or i == cdrs - 1:
                await conn.copy_records_to_table(
                    "cdrs",
                    columns=[
                        "id",
                        "node",
                        "linkedid",
                        "customer_id",
                        "caller_line_id",
                        "direction",
                        "caller",
                        "callee",
                        "destination",
                        "start_at",
                        "answer_at",
                        "end_at",
                        "duration_ms",
                        "billed_s",
                        "disposition",
                        "sip_code",
                    ],
                    records=batch,
                )
                batch = []
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def on_postgres(customers: int, lines: int, cdrs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as work:
        async with migrated_test_database(Path(work), prefix="centrex_benchbilling") as url:
            started = time.perf_counter()
            await load(url, customers, lines, cdrs)
            loaded = time.perf_counter() - started
            engine = make_engine(url, pool_size=6)
            sessionmaker = make_sessionmaker(engine)
            try:
                started = time.perf_counter()
                async with sessionmaker() as session:
                    rated = await rate_pending(session)
                rating = time.perf_counter() - started
                started = time.perf_counter()
                result = await run_month(sessionmaker, PERIOD, ISSUED, Settings(_env_file=None))
                invoicing = time.perf_counter() - started
            finally:
                await engine.dispose()
    return {
        "customers": customers,
        "lines": lines,
        "cdrs": cdrs,
        "load_s": round(loaded, 1),
        "rated": rated.rated,
        "rating_s": round(rating, 1),
        "rating_cdrs_per_s": round(rated.rated / rating),
        "invoices": len(result.issued),
        "documents": result.documents,
        "invoice_run_s": round(invoicing, 1),
        "invoices_per_s": round(len(result.issued) / invoicing, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--lines", type=int, default=2_000)
    parser.add_argument("--cdrs", type=int, default=100_000)
    parser.add_argument("--pure", type=int, default=200_000)
    args = parser.parse_args()
    results = {"pure_rating": pure_rating(args.pure)}
    print("pure rating:", results["pure_rating"], flush=True)
    results["postgres"] = asyncio.run(on_postgres(args.customers, args.lines, args.cdrs))
    print("on PostgreSQL:", results["postgres"], flush=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"billing-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
