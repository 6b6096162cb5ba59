"""Change capture by a log: the triggers only append the written rows' keys.

Until now each trigger updated the bookkeeping row of every row written, inside the
writer's statement. Now it appends the row's key to the entity's change log
(``craftsync_<entity>_log``), and the server folds the log into the bookkeeping before it
reads it (``server/capture.py``): other programs' writes cost a fraction of what they did.
Pending changes keep their state (``seq`` NULL), so nothing already written is lost. An
adopted database gets the same for every entity of its stored maps.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from craftsync.server import capture
from craftsync.server.mapping import NATIVE, stored_maps

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    maps = stored_maps(bind) or NATIVE
    for entity_map in maps.values():
        for statement in [*capture.drop_ddl(entity_map, bind.dialect), *capture.install_ddl(entity_map, bind.dialect)]:
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the change log cannot be taken back: restore a backup made before the upgrade")
