"""Renewing a line's SIP credentials (contract art. 16, 17) and the audit trail of renewals."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from centrex.api.deps import PrincipalDep, ProjectorDep, SessionDep, SettingsDep, visible
from centrex.api.schemas import ChangeIn, CredentialRenewalOut, CredentialsRenewed, LineOut
from centrex.db.models import CredentialRenewal, SyncState
from centrex.services import credentials as service
from centrex.services.lines import get_line_any, get_live_line

router = APIRouter(prefix="/v1/lines", tags=["lines"])


@router.post(
    "/{line_id}/credentials",
    response_model=CredentialsRenewed,
    responses={
        202: {
            "model": CredentialsRenewed,
            "description": "Renewed, but Asterisk could not be told yet: it still accepts the "
            "old password until the reconciler pushes the new one (see sync_error).",
        }
    },
)
async def renew_credentials(
    line_id: uuid.UUID,
    body: ChangeIn,
    response: Response,
    session: SessionDep,
    projector: ProjectorDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> CredentialsRenewed:
    """A new SIP password, same username: the old password is refused from now on and the
    devices registered with it are unregistered; calls in progress go on."""
    line = await get_live_line(session, line_id)
    visible(principal, line.customer_id, "line_id", f"no line with id {line_id}")
    renewed = await service.renew_credentials(
        session, projector, line, actor=body.actor, reason=body.reason, by=principal
    )
    if renewed.line.sync_state != SyncState.synced:
        response.status_code = status.HTTP_202_ACCEPTED
    return CredentialsRenewed(
        **LineOut.model_validate(renewed.line).model_dump(),
        sip_password=renewed.password,
        sip_server=settings.phones_sip_server,
        renewal=CredentialRenewalOut.model_validate(renewed.renewal),
    )


@router.get("/{line_id}/credential-renewals", response_model=list[CredentialRenewalOut])
async def credential_renewals(
    line_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[CredentialRenewal]:
    """Every renewal of the line's credentials, oldest first; a deleted line's too."""
    line = await get_line_any(session, line_id)
    visible(principal, line.customer_id, "line_id", f"no line with id {line_id}")
    return await service.renewals_of(session, line_id)
