"""The first inventory schema: customers, addresses, lines, contract items, units,
unit observations and the secret-key register.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=9), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kana", sa.String(length=200), nullable=False),
        sa.Column("kana_key", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("phone_digits", sa.String(length=16), nullable=False),
        sa.Column("branch", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("code", name=op.f("uq_customers_code")),
    )
    op.create_index(op.f("ix_customers_branch"), "customers", ["branch"], unique=False)
    op.create_index(
        op.f("ix_customers_kana_key"),
        "customers",
        ["kana_key"],
        unique=False,
        postgresql_ops={"kana_key": "text_pattern_ops"},
    )
    op.create_index(
        op.f("ix_customers_phone_digits"),
        "customers",
        ["phone_digits"],
        unique=False,
        postgresql_ops={"phone_digits": "text_pattern_ops"},
    )
    op.create_table(
        "secret_keys",
        sa.Column("kid", sa.String(length=16), nullable=False),
        sa.Column("check_token", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_secret_keys")),
    )
    op.create_table(
        "customer_addresses",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("postal_code", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("address_key", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('installation', 'contract_holder', 'billing')",
            name=op.f("ck_customer_addresses_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_addresses_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "kind", name=op.f("pk_customer_addresses")),
    )
    op.create_index(
        op.f("ix_customer_addresses_address_key"),
        "customer_addresses",
        ["address_key"],
        unique=False,
        postgresql_ops={"address_key": "text_pattern_ops"},
    )
    op.create_index(
        op.f("ix_customer_addresses_postal_code"),
        "customer_addresses",
        ["postal_code"],
        unique=False,
    )
    op.create_table(
        "lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("line_type", sa.String(length=16), nullable=False),
        sa.Column("moved_by_customer", sa.Boolean(), nullable=False),
        sa.Column("v6_order_state", sa.String(length=16), nullable=False),
        sa.Column("v6_order_date", sa.Date(), nullable=True),
        sa.Column("tunnel_type", sa.String(length=8), nullable=True),
        sa.Column("tunnel_aftr", sa.String(length=253), nullable=True),
        sa.Column("tunnel_br", sa.String(length=45), nullable=True),
        sa.Column("tunnel_rule_ipv6_prefix", sa.String(length=49), nullable=True),
        sa.Column("tunnel_rule_ipv4_prefix", sa.String(length=18), nullable=True),
        sa.Column("tunnel_ea_length", sa.Integer(), nullable=True),
        sa.Column("tunnel_local", sa.String(length=45), nullable=True),
        sa.Column("tunnel_remote", sa.String(length=45), nullable=True),
        sa.Column("tunnel_ipv4_address", sa.String(length=15), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "line_type IN ('flets-east', 'flets-west', 'hikari-next', 'usen-hikari')",
            name=op.f("ck_lines_line_type"),
        ),
        sa.CheckConstraint(
            "tunnel_type IS NULL OR tunnel_type IN ('ds-lite', 'map-e', 'ipip')",
            name=op.f("ck_lines_tunnel_type"),
        ),
        sa.CheckConstraint(
            "v6_order_state IN ('none', 'requested', 'complete', 'ng')",
            name=op.f("ck_lines_v6_order_state"),
        ),
        sa.CheckConstraint(
            "tunnel_ea_length IS NULL OR tunnel_ea_length BETWEEN 0 AND 48",
            name=op.f("ck_lines_tunnel_ea_length"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_lines_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lines")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_lines_customer_id")),
    )
    op.create_index(op.f("ix_lines_v6_order_state"), "lines", ["v6_order_state"], unique=False)
    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=12), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("link_item", sa.Boolean(), nullable=False),
        sa.Column("mgmt_address", sa.String(length=255), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("snmp_port", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("password_enc", sa.Text(), nullable=True),
        sa.Column("private_key_path", sa.String(length=1024), nullable=True),
        sa.Column("host_key_fingerprint", sa.String(length=128), nullable=True),
        sa.Column("intended_wan_mode", sa.String(length=8), nullable=True),
        sa.Column("intended_tunnel", sa.JSON(), nullable=True),
        sa.Column("intended_business_ssid", sa.String(length=128), nullable=True),
        sa.Column("intended_business_passphrase_enc", sa.Text(), nullable=True),
        sa.Column("intended_guest_ssid", sa.String(length=128), nullable=True),
        sa.Column("intended_guest_passphrase_enc", sa.Text(), nullable=True),
        sa.Column("intended_account_state", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(role = 'child') = (parent_id IS NOT NULL)",
            name=op.f("ck_units_parent_only_for_child"),
        ),
        sa.CheckConstraint(
            "NOT (role = 'child' AND link_item)", name=op.f("ck_units_child_not_link_item")
        ),
        sa.CheckConstraint(
            "intended_account_state IN ('active', 'stopped')",
            name=op.f("ck_units_intended_account_state"),
        ),
        sa.CheckConstraint(
            "intended_wan_mode IS NULL OR intended_wan_mode IN ('pppoe', 'ipoe')",
            name=op.f("ck_units_intended_wan_mode"),
        ),
        sa.CheckConstraint("role IN ('parent', 'child', 'ap')", name=op.f("ck_units_role")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_units_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["units.id"], name=op.f("fk_units_parent_id_units"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
        sa.UniqueConstraint("serial", name=op.f("uq_units_serial")),
    )
    op.create_index(op.f("ix_units_customer_id"), "units", ["customer_id"], unique=False)
    op.create_index(op.f("ix_units_mgmt_address"), "units", ["mgmt_address"], unique=False)
    op.create_index(op.f("ix_units_parent_id"), "units", ["parent_id"], unique=False)
    op.create_table(
        "contract_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_no", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("billing_start_month", sa.Date(), nullable=True),
        sa.Column("cancellation_date", sa.Date(), nullable=True),
        sa.Column("order_note", sa.Text(), nullable=False),
        sa.Column("original_ssid", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('ordered', 'confirmed', 'cancelled', 'terminated')",
            name=op.f("ck_contract_items_status"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_contract_items_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
            name=op.f("fk_contract_items_unit_id_units"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contract_items")),
        sa.UniqueConstraint("item_no", name=op.f("uq_contract_items_item_no")),
    )
    op.create_index(
        op.f("ix_contract_items_cancellation_date"),
        "contract_items",
        ["cancellation_date"],
        unique=False,
    )
    op.create_index(
        op.f("ix_contract_items_customer_id"), "contract_items", ["customer_id"], unique=False
    )
    op.create_index(
        op.f("ix_contract_items_item_code_status"),
        "contract_items",
        ["item_code", "status"],
        unique=False,
    )
    op.create_index(op.f("ix_contract_items_unit_id"), "contract_items", ["unit_id"], unique=False)
    op.create_table(
        "unit_observations",
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reachable", sa.Boolean(), nullable=True),
        sa.Column("wan_mode", sa.String(length=8), nullable=True),
        sa.Column("tunnel_state", sa.String(length=16), nullable=True),
        sa.Column("account_state", sa.String(length=8), nullable=True),
        sa.Column("read_values", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
            name=op.f("fk_unit_observations_unit_id_units"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("unit_id", name=op.f("pk_unit_observations")),
    )


def downgrade() -> None:
    op.drop_table("unit_observations")
    op.drop_index(op.f("ix_contract_items_unit_id"), table_name="contract_items")
    op.drop_index(op.f("ix_contract_items_item_code_status"), table_name="contract_items")
    op.drop_index(op.f("ix_contract_items_customer_id"), table_name="contract_items")
    op.drop_index(op.f("ix_contract_items_cancellation_date"), table_name="contract_items")
    op.drop_table("contract_items")
    op.drop_index(op.f("ix_units_parent_id"), table_name="units")
    op.drop_index(op.f("ix_units_mgmt_address"), table_name="units")
    op.drop_index(op.f("ix_units_customer_id"), table_name="units")
    op.drop_table("units")
    op.drop_index(op.f("ix_lines_v6_order_state"), table_name="lines")
    op.drop_table("lines")
    op.drop_index(op.f("ix_customer_addresses_postal_code"), table_name="customer_addresses")
    op.drop_index(
        op.f("ix_customer_addresses_address_key"),
        table_name="customer_addresses",
        postgresql_ops={"address_key": "text_pattern_ops"},
    )
    op.drop_table("customer_addresses")
    op.drop_table("secret_keys")
    op.drop_index(
        op.f("ix_customers_phone_digits"),
        table_name="customers",
        postgresql_ops={"phone_digits": "text_pattern_ops"},
    )
    op.drop_index(
        op.f("ix_customers_kana_key"),
        table_name="customers",
        postgresql_ops={"kana_key": "text_pattern_ops"},
    )
    op.drop_index(op.f("ix_customers_branch"), table_name="customers")
    op.drop_table("customers")
