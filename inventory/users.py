"""Staff users of the control API and the remote-login bastion: names, roles, tokens, SSH keys.

    staff_users ── staff_ssh_keys   the OpenSSH public keys a user logs in to the bastion with

A user has one role:

    cs       customer look-up, V6 status, business Wi-Fi change, registration notice,
             Original SSID
    tech     everything cs does, plus cutover, back to V4, link-item swap, remote login, retry
    admin    imports, users, month-end runs, batches, and everything else
    auditor  read-only, and the audit log

An API token is 32 random bytes, shown once when it is made; only its SHA-256 is stored, so a
copy of the database logs nobody in. None of these functions commits: the caller owns the
transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import asyncssh
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    bindparam,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from inventory.errors import Conflict, NotFound, RuleViolation
from inventory.models import Base, utcnow

ROLES: Final = ("cs", "tech", "admin", "auditor")
TOKEN_PREFIX: Final = "fleetd_"  # noqa: S105 - marks a string as a token, not a secret
TOKEN_BYTES: Final = 32
_NAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_NAME_RULE = (
    "a user name is 1 to 64 characters: a lower-case letter, then letters, digits, '.', '_' "
    "or '-' (it is also the SSH login name at the bastion)"
)


class StaffUser(Base):
    """A staff member who may use the API (token) and, as tech, the bastion (SSH keys)."""

    __tablename__ = "staff_users"
    __table_args__ = (CheckConstraint("role IN ('cs', 'tech', 'admin', 'auditor')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:  # never the token hash
        state = " disabled" if self.disabled else ""
        return f"<StaffUser {self.name} {self.role}{state}>"


class StaffSshKey(Base):
    """An OpenSSH public key of a staff user; `fingerprint` is OpenSSH's SHA256:… form."""

    __tablename__ = "staff_ssh_keys"
    __table_args__ = (Index(None, "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def assert_user_name(name: str, *, field: str = "name") -> None:
    if not _NAME.fullmatch(name):
        raise RuleViolation(field, name, _NAME_RULE)


def assert_role(role: str, *, field: str = "role") -> None:
    if role not in ROLES:
        raise RuleViolation(field, role, f"a role is one of: {', '.join(ROLES)}")


async def find_user(session: AsyncSession, name: str) -> StaffUser | None:
    return await session.scalar(select(StaffUser).where(StaffUser.name == name))


async def get_user(session: AsyncSession, name: str) -> StaffUser:
    user = await find_user(session, name)
    if user is None:
        raise NotFound("user", name)
    return user


async def list_users(session: AsyncSession) -> Sequence[StaffUser]:
    return (await session.scalars(select(StaffUser).order_by(StaffUser.name))).all()


async def create_user(session: AsyncSession, name: str, role: str) -> tuple[StaffUser, str]:
    """A new user and its API token (shown this once: only its hash is stored)."""
    assert_user_name(name)
    assert_role(role)
    if await find_user(session, name) is not None:
        raise Conflict(f"user {name!r} exists: choose another name, or give them a new token")
    token = new_token()
    user = StaffUser(name=name, role=role, token_hash=hash_token(token), disabled=False)
    session.add(user)
    await session.flush()
    return user, token


async def new_user_token(session: AsyncSession, name: str) -> str:
    """Replace a user's token (the old one stops working); the new one is shown once."""
    user = await get_user(session, name)
    token = new_token()
    user.token_hash = hash_token(token)
    return token


async def set_disabled(session: AsyncSession, name: str, disabled: bool = True) -> StaffUser:
    user = await get_user(session, name)
    user.disabled = disabled
    return user


# built once: every API request runs it, and SQLAlchemy then finds it in its compiled cache
# without walking a new statement
_BY_TOKEN_HASH = select(StaffUser).where(StaffUser.token_hash == bindparam("token_hash"))


async def authenticate(session: AsyncSession, token: str) -> StaffUser | None:
    """The enabled user holding `token`, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    user = await session.scalar(_BY_TOKEN_HASH, {"token_hash": hash_token(token)})
    if user is None or user.disabled:
        return None
    return user


def _parse_key(public_key: str, *, field: str = "public_key") -> asyncssh.SSHKey:
    text = public_key.strip()
    if not text or "PRIVATE KEY" in text:
        # a private key pasted by mistake is never echoed back
        raise RuleViolation(
            field,
            None,
            "an OpenSSH public key is one line 'ssh-ed25519 AAAA… comment'",
            hint="give the .pub file, never the private key",
        )
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError):
        shown = text.split()[0][:40] if text.split() else ""
        raise RuleViolation(
            field,
            shown,
            "is not an OpenSSH public key (one line 'ssh-ed25519 AAAA… comment')",
            hint="give the .pub file made by ssh-keygen",
        ) from None


def key_fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256:… fingerprint of a public key (RuleViolation when it is not one)."""
    return str(_parse_key(public_key).get_fingerprint("sha256"))


async def add_ssh_key(session: AsyncSession, name: str, public_key: str) -> StaffSshKey:
    """Register a public key for the user `name`; the same key twice is one key."""
    key = _parse_key(public_key)
    fingerprint = str(key.get_fingerprint("sha256"))
    user = await get_user(session, name)
    existing = await session.scalar(
        select(StaffSshKey).where(StaffSshKey.fingerprint == fingerprint)
    )
    if existing is not None:
        if existing.user_id != user.id:
            raise Conflict(
                f"the key {fingerprint} belongs to another user: each staff member logs in "
                "with a key of their own"
            )
        return existing
    row = StaffSshKey(
        user_id=user.id,
        public_key=key.export_public_key("openssh").decode("ascii").strip(),
        fingerprint=fingerprint,
    )
    session.add(row)
    await session.flush()
    return row


async def list_ssh_keys(session: AsyncSession, name: str) -> Sequence[StaffSshKey]:
    user = await get_user(session, name)
    query = select(StaffSshKey).where(StaffSshKey.user_id == user.id).order_by(StaffSshKey.id)
    return (await session.scalars(query)).all()


async def user_for_ssh_key(
    session: AsyncSession, username: str, public_key_openssh: str
) -> StaffUser | None:
    """The enabled user `username` when `public_key_openssh` is one of their keys, else None
    (also for a malformed key: the bastion refuses it like any stranger's)."""
    try:
        fingerprint = str(_parse_key(public_key_openssh).get_fingerprint("sha256"))
    except RuleViolation:
        return None
    query = (
        select(StaffUser)
        .join(StaffSshKey, StaffSshKey.user_id == StaffUser.id)
        .where(StaffUser.name == username, StaffSshKey.fingerprint == fingerprint)
    )
    user = await session.scalar(query)
    if user is None or user.disabled:
        return None
    return user
