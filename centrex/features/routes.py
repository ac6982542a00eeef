"""``GET/PATCH /v1/lines/{line_id}/features``: forwarding, do-not-disturb, privacy."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from centrex.api.deps import PrincipalDep, SessionDep, visible
from centrex.features import service
from centrex.features.schemas import LineFeaturesOut, LineFeaturesPatch
from centrex.services import lines as line_service

router = APIRouter(tags=["features"])


async def _line(session: SessionDep, principal: PrincipalDep, line_id: uuid.UUID):
    line = await line_service.get_live_line(session, line_id)
    visible(principal, line.customer_id, "line_id", f"no line with id {line_id}")
    return line


@router.get("/v1/lines/{line_id}/features", response_model=LineFeaturesOut)
async def get_features(
    line_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> LineFeaturesOut:
    line = await _line(session, principal, line_id)
    return LineFeaturesOut.model_validate(await service.features_of(session, line))


@router.patch("/v1/lines/{line_id}/features", response_model=LineFeaturesOut)
async def update_features(
    line_id: uuid.UUID, body: LineFeaturesPatch, session: SessionDep, principal: PrincipalDep
) -> LineFeaturesOut:
    line = await _line(session, principal, line_id)
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    return LineFeaturesOut.model_validate(await service.update_features(session, line, changes))
