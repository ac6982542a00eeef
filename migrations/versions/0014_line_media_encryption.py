"""line media encryption (SRTP per line, issue 12)

Revision ID: 0014_line_media_encryption
Revises: 0013_sip_bans

Existing lines get "none", what their Asterisk endpoints already hold (res_pjsip's defaults):
the reconciler finds nothing to rewrite for them.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0014_line_media_encryption'
down_revision: Union[str, Sequence[str], None] = '0013_sip_bans'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column(
        'lines',
        sa.Column('media_encryption', sa.String(length=16), nullable=False, server_default='none'),
    )
    op.create_check_constraint(
        'ck_lines_media_encryption',
        'lines',
        "media_encryption IN ('none', 'sdes_optional', 'sdes_required')",
    )


def downgrade() -> None:
    op.drop_constraint('ck_lines_media_encryption', 'lines', type_='check')
    op.drop_column('lines', 'media_encryption')
