"""How Asterisk reads lines and trunks from PostgreSQL (sorcery realtime over res_odbc).

Pure: names and the ODBC settings the sandbox renders into res_odbc.conf and odbc.ini
(asterisk-config/*.j2); docs/provisioning-realtime.md tells the whole design.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from sqlalchemy.engine import make_url

from centrex.asterisk.pjsip_objects import LINE_OBJECT_TYPES, TRUNK_PREFIX, sorcery_cache_name
from centrex.config import Settings

#: The PostgreSQL role Asterisk connects as: SELECT on the ps_* views only.
ASTERISK_DB_ROLE = "centrex_asterisk"
#: res_odbc.conf's connection class, named in extconfig.conf.
ODBC_CLASS = "centrex"
#: The class a lookup falls back to when the pooled one fails: a fresh connection each time
#: (res_odbc.conf.j2 says why: a pooled connection that died with PostgreSQL fails once).
ODBC_FALLBACK_CLASS = "centrex_fresh"
#: At most this many fresh connections at once: bounds what unknown usernames (which miss both)
#: can cost the database.
ODBC_FALLBACK_CONNECTIONS = 2
#: What a trunk is made of in Asterisk (identify: its calls are recognised by source address, or
#: behind the SIP edge by the header the edge adds).
TRUNK_OBJECT_TYPES: tuple[str, ...] = ("auth", "aor", "endpoint", "identify")
#: A value libpq's options can carry (-c name=value): no space, quote, backslash or ';'.
_CONN_VALUE = re.compile(r"[^\"';\\\s]+")


def odbc_settings(
    settings: Settings, instance: str, driver: PurePosixPath | None
) -> dict[str, object]:
    """What res_odbc.conf.j2 and odbc.ini.j2 need. Without a database (the sandbox's own
    tests) the DSN points nowhere: realtime lookups fail and only astdb serves."""
    url = make_url(settings.database_url) if settings.database_url else None
    media, qualify = settings.rtp_address, str(settings.sip_qualify_frequency_s)
    # The SIP edge (clustered shape, docs/cluster.md): trunks are identified by the header the
    # edge stamps and reached through it (migration 0032_edge_trunks). Unset on one machine.
    edge = settings.sip_proxy
    for value in (media, qualify, *([edge] if edge else [])):
        if not _CONN_VALUE.fullmatch(value):
            raise ValueError(f"{value!r} cannot be given to Asterisk's database connection")
    gucs = f"-c centrex.media_address={media} -c centrex.qualify_frequency={qualify}"
    if edge:
        gucs += f" -c centrex.sip_edge={edge}"
    return {
        "name": ODBC_CLASS,
        "fallback_name": ODBC_FALLBACK_CLASS,
        "fallback_max_connections": ODBC_FALLBACK_CONNECTIONS,
        "dsn": f"centrex-{instance}",
        "driver": str(driver or "psqlodbcw.so"),
        "host": (url.host if url else None) or "127.0.0.1",
        "port": (url.port if url else None) or 5432,
        "database": (url.database if url else None) or "centrex",
        "sslmode": "disable" if url is None or _loopback(url.host) else "require",
        "username": ASTERISK_DB_ROLE,
        "password": settings.asterisk_db_password.get_secret_value(),
        "max_connections": settings.asterisk_db_connections,
        # Read back by the views (migration 0023_pjsip_realtime): per node, not in the rows.
        # libpq's options, not psqlODBC's ConnSettings, which ReadOnly=1 silently disables.
        # tcp_user_timeout: a database cut off by the network (no ACK) breaks the connection in
        # 5 s instead of leaving a lookup waiting for minutes (docs/provisioning-realtime.md).
        "pqopt": f"tcp_user_timeout=5000 options='{gucs}'",
    }


def _loopback(host: str | None) -> bool:
    return host in (None, "", "localhost", "::1") or (host or "").startswith("127.")


def line_cache_entries(username: str) -> list[tuple[str, str]]:
    """(cache name, object id) of everything Asterisk may hold cached for a line."""
    return [(sorcery_cache_name(t), username) for t in LINE_OBJECT_TYPES]


def trunk_cache_entries(name: str) -> list[tuple[str, str]]:
    return [(sorcery_cache_name(t), f"{TRUNK_PREFIX}{name}") for t in TRUNK_OBJECT_TYPES]


def contacts_of(aor: str, contact_keys: Iterable[str]) -> list[str]:
    """The registrar's astdb keys (``<aor>;@<hash>``, family ``registrar/contact``) of one aor."""
    prefix = f"{aor};@"
    return [key for key in contact_keys if key.startswith(prefix)]
