"""The provisioning API: an async FastAPI app over the database, pushing into Asterisk."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text

from centrex import __version__
from centrex.access import routes as tokens
from centrex.access.middleware import Authenticate
from centrex.api.deps import authorize
from centrex.api.leader import while_leader
from centrex.api.limits import BodySizeLimit, RateLimit
from centrex.api.methods import MethodNotAllowed
from centrex.api.openapi import install as document_errors
from centrex.api.routes import (
    bulk,
    calls,
    cdrs,
    credentials,
    customers,
    lines,
    numbers,
    policy,
    ring_groups,
    sip_bans,
    trunks,
)
from centrex.asterisk.ari import AriClient
from centrex.asterisk.errors import AsteriskUnavailable
from centrex.audit import routes as audit
from centrex.audit.recorder import AuditedSession
from centrex.billing import bank_routes as billing_bank_files
from centrex.billing import catalogue as billing_catalogue
from centrex.billing import credit_routes as billing_credits
from centrex.billing import payment_routes as billing_payments
from centrex.billing import rerating_routes as billing_reratings
from centrex.billing import routes as billing
from centrex.config import Settings
from centrex.contracts import life_routes as contract_life
from centrex.contracts import routes as contracts
from centrex.contracts.scheduler import ContractScheduler
from centrex.db.session import SessionMaker, asyncpg_dsn, make_engine, make_sessionmaker
from centrex.features import routes as features
from centrex.metrics import API_REGISTRY
from centrex.moh import routes as moh
from centrex.moh.service import moh_root
from centrex.portability import routes as portability
from centrex.portability.donor_http import HttpDonor
from centrex.portability.scheduler import PortingLoop
from centrex.services.cdrs import purge_expired
from centrex.services.errors import ServiceError
from centrex.services.provisioning import AsteriskProjector
from centrex.services.reconcile import Reconciler
from centrex.voicemail import routes as voicemail
from centrex.voicemail.mailer import Mailer
from centrex.voicemail.service import set_platform_default
from centrex.voicemail.spool import Spool, spool_of

log = logging.getLogger(__name__)

CDR_PURGE_INTERVAL_S = 3600.0


def _error_body(exc: ServiceError) -> dict:
    # Same shape as FastAPI's own validation errors, so clients parse one format.
    loc = [exc.location] + ([exc.field] if exc.field else [])
    return {"detail": [{"loc": loc, "msg": exc.message, "type": exc.error_type}]}


def _echoable(value: object) -> object:
    """What a validation error may echo of the input: JSON has no NaN or Infinity (Python's json
    reads them), and a body need not be UTF-8; those are echoed as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _echoable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_echoable(v) for v in value]
    return value


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, bool] = Field(description="database, asterisk: whether each answers.")


def app_from_environment() -> FastAPI:
    """The app of one API worker when there are several (uvicorn's factory): each worker is a
    process of its own, reading the same configuration as ``centrex api``."""
    from centrex.cli import _setup_logging

    _setup_logging()
    return create_app(Settings())


def create_app(settings: Settings, *, run_reconciler: bool = True) -> FastAPI:
    async def purge_expired_cdrs_forever(sessionmaker: SessionMaker) -> None:
        """CDRs are kept ``cdr_retention_days`` (art. 11.2: invoices provable for 5 years)."""
        while True:
            try:
                async with sessionmaker() as session:
                    purged = await purge_expired(
                        session, retention_days=settings.cdr_retention_days
                    )
                if purged:
                    log.info("CDR retention: %d records older than %d days deleted", purged,
                             settings.cdr_retention_days)  # fmt: skip
            except Exception:
                log.exception("CDR retention pass failed; next one in an hour")
            await asyncio.sleep(CDR_PURGE_INTERVAL_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url_required, pool_size=10, max_overflow=10)
        # Audited: every change a request makes is recorded with it (centrex.audit).
        app.state.sessionmaker = make_sessionmaker(engine, sync_session_class=AuditedSession)
        ari = AriClient.from_settings(settings, "api")
        app.state.ari = ari
        app.state.projector = AsteriskProjector.from_settings(settings)
        app.state.reconciler = Reconciler(
            settings, app.state.sessionmaker, app.state.projector, ari
        )
        app.state.voicemail_spool = Spool(spool_of(settings))
        app.state.moh_root = moh_root(settings)
        tasks = []
        # Portability (issue 16): donor answers and activation at the porting slot.
        donor = HttpDonor(settings.donor_url) if settings.donor_url else None
        app.state.porting_loop = PortingLoop(settings, app.state.sessionmaker, donor)
        # Background work: one worker's when the API runs several (centrex.api.leader).
        background: list[Callable[[], Awaitable[None]]] = []
        if run_reconciler:
            background.append(app.state.reconciler.run_forever)
            background.append(lambda: purge_expired_cdrs_forever(app.state.sessionmaker))
            background.append(app.state.porting_loop.run_forever)
            # Contracts (issue 18): renewals and terminations at their dates.
            scheduler = ContractScheduler(settings, app.state.sessionmaker)
            background.append(scheduler.run_forever)
            # The default Asterisk's realtime view applies to lines that never set theirs.
            try:
                async with app.state.sessionmaker() as session:
                    await set_platform_default(session, settings.voicemail_default_enabled)
            except Exception:  # the previous default stays in force; said loudly
                log.exception("voicemail: the platform default could not be written")
            mailer = Mailer(settings, app.state.sessionmaker, app.state.voicemail_spool)
            background.append(mailer.deliver_forever)
            background.append(mailer.expire_forever)

        async def run_background() -> None:
            await asyncio.gather(*(work() for work in background))

        if background and settings.api_workers > 1:
            dsn = asyncpg_dsn(settings.database_url_required)
            tasks.append(asyncio.create_task(while_leader(dsn, run_background)))
        else:
            tasks.extend(asyncio.create_task(work()) for work in background)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.state.reconciler.aclose()
            app.state.projector.close()  # its probes of nodes known down
            if donor is not None:
                await donor.aclose()
            await ari.aclose()
            await engine.dispose()

    app = FastAPI(
        title="centrex provisioning API",
        version=__version__,
        lifespan=lifespan,
        description="Customers and SIP lines of a hosted Centrex platform, pushed into Asterisk.",
    )
    app.state.settings = settings
    # The last added runs first: the token is checked, then its rate, then the body's size,
    # each before the body is read; then a method the path does not have (405).
    app.add_middleware(MethodNotAllowed, document=lambda: app.openapi())
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.api_max_body_bytes,
        larger=dict.fromkeys(bulk.IMPORT_PATHS, settings.api_max_import_bytes),
    )
    # In process: with several workers each holds its share of the rate and burst (the kernel
    # spreads connections over them; a client on one kept-alive connection meets one worker).
    workers = settings.api_workers
    app.add_middleware(
        RateLimit,
        rate=settings.api_rate_limit_per_s / workers,
        burst=max(1, settings.api_rate_limit_burst // workers),
    )
    app.add_middleware(
        Authenticate,
        bootstrap_token=settings.api_token.get_secret_value,
        sessionmaker=lambda: app.state.sessionmaker,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer, except that echoing an input JSON cannot carry turned it into a 500.
        errors = jsonable_encoder(_echoable(list(exc.errors())))
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=_error_body(exc))

    @app.exception_handler(AsteriskUnavailable)
    async def asterisk_unavailable(_: Request, exc: AsteriskUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"Asterisk unreachable: {exc}"})

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/health/ready", tags=["health"], response_model=Readiness,
        responses={503: {"model": Readiness, "description": "The database or Asterisk does "
                         "not answer."}},
    )  # fmt: skip
    async def ready(request: Request) -> JSONResponse:
        """Ready when the database and Asterisk (ARI) both answer."""
        checks = {}
        try:
            async with request.app.state.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
            checks["database"] = True
        except Exception:
            checks["database"] = False
        try:
            await request.app.state.ari.info()
            checks["asterisk"] = True
        except Exception:
            checks["asterisk"] = False
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(API_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # What the token may do (centrex/access/rules.py), then the one place a request's
    # principal and operation are set for the audit trail.
    secured = [Depends(authorize), Depends(audit.audit_request)]
    app.include_router(tokens.router, dependencies=secured)
    app.include_router(bulk.router, dependencies=secured)  # before /v1/lines/{line_id}
    app.include_router(customers.router, dependencies=secured)
    app.include_router(lines.router, dependencies=secured)
    app.include_router(credentials.router, dependencies=secured)
    app.include_router(calls.router, dependencies=secured)
    app.include_router(numbers.router, dependencies=secured)
    app.include_router(trunks.router, dependencies=secured)
    app.include_router(ring_groups.router, dependencies=secured)
    app.include_router(features.router, dependencies=secured)  # issue 15
    app.include_router(cdrs.router, dependencies=secured)
    app.include_router(policy.router, dependencies=secured)
    app.include_router(sip_bans.router, dependencies=secured)
    app.include_router(audit.router, dependencies=secured)
    app.include_router(portability.router, dependencies=secured)
    app.include_router(billing.router, dependencies=secured)
    app.include_router(billing_payments.router, dependencies=secured)
    app.include_router(billing_credits.router, dependencies=secured)
    app.include_router(billing_reratings.router, dependencies=secured)
    app.include_router(billing_catalogue.router, dependencies=secured)
    app.include_router(billing_bank_files.router, dependencies=secured)
    app.include_router(contracts.router, dependencies=secured)
    app.include_router(contract_life.router, dependencies=secured)  # issue 18, art. 10-13, 21
    app.include_router(voicemail.router, dependencies=secured)
    app.include_router(moh.router, dependencies=secured)
    document_errors(app)
    return app
