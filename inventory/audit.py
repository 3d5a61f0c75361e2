"""The audit log: every change request and every push to a unit, append-only.

Who (`actor`), when, what (`action` on `target`), before and after (secrets masked before
they are written), and the request id that ties an API call to the operations it made.
Nothing here updates or deletes a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Required, TypedDict, Unpack, cast

from sqlalchemy import JSON, Index, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from inventory.models import Base, utcnow
from inventory.redact import Redactor

MASK = "********"
_SECRET_KEYS = ("password", "passphrase", "secret", "psk", "token", "private_key")


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index(None, "at"),
        Index(None, "target"),
        Index(None, "actor"),
        Index(None, "request_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64), default="")  # serial, customer code, …
    request_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str] = mapped_column(Text, default="")


def mask_values(values: Mapping[str, Any] | None, redactor: Redactor | None = None) -> Any:
    """A copy with every secret-named key's value masked, and known secrets scrubbed."""
    if values is None:
        return None
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is not None and any(word in key.lower() for word in _SECRET_KEYS):
            out[key] = MASK
        elif isinstance(value, Mapping):
            out[key] = mask_values(value, redactor)
        elif isinstance(value, str) and redactor is not None:
            out[key] = redactor.redact(value)
        else:
            out[key] = value
    return out


class Entry(TypedDict, total=False):
    """What one audit entry says, as `record` and `record_many` take it (before masking)."""

    actor: Required[str]
    action: Required[str]
    target: str
    request_id: str | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    detail: str
    at: datetime | None


async def record(
    session: AsyncSession, *, redactor: Redactor | None = None, **entry: Unpack[Entry]
) -> AuditEntry:
    """Append one entry (masked). The caller commits, with the change it records."""
    row = AuditEntry(**_masked(entry, redactor))
    session.add(row)
    return row


async def record_many(
    session: AsyncSession, entries: Sequence[Entry], redactor: Redactor | None = None
) -> None:
    """Append many entries (masked alike) in one INSERT run for all of them. The caller
    commits, with the changes they record."""
    if entries:
        table = cast(Table, AuditEntry.__table__)  # no ORM bookkeeping per row
        await session.execute(insert(table), [_masked(e, redactor) for e in entries])


def _masked(entry: Entry, redactor: Redactor | None) -> dict[str, Any]:
    return {
        "actor": entry["actor"],
        "action": entry["action"],
        "target": entry.get("target", ""),
        "request_id": entry.get("request_id"),
        "before": mask_values(entry.get("before"), redactor),
        "after": mask_values(entry.get("after"), redactor),
        "detail": (redactor or Redactor()).redact(entry.get("detail", "")),
        "at": entry.get("at") or utcnow(),
    }


async def entries(
    session: AsyncSession,
    *,
    target: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Sequence[AuditEntry]:
    """Newest first; `before_id` pages backwards."""
    query = select(AuditEntry)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return (await session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit))).all()
