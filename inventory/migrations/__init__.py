"""Alembic migrations of the inventory schema, run by `inventory.store.Store.migrate()`.

A new revision: write `versions/NNNN_<what>.py` from `script.py.mako`, with the same
operations for SQLite (batch mode) and PostgreSQL; `tests/inventory/test_migrations.py`
checks that the migrated schema matches `inventory.models` on both stores.
"""
