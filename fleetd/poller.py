"""The SNMP status sweep: read every unit, keep what it showed, and flag drift.

One sweep is one SELECT of the units that have a management address, one SNMP sweep over
all of them (`drivers.snmp.SnmpPoller`: one socket, a bounded window), and the readings
written back to `unit_observations` in chunks, one bulk upsert per kind of row and chunk,
each chunk in its own short transaction. 10,000 units cost a few dozen statements, not
tens of thousands: so the rows are written here in bulk rather than through
`inventory.repo.record_observation`, keeping its rules:

- a reading sets the read values, the WAN mode, tunnel and account state, `observed_at`;
- a failed read sets `reachable = false` and the error in words, and keeps the last good
  values (and the drift found on them);
- a reading older than what a workflow wrote meanwhile does not overwrite it.

Drift is what the unit has that it should not, in words staff can read out
("guest ssid: intended 'Cafe U', observed 'Old'"), stored as a list in
`UnitObservation.drift`; NULL when there is none. Passphrases are compared through the
unit's fingerprints (`drivers.base.passphrase_fingerprint`) and never shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Row, null, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import UnitState, UnitTarget, passphrase_fingerprint
from drivers.snmp import SnmpPoller, SweepResult
from fleetd.observe import observation_values
from inventory.domain import Role, WanMode
from inventory.errors import FleetError
from inventory.models import Unit, UnitObservation
from inventory.repo.units import PASSPHRASE
from inventory.secrets import SecretBox
from inventory.store import Store

log = logging.getLogger("fleetd.poller")

CHUNK = 2000  # observations per transaction
SNMP_PORT = 161
_WAN_WORDS = {WanMode.PPPOE.value: "pppoe (V4)", WanMode.IPOE.value: "ipoe (V6)"}
_READ_COLUMNS = ("observed_at", "reachable", "read_values", "wan_mode", "tunnel_state",
                 "account_state", "updated_at")  # fmt: skip
_FAILED_COLUMNS = ("reachable", "last_error", "last_error_at", "updated_at")


class Sweeper(Protocol):
    """What reads the units: `SnmpPoller`, or a fake in a test."""

    async def sweep(self, targets: Iterable[UnitTarget]) -> SweepResult: ...


@dataclass(frozen=True)
class SweepSummary:
    units: int  # with a management address
    read: int
    unreachable: int
    drifted: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.units} units: {self.read} read, {self.unreachable} unreachable, "
            f"{self.drifted} drifted, in {self.seconds:.1f} s"
        )


_UNIT_COLUMNS = (
    Unit.id,
    Unit.serial,
    Unit.role,
    Unit.mgmt_address,
    Unit.snmp_port,
    Unit.intended_wan_mode,
    Unit.intended_tunnel,
    Unit.intended_business_ssid,
    Unit.intended_guest_ssid,
    Unit.intended_business_passphrase_enc,
    Unit.intended_guest_passphrase_enc,
    Unit.intended_account_state,
)


def drift(unit: Row[Any] | Any, state: UnitState, box: SecretBox | None = None) -> list[str]:
    """What `state` shows that the unit's intended configuration does not, in words.

    `unit` has the intended columns of `Unit` (a row of them, or a `Unit`). Passphrases are
    compared only when `box` is given (it decrypts the intended ones)."""
    if state.serial and state.serial != unit.serial:
        # the address answers for another unit: nothing else read there is this unit's
        return [f"serial: intended {unit.serial!r}, observed {state.serial!r}"]
    words: list[str] = []
    wan = state.wan
    if unit.role == Role.PARENT.value and unit.intended_wan_mode and wan is not None:
        if wan.mode != unit.intended_wan_mode:
            words.append(
                f"wan mode: intended {_wan(unit.intended_wan_mode)}, observed {_wan(wan.mode)}"
            )
        elif wan.mode == WanMode.IPOE.value and unit.intended_tunnel:
            tunnel = unit.intended_tunnel.get("type")
            if tunnel and wan.tunnel != tunnel:
                words.append(f"tunnel: intended {tunnel}, observed {wan.tunnel or 'none'}")
    for network, seen in (("business", state.business), ("guest", state.guest)):
        ssid = getattr(unit, f"intended_{network}_ssid")
        if ssid is not None and seen.ssid != ssid:
            words.append(f"{network} ssid: intended {ssid!r}, observed {_quoted(seen.ssid)}")
        token = getattr(unit, f"intended_{network}_passphrase_enc")
        if box is not None and token is not None:
            secret = box.decrypt(token, purpose=PASSPHRASE[network])
            if seen.passphrase_fingerprint is None:
                words.append(f"{network} passphrase: intended set, observed none")
            elif seen.passphrase_fingerprint != passphrase_fingerprint(unit.serial, secret):
                words.append(f"{network} passphrase: the unit's is not the intended one")
    if unit.intended_account_state and state.account != unit.intended_account_state:
        words.append(f"account: intended {unit.intended_account_state}, observed {state.account}")
    return words


def _wan(mode: str) -> str:
    return _WAN_WORDS.get(mode, mode)


def _quoted(value: str | None) -> str:
    return "none" if value is None else repr(value)


async def load_units(session: AsyncSession) -> Sequence[Any]:
    """Every unit with a management address, with its intended configuration: one SELECT."""
    query = select(*_UNIT_COLUMNS).where(Unit.mgmt_address.is_not(None)).order_by(Unit.id)
    return (await session.execute(query)).all()


def target_of(unit: Row[Any]) -> UnitTarget:
    return UnitTarget(
        serial=unit.serial,
        address=unit.mgmt_address,
        snmp_port=unit.snmp_port or SNMP_PORT,
    )


async def sweep_units(
    store: Store,
    snmp: Sweeper,
    now: datetime,
    *,
    box: SecretBox | None = None,
    chunk: int = CHUNK,
) -> SweepSummary:
    """Read every unit with a management address and record what each showed (see the
    module docstring); `now` is the time the observations carry."""
    started = time.perf_counter()
    async with store.sessions() as session:
        units = await load_units(session)
    read = unreachable = drifted = 0
    async for part, result in _read_in_chunks(snmp, units, chunk):
        readings: list[dict[str, Any]] = []
        clean: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for unit in part:
            state = result.states.get(unit.serial)
            if state is None:
                error = result.errors.get(unit.serial)
                failures.append(
                    {
                        "unit_id": unit.id,
                        "reachable": False,
                        "last_error": str(error) if error else "not read",
                        "last_error_at": now,
                        "updated_at": now,
                    }
                )
                unreachable += 1
                continue
            read += 1
            words = _drift_or_note(unit, state, box)
            row = _reading(unit.id, state, now)
            if words:
                drifted += 1
                readings.append({**row, "drift": words})
            else:
                clean.append(row)
        async with store.transaction(write_lock=True) as session:
            await _upsert(session, readings, (*_READ_COLUMNS, "drift"))
            await _upsert(session, clean, _READ_COLUMNS, drift_null=True)
            await _upsert(session, failures, _FAILED_COLUMNS)
    summary = SweepSummary(len(units), read, unreachable, drifted, time.perf_counter() - started)
    log.info("status sweep: %s", summary)
    return summary


async def _read_in_chunks(
    snmp: Sweeper, units: Sequence[Row[Any]], chunk: int
) -> AsyncIterator[tuple[Sequence[Row[Any]], SweepResult]]:
    """Every unit read, `chunk` units to a result, each chunk as soon as it is done.

    All the chunks are handed to the poller at once, in order, so its window stays as full
    as with one sweep of everything and a unit that times out holds back its own chunk only.
    The caller writes a chunk's readings and drops them before the next: a sweep holds the
    readings of the chunks not yet written rather than those of the whole fleet until the end
    (memory that the daemon's RSS keeps once it has held it)."""
    tasks = {
        asyncio.ensure_future(snmp.sweep(target_of(u) for u in units[start : start + chunk])):
        start
        for start in range(0, len(units), chunk)
    }  # fmt: skip
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=tasks.__getitem__):
                start = tasks.pop(task)
                yield units[start : start + chunk], task.result()
    finally:  # the caller stopped early (an error): the chunks not yet taken are dropped
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: it is the caller's error that is raised
            task.cancel()


def _drift_or_note(unit: Row[Any], state: UnitState, box: SecretBox | None) -> list[str]:
    try:
        return drift(unit, state, box)
    except FleetError as exc:  # a passphrase the key cannot open: say so, sweep on
        return [f"intended configuration unreadable: {exc}"]


def _reading(unit_id: int, state: UnitState, now: datetime) -> dict[str, Any]:
    values = observation_values(state)
    return {
        "unit_id": unit_id,
        "observed_at": now,
        "reachable": True,
        "read_values": values,
        "wan_mode": values["wan_mode"],
        "tunnel_state": values["tunnel_state"],
        "account_state": values["account_state"],
        "updated_at": now,
    }


async def _upsert(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    *,
    drift_null: bool = False,
) -> None:
    """One INSERT … ON CONFLICT (unit_id) DO UPDATE for `rows`, setting `columns` (and drift
    to SQL NULL with `drift_null`), unless a newer reading is already stored."""
    if not rows:
        return
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(UnitObservation)
    if drift_null:
        stmt = stmt.values(drift=null())
    when = stmt.excluded.observed_at if "observed_at" in columns else stmt.excluded.last_error_at
    current = UnitObservation.__table__.c
    updates: dict[str, Any] = {name: stmt.excluded[name] for name in columns}
    if drift_null:
        updates["drift"] = null()
    stmt = stmt.on_conflict_do_update(
        index_elements=[current.unit_id],
        set_=updates,
        where=or_(current.observed_at.is_(None), current.observed_at <= when),
    )
    await session.execute(stmt, rows)


class StatusSweep:
    """The `status-sweep` job: one `SnmpPoller` per sweep, then `sweep_units`."""

    def __init__(
        self,
        store: Store,
        *,
        community: str = "public",
        timeout: float = 2.0,
        retries: int = 1,
        window: int = 256,
        box: SecretBox | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self._store = store
        self._community = community
        self._timeout = timeout
        self._retries = retries
        self._window = window
        self._box = box
        self._chunk = chunk

    def __repr__(self) -> str:  # never the community: it is the units' read password
        return f"StatusSweep(timeout={self._timeout}, retries={self._retries})"

    async def __call__(self, now: datetime) -> SweepSummary:
        async with SnmpPoller(
            read_community=self._community,
            timeout=self._timeout,
            retries=self._retries,
            window=self._window,
        ) as snmp:
            return await sweep_units(self._store, snmp, now, box=self._box, chunk=self._chunk)
