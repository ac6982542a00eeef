"""Every Prometheus metric centrex exports, in one place (names: docs/metrics.md).

Conventions: ``centrex_`` prefix, base units in the name (``_seconds``, ``_bytes``), ``_total``
counters, histograms for latencies, and only low-cardinality labels: never a line, a number or
a customer.

Each process serves only the metrics it updates, from a registry of its own
(:data:`API_REGISTRY`, :data:`DAEMON_REGISTRY`), plus the standard process and Python collectors:
a counter the API never touches would otherwise show as a permanent 0 on the API's ``/metrics``,
and a ``sum()`` or an ``absent()`` over both jobs would read it.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

# Every metric is created outside prometheus_client's global registry (``registry=None``) and
# registered below into the registry of the process that updates it.

# --- call control (daemon) ----------------------------------------------------------------------
CALLS_IN_PROGRESS = Gauge(
    "centrex_calls_in_progress",
    "Calls admitted and not yet ended, on this node.",
    ["direction"],
    registry=None,
)
CALLS_ADMITTED = Counter(
    "centrex_calls_admitted_total",
    "Calls the daemon admitted.",
    ["direction"],
    registry=None,
)
CALLS_REFUSED = Counter(
    "centrex_calls_refused_total",
    "Calls the daemon refused, by reason: line_limit (art. 8), policy, destination, fraud, "
    "no_route (unknown line or number, not in service, invalid), not_a_line, no_trunk, error.",
    ["reason"],
    registry=None,
)
CALLS_CUT = Counter(
    "centrex_calls_cut_total",
    "Calls hung up at the maximum duration, by who cut them (daemon or asterisk).",
    ["enforced_by"],
    registry=None,
)
CALLS_REAPED = Counter(
    "centrex_calls_reaped_total",
    "Calls of a lost node (its heartbeat too old) this daemon released and recorded as lost, "
    "by the lost node's name.",
    ["node"],
    registry=None,
)
NODES_LOST = Gauge(
    "centrex_nodes_lost",
    "Other nodes this daemon last judged lost (heartbeat older than CENTREX_NODE_LOST_AFTER_S).",
    registry=None,
)
ADMISSION_SECONDS = Histogram(
    "centrex_admission_decision_seconds",
    "Time from StasisStart to the daemon's decision (routing + atomic admission).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=None,
)
ASTERISK_CONNECTED = Gauge(
    "centrex_asterisk_connected",
    "1 while this process's connection is up.",
    ["interface"],
    registry=None,
)
DATABASE_TIMEOUTS = Counter(
    "centrex_call_path_database_timeouts_total",
    "Call-path database operations that did not answer in time (the call was refused with 503, "
    "or the answer or end of a call waits for the sweep), by operation.",
    ["operation"],
    registry=None,
)
EMERGENCY_UNDECIDED = Counter(
    "centrex_emergency_calls_undecided_total",
    "Emergency calls put through to the trunk without a decision (the database not answering): "
    "never refused, but not counted against the line either.",
    registry=None,
)
ASTERISK_RECONNECTS = Counter(
    "centrex_asterisk_reconnects_total",
    "Connections to Asterisk (re)established.",
    ["interface"],
    registry=None,
)

# --- CDRs (the shipper, `centrex cdr`) ---------------------------------------------------------
CDRS_WRITTEN = Counter(
    "centrex_cdrs_written_total", "CDRs inserted into PostgreSQL.", registry=None
)
CDR_WRITE_SECONDS = Histogram(
    "centrex_cdr_write_seconds",
    "Time to write one batch of CDRs (lookups, COPY, insert, checkpoint: one transaction).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
CDR_WRITE_ERRORS = Counter(
    "centrex_cdr_write_errors_total",
    "Failed CDR writes (retried; nothing is lost).",
    registry=None,
)
CDRS_REFUSED = Counter(
    "centrex_cdrs_refused_total",
    "CDRs PostgreSQL refused (a value it cannot store); skipped, logged whole, never retried.",
    registry=None,
)
CEL_LINES_SKIPPED = Counter(
    "centrex_cel_lines_skipped_total",
    "Lines of Asterisk's CEL journal that were not a record (cut short by a crash, or forged), "
    "skipped by the CDR shipper.",
    registry=None,
)
CDR_PENDING_CALLS = Gauge(
    "centrex_cdr_pending_calls",
    "Ended calls read from the journal, not yet written.",
    registry=None,
)
CDR_JOURNAL_BACKLOG_BYTES = Gauge(
    "centrex_cdr_journal_backlog_bytes",
    "Journal bytes past the committed checkpoint: what a restart would read again; grows while "
    "PostgreSQL is unreachable.",
    registry=None,
)

CDR_CALLS_CLOSED_UNENDED = Counter(
    "centrex_cdr_calls_closed_unended_total",
    "Calls whose Asterisk died before it journalled their end: recorded with the last time known.",
    registry=None,
)

# --- brute-force protection (the guard, `centrex guard`) ---------------------------------------
AUTH_FAILURES = Counter(
    "centrex_sip_auth_failures_total",
    "Failed SIP authentications read from Asterisk's security log, by outcome: counted, or "
    "allowed (from an allow-listed address, never banned).",
    ["outcome"],
    registry=None,
)
SECURITY_LINES_SKIPPED = Counter(
    "centrex_security_lines_skipped_total",
    "Security log lines naming a failed authentication that could not be read unambiguously "
    "(a caller's text shaped them): skipped, never guessed at.",
    registry=None,
)
SIP_BANS = Counter(
    "centrex_sip_bans_total",
    "Bans, by event: issued, lifted (by an operator), expired.",
    ["event"],
    registry=None,
)
SIP_BANNED_ADDRESSES = Gauge(
    "centrex_sip_banned_addresses",
    "Addresses banned right now (in the kernel's ban set).",
    registry=None,
)

# --- processes (``centrex up``) ------------------------------------------------------------------
CHILD_RESTARTS = Counter(
    "centrex_child_restarts_total",
    "centrex processes that died and were started again by `centrex up`, by process.",
    ["process"],
    registry=None,
)

# --- provisioning (API) ------------------------------------------------------------------------
PROVISIONING_OPS = Counter(
    "centrex_provisioning_operations_total",
    "Lines and trunks whose cached copy the API expired in Asterisk, by kind and outcome.",
    ["kind", "operation", "outcome"],
    registry=None,
)
CACHE_EXPIRIES_UNDELIVERED = Counter(
    "centrex_cache_expiries_undelivered_total",
    "Changes of a line or trunk whose cache expiry could not be delivered to an Asterisk node "
    "(it did not answer, or is known down): committed, left pending for the reconciler.",
    ["node"],
    registry=None,
)
CACHE_NODE_UP = Gauge(
    "centrex_asterisk_cache_node_up",
    "Whether an Asterisk node answered the last AMI connection for a cache expiry (0: known "
    "down, expiries fail at once and a background probe tries it again).",
    ["node"],
    registry=None,
)
RECONCILE_REPAIRS = Counter(
    "centrex_reconciler_repairs_total",
    "Cached copies the reconciler expired, and strays it removed from astdb.",
    ["kind", "action", "outcome"],
    registry=None,
)
RECONCILE_PASSES = Counter(
    "centrex_reconciler_passes_total",
    "Reconcile passes, by outcome.",
    ["outcome"],
    registry=None,
)
RECONCILE_SECONDS = Histogram(
    "centrex_reconciler_pass_seconds",
    "Duration of one reconcile pass.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=None,
)
LINES_PROVISIONED = Gauge("centrex_lines_provisioned", "Live lines in the database.", registry=None)
LINES_REGISTERED = Gauge(
    "centrex_lines_registered",
    "Lines with a registered device (a contact in Asterisk).",
    registry=None,
)
API_REQUESTS_REFUSED = Counter(
    "centrex_api_requests_refused_total",
    "API requests refused before reaching a route, by reason: body_too_large (413), "
    "bad_content_length (400), rate_limited (429).",
    ["reason"],
    registry=None,
)
for _reason in ("body_too_large", "bad_content_length", "rate_limited"):
    API_REQUESTS_REFUSED.labels(reason=_reason)  # each reason reads 0 until it happens

# --- usage policy (issue 7; declared here so alerts and dashboards name one metric) ----------
FRAUD_SUSPICIONS = Counter(
    "centrex_fraud_suspicions_total",
    "Fraud suspicions raised, by rule.",
    ["rule"],
    registry=None,
)


# --- the clustered shape (issue 19, docs/cluster.md) --------------------------------------------
NODE_INFO = Gauge(
    "centrex_node_info",
    "1, labelled with the Asterisk node this daemon or shipper serves (CENTREX_NODE_NAME): "
    "join on instance to label any of its series by node.",
    ["node"],
    registry=None,
)


def _registry(*collectors: object) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, *collectors):
        registry.register(collector)  # type: ignore[arg-type]
    return registry


#: What the call-control daemon serves (``centrex control``, its ``/metrics``).
DAEMON_REGISTRY = _registry(
    CALLS_IN_PROGRESS, CALLS_ADMITTED, CALLS_REFUSED, CALLS_CUT, ADMISSION_SECONDS,
    ASTERISK_CONNECTED, ASTERISK_RECONNECTS, DATABASE_TIMEOUTS, EMERGENCY_UNDECIDED,
    FRAUD_SUSPICIONS, NODE_INFO, CALLS_REAPED, NODES_LOST,
)  # fmt: skip
#: What the CDR shipper serves (``centrex cdr``, its ``/metrics``).
CDR_REGISTRY = _registry(
    CDRS_WRITTEN, CDRS_REFUSED, CDR_WRITE_SECONDS, CDR_WRITE_ERRORS, CEL_LINES_SKIPPED,
    CDR_PENDING_CALLS, CDR_JOURNAL_BACKLOG_BYTES, CDR_CALLS_CLOSED_UNENDED,
    FRAUD_SUSPICIONS, NODE_INFO,
)  # fmt: skip
#: What the guard serves (``centrex guard``, its ``/metrics``).
GUARD_REGISTRY = _registry(AUTH_FAILURES, SECURITY_LINES_SKIPPED, SIP_BANS, SIP_BANNED_ADDRESSES)
#: What ``centrex up`` serves: its children's restarts.
SUPERVISOR_REGISTRY = _registry(CHILD_RESTARTS)
API_REFUSED = Counter(
    "centrex_api_refused_total",
    "API requests refused before they ran, by reason: unauthenticated (no, malformed, unknown, "
    "revoked or expired token), forbidden (the token's scope).",
    ["reason"],
    registry=None,
)

# --- voicemail (centrex/voicemail/; the API process sends the emails) ------------------------
VOICEMAIL_EMAILS = Counter(
    "centrex_voicemail_emails_total",
    "Voicemail emails, by outcome: sent, failed (an attempt the SMTP server refused or that "
    "could not reach it; retried later), no_address (the mailbox has no email).",
    ["outcome"],
    registry=None,
)
for _outcome in ("sent", "failed", "no_address"):
    VOICEMAIL_EMAILS.labels(outcome=_outcome)
VOICEMAIL_MESSAGES_EXPIRED = Counter(
    "centrex_voicemail_messages_expired_total",
    "Voicemail messages deleted at the end of their retention.",
    registry=None,
)

# --- billing (centrex/billing/; runs in the API process or `centrex billing`) ------------------
BILLING_DOCUMENTS = Counter(
    "centrex_billing_documents_total",
    "Invoice and credit-note PDFs (Factur-X), by outcome: archived, failed (could not be rendered "
    "or stored; the invoice stays without a PDF and the next run tries it again).",
    ["outcome"],
    registry=None,
)
BILLING_EMAILS = Counter(
    "centrex_billing_emails_total",
    "Invoice emails, by outcome: sent, failed (the SMTP server refused or could not be reached; "
    "the next run sends it again).",
    ["outcome"],
    registry=None,
)
for _outcome in ("archived", "failed"):
    BILLING_DOCUMENTS.labels(outcome=_outcome)
for _outcome in ("sent", "failed"):
    BILLING_EMAILS.labels(outcome=_outcome)

#: What the API serves (``centrex api``, its ``/metrics``).
API_REGISTRY = _registry(
    ASTERISK_CONNECTED, ASTERISK_RECONNECTS, API_REFUSED,
    PROVISIONING_OPS, CACHE_EXPIRIES_UNDELIVERED, CACHE_NODE_UP,
    RECONCILE_REPAIRS, RECONCILE_PASSES, RECONCILE_SECONDS,
    LINES_PROVISIONED, LINES_REGISTERED, API_REQUESTS_REFUSED,
    VOICEMAIL_EMAILS, VOICEMAIL_MESSAGES_EXPIRED, BILLING_DOCUMENTS, BILLING_EMAILS,
)  # fmt: skip
