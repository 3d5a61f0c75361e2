"""The SNMP status sweep: read every unit, keep what it showed, and flag drift.

One sweep is one SELECT of the units that have a management address, one SNMP sweep over
all of them (`drivers.snmp.SnmpPoller`: one socket, a bounded window), and the readings
written back to `unit_observations` in chunks, one bulk upsert per kind of row and chunk,
each chunk in its own short transaction. A chunk is the next units to end: the first are
written while the sweep still waits for the last answers. 10,000 units cost a few dozen
statements, not tens of thousands: so the rows are written here in bulk rather than through
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
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple, Protocol, cast

from sqlalchemy import Dialect, Row, Table, bindparam, null, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import UserDefinedType

from drivers.base import UnitState, UnitTarget, WlanState, passphrase_fingerprint
from drivers.snmp import SnmpPoller, SweepResult
from fleetd.observe import observation_json, observation_values
from inventory.domain import Role, WanMode
from inventory.errors import FleetError, UnitError
from inventory.models import Unit, UnitObservation
from inventory.repo.units import PASSPHRASE
from inventory.secrets import SecretBox
from inventory.store import Store

log = logging.getLogger("fleetd.poller")

CHUNK = 2000  # observations per transaction
SNMP_PORT = 161
_PARENT, _IPOE = Role.PARENT.value, WanMode.IPOE.value
_WAN_WORDS = {WanMode.PPPOE.value: "pppoe (V4)", WanMode.IPOE.value: "ipoe (V6)"}


class Sweeper(Protocol):
    """What reads the units: `SnmpPoller`, or a fake in a test."""

    async def sweep(
        self,
        targets: Iterable[UnitTarget],
        *,
        each: Callable[[str, UnitState | UnitError], None] | None = None,
    ) -> SweepResult: ...


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
    if wan is not None and unit.role == _PARENT and unit.intended_wan_mode:
        if wan.mode != unit.intended_wan_mode:
            words.append(
                f"wan mode: intended {_wan(unit.intended_wan_mode)}, observed {_wan(wan.mode)}"
            )
        elif wan.mode == _IPOE and unit.intended_tunnel:
            tunnel = unit.intended_tunnel.get("type")
            if tunnel and wan.tunnel != tunnel:
                words.append(f"tunnel: intended {tunnel}, observed {wan.tunnel or 'none'}")
    business, guest = state.business, state.guest
    ssid = unit.intended_business_ssid
    if ssid is not None and business.ssid != ssid:
        words.append(f"business ssid: intended {ssid!r}, observed {_quoted(business.ssid)}")
    if box is not None and unit.intended_business_passphrase_enc is not None:
        _passphrase(words, "business", business, unit.intended_business_passphrase_enc, unit, box)
    ssid = unit.intended_guest_ssid
    if ssid is not None and guest.ssid != ssid:
        words.append(f"guest ssid: intended {ssid!r}, observed {_quoted(guest.ssid)}")
    if box is not None and unit.intended_guest_passphrase_enc is not None:
        _passphrase(words, "guest", guest, unit.intended_guest_passphrase_enc, unit, box)
    account = unit.intended_account_state
    if account and state.account != account:
        words.append(f"account: intended {account}, observed {state.account}")
    return words


def _passphrase(
    words: list[str], network: str, seen: WlanState, token: str, unit: Any, box: SecretBox
) -> None:
    secret = box.decrypt(token, purpose=PASSPHRASE[network])
    if seen.passphrase_fingerprint is None:
        words.append(f"{network} passphrase: intended set, observed none")
    elif seen.passphrase_fingerprint != passphrase_fingerprint(unit.serial, secret):
        words.append(f"{network} passphrase: the unit's is not the intended one")


def _wan(mode: str) -> str:
    return _WAN_WORDS.get(mode, mode)


def _quoted(value: str | None) -> str:
    return "none" if value is None else repr(value)


class UnitRow(NamedTuple):
    """A unit as the sweep reads it (`_UNIT_COLUMNS`). A plain tuple: the sweep reads a
    dozen of its fields per unit, and a result row's attributes cost ten times more."""

    id: int
    serial: str
    role: str
    mgmt_address: str
    snmp_port: int | None
    intended_wan_mode: str | None
    intended_tunnel: dict[str, str] | None
    intended_business_ssid: str | None
    intended_guest_ssid: str | None
    intended_business_passphrase_enc: str | None
    intended_guest_passphrase_enc: str | None
    intended_account_state: str | None


async def load_units(session: AsyncSession) -> list[UnitRow]:
    """Every unit with a management address, with its intended configuration: one SELECT."""
    query = select(*_UNIT_COLUMNS).where(Unit.mgmt_address.is_not(None)).order_by(Unit.id)
    return [UnitRow._make(row) for row in await session.execute(query)]


def target_of(unit: Row[Any] | UnitRow) -> UnitTarget:
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
    module docstring); `now` is the time the observations carry.

    The units are recorded as they end, a chunk at a time: the first chunks are written
    while the SNMP sweep still waits for the last answers."""
    started = time.perf_counter()
    async with store.sessions() as session:
        units = await load_units(session)
    recorder = _Recorder(store, units, now, box, chunk)
    try:
        result = await snmp.sweep((target_of(u) for u in units), each=recorder.add)
    except BaseException:
        await recorder.abandon()
        raise
    read, unreachable, drifted = await recorder.finish(result)
    summary = SweepSummary(len(units), read, unreachable, drifted, time.perf_counter() - started)
    log.info("status sweep: %s", summary)
    return summary


class _Recorder:
    """The rows of a sweep, made as each unit ends and written a chunk at a time, one
    transaction per chunk, one chunk after the other."""

    def __init__(
        self,
        store: Store,
        units: Sequence[UnitRow],
        now: datetime,
        box: SecretBox | None,
        chunk: int,
    ) -> None:
        self._store = store
        self._left = {unit.serial: unit for unit in units}  # not recorded yet
        self._box = box
        self._chunk = chunk
        self._upserts = _Upserts(store.engine.dialect, now)
        encode = self._upserts.encode
        # observation_values as the JSON column encodes it, without the dict between
        self._read_values: Callable[[UnitState], str] = (
            observation_json
            if encode is json.dumps
            else lambda state: encode(observation_values(state))
        )
        self._rows: tuple[list[tuple[Any, ...]], ...] = ([], [], [])  # drifted, clean, failed
        self._count = 0
        self._writing: asyncio.Future[None] | None = None
        self.read = self.unreachable = self.drifted = 0

    def add(self, serial: str, outcome: UnitState | UnitError | None) -> None:
        unit = self._left.pop(serial, None)
        if unit is None:  # not one of the sweep's units, or recorded already
            return
        drifted, clean, failed = self._rows
        if outcome is None or isinstance(outcome, UnitError):
            failed.append((unit.id, str(outcome) if outcome else "not read"))
            self.unreachable += 1
        else:
            self.read += 1
            words = _drift_or_note(unit, outcome, self._box)
            wan = outcome.wan  # the columns as observation_values has them
            row = (
                unit.id,
                self._read_values(outcome),
                wan.mode if wan else None,
                wan.tunnel_state if wan else None,
                outcome.account,
            )
            if words:
                self.drifted += 1
                drifted.append((*row, self._upserts.encode(words)))
            else:
                clean.append(row)
        self._count += 1
        if self._count >= self._chunk:
            self._flush()

    async def finish(self, result: SweepResult) -> tuple[int, int, int]:
        """Record the units the sweep did not hand over one by one, write what is left,
        and wait for every write; (read, unreachable, drifted)."""
        states, errors = result.states, result.errors
        for serial in list(self._left):
            self.add(serial, states.get(serial) or errors.get(serial))
        if self._count:
            self._flush()
        if self._writing is not None:
            await self._writing
        return self.read, self.unreachable, self.drifted

    async def abandon(self) -> None:
        """The sweep failed: let a write under way end (its chunk stays written)."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing

    def _flush(self) -> None:
        rows, self._rows, self._count = self._rows, ([], [], []), 0
        self._writing = asyncio.ensure_future(self._write(self._writing, rows))

    async def _write(
        self, previous: asyncio.Future[None] | None, rows: tuple[list[tuple[Any, ...]], ...]
    ) -> None:
        if previous is not None:
            await previous  # one chunk after the other; a failed one fails the rest
        upserts = self._upserts
        async with self._store.transaction(write_lock=True) as session:
            connection = await session.connection()
            for upsert, chunk in zip(
                (upserts.drifted, upserts.clean, upserts.failed), rows, strict=True
            ):
                if chunk:
                    await connection.exec_driver_sql(upsert.sql, upsert.parameters(chunk))


def _drift_or_note(unit: UnitRow, state: UnitState, box: SecretBox | None) -> list[str]:
    try:
        return drift(unit, state, box)
    except FleetError as exc:  # a passphrase the key cannot open: say so, sweep on
        return [f"intended configuration unreadable: {exc}"]


class _Ready(UserDefinedType[Any]):
    """A bound value already in the database driver's form: passed on as it is."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:  # never used in DDL
        return "NULL"

    def bind_processor(self, dialect: Dialect) -> None:
        return None


_READY = _Ready()
_READ = ("unit_id", "read_values", "wan_mode", "tunnel_state", "account_state")


@dataclass(frozen=True)
class _Upsert:
    sql: str
    order: Callable[[tuple[Any, ...]], tuple[Any, ...]]  # a row and `fixed` -> the parameters
    fixed: tuple[Any, ...]

    def parameters(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        order, fixed = self.order, self.fixed
        return [order(row + fixed) for row in rows]


class _Upserts:
    """The sweep's three INSERT … ON CONFLICT (unit_id) DO UPDATE statements, each run once
    per chunk for all its rows (one executemany), unless a newer reading is already stored.

    They are compiled once per sweep. What is the same for every row (the time,
    `reachable`) is converted once by its column's type; the JSON values are encoded here as
    the column's JSON type would encode them; a row is a plain tuple of the values that
    differ (`_READ`, then drift; or unit_id and the error), given to the database driver as
    they are, so nothing is converted again per row and per column on the way."""

    def __init__(self, dialect: Dialect, now: datetime) -> None:
        self._dialect = dialect
        self.encode: Callable[[Any], str] = (
            getattr(dialect, "_json_serializer", None) or json.dumps
        )  # as sqlalchemy.JSON does
        read = {"observed_at": now, "updated_at": now, "reachable": True}
        self.drifted = self._statement((*_READ, "drift"), read)
        self.clean = self._statement(_READ, read | {"drift": None})
        failed = {"last_error_at": now, "updated_at": now, "reachable": False}
        self.failed = self._statement(("unit_id", "last_error"), failed)

    def _statement(self, varying: Sequence[str], fixed: dict[str, Any]) -> _Upsert:
        table = cast(Table, UnitObservation.__table__)
        columns = table.c
        dialect = self._dialect
        values: dict[str, Any] = {name: bindparam(name, type_=_READY) for name in varying}
        ready: dict[str, Any] = {}
        for name, value in fixed.items():
            if value is None:
                values[name] = null()
                continue
            convert = columns[name].type.dialect_impl(dialect).bind_processor(dialect)
            ready[name] = convert(value) if convert is not None else value
            values[name] = bindparam(name, type_=_READY)
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        stmt = insert(table).values(values)
        when = stmt.excluded.observed_at if "observed_at" in values else stmt.excluded.last_error_at
        updates = {name: stmt.excluded[name] for name in values if name != "unit_id"}
        stmt = stmt.on_conflict_do_update(
            index_elements=[columns.unit_id],
            set_=updates,
            where=or_(columns.observed_at.is_(None), columns.observed_at <= when),
        )
        compiled = stmt.compile(dialect=dialect)
        names = [*varying, *ready]
        positions = compiled.positiontup or []
        if sorted(positions) != sorted(names):
            raise AssertionError(f"unexpected parameters {positions}")  # cannot happen
        return _Upsert(
            compiled.string, itemgetter(*(names.index(n) for n in positions)), tuple(ready.values())
        )


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
