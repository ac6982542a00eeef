"""voicemail: mailbox settings per line, the platform default, emails of messages, and the view
Asterisk's app_voicemail reads its mailboxes from (realtime, res_config_pgsql) (issue 15)

Revision ID: 0024_voicemail
Revises: 0023_pjsip_realtime
Create Date: 2026-12-03

The view lists the mailboxes that are on: a line's own setting, else the platform's default.
A mailbox without a PIN gets a password nobody can key in ("x"): it takes messages, but cannot
be opened from a phone until a PIN is set. No email column for Asterisk: centrex sends the
emails itself (centrex/voicemail/mailer.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_voicemail"
down_revision: str | Sequence[str] | None = "0023_pjsip_realtime"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# A line's aor names its mailbox, so a phone that subscribes gets message-waiting NOTIFYs
# (centrex/asterisk/pjsip_objects.py says the same). The view of 0023_pjsip_realtime gains one
# column at its end (CREATE OR REPLACE keeps the columns before it, and the grants).
QUALIFY = "COALESCE(NULLIF(current_setting('centrex.qualify_frequency', true), ''), '0')"


def _ps_aors(mailboxes: bool) -> str:
    line_mailbox = ",\n               l.sip_username || '@centrex' AS mailboxes" if mailboxes else ""
    trunk_mailbox = ", NULL" if mailboxes else ""
    return f"""
        CREATE OR REPLACE VIEW ps_aors AS
        SELECT l.sip_username::text AS id,
               '1'::text AS max_contacts,
               'yes'::text AS remove_existing,
               {QUALIFY} AS qualify_frequency,
               '3.0'::text AS qualify_timeout,
               NULL::text AS contact{line_mailbox}
          FROM lines l
         WHERE l.deleted_at IS NULL
        UNION ALL
        SELECT 'trunk-' || t.name, NULL, NULL, NULL, NULL,
               'sip:' || t.host || ':' || t.port{trunk_mailbox}
          FROM trunks t
        """


def upgrade() -> None:
    op.execute(_ps_aors(mailboxes=True))
    op.create_table(
        "voicemail_boxes",
        sa.Column("line_id", sa.Uuid(), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  primary_key=True),  # fmt: skip
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("pin", sa.String(8), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("greeting_seconds", sa.Float(), nullable=True),
    )
    op.create_table(
        "voicemail_platform",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("default_enabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_voicemail_platform_one_row"),
    )
    op.execute("INSERT INTO voicemail_platform (id, default_enabled) VALUES (1, true)")
    op.create_table(
        "voicemail_deliveries",
        sa.Column("msg_id", sa.String(64), primary_key=True),
        sa.Column("line_id", sa.Uuid(), sa.ForeignKey("lines.id", ondelete="CASCADE"),
                  nullable=False),  # fmt: skip
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_voicemail_deliveries_due", "voicemail_deliveries", ["next_attempt_at"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )  # fmt: skip
    op.execute(
        """
        CREATE VIEW asterisk_voicemail AS
        SELECT l.sip_username AS uniqueid, 'centrex'::text AS context,
               l.sip_username AS mailbox, coalesce(b.pin, 'x')::text AS password,
               l.sip_username AS fullname
        FROM lines l LEFT JOIN voicemail_boxes b ON b.line_id = l.id
        WHERE l.deleted_at IS NULL AND coalesce(
            b.enabled, (SELECT p.default_enabled FROM voicemail_platform p WHERE p.id = 1), true
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW ps_aors")
    op.execute(_ps_aors(mailboxes=False).replace("CREATE OR REPLACE VIEW", "CREATE VIEW"))
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'centrex_asterisk') THEN"
        " GRANT SELECT ON ps_aors TO centrex_asterisk; END IF; END $$"
    )
    op.execute("DROP VIEW asterisk_voicemail")
    op.drop_table("voicemail_deliveries")
    op.drop_table("voicemail_platform")
    op.drop_table("voicemail_boxes")
