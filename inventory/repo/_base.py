"""Shared plumbing of the repository modules: change reporting and batched look-ups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import ContractItem, Customer, Line, Unit

T = TypeVar("T")
_CHUNK = 500  # keys per IN (…) query: far below SQLite's and asyncpg's parameter limits


class Change(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Upserted(Generic[T]):
    obj: T
    change: Change


def _assign(obj: object, values: Mapping[str, Any]) -> bool:
    """Set the attributes that differ; report whether any did."""
    changed = False
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    return changed


def _changed(flag: bool) -> Change:
    return Change.UPDATED if flag else Change.UNCHANGED


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def _chunked(
    session: AsyncSession, query: Any, column: Any, keys: Iterable[Any]
) -> list[Any]:
    unique = list(dict.fromkeys(keys))
    rows: list[Any] = []
    for start in range(0, len(unique), _CHUNK):
        result = await session.scalars(query.where(column.in_(unique[start : start + _CHUNK])))
        rows.extend(result)
    return rows


# --- bulk loaders -----------------------------------------------------------------------


async def customers_by_code(session: AsyncSession, codes: Iterable[str]) -> dict[str, Customer]:
    rows = await _chunked(session, select(Customer), Customer.code, codes)
    return {c.code: c for c in rows}


async def units_by_serial(session: AsyncSession, serials: Iterable[str]) -> dict[str, Unit]:
    rows = await _chunked(session, select(Unit), Unit.serial, serials)
    return {u.serial: u for u in rows}


async def items_by_no(session: AsyncSession, item_nos: Iterable[str]) -> dict[str, ContractItem]:
    rows = await _chunked(session, select(ContractItem), ContractItem.item_no, item_nos)
    return {i.item_no: i for i in rows}


async def lines_by_customer(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, Line]:
    rows = await _chunked(session, select(Line), Line.customer_id, customer_ids)
    return {line.customer_id: line for line in rows}


async def customer_codes_by_id(session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    query = select(Customer.id, Customer.code)
    unique = list(dict.fromkeys(ids))
    out: dict[int, str] = {}
    for start in range(0, len(unique), _CHUNK):
        result = await session.execute(query.where(Customer.id.in_(unique[start : start + _CHUNK])))
        out.update({row.id: row.code for row in result})
    return out
