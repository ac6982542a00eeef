"""Issue 7: what the usage policy adds to the daemon's admission decision.

    .venv/bin/python bench/policy.py [--calls N]

The daemon's decision (``CallRegistry.admit``: directory lookup, routing, policy, the atomic
admission statement, and for calls to numbers the distinct-number count) measured in-process
against a fresh PostgreSQL database, for three kinds of call from lines, interleaved call by
call so machine noise hits all alike:

- ``line``: to another line by SIP username (the path the admission benchmark measures; the
  policy reads the line's level, ``centrex_policy_level``, in the statement that finds it);
- ``outbound``: to a French number through the trunk (destination check in the trunk's query,
  plus ``centrex_count_number``);
- ``emergency``: 112 (no policy, never refused).

Each call is released right after its decision. Reported: p50/p99/mean per kind and the
outbound/line ratio. No Asterisk is involved: this is the decision, not the set-up time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from centrex.config import Settings
from centrex.control.call_registry import AdmittedCall, CallRegistry
from centrex.core.credentials import generate_credentials
from centrex.db.models import Customer, Line, SyncState, Trunk
from centrex.db.session import make_engine, make_sessionmaker
from centrex.sandbox.postgres import migrated_test_database

RESULTS = Path(__file__).resolve().parent / "results"


async def make_lines(url: str, n: int) -> list[Line]:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        customer = Customer(name="bench-policy")
        session.add(customer)
        session.add(Trunk(name="carrier", host="127.0.0.2"))
        lines = []
        for _ in range(n):
            creds = generate_credentials("centrex")
            lines.append(
                Line(customer=customer, label="b", sip_username=creds.username,
                     sip_ha1=creds.ha1, sip_realm="centrex", max_calls=1000,
                     sync_state=SyncState.synced, main_number=None)
            )  # fmt: skip
        session.add_all(lines)
        await session.commit()
    await engine.dispose()
    return lines


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def run(calls: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        async with migrated_test_database(Path(work), prefix="centrex_benchpolicy") as url:
            caller, callee = await make_lines(url, 2)
            engine = make_engine(url, pool_size=2)
            settings = Settings(_env_file=None, database_url=url)
            registry = CallRegistry(engine, "bench", 7200, pool_size=4, settings=settings)
            # Outbound needs the caller's number: give it one without the inventory's rules.
            await (await registry._db()).execute(
                "INSERT INTO number_blocks (id, first_e164, last_e164, size, kind, zone)"
                " VALUES (gen_random_uuid(), '+33145000000', '+33145000000', 1, 'geographic', '1');"
            )
            pool = await registry._db()
            block = await pool.fetchval("SELECT id FROM number_blocks LIMIT 1")
            await pool.execute(
                "INSERT INTO numbers (e164, national, block_id, kind, zone, status, customer_id)"
                " VALUES ('+33145000000', '0145000000', $1, 'geographic', '1', 'assigned', $2)",
                block, caller.customer_id,
            )  # fmt: skip
            await pool.execute(
                "UPDATE lines SET main_number = '+33145000000' WHERE id = $1", caller.id
            )
            kinds = {
                "line": lambda i: callee.sip_username,
                "outbound": lambda i: f"+3320{i:07d}",
                "emergency": lambda i: "112",
            }
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for warm in range(50):  # connections, prepared statements
                for kind, dialled in kinds.items():
                    await one(registry, caller.sip_username, dialled(warm), f"w{kind}{warm}")
            for i in range(calls):
                for kind, dialled in kinds.items():
                    times[kind].append(
                        await one(registry, caller.sip_username, dialled(10_000 + i), f"{kind}{i}")
                    )
            await registry.aclose()
            await engine.dispose()
    out = {
        k: {"p50_ms": round(pct(v, 0.5), 2), "p99_ms": round(pct(v, 0.99), 2),
            "mean_ms": round(statistics.mean(v), 2)}
        for k, v in times.items()
    }  # fmt: skip
    out["outbound_over_line_p50"] = round(out["outbound"]["p50_ms"] / out["line"]["p50_ms"], 2)
    out["calls_per_kind"] = calls
    return out


async def one(registry: CallRegistry, caller: str, dialled: str, channel: str) -> float:
    started = time.perf_counter()
    decision = await registry.admit(
        channel_id=channel, endpoint=caller, dialled=dialled, caller_number="",
        now=datetime.now(UTC),
    )  # fmt: skip
    elapsed = (time.perf_counter() - started) * 1000
    if not isinstance(decision, AdmittedCall):
        raise RuntimeError(f"{dialled}: not admitted: {decision}")
    await registry.release(channel)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    result = asyncio.run(run(args.calls))
    for kind in ("line", "outbound", "emergency"):
        r = result[kind]
        print(f"{kind:10} p50 {r['p50_ms']:6} ms   p99 {r['p99_ms']:6} ms   mean {r['mean_ms']} ms")
    print(f"outbound / line (p50): {result['outbound_over_line_p50']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"policy-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
