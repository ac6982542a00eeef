"""/v1/lines/{line_id}/voicemail (settings, greeting) and /v1/lines/{line_id}/voicemails
(messages). A customer token may use them on its own lines (centrex/access/rules.py)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from fastapi.responses import FileResponse

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep
from centrex.api.routes.lines import live_line_of
from centrex.voicemail import service
from centrex.voicemail.schemas import VoicemailList, VoicemailOut, VoicemailPatch
from centrex.voicemail.spool import Spool

router = APIRouter(prefix="/v1/lines/{line_id}", tags=["voicemail"])


async def get_spool(request: Request) -> Spool:
    return request.app.state.voicemail_spool


SpoolDep = Annotated[Spool, Depends(get_spool)]
MsgId = Annotated[str, Path(max_length=64, description="A message's id, as listed.")]

_WAV_BODY = {
    "requestBody": {
        "required": True,
        # Any content type is read as the file; documented as octet-stream, which every client
        # (and schemathesis) knows how to send.
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "A WAV file (audio/wav): 8000 Hz, 16-bit, mono PCM; 0.5 s to "
        "CENTREX_VOICEMAIL_MAX_GREETING_S.",
    }
}


@router.get("/voicemail", response_model=VoicemailOut)
async def get_voicemail(
    line_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> VoicemailOut:
    line = await live_line_of(principal, session, line_id)
    return await service.get_settings(session, line, settings.voicemail_default_enabled)


@router.patch("/voicemail", response_model=VoicemailOut)
async def update_voicemail(
    line_id: uuid.UUID, body: VoicemailPatch, session: SessionDep, principal: PrincipalDep,
    settings: SettingsDep,
) -> VoicemailOut:  # fmt: skip
    line = await live_line_of(principal, session, line_id)
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    return await service.update_settings(session, line, changes, settings.voicemail_default_enabled)


@router.put("/voicemail/greeting", response_model=VoicemailOut, openapi_extra=_WAV_BODY)
async def upload_greeting(
    line_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep,
    settings: SettingsDep, spool: SpoolDep,
) -> VoicemailOut:  # fmt: skip
    line = await live_line_of(principal, session, line_id)
    data = await request.body()  # bounded by CENTREX_API_MAX_BODY_BYTES before it is read
    return await service.upload_greeting(
        session, spool, line, data, max_s=settings.voicemail_max_greeting_s,
        default_enabled=settings.voicemail_default_enabled,
    )  # fmt: skip


@router.delete("/voicemail/greeting", response_model=VoicemailOut)
async def remove_greeting(
    line_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, settings: SettingsDep,
    spool: SpoolDep,
) -> VoicemailOut:  # fmt: skip
    line = await live_line_of(principal, session, line_id)
    return await service.remove_greeting(session, spool, line, settings.voicemail_default_enabled)


@router.get("/voicemails", response_model=VoicemailList)
async def list_voicemails(
    line_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, spool: SpoolDep
) -> VoicemailList:
    line = await live_line_of(principal, session, line_id)
    return VoicemailList(items=await service.list_messages(spool, line))


@router.get(
    "/voicemails/{msg_id}",
    response_class=FileResponse,
    responses={200: {"content": {"audio/wav": {}}, "description": "The message, as WAV."}},
)
async def download_voicemail(
    line_id: uuid.UUID, msg_id: MsgId, session: SessionDep, principal: PrincipalDep,
    spool: SpoolDep,
) -> FileResponse:  # fmt: skip
    line = await live_line_of(principal, session, line_id)
    message = await service.find_message(spool, line, msg_id)
    return FileResponse(
        message.audio, media_type="audio/wav", filename=f"voicemail-{message.info.msg_id}.wav"
    )


@router.delete("/voicemails/{msg_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_voicemail(
    line_id: uuid.UUID, msg_id: MsgId, session: SessionDep, principal: PrincipalDep,
    spool: SpoolDep,
) -> Response:  # fmt: skip
    line = await live_line_of(principal, session, line_id)
    await service.delete_message(session, spool, line, msg_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
