"""The inventory tables (SQLAlchemy 2, typed declarative).

    customers ─┬─ customer_addresses   installation site, contract holder, billing
               ├─ lines                one ISP line per customer: type, 4over6 order, tunnel
               ├─ contract_items       9604076 / 9604072 / 9604073 / legacy / Z201000
               └─ units ── unit_observations   what the poller last read (1:1)
    secret_keys                         which key encrypted this database's secrets

Portable types only (the same Alembic migrations run on SQLite and PostgreSQL): enumerations
are short strings with a CHECK constraint, timestamps are timezone-aware UTC, and secrets are
stored as `v1:<key id>:…` tokens (see `inventory.secrets`), never in plain text. The schema
is changed by migrations only (`inventory/migrations`); a test holds these models and the
migrations to each other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from inventory.domain import (
    DEFAULT_PLATFORM,
    AccountState,
    AddressKind,
    ItemStatus,
    LineType,
    OrderState,
    Role,
    TunnelType,
    WanMode,
)
from inventory.rules import Tunnel, assert_customer_code_unchanged

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both stores.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so the value is stored as naive
    UTC and read back with UTC attached. Naive datetimes are refused: they are bugs.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: fleetd stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: datetime | None) -> str | None:
            # the text SQLAlchemy's SQLite DATETIME stores ("2026-11-30 14:59:00.000000"),
            # written by one C call instead of a formatting of seven fields
            naive = self.process_bind_param(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return to_text

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: type[Any], *, nullable: bool = False) -> CheckConstraint:
    words = ", ".join(f"'{v.value}'" for v in values)
    sql = f"{column} IN ({words})"
    if nullable:
        sql = f"{column} IS NULL OR {sql}"
    return CheckConstraint(sql, name=column)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Customer(Timestamped, Base):
    """A shop's contract. The 9-digit code (顧客CD) never changes once registered."""

    __tablename__ = "customers"
    __table_args__ = (
        Index(None, "kana_key", postgresql_ops={"kana_key": "text_pattern_ops"}),
        Index(None, "phone_digits", postgresql_ops={"phone_digits": "text_pattern_ops"}),
        Index(None, "branch"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(9), unique=True, insert_sentinel=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    kana: Mapped[str] = mapped_column(String(200), default="")
    kana_key: Mapped[str] = mapped_column(String(200), default="")  # rules.kana_key(kana)
    phone: Mapped[str] = mapped_column(String(32), default="")  # as written
    phone_digits: Mapped[str] = mapped_column(String(16), default="")
    branch: Mapped[str] = mapped_column(String(100), default="")

    addresses: Mapped[list[CustomerAddress]] = relationship(
        back_populates="customer",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="CustomerAddress.kind",
    )

    @validates("code")
    def _code_never_changes(self, _key: str, code: str) -> str:
        if self.code is not None:
            assert_customer_code_unchanged(self.code, code)
        return code

    def address(self, kind: AddressKind) -> CustomerAddress | None:
        return next((a for a in self.addresses if a.kind == kind), None)


class CustomerAddress(Timestamped, Base):
    """A registered postal address: the only places a registration notice may be sent."""

    __tablename__ = "customer_addresses"
    __table_args__ = (
        _one_of("kind", AddressKind),
        Index(None, "address_key", postgresql_ops={"address_key": "text_pattern_ops"}),
        Index(None, "postal_code"),
    )

    # one address of each kind per customer; a natural key also lets them be inserted in
    # batches (nothing to read back)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(200), default="")
    postal_code: Mapped[str] = mapped_column(String(8), default="")
    address: Mapped[str] = mapped_column(String(300))
    address_key: Mapped[str] = mapped_column(String(300))  # rules.address_key(address)

    customer: Mapped[Customer] = relationship(back_populates="addresses", lazy="raise")


class Line(Timestamped, Base):
    """The shop's fibre line: one per customer. Its 4over6 order says whether the line can
    carry V6; only reading the router says whether the router has switched."""

    __tablename__ = "lines"
    __table_args__ = (
        _one_of("line_type", LineType),
        _one_of("v6_order_state", OrderState),
        _one_of("tunnel_type", TunnelType, nullable=True),
        CheckConstraint(
            "tunnel_ea_length IS NULL OR tunnel_ea_length BETWEEN 0 AND 48",
            name="tunnel_ea_length",
        ),
        Index(None, "v6_order_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True, insert_sentinel=True
    )
    line_type: Mapped[str] = mapped_column(String(16))
    moved_by_customer: Mapped[bool] = mapped_column(default=False)
    v6_order_state: Mapped[str] = mapped_column(String(16), default=OrderState.NONE.value)
    v6_order_date: Mapped[date | None]
    tunnel_type: Mapped[str | None] = mapped_column(String(8))
    tunnel_aftr: Mapped[str | None] = mapped_column(String(253))
    tunnel_br: Mapped[str | None] = mapped_column(String(45))
    tunnel_rule_ipv6_prefix: Mapped[str | None] = mapped_column(String(49))
    tunnel_rule_ipv4_prefix: Mapped[str | None] = mapped_column(String(18))
    tunnel_ea_length: Mapped[int | None] = mapped_column(Integer)
    tunnel_local: Mapped[str | None] = mapped_column(String(45))
    tunnel_remote: Mapped[str | None] = mapped_column(String(45))
    tunnel_ipv4_address: Mapped[str | None] = mapped_column(String(15))

    customer: Mapped[Customer] = relationship(lazy="raise")

    @property
    def tunnel(self) -> Tunnel | None:
        if self.tunnel_type is None:
            return None
        params = {name: getattr(self, _tunnel_column(name)) for name in _TUNNEL_NAMES}
        return Tunnel(
            TunnelType(self.tunnel_type),
            {k: str(v) for k, v in params.items() if v is not None},
        )

    def tunnel_columns(self, tunnel: Tunnel | None) -> dict[str, Any]:
        """The column values that store `tunnel` (every parameter column, None when unused)."""
        values: dict[str, Any] = {"tunnel_type": tunnel.type.value if tunnel else None}
        for name in _TUNNEL_NAMES:
            raw = tunnel.params.get(name) if tunnel else None
            values[_tunnel_column(name)] = int(raw) if raw and name == "ea-length" else raw
        return values


_TUNNEL_NAMES = (
    "aftr",
    "br",
    "rule-ipv6-prefix",
    "rule-ipv4-prefix",
    "ea-length",
    "local",
    "remote",
    "ipv4-address",
)


def _tunnel_column(name: str) -> str:
    return "tunnel_" + name.replace("-", "_")


class ContractItem(Timestamped, Base):
    """One line of the operator's contract: an equipment item or the Original SSID add-on.

    `item_no` is the contract system's own number for the line, stable across exports.
    """

    __tablename__ = "contract_items"
    __table_args__ = (
        _one_of("status", ItemStatus),
        Index(None, "customer_id"),
        Index(None, "unit_id"),
        Index(None, "cancellation_date"),
        Index(None, "item_code", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_no: Mapped[str] = mapped_column(String(32), unique=True, insert_sentinel=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    item_code: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="SET NULL"))
    billing_start_month: Mapped[date | None]  # the first day of the month
    cancellation_date: Mapped[date | None]  # when the cancellation takes effect
    order_note: Mapped[str] = mapped_column(Text, default="")
    original_ssid: Mapped[str | None] = mapped_column(String(128))  # from SSID'…' in the note

    customer: Mapped[Customer] = relationship(lazy="raise")
    unit: Mapped[Unit | None] = relationship(lazy="raise")


class Unit(Timestamped, Base):
    """A U-SPOT router: how to reach it, what it should have (intended) and, in
    `observation`, what it last had."""

    __tablename__ = "units"
    __table_args__ = (
        _one_of("role", Role),
        _one_of("intended_wan_mode", WanMode, nullable=True),
        _one_of("intended_account_state", AccountState),
        # a child has a parent unit; a parent or access point is a child of nothing
        CheckConstraint("(role = 'child') = (parent_id IS NOT NULL)", name="parent_only_for_child"),
        CheckConstraint("NOT (role = 'child' AND link_item)", name="child_not_link_item"),
        Index(None, "customer_id"),
        Index(None, "parent_id"),
        Index(None, "mgmt_address"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(12), unique=True, insert_sentinel=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    role: Mapped[str] = mapped_column(String(8))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    platform: Mapped[str] = mapped_column(String(32), default=DEFAULT_PLATFORM)
    link_item: Mapped[bool] = mapped_column(Boolean, default=False)

    # management access
    mgmt_address: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int | None]
    snmp_port: Mapped[int | None]
    username: Mapped[str | None] = mapped_column(String(64))
    password_enc: Mapped[str | None] = mapped_column(Text)
    private_key_path: Mapped[str | None] = mapped_column(String(1024))
    host_key_fingerprint: Mapped[str | None] = mapped_column(String(128))  # pinned

    # intended configuration: what the unit should have
    intended_wan_mode: Mapped[str | None] = mapped_column(String(8))
    intended_tunnel: Mapped[dict[str, str] | None] = mapped_column(JSON)  # Tunnel.as_dict()
    intended_business_ssid: Mapped[str | None] = mapped_column(String(128))
    intended_business_passphrase_enc: Mapped[str | None] = mapped_column(Text)
    intended_guest_ssid: Mapped[str | None] = mapped_column(String(128))
    intended_guest_passphrase_enc: Mapped[str | None] = mapped_column(Text)
    intended_account_state: Mapped[str] = mapped_column(
        String(8), default=AccountState.ACTIVE.value
    )

    customer: Mapped[Customer] = relationship(lazy="raise")
    parent: Mapped[Unit | None] = relationship(remote_side="Unit.id", lazy="raise")
    observation: Mapped[UnitObservation | None] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class UnitObservation(Base):
    """What the poller or a workflow last read from a unit. Kept apart from `units` so that
    frequent polling never rewrites the inventory row."""

    __tablename__ = "unit_observations"

    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="CASCADE"), primary_key=True
    )
    observed_at: Mapped[datetime | None]  # the last successful read
    reachable: Mapped[bool | None]
    wan_mode: Mapped[str | None] = mapped_column(String(8))
    tunnel_state: Mapped[str | None] = mapped_column(String(16))
    account_state: Mapped[str | None] = mapped_column(String(8))
    # the last read values, as the driver returns them
    read_values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    # intended ≠ observed, in words ("guest ssid: intended 'Cafe', observed 'Old'"); None: none
    drift: Mapped[list[str] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SecretKey(Base):
    """The key ids that encrypted this database's secrets, each with a check token, so a
    wrong key is caught before anything is written with it."""

    __tablename__ = "secret_keys"

    kid: Mapped[str] = mapped_column(String(16), primary_key=True)
    check_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
