"""Every Prometheus metric centrex exports, in one place (names: docs/metrics.md).

Conventions: ``centrex_`` prefix, base units in the name (``_seconds``, ``_bytes``), ``_total``
counters, histograms for latencies, and only low-cardinality labels: never a line, a number or
a customer. The API process and the daemon each serve the metrics they update on ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- call control (daemon) ----------------------------------------------------------------------
CALLS_IN_PROGRESS = Gauge(
    "centrex_calls_in_progress", "Calls admitted and not yet ended, on this node.", ["direction"]
)
CALLS_ADMITTED = Counter(
    "centrex_calls_admitted_total", "Calls the daemon admitted.", ["direction"]
)
CALLS_REFUSED = Counter(
    "centrex_calls_refused_total",
    "Calls the daemon refused, by reason: line_limit (art. 8), policy, destination, fraud, "
    "no_route (unknown line or number, not in service, invalid), not_a_line, no_trunk, error.",
    ["reason"],
)
CALLS_CUT = Counter(
    "centrex_calls_cut_total",
    "Calls hung up at the maximum duration, by who cut them (daemon or asterisk).",
    ["enforced_by"],
)
ADMISSION_SECONDS = Histogram(
    "centrex_admission_decision_seconds",
    "Time from StasisStart to the daemon's decision (routing + atomic admission).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ASTERISK_CONNECTED = Gauge(
    "centrex_asterisk_connected", "1 while this process's connection is up.", ["interface"]
)
ASTERISK_RECONNECTS = Counter(
    "centrex_asterisk_reconnects_total", "Connections to Asterisk (re)established.", ["interface"]
)

# --- CDRs (daemon) -----------------------------------------------------------------------------
CDRS_WRITTEN = Counter("centrex_cdrs_written_total", "CDRs inserted into PostgreSQL.")
CDR_WRITE_SECONDS = Histogram(
    "centrex_cdr_write_seconds",
    "Time to write one batch of CDRs (lookups, COPY, insert, checkpoint: one transaction).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CDR_WRITE_ERRORS = Counter(
    "centrex_cdr_write_errors_total", "Failed CDR writes (retried; nothing is lost)."
)
CDR_PENDING_CALLS = Gauge(
    "centrex_cdr_pending_calls", "Ended calls read from the journal, not yet written."
)
CDR_JOURNAL_BACKLOG_BYTES = Gauge(
    "centrex_cdr_journal_backlog_bytes",
    "Journal bytes past the committed checkpoint: what a restart would read again; grows while "
    "PostgreSQL is unreachable.",
)

# --- provisioning (API) ------------------------------------------------------------------------
PROVISIONING_OPS = Counter(
    "centrex_provisioning_operations_total",
    "Objects pushed into or removed from Asterisk by the API, by kind and outcome.",
    ["kind", "operation", "outcome"],
)
RECONCILE_REPAIRS = Counter(
    "centrex_reconciler_repairs_total",
    "Objects the reconciler wrote or removed to make Asterisk match the database.",
    ["kind", "action", "outcome"],
)
RECONCILE_PASSES = Counter(
    "centrex_reconciler_passes_total", "Reconcile passes, by outcome.", ["outcome"]
)
RECONCILE_SECONDS = Histogram(
    "centrex_reconciler_pass_seconds",
    "Duration of one reconcile pass.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
LINES_PROVISIONED = Gauge("centrex_lines_provisioned", "Live lines in the database.")
LINES_REGISTERED = Gauge(
    "centrex_lines_registered", "Lines with a registered device (a contact in Asterisk)."
)

# --- usage policy (issue 7; declared here so alerts and dashboards name one metric) ----------
FRAUD_SUSPICIONS = Counter(
    "centrex_fraud_suspicions_total", "Fraud suspicions raised, by rule.", ["rule"]
)
