"""The API's boundary: what operators send and get back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from centrex.api.fields import EMAIL, NO_NUL, Bool, Int, IntRange, NumberText, Text, omittable
from centrex.db.models import SyncState
from centrex.extensions.rules import extension_error
from centrex.services.policy import DESTINATION_CODE

Label = Text(200)
ShortLabel = Text(100)
#: PostgreSQL's integer, the widest amount a column of cents holds.
MAX_CENTS = 2**31 - 1


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class StrictInput(BaseModel):
    # Unknown fields are refused, not ignored: a typo ("lable") must not create a line silently.
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def no_nul_character(cls, value: object) -> object:
        # PostgreSQL's text types cannot hold U+0000: refused here, named, instead of a 500.
        if _has_nul(value):
            raise ValueError("must not contain the NUL character (U+0000)")
        return value


Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=EMAIL),
    Field(description="Where the operator's notices go."),
]


class CustomerIn(StrictInput):
    name: Label
    residence_country: CountryCode | None = None
    email: Email | None = None
    external_ref: ShortLabel | None = Field(
        None, description="The operator's own reference for this customer; unique."
    )


CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    Field(description="ISO 3166-1 alpha-2 country of residence; FR is metropolitan France."),
]


class CustomerPatch(StrictInput):
    """Residency facts checked by the operator (contract art. 9, French numbers)."""

    name: Label = omittable()
    residence_country: CountryCode | None = None
    email: Email | None = None
    fraud_action: Literal["flag", "national_only", "emergency_only"] | None = Field(
        None, description="What a fraud suspicion does to its lines; null: the platform's."
    )
    documents_verified: Bool | None = Field(
        None, description="true once the supporting documents were checked; false revokes."
    )


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    external_ref: str | None
    residence_country: str | None
    documents_verified_at: datetime | None
    email: str | None
    fraud_action: str | None
    created_at: datetime


MaxCalls = IntRange(1, 1000, "Simultaneous calls allowed; default 2 (art. 8).")
MaxDuration = IntRange(
    1, 86400, "Answered seconds before a call is cut; default the platform's (7200)."
)
MediaEncryption = Annotated[
    Literal["none", "sdes_optional", "sdes_required"],
    Field(
        description="SRTP on the line's calls (docs/tls.md): none (plain RTP), sdes_optional "
        "(SRTP when the device offers or accepts it), sdes_required (SRTP or 488). Default none."
    ),
]


def _public_short_number(value: str) -> str:
    if why := extension_error(value):
        raise ValueError(why)
    return value


ExtensionText = Annotated[
    str,
    # 2-6 digits, the first 2-9, and not 4 digits starting with 3 (extension_error).
    StringConstraints(pattern=r"^(?:[2-9][0-9]{1,2}|[24-9][0-9]{3}|[2-9][0-9]{4,5})$"),
    AfterValidator(_public_short_number),
    Field(
        description="A short number other lines of the customer dial: 2-6 digits, the first "
        "2-9, not 4 digits starting with 3 (public short numbers); unique in the customer."
    ),
]


class LineIn(StrictInput):
    customer_id: uuid.UUID
    label: Label
    max_calls: MaxCalls | None = None
    max_call_duration_s: MaxDuration | None = None
    media_encryption: MediaEncryption | None = None
    extension: ExtensionText | None = Field(
        None, description="Chosen; unset: the lowest free from 200."
    )


class LinePatch(StrictInput):
    """Only the fields given change; ``null`` for a limit means "back to the default"."""

    label: Label = omittable()
    max_calls: MaxCalls | None = None
    max_call_duration_s: MaxDuration | None = None
    main_number: NumberText | None = Field(
        None, description="A number assigned to the line's customer: its caller ID; null: none."
    )
    media_encryption: MediaEncryption | None = None
    extension: ExtensionText = omittable("Never null: a line always has an extension.")


class LineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    label: str
    sip_username: str
    sip_realm: str
    max_calls: int
    max_call_duration_s: int | None
    main_number: str | None
    extension: str | None = Field(description="What other lines of the customer dial.")
    media_encryption: str = Field(description="none, sdes_optional or sdes_required.")
    sync_state: SyncState = Field(
        description="synced: Asterisk holds the line; pending: saved, not yet in Asterisk."
    )
    sync_error: str | None
    created_at: datetime


class LineCreated(LineOut):
    sip_password: str = Field(description="Shown in this response only; it is never stored.")
    sip_server: str = Field(description="host:port softphones register to (UDP or TCP).")
    sip_tls_server: str = Field(description="host:port for SIP over TLS.")


class LinePage(BaseModel):
    items: list[LineOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page.")


class CallOut(BaseModel):
    """A call in progress, seen from one of its lines."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    node: str
    channel_id: str
    direction: str = Field(description="outbound: this line called; inbound: it was called.")
    peer: str = Field(description="The other party: a SIP username or a number.")
    started_at: datetime
    answered_at: datetime | None
    deadline_at: datetime | None = Field(description="When it will be cut; set once answered.")
    max_duration_s: int


class NumberBlockIn(StrictInput):
    first: NumberText = Field(description="First number of the range, national or E.164.")
    last: NumberText = Field(description="Last number of the range (at most 10,000 numbers).")


class NumberBlockOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    first_e164: str
    last_e164: str
    size: int
    kind: str
    zone: str | None
    created_at: datetime


class TierRuleIn(StrictInput):
    tier: Literal["silver", "gold"]
    name: ShortLabel
    pattern: str = Field(
        description="Regular expression searched in the national number.",
        min_length=1, max_length=200, pattern=NO_NUL,
    )  # fmt: skip
    monthly_fee_cents: Int = Field(ge=0, le=MAX_CENTS)


class TierRuleOut(TierRuleIn):
    model_config = ConfigDict(from_attributes=True, extra="ignore")

    id: uuid.UUID


class AllocateIn(StrictInput):
    customer_id: uuid.UUID
    kind: Literal["geographic", "non_geographic", "special_free", "special_charged"]
    zone: Literal["1", "2", "3", "4", "5"] | None = Field(
        None, description="Geographic zone (first digit after 0), for geographic numbers."
    )
    number: NumberText | None = Field(
        None, description="A specific free Silver or Gold number; others are allocated at random."
    )


class NumberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    e164: str
    national: str
    kind: str
    zone: str | None
    tier: str | None
    status: str
    customer_id: uuid.UUID | None
    monthly_fee_cents: int
    assigned_at: datetime | None
    quarantine_until: datetime | None
    line_id: uuid.UUID | None = Field(description="The line this alias number is attached to.")
    ring_group_id: uuid.UUID | None = Field(
        description="The ring group this alias number is attached to."
    )


class DestinationIn(StrictInput):
    """Where an alias number leads: exactly one of a line or a ring group of its customer."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["line_id"]}, {"required": ["ring_group_id"]}]}
    )

    line_id: uuid.UUID = omittable()
    ring_group_id: uuid.UUID = omittable()

    @model_validator(mode="after")
    def exactly_one(self) -> DestinationIn:
        if (self.line_id is None) == (self.ring_group_id is None):
            raise ValueError("give exactly one of line_id and ring_group_id")
        return self


RingTimeout = IntRange(5, 300, "ring_all: how long all ring; hunt: how long each rings.")
Members = Annotated[
    list[uuid.UUID],
    Field(max_length=32, description="Line ids of the group's customer, in hunt order."),
]


class RingGroupIn(StrictInput):
    customer_id: uuid.UUID
    name: Label
    strategy: Literal["ring_all", "hunt"]
    ring_timeout_s: RingTimeout = 20
    members: Members
    extension: ExtensionText | None = Field(None, description="Unset: none.")


class RingGroupPatch(StrictInput):
    name: Label = omittable()
    strategy: Literal["ring_all", "hunt"] = omittable()
    ring_timeout_s: RingTimeout = omittable()
    members: Members = omittable("[] empties the group.")
    extension: ExtensionText | None = Field(None, description="null: none.")


class RingGroupOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    name: str
    strategy: str
    ring_timeout_s: int
    members: list[uuid.UUID]
    extension: str | None
    created_at: datetime


TrunkName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
HostName = Annotated[
    str,
    StringConstraints(
        pattern=r"^(?:\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$"
    ),
]


class TrunkIn(StrictInput):
    # username and password go together: both or neither.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["username", "password"]},
        {"not": {"anyOf": [{"required": ["username"]}, {"required": ["password"]}]}},
    ]})  # fmt: skip

    name: TrunkName
    host: HostName = Field(description="The carrier's SIP address; its calls are recognised by it.")
    port: Int = Field(5060, ge=1, le=65535)
    username: str = omittable(min_length=1, max_length=100, pattern=NO_NUL)
    password: str = omittable(min_length=1, max_length=200, pattern=NO_NUL)

    @model_validator(mode="after")
    def credentials_go_together(self) -> TrunkIn:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        return self


class TrunkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    host: str
    port: int
    username: str | None
    created_at: datetime


class CdrOut(BaseModel):
    """One call attempt, from the customer's side."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    node: str
    linkedid: str = Field(description="Asterisk's linked id: with node, the record's natural key.")
    call_id: uuid.UUID | None
    customer_id: uuid.UUID | None
    caller_line_id: uuid.UUID | None
    callee_line_id: uuid.UUID | None = Field(description="The line that took the call.")
    ring_group_id: uuid.UUID | None
    dialled_number: str | None
    direction: str = Field(description="outbound | inbound | on-net")
    caller: str
    callee: str
    destination_country: str | None
    destination: str | None = Field(
        description='Its allow-list destination (policy); "emergency" for an emergency number.'
    )
    start_at: datetime
    answer_at: datetime | None
    end_at: datetime
    duration_ms: int
    billed_s: int
    disposition: str = Field(
        description="answered | busy | no_answer | failed | refused_limit | refused_policy | cut"
        " | voicemail | lost (the call's node was lost: its end is the node's last heartbeat)"
    )
    q850_cause: int | None
    sip_code: int
    reason: str | None = Field(description="Why the daemon refused it, if it did.")
    transfer_of: uuid.UUID | None = Field(
        None, description="A transferred part of a call: the call_id of the part it continues."
    )
    paid_by_line_id: uuid.UUID | None = Field(
        None, description="The line billed for its outside leg (a transfer's), if not its caller."
    )
    leg_of: uuid.UUID | None = Field(
        None, description="A forward's own record: the id of the call's record it belongs to."
    )


class CdrPage(BaseModel):
    items: list[CdrOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page.")


class LineUsageOut(BaseModel):
    line_id: uuid.UUID
    since: datetime
    until: datetime
    calls_placed: int
    calls_answered: int
    billed_seconds: int
    billed_minutes: float
    distinct_numbers_called: int
    calls_received: int


Actor = Annotated[
    Text(100),
    Field(description="Who is making the change (recorded for the audit trail)."),
]
Reason = Annotated[
    Text(1000),
    Field(description="Why (recorded, and told to the customer where there is a notice)."),
]


class AllowedDestinationIn(StrictInput):
    code: str = Field(
        description='E.164 country code ("44"), or 33-free / 33-shared-cost / 33-premium.',
        pattern=DESTINATION_CODE,
    )
    name: ShortLabel | None = None


class DestinationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    suspended_at: datetime | None
    suspended_reason: str | None
    created_at: datetime


class ChangeIn(StrictInput):
    actor: Actor
    reason: Reason


class SuspensionOut(BaseModel):
    destination: DestinationOut
    notified: list[str] = Field(description="Customer emails the notice was sent to.")
    customers_without_email: list[uuid.UUID]


class RestrictionIn(ChangeIn):
    level: Literal["national_only", "emergency_only", "suspended"]


class RestrictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    target_type: str
    target_id: uuid.UUID
    level: str
    reason: str
    actor: str = Field(description="The caller's free-text note of who acted.")
    principal: str | None = Field(
        description="The API token that acted (its name); null: the platform (fraud control)."
    )
    principal_token_id: uuid.UUID | None = Field(description="Null: the bootstrap token too.")
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None = Field(description="The lifter's free-text note.")
    lifted_by_principal: str | None
    lifted_by_principal_token_id: uuid.UUID | None
    lift_reason: str | None
    suspicion_id: uuid.UUID | None


class FraudSuspicionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    line_id: uuid.UUID
    customer_id: uuid.UUID
    rule: str
    period_start: datetime
    evidence: dict
    action: str
    created_at: datetime


class CredentialRenewalOut(BaseModel):
    """One renewal of a line's SIP password: who, when, why (never the password)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    line_id: uuid.UUID
    actor: str
    reason: str
    principal: str | None = Field(description="The API token that renewed (its name).")
    principal_token_id: uuid.UUID | None
    created_at: datetime


class CredentialsRenewed(LineOut):
    sip_password: str = Field(
        description="The new password, shown in this response only; the old one is refused."
    )
    sip_server: str = Field(description="host:port softphones register to.")
    renewal: CredentialRenewalOut
