"""The one place configuration comes from.

Every setting can be given as an environment variable ``CENTREX_<NAME>`` (``DATABASE_URL`` is also
read as is, the convention most tools share), or in ``var/centrex.env``, which ``centrex up``
writes on first run with freshly generated secrets.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_VAR_DIR = Path("var")
# Shipped placeholders, refused by every command (Settings.default_secrets).
#: Each secret's variable and field.
SECRET_FIELDS = {
    "CENTREX_API_TOKEN": "api_token",
    "CENTREX_AMI_SECRET": "ami_secret",
    "CENTREX_ARI_PASSWORD": "ari_password",
    "CENTREX_ARI_CONTROL_PASSWORD": "ari_control_password",
    "CENTREX_ARI_CDR_PASSWORD": "ari_cdr_password",
    "CENTREX_ASTERISK_DB_PASSWORD": "asterisk_db_password",
    "CENTREX_EDGE_DB_PASSWORD": "edge_db_password",
}
#: The secrets each process uses, and so needs set: a unit of its own may be given only these
#: (deploy/systemd/README.md). Asterisk's configuration holds every Asterisk user's.
SECRETS_OF: dict[str, tuple[str, ...]] = {
    "api": ("CENTREX_API_TOKEN", "CENTREX_AMI_SECRET", "CENTREX_ARI_PASSWORD"),
    "control": ("CENTREX_ARI_CONTROL_PASSWORD",),
    "cdr": ("CENTREX_ARI_CDR_PASSWORD",),
    "guard": (),
    "billing": (),  # `centrex billing ...`: the database only
    "asterisk": (
        "CENTREX_AMI_SECRET",
        "CENTREX_ARI_PASSWORD",
        "CENTREX_ARI_CONTROL_PASSWORD",
        "CENTREX_ARI_CDR_PASSWORD",
        "CENTREX_ASTERISK_DB_PASSWORD",
    ),
    # Kamailio's configuration (the clustered shape's SIP edge): both roles it connects as.
    "edge": ("CENTREX_ASTERISK_DB_PASSWORD", "CENTREX_EDGE_DB_PASSWORD"),
}

#: Used only by the clustered shape's SIP edge (Kamailio): its secrets no other process uses.
EDGE_ONLY_SECRETS = frozenset(SECRETS_OF["edge"]).difference(
    *(names for process, names in SECRETS_OF.items() if process != "edge")
)

USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CONFIG_SECRET = re.compile(r"[!-:<-~]+")  # printable ASCII but space and ';'

#: A SIP bind on every address names no address RTP could bind to and give phones.
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]"})

#: Which process talks to ARI: each has a user of its own (Settings.ari_user).
AriRole = Literal["api", "control", "cdr"]

PLACEHOLDER_SECRETS = frozenset(
    {
        "centrex-ami-change-me",
        "centrex-ari-change-me",
        "centrex-ari-control-change-me",
        "centrex-ari-cdr-change-me",
        "centrex-asterisk-db-change-me",
        "centrex-edge-db-change-me",
        "CHANGE-ME",  # deploy/systemd/centrex.env.example's
    }
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CENTREX_",
        env_file=(DEFAULT_VAR_DIR / "centrex.env",),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- state on this host -------------------------------------------------------------------
    var_dir: Path = Field(DEFAULT_VAR_DIR, description="Runtime state: Postgres cluster, logs.")

    # --- PostgreSQL ---------------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("CENTREX_DATABASE_URL", "DATABASE_URL"),
        description="postgresql+asyncpg://… ; unset: a private cluster under var/ is used.",
    )
    pg_port: int = Field(55432, description="Port of the private cluster (loopback only).")

    # --- Asterisk -----------------------------------------------------------------------------
    asterisk_root: Path = Field(
        Path("/var/cache/centrex/asterisk-root"),
        description="debootstrap root holding Asterisk when the host has none.",
    )
    asterisk_instance: str = Field("main", description="Name of this Asterisk instance.")
    asterisk_host: str = Field(
        "127.0.0.1",
        description="Where centrex reaches Asterisk's AMI and ARI, and where the sandbox makes "
        "them listen: keep it on loopback (they can dial past every policy and read every HA1).",
    )
    sip_bind: str | None = Field(
        None,
        description="Where SIP listens (UDP and TCP): the address phones reach, 0.0.0.0 for "
        "every address; unset: CENTREX_ASTERISK_HOST.",
    )
    sip_port: int = 5060
    ami_port: int = 5038
    http_port: int = 8088
    sip_tls_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        validate_default=True,
        description="SIP over TLS; unset: the SIP port + 1 (5061 with the default 5060).",
    )
    sip_tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate (then its chain) Asterisk presents on SIP/TLS; unset: a "
        "self-signed one the sandbox generates. Checked before anything starts.",
    )
    sip_tls_key_file: Path | None = Field(
        None,
        validate_default=True,
        description="The certificate's private key, PEM, unencrypted; with the certificate.",
    )
    # One Asterisk user per process, each with only what that process does (docs/sip-edge.md,
    # "Private control ports"): AMI for the API's reconciler alone; ARI read-write for the API
    # (provisioning) and the daemon (call control), read-only for the CDR shipper.
    ami_username: str = Field("centrex", description="The API's AMI user (the reconciler).")
    ami_secret: SecretStr = SecretStr("centrex-ami-change-me")
    ari_username: str = Field("centrex", description="The API's ARI user (provisioning).")
    ari_password: SecretStr = SecretStr("centrex-ari-change-me")
    ari_control_username: str = Field(
        "centrex-control", description="The daemon's ARI user (its Stasis application)."
    )
    ari_control_password: SecretStr = SecretStr("centrex-ari-control-change-me")
    ari_cdr_username: str = Field(
        "centrex-cdr", description="The CDR shipper's ARI user, read-only (Asterisk's start time)."
    )
    ari_cdr_password: SecretStr = SecretStr("centrex-ari-cdr-change-me")
    stasis_app: str = "centrex"
    sip_realm: str = Field("centrex", description="Digest realm of every line's credentials.")
    sip_qualify_frequency_s: int = Field(
        30,
        ge=0,
        le=3600,
        description="Asterisk sends each registered phone an OPTIONS this often: it keeps the "
        "phone's NAT binding open, and a phone that stops answering is no longer called "
        "(docs/sip-edge.md); 0: never.",
    )
    media_address: str | None = Field(
        None,
        description="Where Asterisk's RTP binds, and the address its SDP gives phones; unset: "
        "CENTREX_SIP_BIND when it names one address, else CENTREX_ASTERISK_HOST.",
    )

    # --- API ----------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_max_body_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="Larger request bodies get 413, before any of them is parsed or held.",
    )
    api_max_import_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1,
        description="The same for bulk imports (POST /v1/lines/import, /v1/customers/import): "
        "100,000 lines of CSV are about 6 MB, as JSON about 10 MB.",
    )
    api_rate_limit_per_s: float = Field(
        50.0,
        ge=0,
        description="Requests per second each token (else each address) may make on average; "
        "past it 429 with Retry-After. 0: no limit. /health/* and /metrics are never limited.",
    )
    api_rate_limit_burst: int = Field(
        100, ge=1, description="Requests each token may make at once before the rate applies."
    )
    api_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="API processes serving one port (uvicorn workers; one of them runs the "
        "reconciler and schedulers). More than one: each serves its own /metrics (a scrape "
        "reads one worker's counters), so 1 unless the API's CPU is the limit "
        "(docs/benchmarks-provisioning.md).",
    )
    control_http_host: str = Field("127.0.0.1", description="The daemon's /metrics and health.")
    control_http_port: int = Field(
        8081, ge=0, le=65535, description="The daemon's /metrics and health; 0: not served."
    )
    cdr_http_host: str = Field("127.0.0.1", description="The CDR shipper's /metrics and health.")
    cdr_http_port: int = Field(
        8082, ge=0, le=65535, description="The CDR shipper's /metrics and health; 0: not served."
    )
    supervisor_http_port: int = Field(
        8083,
        ge=0,
        le=65535,
        description="`centrex up`'s /metrics (its children's restarts), on api_host; 0: none.",
    )
    guard_http_host: str = Field("127.0.0.1", description="The guard's /metrics and health.")
    guard_http_port: int = Field(
        8084, ge=0, le=65535, description="The guard's /metrics and health; 0: not served."
    )
    api_token: SecretStr = Field(
        SecretStr(""), description="Bearer token operators present; empty refuses every call."
    )

    # --- call control -------------------------------------------------------------------------
    node_name: str = Field(
        "main", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="This Asterisk node's name."
    )
    max_call_duration_s: int = Field(
        7200, ge=1, description="Answered calls are cut at this duration (contract art. 8)."
    )
    ring_timeout_s: int = Field(60, ge=1, le=600)
    emergency_callback_window_s: int = Field(
        3600, ge=0, le=86400,
        description="Issue 15: for this long after a line called an emergency number, calls "
        "from outside ring the line itself, whatever its do-not-disturb and forwards say (the "
        "emergency service calling back). 0: never.",
    )  # fmt: skip
    call_sweep_interval_s: float = Field(
        5.0, gt=0, description="How often the daemon checks its calls against Asterisk's."
    )

    node_heartbeat_s: float = Field(
        5.0, gt=0, le=60,
        description="Issue 19: how often the daemon records in PostgreSQL that its Asterisk "
        "answers (its node's heartbeat), and looks for other nodes that stopped doing so.",
    )  # fmt: skip
    node_lost_after_s: float = Field(
        60.0, gt=0, le=86400,
        description="Issue 19: a node whose heartbeat is older than this is lost: another "
        "node's daemon releases its calls and records each as 'lost'. Must exceed a daemon "
        "restart: a node's daemon down this long while its Asterisk carries calls has them "
        "released too (docs/cluster.md).",
    )  # fmt: skip

    call_path_db_timeout_s: float = Field(
        1.0,
        gt=0,
        le=30,
        description="Longest the daemon waits for PostgreSQL to decide a call (connection, "
        "query): past it the call is refused with 503 (fail closed), never left ringing.",
    )
    stasis_wait_s: int = Field(
        10,
        ge=2,
        le=300,
        description="Asterisk hangs up (503) a call still waiting for the daemon's decision "
        "after this long: nothing is left ringing in Stasis if the daemon is lost mid-decision.",
    )
    # --- numbers ------------------------------------------------------------------------------
    number_quarantine_s: int = Field(
        90 * 86400, ge=0, description="A released number rests this long before reallocation."
    )
    special_number_monthly_fee_cents: int = Field(
        1000, ge=0, description="Monthly fee of a special (08) number."
    )

    # --- CDRs --------------------------------------------------------------------------------
    cel_journal: Path | None = Field(
        None,
        description="Asterisk's CEL journal (cel_custom); unset: where the sandbox's Asterisk, "
        "or the host's, writes it.",
    )
    call_events_poll_s: float = Field(
        0.02,
        gt=0,
        le=1,
        description="How often the daemon reads the CEL journal for answers and hang-ups: a "
        "call stops counting against its line at most this long after it ends.",
    )
    cdr_batch_max: int = Field(5000, ge=1, description="CDRs written per transaction at most.")
    cdr_ship_interval_s: float = Field(
        0.25, gt=0, description="How often the shipper looks for new journal lines."
    )
    cdr_journal_rotate_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, description="The journal is rotated past this size."
    )
    cdr_retention_days: int = Field(
        1830, ge=1, description="CDRs older than this are deleted (art. 11.2: 5 years)."
    )

    # --- usage policy (contract art. 6, 8, 16, 19) ---------------------------------------------
    fraud_distinct_numbers: int = Field(
        500, ge=1, description="More distinct numbers than this in a billing period: suspicion."
    )
    fraud_long_call_s: int = Field(
        7200, ge=1, description="A call answered this long (or cut at its maximum): suspicion."
    )
    fraud_action: Literal["flag", "national_only", "emergency_only"] = Field(
        "flag", description="What a fraud suspicion does to the line, besides being recorded."
    )
    suspended_line_incoming: Literal["allow", "refuse"] = Field(
        "allow", description="Calls to a suspended line: let them ring, or refuse them (403)."
    )
    dialler_action: Literal["flag", "national_only", "emergency_only"] = Field(
        "flag",
        description="What an automated-dialling suspicion does: a heuristic, so by default it "
        "only flags (the customer's own fraud_action applies to the contract's hard rules).",
    )
    dialler_window_s: int = Field(3600, ge=60, description="Automated-dialling window.")
    dialler_min_attempts: int = Field(30, ge=2)
    dialler_max_acd_s: float = Field(60.0, gt=0)
    dialler_min_short_ratio: float = Field(0.9, ge=0, le=1)
    dialler_min_attempts_per_minute: float = Field(2.0, gt=0)
    dialler_max_asr: float = Field(0.35, ge=0, le=1)
    dialler_min_sequential_ratio: float = Field(0.5, ge=0, le=1)
    smtp_host: str = Field("127.0.0.1", description="Where customer notices are sent from.")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "noc@centrex.invalid"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None

    # --- number portability (issue 16, docs/portability.md) -----------------------------------
    rio_operator_code: str = Field(
        "CX",
        pattern=r"^[0-9A-Z]{2}$",
        description="This operator's 2-character code, the first field of its numbers' RIOs.",
    )
    rio_line_type: str = Field(
        "F",
        pattern=r"^[F-Z]$",
        description="The RIO line-type letter of this fixed service (E and P are mobile).",
    )
    donor_url: str | None = Field(
        None,
        description="The donor operators' portability interface (HTTP+JSON, "
        "centrex/portability/donor_http.py); unset: port-in requests wait unanswered.",
    )
    portability_interval_s: float = Field(
        1.0, gt=0, description="How often donor answers and due porting slots are looked at."
    )
    contracts_interval_s: float = Field(
        60.0, gt=0, description="How often the contracts' scheduler looks for steps fallen due."
    )
    contracts_nonpayment_terminate: bool = Field(
        False,
        description="Art. 19: terminate a contract by itself when a non-payment suspension "
        "persists 7 days (false: the step records that the operator may).",
    )

    # --- billing (issue 17, docs/billing.md): the seller on every invoice --------------------
    billing_seller_name: str = Field("Centrex operator", description="Legal name on invoices.")
    billing_seller_address: str = "1 rue de l'Exemple"
    billing_seller_postcode: str = "75001"
    billing_seller_city: str = "Paris"
    billing_seller_country: str = Field("FR", pattern=r"^[A-Z]{2}$")
    billing_seller_vat_id: str | None = Field(None, description="Intra-EU VAT number.")
    # SEPA direct debit: the operator's creditor identifier (ICS) and account. Unset: no
    # collection file is made (fail closed).
    billing_creditor_id: str | None = Field(None, description="SEPA creditor id, FR..ZZZ....")
    billing_creditor_iban: str | None = None
    billing_creditor_bic: str | None = None
    billing_invoice_prefix: str = Field(
        "FA", pattern=r"^[A-Z0-9-]{0,8}$", description="Before the invoice number: FA000042."
    )
    # The monthly invoice run as a step of the contracts' scheduler (centrex/billing/schedule.py)
    # on this day of the month, at this hour (Paris), for the month before. Unset: the run is
    # started by hand (``centrex billing invoice-run``, or the API).
    billing_run_day: int | None = Field(
        None, ge=1, le=28, description="Day of the month of the scheduled invoice run."
    )
    billing_run_hour: int = Field(6, ge=0, le=23, description="Its hour, Europe/Paris.")

    # --- music on hold per customer (centrex/moh/, docs/transfers.md "Hold") -------------------
    moh_max_bytes: int = Field(
        1_000_000,
        ge=1000,
        description="Largest music-on-hold WAV a customer may upload "
        "(also bounded by CENTREX_API_MAX_BODY_BYTES).",
    )
    moh_max_s: int = Field(600, ge=1, le=3600, description="Longest music on hold, in seconds.")

    # --- voicemail (centrex/voicemail/, docs/voicemail.md) -------------------------------------
    voicemail_default_enabled: bool = Field(
        True,
        description="A line whose mailbox was never set through the API has voicemail on.",
    )
    voicemail_retention_days: int = Field(
        30, ge=1, le=3650, description="Messages older than this are deleted."
    )
    voicemail_max_message_s: int = Field(
        180, ge=10, le=3600, description="Longest message a caller may leave."
    )
    voicemail_max_greeting_s: int = Field(
        60, ge=1, le=600, description="Longest greeting a line may upload."
    )
    voicemail_scan_interval_s: float = Field(
        1.0, gt=0, description="How often the API looks for new messages to email."
    )
    voicemail_retention_interval_s: float = Field(
        3600.0, gt=0, description="How often messages past their retention are deleted."
    )
    voicemail_email_retry_s: float = Field(
        30.0,
        gt=0,
        description="First wait before an email the SMTP server refused is retried "
        "(doubled at each failure, up to an hour).",
    )

    # --- brute-force and scanner protection (`centrex guard`, docs/sip-bans.md) ---------------
    security_log: Path | None = Field(
        None,
        description="Asterisk's security event log (logger.conf `security.log => security`); "
        "unset: where the sandbox's Asterisk writes it.",
    )
    sip_ban_max_failures: int = Field(
        5, ge=1, description="This many failed authentications from one address ..."
    )
    sip_ban_window_s: float = Field(600.0, gt=0, description="... within this window: a ban.")
    sip_ban_s: float = Field(600.0, ge=1, description="A first ban's length.")
    sip_ban_max_s: float = Field(
        86400.0, ge=1, description="Each earlier ban (within this long) doubles it, up to this."
    )
    sip_ban_allow: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Addresses never banned nor rate-limited (the operator's own, its trunks' "
        'peers): a JSON list of CIDRs, e.g. ["192.0.2.0/24","2001:db8::/32"].',
    )
    sip_flood_packets_per_s: int = Field(
        200,
        ge=0,
        description="Packets per second one address may send to the SIP port before the kernel "
        "drops the rest; 0: no cap.",
    )
    sip_flood_burst: int = Field(400, ge=1, description="Packets over the rate a burst may hold.")
    sip_ban_reconcile_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the guard makes the kernel's bans match the database.",
    )
    # Asterisk reads lines and trunks from PostgreSQL (docs/provisioning-realtime.md) as this
    # role, which may only SELECT the ps_* views: its password is in Asterisk's res_odbc.conf.
    asterisk_db_password: SecretStr = SecretStr("centrex-asterisk-db-change-me")
    # The SIP edge (Kamailio, clustered shape) writes its registrations as this role, which may
    # only use kamailio_location (migration 0034_edge_location): its password is in kamailio.cfg.
    edge_db_password: SecretStr = SecretStr("centrex-edge-db-change-me")
    asterisk_db_connections: int = Field(
        4, ge=1, le=64, description="Asterisk's pooled ODBC connections to PostgreSQL."
    )
    asterisk_cache_nodes: list[str] = Field(
        default_factory=list,
        description="Other Asterisk nodes reading the same database, as host:ami_port (same "
        "AMI user and secret): a changed line is expired from their caches too.",
    )
    # --- clustered shape (docs/cluster.md): Kamailio in front of several Asterisk nodes ----------
    sip_proxy: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$",
        description="host:port of the SIP edge (Kamailio) holding the lines' registrations; "
        "set, a node dials a line through it (PJSIP/<line>/sip:<line>@<proxy>). Unset: one node.",
    )
    sip_accept_from: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (a.b.c.d[/n]) a node accepts SIP requests from "
        "(pjsip acl: others get 403). Empty: any. `centrex cluster` sets the edge's address on "
        "every node, so nothing reaches a node around Kamailio (docs/cluster.md).",
    )
    cluster_edge_address: str = Field(
        "127.0.0.1", description="`centrex cluster`: where Kamailio listens (on sip_port)."
    )
    cluster_node_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.11", "127.0.0.12"],
        min_length=1,
        max_length=8,
        description="`centrex cluster`: one Asterisk node on each of these addresses.",
    )
    edge_flood_requests: int = Field(
        400, ge=1, description="Kamailio bans an address sending more requests per 2 s (pike)."
    )
    edge_auth_failures: int = Field(
        10, ge=1, description="Kamailio bans an address after this many failed digests."
    )
    edge_auth_failure_window_s: int = Field(
        300, ge=1, description="How long a failed digest counts against its address."
    )
    edge_ban_s: int = Field(600, ge=1, description="How long Kamailio's bans last.")
    edge_keepalive_s: int = Field(
        30,
        ge=0,
        le=3600,
        description="Kamailio sends every phone registered with it an OPTIONS this often "
        "(nathelper SIP ping): it keeps the phone's NAT binding open; in the clustered shape the "
        "nodes do not qualify lines (docs/cluster.md). 0: never.",
    )
    edge_ban_sync_s: int = Field(
        1,
        ge=1,
        le=60,
        description="How often Kamailio reads the bans in force from sip_bans: a ban lifted or "
        "added through the API applies at the edge within this (docs/cluster.md).",
    )
    edge_metrics_host: str = Field("127.0.0.1", description="Kamailio's /metrics (TCP).")
    edge_metrics_port: int = Field(
        8085, ge=1, le=65535, description="Kamailio's /metrics: centrex_edge_bans_total."
    )
    edge_trunk_cache_s: int = Field(
        5,
        ge=1,
        le=3600,
        description="How long Kamailio keeps what a source address is (a trunk or not): a trunk "
        "created, changed or deleted is recognised at the edge within this long.",
    )
    sip_ban_table: str | None = Field(
        None,
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
        description="The guard's nftables table (inet family); unset: centrex_bans_<instance>.",
    )

    # --- behaviour ----------------------------------------------------------------------------
    reconcile_interval_s: float = Field(30.0, gt=0)
    asterisk_watch_interval_s: float = Field(
        2.0,
        gt=0,
        description="How often the API asks Asterisk (ARI) whether it restarted; a restart "
        "triggers a reconcile pass at once.",
    )
    asterisk_timeout_s: float = Field(5.0, gt=0, description="Per request to ARI/AMI.")

    @field_validator("ami_username", "ari_username", "ari_control_username", "ari_cdr_username")
    @classmethod
    def _user_name_asterisk_can_hold(cls, value: str) -> str:
        # Each is a section name of manager.conf or ari.conf.
        if not USER_NAME.fullmatch(value):
            raise ValueError("letters, digits, '.', '_' and '-' only, 1 to 64 of them")
        return value

    @field_validator(
        "ami_secret",
        "ari_password",
        "ari_control_password",
        "ari_cdr_password",
        "asterisk_db_password",
        "edge_db_password",
    )
    @classmethod
    def _secret_asterisk_can_hold(cls, value: SecretStr) -> SecretStr:
        # Written into manager.conf and ari.conf: a line break or ';' would end the value and
        # start a setting (or a comment) of the secret's choosing.
        if not CONFIG_SECRET.fullmatch(value.get_secret_value() or "x"):
            raise ValueError("printable ASCII without spaces or ';' only")
        return value

    @field_validator("sip_accept_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:  # written into pjsip.conf: nothing but an address or network may get there
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r}: an address or network expected") from None
        return value

    @field_validator("asterisk_cache_nodes")
    @classmethod
    def _host_and_port(cls, value: list[str]) -> list[str]:
        for node in value:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{node!r}: host:ami_port expected")
        return value

    @model_validator(mode="after")
    def _ari_users_distinct(self) -> Settings:
        names = [self.ari_username, self.ari_control_username, self.ari_cdr_username]
        if len(set(names)) != len(names):
            raise ValueError(
                "CENTREX_ARI_USERNAME, CENTREX_ARI_CONTROL_USERNAME and CENTREX_ARI_CDR_USERNAME "
                f"must differ (each process has its own ARI user): {names}"
            )
        return self

    @field_validator("sip_tls_port")
    @classmethod
    def _tls_port_of_its_own(cls, value: int | None, info: ValidationInfo) -> int | None:
        # A derived port that lands on AMI or HTTP would only show as Asterisk failing to bind.
        tls = value if value is not None else info.data.get("sip_port", 5060) + 1
        for name in ("sip_port", "ami_port", "http_port"):
            if info.data.get(name) == tls:
                how = "" if value is not None else " (the SIP port + 1, as it is unset)"
                raise ValueError(f"{tls}{how} is already CENTREX_{name.upper()}")
        return value

    @field_validator("sip_tls_cert_file")
    @classmethod
    def _certificate_readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            from centrex.tls import load_certificate

            load_certificate(value)
        return value

    @field_validator("sip_tls_key_file")
    @classmethod
    def _key_of_the_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "sip_tls_cert_file" not in info.data:
            return value  # the certificate itself is wrong, and said so
        cert = info.data["sip_tls_cert_file"]
        if (cert is None) != (value is None):
            raise ValueError(
                "CENTREX_SIP_TLS_CERT_FILE and CENTREX_SIP_TLS_KEY_FILE go together: "
                "set both or neither"
            )
        if value is not None:
            from centrex.tls import check_key_matches

            check_key_matches(cert, value)
        return value

    @property
    def tls_port(self) -> int:
        """Where Asterisk listens for SIP over TLS."""
        return self.sip_tls_port if self.sip_tls_port is not None else self.sip_port + 1

    @property
    def phones_sip_server(self) -> str:
        """host:port phones register to (UDP, TCP): the SIP edge when there is one (the
        clustered shape, sip_proxy; docs/cluster.md), else this Asterisk."""
        return self.sip_proxy or f"{self.asterisk_host}:{self.sip_port}"

    @property
    def phones_sip_tls_server(self) -> str:
        """host:port for SIP over TLS: the edge's listens on its SIP port + 1."""
        if self.sip_proxy:
            host, _, port = self.sip_proxy.rpartition(":")
            return f"{host}:{int(port) + 1}"
        return f"{self.asterisk_host}:{self.tls_port}"

    @property
    def database_url_required(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "no database configured: set DATABASE_URL, or start through `centrex up`, "
                "which starts the private cluster and sets it"
            )
        return self.database_url

    @property
    def sip_bind_address(self) -> str:
        return self.sip_bind or self.asterisk_host

    @property
    def rtp_address(self) -> str:
        """Where the lines' RTP binds: phones must reach it where they reach SIP."""
        if self.media_address:
            return self.media_address
        if self.sip_bind and self.sip_bind not in WILDCARD_ADDRESSES:
            return self.sip_bind
        return self.asterisk_host

    def default_secrets(self, process: str | None = None) -> list[str]:
        """The secrets ``process`` uses (SECRETS_OF; None: every one but the edge's) that are
        empty or at a shipped placeholder: nothing may start with one (they are public)."""
        # None: every secret of the one-machine shape; the edge's only where there is an edge
        # (`centrex cluster` asks for "edge" too), so a one-machine install need not set it.
        everyone = tuple(name for name in SECRET_FIELDS if name not in EDGE_ONLY_SECRETS)
        names = SECRETS_OF[process] if process else everyone
        found = []
        for name in names:
            secret = getattr(self, SECRET_FIELDS[name]).get_secret_value()
            if not secret or secret in PLACEHOLDER_SECRETS:
                found.append(name)
        return found

    def ari_user(self, role: AriRole) -> tuple[str, str]:
        """The ARI user and password of one process: "api", "control" or "cdr"."""
        username, password = {
            "api": (self.ari_username, self.ari_password),
            "control": (self.ari_control_username, self.ari_control_password),
            "cdr": (self.ari_cdr_username, self.ari_cdr_password),
        }[role]
        return username, password.get_secret_value()

    @property
    def ari_url(self) -> str:
        return f"http://{self.asterisk_host}:{self.http_port}/ari"

    @property
    def ari_ws_url(self) -> str:
        return f"ws://{self.asterisk_host}:{self.http_port}/ari/events"


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as ``CENTREX_*`` variables, to hand to a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):  # pydantic-settings reads lists as JSON
            value = json.dumps([str(v) for v in value])
        env[f"CENTREX_{name.upper()}"] = str(value)
    return env


@lru_cache
def get_settings() -> Settings:
    return Settings()
