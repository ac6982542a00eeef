"""Catalogue items other than plans (issue 17): alias and special numbers' monthly fees,
optional services (a studio-recorded message), one-off provisions; versioned and
effective-dated like plans (never edited), and the customers' subscriptions to them. The
invoice run bills them (centrex/billing/items.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from centrex.api.deps import PrincipalDep, SessionDep, visible
from centrex.billing.models import CatalogueItem, ItemSubscription
from centrex.billing.rules.money import cents_half_up
from centrex.billing.rules.rating import billing_day
from centrex.billing.schemas import (
    CatalogueItemIn,
    CatalogueItemOut,
    ItemSubscriptionEndIn,
    ItemSubscriptionIn,
    ItemSubscriptionOut,
)
from centrex.billing.service import _ht
from centrex.db.models import Customer
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference

router = APIRouter(tags=["billing"])


@router.post("/v1/billing/items", status_code=status.HTTP_201_CREATED,
             response_model=CatalogueItemOut)  # fmt: skip
async def create_item(body: CatalogueItemIn, session: SessionDep) -> CatalogueItem:
    """An item's next version (its first, for a new code): after the current version's start
    and not in the past; a first version may be dated back. Versions are never edited."""
    today = billing_day(datetime.now(UTC))
    latest = (await session.execute(
        select(func.max(CatalogueItem.version), func.max(CatalogueItem.effective_from))
        .where(CatalogueItem.code == body.code)
    )).one()  # fmt: skip
    if latest[0] is not None:
        if body.effective_from <= latest[1]:
            raise Conflict("effective_from", f"version {latest[0]} is in force from "
                           f"{latest[1]}; a new version starts after it")  # fmt: skip
        if body.effective_from < today:
            raise ServiceError("effective_from", "a new version cannot start in the past")
    item = CatalogueItem(
        code=body.code, version=(latest[0] or 0) + 1, name=body.name, category=body.category,
        billing=body.billing, effective_from=body.effective_from,
        entered_ttc=body.prices_include_vat, vat_rate=body.vat_rate,
        fee_cents=cents_half_up(_ht(body.fee, body.vat_rate, body.prices_include_vat)),
    )  # fmt: skip
    session.add(item)
    try:
        await session.commit()
    except IntegrityError:  # two versions created at once
        await session.rollback()
        raise Conflict("code", f"item {body.code!r} changed meanwhile; try again") from None
    return item


@router.get("/v1/billing/items", response_model=list[CatalogueItemOut])
async def list_items(session: SessionDep) -> list[CatalogueItem]:
    query = select(CatalogueItem).order_by(CatalogueItem.code, CatalogueItem.version)
    return list(await session.scalars(query))


@router.post("/v1/billing/item-subscriptions", status_code=status.HTTP_201_CREATED,
             response_model=ItemSubscriptionOut)  # fmt: skip
async def subscribe_item(body: ItemSubscriptionIn, session: SessionDep) -> ItemSubscription:
    if await session.get(Customer, body.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {body.customer_id}")
    first = await session.scalar(
        select(func.min(CatalogueItem.effective_from)).where(CatalogueItem.code == body.item_code)
    )
    if first is None:
        raise UnknownReference("item_code", f"no catalogue item {body.item_code!r}")
    if body.starts_on < first:
        raise ServiceError("starts_on", f"item {body.item_code!r} is priced from {first}")
    if body.ends_on is not None and body.ends_on < body.starts_on:
        raise ServiceError("ends_on", "ends_on comes on or after starts_on")
    subscription = ItemSubscription(id=uuid.uuid4(), **body.model_dump())
    session.add(subscription)
    await session.commit()
    return subscription


@router.post("/v1/billing/item-subscriptions/{subscription_id}/end",
             response_model=ItemSubscriptionOut)  # fmt: skip
async def end_item(
    subscription_id: uuid.UUID, body: ItemSubscriptionEndIn, session: SessionDep
) -> ItemSubscription:
    """Its last day: monthly fees stop there (prorated); a month already billed in advance is
    not refunded (docs/billing.md)."""
    subscription = await session.scalar(
        select(ItemSubscription).where(ItemSubscription.id == subscription_id).with_for_update()
    )
    if subscription is None:
        raise NotFound("subscription_id", f"no item subscription {subscription_id}",
                       location="path")  # fmt: skip
    if subscription.ends_on is not None:
        raise Conflict("ends_on", f"it already ends on {subscription.ends_on}")
    if body.ends_on < subscription.starts_on:
        raise ServiceError("ends_on", f"before its start ({subscription.starts_on})")
    subscription.ends_on = body.ends_on
    await session.commit()
    return subscription


@router.get("/v1/customers/{customer_id}/item-subscriptions",
            response_model=list[ItemSubscriptionOut])  # fmt: skip
async def list_item_subscriptions(
    customer_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[ItemSubscription]:
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")
    query = (select(ItemSubscription).where(ItemSubscription.customer_id == customer_id)
             .order_by(ItemSubscription.starts_on, ItemSubscription.created_at))  # fmt: skip
    return list(await session.scalars(query))
