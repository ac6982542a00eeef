"""edge trunks: in the clustered shape a carrier talks only to Kamailio (issue 19)

Revision ID: 0032_edge_trunks
Revises: 0031_node_heartbeat
Create Date: 2026-12-03

Through Kamailio every request reaches a node from Kamailio's address, so a trunk can no longer
be recognised by source address on the node. Kamailio recognises the carrier's address (the view
``kamailio_trunks`` below) and stamps ``X-Centrex-Trunk: trunk-<name>`` on its requests (after
removing any such header from every request, so nobody else can send it). On a node whose ODBC
connection sets ``centrex.sip_edge`` (the edge's host:port; centrex/asterisk/realtime.py):

- the trunk's identify matches that header (``match_header``) and NOT the source address
  (Asterisk ORs the two within one identify row: res_pjsip_endpoint_identifier_ip.c, docs);
- the trunk's endpoint sends through the edge (``outbound_proxy = sip:<edge>;lr``), so the
  carrier sees only Kamailio's address.

Without the setting (one machine) both views give exactly what 0023_pjsip_realtime gave.
Both views gain their new column at the end (CREATE OR REPLACE keeps the columns before it, and
the grants); downgrade drops and recreates them as 0023 had them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0032_edge_trunks"
down_revision: str | Sequence[str] | None = "0031_node_heartbeat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "centrex_asterisk"
PLACEHOLDER = "centrex-no-trunk"  # 0023's identify that names no endpoint and matches nothing
MEDIA = "NULLIF(current_setting('centrex.media_address', true), '')"
EDGE = "NULLIF(current_setting('centrex.sip_edge', true), '')"
#: The header Kamailio adds (deploy/kamailio/kamailio.cfg.j2); centrex/asterisk/pjsip_objects.py.
HEADER = "X-Centrex-Trunk"
#: The hosts Kamailio can recognise by source address: IPv4 literals (the API's host pattern
#: allows IPv4 and host names only). A host name is not in kamailio_trunks (docs/cluster.md).
IPV4 = r"'^[0-9]{1,3}(\.[0-9]{1,3}){3}$'"


def _ps_endpoints(edge: bool) -> str:
    line_proxy = ",\n               NULL::text AS outbound_proxy" if edge else ""
    # Asterisk's realtime splits a value at ';' (several values of one option) and decodes
    # ^3B back to ';' (ast_realtime_decode_chunk): ";lr" arrives as a separate value "lr".
    trunk_proxy = f", 'sip:' || {EDGE} || '^3Blr'" if edge else ""
    verb = "CREATE OR REPLACE VIEW" if edge else "CREATE VIEW"
    return f"""
        {verb} ps_endpoints AS
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
                   AS media_encryption_optimistic{line_proxy}
          FROM lines l
         WHERE l.deleted_at IS NULL
        UNION ALL
        SELECT 'trunk-' || t.name,
               'centrex-trunks', 'all', 'alaw,ulaw', 'no',
               NULL, 'trunk-' || t.name,
               CASE WHEN t.username IS NOT NULL THEN 'trunk-' || t.name END,
               NULL, {MEDIA}, 'yes', 'no', NULL, NULL, NULL,
               'yes', 'yes', 'yes', NULL, NULL{trunk_proxy}
          FROM trunks t
        """


def _ps_endpoint_id_ips(edge: bool) -> str:
    # Asterisk skips NULL columns (the option keeps its default): behind the edge the trunk's
    # row has no address to match, only the header; on one machine no header, only the address.
    if edge:
        match = f"CASE WHEN {EDGE} IS NULL THEN t.host::text END AS match"
        header = (
            f",\n               CASE WHEN {EDGE} IS NOT NULL"
            f" THEN '{HEADER}: trunk-' || t.name END AS match_header"
        )
        placeholder_header = ", NULL"
        verb = "CREATE OR REPLACE VIEW"
    else:
        match, header, placeholder_header, verb = "t.host::text AS match", "", "", "CREATE VIEW"
    return f"""
        {verb} ps_endpoint_id_ips AS
        SELECT 'trunk-' || t.name AS id, 'trunk-' || t.name AS endpoint,
               {match}{header}
          FROM trunks t
        UNION ALL
        SELECT '{PLACEHOLDER}', '{PLACEHOLDER}', '255.255.255.255/32'{placeholder_header}
        """


def _grant(views: str) -> None:
    # The role exists where centrex runs its own PostgreSQL; elsewhere the operator creates it.
    op.execute(
        f"""
        DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
            GRANT SELECT ON {views} TO {ROLE};
          END IF;
        END $$
        """
    )


def upgrade() -> None:
    op.execute(_ps_endpoints(edge=True))
    op.execute(_ps_endpoint_id_ips(edge=True))
    # What Kamailio reads (sqlops, as the read-only role): which trunk a source address is. Two
    # trunks on one address: the oldest, as Asterisk's identify would pick one of them.
    op.execute(
        f"""
        CREATE VIEW kamailio_trunks AS
        SELECT DISTINCT ON (t.host) t.host::text AS address, 'trunk-' || t.name AS endpoint
          FROM trunks t
         WHERE t.host ~ {IPV4}
         ORDER BY t.host, t.created_at, t.name
        """
    )
    _grant("kamailio_trunks")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS kamailio_trunks")
    op.execute("DROP VIEW ps_endpoints")
    op.execute("DROP VIEW ps_endpoint_id_ips")
    op.execute(_ps_endpoints(edge=False))
    op.execute(_ps_endpoint_id_ips(edge=False))
    _grant("ps_endpoints, ps_endpoint_id_ips")
