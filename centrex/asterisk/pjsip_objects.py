"""What a provisioned line looks like inside Asterisk: res_pjsip auth, aor and endpoint.

Pure: these functions only describe objects; ``centrex.services`` pushes them over ARI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from centrex.voicemail.rules import mailbox_of

# Order matters on create (an endpoint names its auth and aor, an identify its endpoint) and is
# reversed on delete.
PJSIP_OBJECT_TYPES: tuple[str, ...] = ("auth", "aor", "endpoint", "identify")
LINE_OBJECT_TYPES: tuple[str, ...] = ("auth", "aor", "endpoint")
LINES_CONTEXT = "centrex-lines"
TRUNKS_CONTEXT = "centrex-trunks"
TRUNK_PREFIX = "trunk-"  # line usernames never contain "-": the two can't collide
# The header the SIP edge stamps on a recognised carrier's requests (docs/cluster.md)
TRUNK_HEADER = "X-Centrex-Trunk"
# astdb family and key of the trunk emergency calls leave through when the daemon cannot decide
# them: the reconciler writes it, ${DB(centrex_routes/emergency_trunk)} in extensions.conf.j2
# reads it. A family of its own: "centrex" holds the provisioned objects, read whole.
EMERGENCY_TRUNK_KEY = ("centrex_routes", "emergency_trunk")
# sorcery.conf keeps these types in astdb under one prefix: keys "/centrex/<type>/<id>".
ASTDB_FAMILY = "centrex"
# ... behind one sorcery memory cache per type, named "centrex_<type>" (AMI SorceryMemoryCache*).
SORCERY_CACHE_PREFIX = "centrex_"
# 0: cached objects never expire. Asterisk 22.10.1 fills the cache only when an object is
# written through sorcery, never when it is read: an expired object would be read from astdb
# for good (see docs/asterisk-sandbox.md).
SORCERY_CACHE_LIFETIME_S = 0


# A line's media_encryption (API and database) -> the endpoint fields that make it so.
# SDES carries the SRTP keys in the SDP, readable by anyone who sees the SIP: meant for devices
# on TLS (docs/tls.md).
MEDIA_ENCRYPTION: Mapping[str, Mapping[str, str]] = {
    # Plain RTP only: an offer of RTP/SAVP is refused (488).
    "none": {"media_encryption": "no", "media_encryption_optimistic": "no"},
    # SRTP when the device offers or accepts it, plain RTP otherwise. Asterisk's own offers are
    # RTP/AVP with a=crypto, which a device without SRTP ignores.
    "sdes_optional": {"media_encryption": "sdes", "media_encryption_optimistic": "yes"},
    # SRTP or no call: an offer without keys is refused (488 Not Acceptable Here).
    "sdes_required": {"media_encryption": "sdes", "media_encryption_optimistic": "no"},
}
DEFAULT_MEDIA_ENCRYPTION = "none"
# A phone that has not answered an OPTIONS within this long is unreachable (Asterisk's default).
QUALIFY_TIMEOUT_S = "3.0"


def sorcery_cache_name(object_type: str) -> str:
    return f"{SORCERY_CACHE_PREFIX}{object_type}"


@dataclass(frozen=True)
class PjsipObject:
    type: str  # "auth" | "aor" | "endpoint"
    id: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.id)


@dataclass(frozen=True)
class LineSpec:
    """The part of a line Asterisk needs to know."""

    username: str
    ha1: str
    realm: str
    media_address: str  # where Asterisk's RTP for this line binds: its SIP address
    media_encryption: str = DEFAULT_MEDIA_ENCRYPTION  # a key of MEDIA_ENCRYPTION
    qualify_frequency_s: int = 0  # an OPTIONS to the registered phone this often; 0: never


def line_objects(line: LineSpec) -> list[PjsipObject]:
    """auth + aor + endpoint for one line, all named after its SIP username."""
    return [
        PjsipObject(
            "auth",
            line.username,
            {
                "auth_type": "digest",
                "username": line.username,
                "realm": line.realm,
                "md5_cred": line.ha1,
            },
        ),
        PjsipObject(
            "aor",
            line.username,
            {
                # Contract art. 17: one connection at a time per credential; a new REGISTER
                # from another device replaces the old contact instead of being refused.
                "max_contacts": "1",
                "remove_existing": "yes",
                # Keeps the phone's NAT binding open, and tells a phone that no longer answers
                # (chan_pjsip then calls only reachable contacts): docs/sip-edge.md.
                "qualify_frequency": str(line.qualify_frequency_s),
                "qualify_timeout": QUALIFY_TIMEOUT_S,
                # Its mailbox: a phone that subscribes to message-summary (RFC 3842) gets
                # message-waiting NOTIFYs. On the aor, not the endpoint: the endpoint's would be
                # unsolicited NOTIFYs to every registered phone, wanted or not. docs/voicemail.md.
                "mailboxes": mailbox_of(line.username),
            },
        ),
        PjsipObject(
            "endpoint",
            line.username,
            {
                "context": LINES_CONTEXT,
                "disallow": "all",
                "allow": "alaw,ulaw",
                # Media always through Asterisk: no re-INVITEs, and the daemon can cut any call.
                "direct_media": "no",
                "auth": line.username,
                "aors": line.username,
                "callerid": f'"{line.username}" <{line.username}>',
                # Without these RTP binds to every address and the first call resolves names.
                "media_address": line.media_address,
                "bind_rtp_to_media_address": "yes",
                # Transfers (REFER) allowed: a blind transfer's new call comes back to the
                # daemon through centrex-transfer (TRANSFER_CONTEXT) and is admitted like any
                # call (docs/transfers.md). Written explicitly, so the reconciler repairs a line
                # pushed while transfers were refused.
                "allow_transfer": "yes",
                # Phones behind NAT (docs/sip-edge.md): answer and call them where their packets
                # come from, not at the private address they write in Via, Contact and SDP.
                "force_rport": "yes",
                "rewrite_contact": "yes",
                "rtp_symmetric": "yes",
                **MEDIA_ENCRYPTION[line.media_encryption],
            },
        ),
    ]


@dataclass(frozen=True)
class TrunkSpec:
    """The operator's interconnect to the public network."""

    name: str
    host: str
    port: int
    username: str | None  # digest credentials the carrier asks of us, if any
    password: str | None
    media_address: str
    # The SIP edge's host:port in the clustered shape (docs/cluster.md), else None.
    edge: str | None = None

    @property
    def endpoint_id(self) -> str:
        return f"{TRUNK_PREFIX}{self.name}"


def trunk_identify(trunk: TrunkSpec) -> dict[str, str]:
    """How a node recognises the trunk's requests. Asterisk ORs ``match`` and ``match_header``
    within one identify, so behind the edge only the header (every request there comes from
    the edge's address; the edge stamps the header on the carrier's requests only)."""
    if trunk.edge:
        return {"match_header": f"{TRUNK_HEADER}: {trunk.endpoint_id}"}
    return {"match": trunk.host}


def trunk_objects(trunk: TrunkSpec) -> list[PjsipObject]:
    """aor (where the carrier is), endpoint, identify (its calls are recognised by source
    address; behind the SIP edge by the header the edge adds, and calls to it leave through the
    edge), and an outbound auth when the carrier wants credentials."""
    ident = trunk.endpoint_id
    endpoint = {
        "context": TRUNKS_CONTEXT,
        "disallow": "all",
        "allow": "alaw,ulaw",
        "direct_media": "no",
        "aors": ident,
        # Caller ID goes out as From and P-Asserted-Identity: the carrier trusts us.
        "send_pai": "yes",
        "trust_id_outbound": "yes",
        "trust_id_inbound": "yes",
        "media_address": trunk.media_address,
        "bind_rtp_to_media_address": "yes",
        # A carrier does not transfer our customers' calls: its REFER gets 603 (the call goes
        # on) rather than reaching centrex-transfer, refused there (docs/transfers.md).
        "allow_transfer": "no",
    }
    objects = [
        PjsipObject("aor", ident, {"contact": f"sip:{trunk.host}:{trunk.port}"}),
        PjsipObject("endpoint", ident, endpoint),
        PjsipObject("identify", ident, {"endpoint": ident, **trunk_identify(trunk)}),
    ]
    if trunk.edge:
        endpoint["outbound_proxy"] = f"sip:{trunk.edge};lr"
    if trunk.username:
        endpoint["outbound_auth"] = ident
        objects.insert(
            0,
            PjsipObject(
                "auth",
                ident,
                {
                    "auth_type": "userpass",
                    "username": trunk.username,
                    "password": trunk.password or "",
                },
            ),
        )
    return objects
