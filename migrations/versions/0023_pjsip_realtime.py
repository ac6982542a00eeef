"""pjsip realtime: Asterisk reads lines and trunks from views over centrex's own tables (issue 14)

Revision ID: 0023_pjsip_realtime
Revises: 0022_line_features
Create Date: 2026-12-03

The res_pjsip objects of every live line and trunk (endpoint, auth, aor, identify) are VIEWS
over ``lines`` and ``trunks``: nothing is stored twice, and a line created, changed or deleted
is one transaction that every Asterisk node sees (through its memory cache, which the control
plane expires: docs/provisioning-realtime.md). Asterisk reads them as the role
``centrex_asterisk`` (created by the PostgreSQL sandbox, or by the operator on an external
server), which may only SELECT these views.

What differs per Asterisk node (the address its RTP binds to, how often it qualifies phones) is
not in the database: each node's ODBC connection sets ``centrex.media_address`` and
``centrex.qualify_frequency`` (asterisk-config/odbc.ini.j2) and the views read them back.
The column names are res_pjsip's option names (sorcery realtime maps one to the other).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_pjsip_realtime"
down_revision: str | Sequence[str] | None = "0022_line_features"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "centrex_asterisk"
PLACEHOLDER = "centrex-no-trunk"  # an identify that names no endpoint and matches nothing
VIEWS = ("ps_endpoints", "ps_auths", "ps_aors", "ps_endpoint_id_ips")

# Every column is text in every branch of a UNION ALL: PostgreSQL pushes "WHERE id = ?" down
# into the branches (an index lookup on lines.sip_username) only when the branches' column types
# are the union's; varchar(64) against text made every lookup a scan of all lines (100 ms at
# 100,000 lines).
# Keep in step with centrex/asterisk/pjsip_objects.py (tests/test_realtime_lines.py compares
# what Asterisk serves with what line_objects() describes).
MEDIA = "NULLIF(current_setting('centrex.media_address', true), '')"
QUALIFY = "COALESCE(NULLIF(current_setting('centrex.qualify_frequency', true), ''), '0')"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE VIEW ps_endpoints AS
        SELECT l.sip_username::text AS id,
               'centrex-lines'::text AS context,
               'all'::text AS disallow,
               'alaw,ulaw'::text AS allow,
               'no'::text AS direct_media,
               l.sip_username::text AS auth,
               l.sip_username::text AS aors,
               NULL::text AS outbound_auth,
               '"' || l.sip_username || '" <' || l.sip_username || '>' AS callerid,
               {MEDIA} AS media_address,
               'yes'::text AS bind_rtp_to_media_address,
               'yes'::text AS allow_transfer,
               'yes'::text AS force_rport,
               'yes'::text AS rewrite_contact,
               'yes'::text AS rtp_symmetric,
               NULL::text AS send_pai,
               NULL::text AS trust_id_inbound,
               NULL::text AS trust_id_outbound,
               CASE l.media_encryption WHEN 'none' THEN 'no' ELSE 'sdes' END
                   AS media_encryption,
               CASE l.media_encryption WHEN 'sdes_optional' THEN 'yes' ELSE 'no' END
                   AS media_encryption_optimistic
          FROM lines l
         WHERE l.deleted_at IS NULL
        UNION ALL
        SELECT 'trunk-' || t.name,
               'centrex-trunks', 'all', 'alaw,ulaw', 'no',
               NULL, 'trunk-' || t.name,
               CASE WHEN t.username IS NOT NULL THEN 'trunk-' || t.name END,
               NULL, {MEDIA}, 'yes', 'no', NULL, NULL, NULL,
               'yes', 'yes', 'yes', NULL, NULL
          FROM trunks t
        """
    )
    op.execute(
        """
        CREATE VIEW ps_auths AS
        SELECT l.sip_username::text AS id, 'digest'::text AS auth_type,
               l.sip_username::text AS username, l.sip_realm::text AS realm,
               l.sip_ha1::text AS md5_cred, NULL::text AS password
          FROM lines l
         WHERE l.deleted_at IS NULL
        UNION ALL
        SELECT 'trunk-' || t.name, 'userpass', t.username::text, NULL, NULL,
               COALESCE(t.password::text, '')
          FROM trunks t
         WHERE t.username IS NOT NULL
        """
    )
    op.execute(
        f"""
        CREATE VIEW ps_aors AS
        SELECT l.sip_username::text AS id,
               '1'::text AS max_contacts,
               'yes'::text AS remove_existing,
               {QUALIFY} AS qualify_frequency,
               '3.0'::text AS qualify_timeout,
               NULL::text AS contact
          FROM lines l
         WHERE l.deleted_at IS NULL
        UNION ALL
        SELECT 'trunk-' || t.name, NULL, NULL, NULL, NULL,
               'sip:' || t.host || ':' || t.port
          FROM trunks t
        """
    )
    # Asterisk caches identify whole (full_backend_cache, sorcery.conf) and reads an EMPTY cache
    # again at every request: one query per REGISTER or INVITE, waiting on a database that does
    # not answer. A placeholder row that matches no source (the broadcast address) keeps it
    # from being empty on a platform without trunks.
    op.execute(
        f"""
        CREATE VIEW ps_endpoint_id_ips AS
        SELECT 'trunk-' || t.name AS id, 'trunk-' || t.name AS endpoint, t.host::text AS match
          FROM trunks t
        UNION ALL
        SELECT '{PLACEHOLDER}', '{PLACEHOLDER}', '255.255.255.255/32'
        """
    )
    # The role exists where centrex runs its own PostgreSQL (centrex/sandbox/postgres.py); on an
    # external server the operator creates it (docs/provisioning-realtime.md) and grants again.
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
            GRANT SELECT ON {", ".join(VIEWS)} TO {ROLE};
          END IF;
        END $$
        """
    )


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
