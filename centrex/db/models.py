"""The schema: the database is the source of truth, Asterisk a projection of it."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    # Server-side defaults (created_at) come back with the INSERT ... RETURNING, so a freshly
    # created object is complete without a lazy load (which async sessions cannot do).
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012


class SyncState(enum.StrEnum):
    """Where a provisioned object stands against Asterisk."""

    pending = "pending"  # written in the DB, not (yet) confirmed in Asterisk
    synced = "synced"  # Asterisk holds exactly what the DB says


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    # The operator's own account reference, if it has one; unique so a retried POST can't
    # create the same customer twice.
    external_ref: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    # Contract art. 9: French numbers only for customers residing in metropolitan France
    # ("FR"; overseas territories have codes of their own), with supporting documents checked.
    residence_country: Mapped[str | None] = mapped_column(String(2))
    documents_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where the operator's notices go (e.g. a destination suspended, art. 6).
    email: Mapped[str | None] = mapped_column(String(254))
    # What a fraud suspicion does to this customer's line (flag, national_only,
    # emergency_only); None: the platform's CENTREX_FRAUD_ACTION.
    fraud_action: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    lines: Mapped[list[Line]] = relationship(back_populates="customer")


class Line(Base):
    """A SIP line: one credential, one registered device at a time (contract art. 17)."""

    __tablename__ = "lines"
    __table_args__ = (
        # A username stays reserved after delete: CDRs and logs keep naming it unambiguously.
        Index("ix_lines_customer_live", "customer_id", postgresql_where=text("deleted_at IS NULL")),
        CheckConstraint(
            "media_encryption IN ('none', 'sdes_optional', 'sdes_required')",
            name="ck_lines_media_encryption",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    label: Mapped[str] = mapped_column(String(200))
    sip_username: Mapped[str] = mapped_column(String(64), unique=True)
    # Only the digest HA1 (md5 of user:realm:password) is kept: the password itself is shown
    # once, in the create response, and never stored.
    sip_ha1: Mapped[str] = mapped_column(String(32))
    sip_realm: Mapped[str] = mapped_column(String(64))
    max_calls: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    # The line's number: its caller ID outside, and what reaches it from outside.
    main_number: Mapped[str | None] = mapped_column(
        String(16), ForeignKey("numbers.e164"), unique=True
    )
    max_call_duration_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # none | sdes_optional | sdes_required: centrex.asterisk.pjsip_objects.MEDIA_ENCRYPTION.
    media_encryption: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    sync_state: Mapped[SyncState] = mapped_column(
        Enum(SyncState, name="sync_state"), default=SyncState.pending
    )
    sync_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Credentials renewed, and the devices registered with the old ones not yet removed from
    # Asterisk (it was unreachable): the reconciler removes them after pushing the new ones.
    registrations_purge_pending: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="false"
    )

    customer: Mapped[Customer] = relationship(back_populates="lines")


class ActiveCall(Base):
    """A call in progress, admitted by a daemon: the state every daemon shares.

    Keyed for Asterisk by ``(node, channel_id)``: the caller's channel, whose hangup ends the
    call. A row exists from admission until that channel is gone; while it exists, each line in
    :class:`ActiveCallLeg` counts it against its simultaneous-call limit.
    """

    __tablename__ = "active_calls"
    __table_args__ = (UniqueConstraint("node", "channel_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    node: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str] = mapped_column(String(64))
    callee: Mapped[str] = mapped_column(String(64))
    caller_line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    callee_line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    max_duration_s: Mapped[int] = mapped_column(Integer)
    # A call to a ring group: the group (no foreign key: a call outlives a group deleted
    # meanwhile) and, for a hunt, the members not tried yet, in order.
    ring_group_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    hunt_remaining: Mapped[list[uuid.UUID] | None] = mapped_column(ARRAY(Uuid), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A transferred call: the call it continues, and how many transfers its Asterisk call has
    # had (docs/transfers.md).
    transfer_of: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    transfers: Mapped[int] = mapped_column(Integer, server_default="0")

    legs: Mapped[list[ActiveCallLeg]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )


class ActiveCallLeg(Base):
    """One line's share of a call in progress (caller side or callee side)."""

    __tablename__ = "active_call_legs"

    call_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("active_calls.id", ondelete="CASCADE"), primary_key=True
    )
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), primary_key=True, index=True)
    # "caller" | "callee" | "member": a ring group member being rung (released when another
    # member answers, or when a hunt moves on) | "payer": a line paying for an outside leg of a
    # transferred call, its phone gone (docs/transfers.md).
    role: Mapped[str] = mapped_column(String(8))

    call: Mapped[ActiveCall] = relationship(back_populates="legs")


class ClusterNode(Base):
    """A node's heartbeat (issue 19): its daemon sets ``last_seen_at`` to PostgreSQL's now()
    every few seconds while its Asterisk answers over ARI. Another node's daemon judges it by
    the same clock and releases the calls of a node silent for longer than
    ``CENTREX_NODE_LOST_AFTER_S`` (centrex/control/reaper.py). A node with no row is never
    judged (the single-machine shape, older daemons)."""

    __tablename__ = "cluster_nodes"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CallCutoff(Base):
    """A call hung up because its answered duration reached the maximum (contract art. 8)."""

    __tablename__ = "call_cutoffs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    call_id: Mapped[uuid.UUID] = mapped_column(unique=True)  # the ActiveCall it was
    node: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64))
    caller_line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    callee_line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_duration_s: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32))  # "max_duration"
    enforced_by: Mapped[str] = mapped_column(String(16))  # "daemon" | "asterisk"


class NumberStatus(enum.StrEnum):
    free = "free"  # allocatable (once its quarantine, if any, is over)
    assigned = "assigned"


class NumberBlock(Base):
    """A range of numbers the operator holds, loaded with ``POST /v1/number-blocks``."""

    __tablename__ = "number_blocks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    first_e164: Mapped[str] = mapped_column(String(16))
    last_e164: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    zone: Mapped[str | None] = mapped_column(String(1))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PhoneNumber(Base):
    """One number of the inventory; never sold, transferred or owned (art. 9): assigned.

    An assigned number reaches the line whose ``main_number`` it is; any other assigned number
    is an *alias*: it works once attached to a line (``line_id``) or a ring group
    (``ring_group_id``), and until then answers "not in service".
    """

    __tablename__ = "numbers"
    __table_args__ = (
        Index("ix_numbers_free", "kind", "zone", postgresql_where=text("status = 'free'")),
        CheckConstraint(
            "line_id IS NULL OR ring_group_id IS NULL", name="ck_numbers_one_destination"
        ),
    )

    e164: Mapped[str] = mapped_column(String(16), primary_key=True)
    national: Mapped[str] = mapped_column(String(10), unique=True)
    block_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("number_blocks.id"))
    kind: Mapped[str] = mapped_column(String(20))
    zone: Mapped[str | None] = mapped_column(String(1))
    tier: Mapped[str | None] = mapped_column(String(8))  # silver / gold, from the tier rules
    status: Mapped[NumberStatus] = mapped_column(
        Enum(NumberStatus, name="number_status"), default=NumberStatus.free
    )
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    monthly_fee_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    quarantine_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # lines.main_number points here and this points back: use_alter tells SQLAlchemy which of the
    # two constraints comes after both tables (as migration 0007 did).
    line_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("lines.id", name="fk_numbers_line", use_alter=True), index=True
    )
    ring_group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ring_groups.id", name="fk_numbers_ring_group"), index=True
    )


class NumberTierRule(Base):
    """An operator's Silver/Gold rule: a pattern over the national number, and its fee."""

    __tablename__ = "number_tier_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tier: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(100))
    pattern: Mapped[str] = mapped_column(String(200))
    monthly_fee_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Trunk(Base):
    """The operator's interconnect to the public network (a carrier's SIP peer)."""

    __tablename__ = "trunks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=5060, server_default="5060")
    # Credentials the carrier asks of us, if any. Unlike a line's, this password must be kept:
    # Asterisk answers the carrier's challenges with it.
    username: Mapped[str | None] = mapped_column(String(100))
    password: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RingStrategy(enum.StrEnum):
    ring_all = "ring_all"  # every member at once; the first to answer gets the call
    hunt = "hunt"  # one member at a time, in order, each for ring_timeout_s


class RingGroup(Base):
    """Lines of one customer rung together for the numbers routed to the group (art. 2, 9)."""

    __tablename__ = "ring_groups"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[RingStrategy] = mapped_column(Enum(RingStrategy, name="ring_strategy"))
    # ring_all: how long everyone rings; hunt: how long each member rings before the next.
    ring_timeout_s: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    members: Mapped[list[RingGroupMember]] = relationship(
        order_by="RingGroupMember.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )


class RingGroupMember(Base):
    __tablename__ = "ring_group_members"
    __table_args__ = (UniqueConstraint("group_id", "line_id"),)

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ring_groups.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # hunt order, from 0
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), index=True)


class CallAttempt(Base):
    """What the daemon decided about a call, recorded by ``centrex_admit_call`` in the same
    statement as the decision; joined to Asterisk's channel events to make the CDR, then
    deleted. Keyed like the call: ``(node, channel_id)``, the caller's channel, whose id is the
    call's Asterisk linked id."""

    __tablename__ = "call_attempts"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[uuid.UUID] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16))  # admitted | refused_limit | refused_policy
    direction: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str] = mapped_column(String(64))
    callee: Mapped[str] = mapped_column(String(64))
    caller_line_id: Mapped[uuid.UUID | None] = mapped_column()
    callee_line_id: Mapped[uuid.UUID | None] = mapped_column()
    ring_group_id: Mapped[uuid.UUID | None] = mapped_column()
    max_duration_s: Mapped[int] = mapped_column(Integer)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)  # why it was refused
    transfer_of: Mapped[uuid.UUID | None] = mapped_column()  # docs/transfers.md
    paid_by_line_id: Mapped[uuid.UUID | None] = mapped_column()
    # The deadline a transferred call keeps from the call it continues (docs/transfers.md).
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Cdr(Base):
    """One call attempt, from the customer's side (contract art. 11.2, 18.2): the evidence.

    Natural key ``(node, linkedid)``: Asterisk's linked id is unique per node and call, so a
    replayed journal never inserts a call twice."""

    __tablename__ = "cdrs"
    __table_args__ = (
        UniqueConstraint("node", "linkedid", name="uq_cdrs_node_linkedid"),
        Index("ix_cdrs_start", "start_at", "id"),
        Index("ix_cdrs_customer_start", "customer_id", "start_at"),
        Index("ix_cdrs_caller_line_start", "caller_line_id", "start_at"),
        Index("ix_cdrs_callee_line_start", "callee_line_id", "start_at"),
        Index("ix_cdrs_destination_start", "destination", "start_at"),
        # The transferred parts a line pays (billing rates them to it): few rows.
        Index(
            "ix_cdrs_paid_by",
            "paid_by_line_id",
            postgresql_where=text("paid_by_line_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[uuid.UUID | None] = mapped_column()  # the daemon's, if it decided the call
    customer_id: Mapped[uuid.UUID | None] = mapped_column()
    caller_line_id: Mapped[uuid.UUID | None] = mapped_column()
    callee_line_id: Mapped[uuid.UUID | None] = mapped_column()  # the line that took it
    ring_group_id: Mapped[uuid.UUID | None] = mapped_column()
    dialled_number: Mapped[str | None] = mapped_column(String(64))  # what the caller dialled
    direction: Mapped[str] = mapped_column(String(16))  # outbound | inbound | on-net
    caller: Mapped[str] = mapped_column(String(64))  # E.164 where there is one
    callee: Mapped[str] = mapped_column(String(64))
    destination_country: Mapped[str | None] = mapped_column(String(2))
    destination: Mapped[str | None] = mapped_column(String(16))  # allow-list code (policy)
    reason: Mapped[str | None] = mapped_column(Text)  # why the daemon refused it
    # A forward's own record (issue 15, centrex/features/cdr_legs.py): the call's record's id.
    leg_of: Mapped[uuid.UUID | None] = mapped_column()
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answer_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    billed_s: Mapped[int] = mapped_column(Integer)
    disposition: Mapped[str] = mapped_column(String(16))
    q850_cause: Mapped[int | None] = mapped_column(Integer)
    sip_code: Mapped[int] = mapped_column(Integer)
    written_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )
    # A transferred part of a call: the daemon's call id of the part it continues, and the
    # line billed for its outside leg (docs/transfers.md).
    transfer_of: Mapped[uuid.UUID | None] = mapped_column()
    paid_by_line_id: Mapped[uuid.UUID | None] = mapped_column()


class CdrCheckpoint(Base):
    """How far a node's CEL journal has been shipped; moved in the same transaction as the CDRs
    it covers, so a restart resumes exactly there."""

    __tablename__ = "cdr_checkpoints"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    journal: Mapped[str] = mapped_column(String(255))  # the segment file name
    offset: Mapped[int] = mapped_column(BigInteger)  # first byte not yet fully shipped
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Destination(Base):
    """A destination the operator allows calls to (art. 6): an E.164 country code ("44"), or
    one of the French special ranges, which are destinations of their own ("33-premium")."""

    __tablename__ = "destinations"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PolicyRestriction(Base):
    """A suspension or restriction of a line or a customer (art. 16, 19): who, when, why, and
    who lifted it. Append-only: the audit trail."""

    __tablename__ = "policy_restrictions"
    __table_args__ = (
        Index("ix_restrictions_target", "target_type", "target_id"),
        # What centrex_policy_level reads on every call: the restrictions in force.
        Index("ix_restrictions_in_force", "target_id", postgresql_where=text("lifted_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    target_type: Mapped[str] = mapped_column(String(8))  # line | customer
    target_id: Mapped[uuid.UUID] = mapped_column()
    level: Mapped[str] = mapped_column(String(16))  # national_only | emergency_only | suspended
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))  # "fraud-control" when automatic
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lifted_by: Mapped[str | None] = mapped_column(String(100))
    lift_reason: Mapped[str | None] = mapped_column(Text)
    suspicion_id: Mapped[uuid.UUID | None] = mapped_column()  # when fraud control set it
    # Who really acted: the API token (``actor`` is the caller's free-text note). None: the
    # platform itself (fraud control), or before tokens existed (migration 0015).
    principal: Mapped[str | None] = mapped_column(String(100))
    principal_token_id: Mapped[uuid.UUID | None] = mapped_column()
    lifted_by_principal: Mapped[str | None] = mapped_column(String(100))
    lifted_by_principal_token_id: Mapped[uuid.UUID | None] = mapped_column()


class CredentialRenewal(Base):
    """A renewal of a line's SIP password (art. 16, 17): who, when, why; never the password or
    its hash. Append-only: a trigger refuses UPDATE and DELETE (migration 0012)."""

    __tablename__ = "credential_renewals"
    __table_args__ = (
        Index("ix_credential_renewals_line", "line_id"),
        # The edge reads the last hour's renewals every second (migration 0033_edge_purges).
        Index("ix_credential_renewals_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The API token that renewed (``actor`` is a free-text note); None before migration 0015.
    principal: Mapped[str | None] = mapped_column(String(100))
    principal_token_id: Mapped[uuid.UUID | None] = mapped_column()


class FraudSuspicion(Base):
    """A fraud rule fired for a line in a billing period (art. 16), with its evidence; raised
    once per line, rule and period."""

    __tablename__ = "fraud_suspicions"
    __table_args__ = (UniqueConstraint("line_id", "rule", "period_start"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), index=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("customers.id"))
    rule: Mapped[str] = mapped_column(
        String(32)
    )  # distinct_numbers | long_call | automated_dialling
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    evidence: Mapped[dict] = mapped_column(JSONB)
    action: Mapped[str] = mapped_column(String(16))  # flag | national_only | emergency_only
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LinePeriodNumber(Base):
    """A number a line called in a billing period: the distinct-numbers rule counts these rows
    (one insert per new number, never a CDR scan)."""

    __tablename__ = "line_period_numbers"

    line_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), primary_key=True)


class LinePeriodCount(Base):
    __tablename__ = "line_period_counts"

    line_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    distinct_numbers: Mapped[int] = mapped_column(Integer)


class SipBan(Base):
    """A source address banned for failed authentications (issue 12): inserted by the guard,
    listed and lifted through the API. In force while ``lifted_at`` is null and ``until`` is
    ahead."""

    __tablename__ = "sip_bans"
    __table_args__ = (
        Index("ix_sip_bans_address", "address", "banned_at"),
        Index("ix_sip_bans_not_lifted", "until", postgresql_where=text("lifted_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    address: Mapped[str] = mapped_column(INET)
    banned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    failures: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict] = mapped_column(JSONB)
    node: Mapped[str] = mapped_column(String(64))
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lifted_by: Mapped[str | None] = mapped_column(String(100))
