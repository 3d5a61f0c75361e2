"""Alembic environment of the inventory schema.

Migrations run through `inventory.store.Store.migrate()` (`fleetd migrate`), which hands over
an open connection in `config.attributes["connection"]`. Offline mode (SQL text for a DBA)
needs `sqlalchemy.url` set in the config. SQLite gets batch mode, since it alters tables by
copying them.
"""

from __future__ import annotations

from alembic import context

from inventory import audit, operations, users  # noqa: F401 - their tables on Base.metadata
from inventory.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        if not context.is_offline_mode():
            raise RuntimeError("run the inventory migrations with `fleetd migrate`")
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
        )
    else:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
