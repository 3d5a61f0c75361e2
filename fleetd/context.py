"""The engine's side of `OpContext`: one run of one claimed operation.

What a run records (steps, audit entries, readings of units, a host key seen on first
contact) is kept in memory and written with the operation's outcome, in one transaction, so a
bulk run costs one write per operation. A run that lasts (a commit that takes seconds) flushes
what it has every `flush_seconds` by the run's clock, so staff following it see its steps as
they happen; the engine gives a batch's runs a longer interval (a batch is followed by its
counts, and hundreds of runs flushing every second cost the daemon more than their sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import (
    Change,
    CommitEntry,
    DiffLine,
    Shell,
    Timeouts,
    UnitDriver,
    UnitState,
    UnitTarget,
)
from fleetd.calendar import BusinessCalendar
from fleetd.clock import Clock
from fleetd.observe import observation_values
from fleetd.workflows.base import open_secrets, seal_secrets
from inventory import audit, repo
from inventory import operations as ops
from inventory.domain import AccountState
from inventory.errors import FleetError, Timeout, Unreachable
from inventory.models import Unit, UnitObservation, utcnow
from inventory.operations import Operation, OperationStep
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store

log = logging.getLogger("fleetd.engine")

DriverLoader = Callable[[UnitTarget, str], UnitDriver]


@dataclass(frozen=True)
class Claimed:
    """What the engine keeps of a claimed operation (a plain copy, no ORM session)."""

    id: int
    kind: str
    unit_serial: str | None
    customer_code: str | None
    params: Mapping[str, Any]
    secret_params: str | None
    attempts: int
    requested_by: str
    batch_id: str | None
    deadline: datetime | None
    created_at: datetime
    lease_owner: str
    request_id: str | None = None

    @classmethod
    def of(cls, op: Operation) -> Claimed:
        assert op.lease_owner is not None
        return cls(
            id=op.id,
            kind=op.kind,
            unit_serial=op.unit_serial,
            customer_code=op.customer_code,
            params=dict(op.params or {}),
            secret_params=op.secret_params,
            attempts=op.attempts,
            requested_by=op.requested_by,
            batch_id=op.batch_id,
            deadline=op.deadline,
            created_at=op.created_at,
            lease_owner=op.lease_owner,
            request_id=op.request_id,
        )

    def as_row(self) -> Operation:
        """A detached row for the compare-and-set functions of `inventory.operations`."""
        return Operation(id=self.id, lease_owner=self.lease_owner)


@dataclass
class Record:
    """What one run has to write: flushed during the run, and with its outcome."""

    steps: list[tuple[str, bool, str, datetime]] = field(default_factory=list)
    audits: list[audit.Entry] = field(default_factory=list)
    readings: dict[str, tuple[bool, dict[str, Any] | None, str | None, datetime]] = field(
        default_factory=dict
    )
    pins: dict[str, str] = field(default_factory=dict)
    # what a verified push leaves as intended: Wi-Fi by (serial, network) -> (ssid,
    # passphrase), the account state by serial
    intents: dict[tuple[str, str], tuple[str | None, str | None]] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    after: int | None = None  # the last step number already written, when known

    def __bool__(self) -> bool:
        return any((self.steps, self.audits, self.readings, self.pins, self.intents, self.accounts))

    def take(self) -> Record:
        taken = dataclasses.replace(self)
        if self.after is not None:
            self.after += len(self.steps)
        self.steps, self.audits, self.readings, self.pins = [], [], {}, {}
        self.intents, self.accounts = {}, {}
        return taken

    def kept(self) -> Record:
        """What must outlive a record that cannot be written: the intended values that
        match what the units now run (steps, audit and readings are history)."""
        return Record(intents=self.intents, accounts=self.accounts)


async def write_records(
    session: AsyncSession,
    runs: Sequence[tuple[Claimed, Record]],
    redactor: Redactor,
    box: SecretBox,
) -> None:
    """Write what runs recorded (steps, audit, readings, pins, intended values) in the
    caller's transaction: a few statements for the whole group, not a few per run."""
    numbered: list[dict[str, Any]] = []
    for op, record in runs:
        after = record.after
        if after is None and record.steps:
            after = await session.scalar(
                select(func.max(OperationStep.seq)).where(OperationStep.operation_id == op.id)
            )
        for n, (name, ok, detail, at) in enumerate(record.steps, start=(after or 0) + 1):
            numbered.append(
                {
                    "operation_id": op.id,
                    "seq": n,
                    "at": at,
                    "step": name,
                    "ok": ok,
                    "detail": redactor.redact(detail),
                }
            )
    if numbered:
        # the table's INSERT, not the ORM's bulk insert: no object bookkeeping per row
        steps = insert(cast(Table, OperationStep.__table__))
        try:
            async with session.begin_nested():
                await session.execute(steps, numbered)
        except IntegrityError:
            # steps of one of these operations were numbered elsewhere meanwhile (a run taken
            # over while its first run still wrote): number them after what is there
            await session.execute(steps, await _renumbered(session, numbered))
    await audit.record_many(session, [e for _op, r in runs for e in r.audits], redactor)
    readings = {serial: seen for _op, record in runs for serial, seen in record.readings.items()}
    pins = {serial: key for _op, record in runs for serial, key in record.pins.items()}
    intents = {where: values for _op, record in runs for where, values in record.intents.items()}
    accounts = {serial: state for _op, record in runs for serial, state in record.accounts.items()}
    if readings or pins or intents or accounts:
        await _write_units(session, box, readings, pins, intents, accounts)


async def _renumbered(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = sorted({row["operation_id"] for row in rows})
    last = dict(
        (
            await session.execute(
                select(OperationStep.operation_id, func.max(OperationStep.seq))
                .where(OperationStep.operation_id.in_(ids))
                .group_by(OperationStep.operation_id)
            )
        ).all()
    )
    out = []
    for row in rows:
        last[row["operation_id"]] = last.get(row["operation_id"], 0) + 1
        out.append({**row, "seq": last[row["operation_id"]]})
    return out


async def _write_units(
    session: AsyncSession,
    box: SecretBox,
    readings: Mapping[str, tuple[bool, dict[str, Any] | None, str | None, datetime]],
    pins: Mapping[str, str],
    intents: Mapping[tuple[str, str], tuple[str | None, str | None]],
    accounts: Mapping[str, str],
) -> None:
    """The units' side of many runs' records in a few statements: the columns a run can
    change are read as plain rows, and each kind of change is one UPDATE (or upsert) run
    for every unit it touches. No unit is loaded as an object."""
    serials = set(readings) | set(pins) | set(accounts) | {serial for serial, _net in intents}
    table = cast(Table, Unit.__table__).c
    read = [table.id, table.serial, table.host_key_fingerprint, table.intended_account_state]
    read += [table[column] for columns in repo.INTENDED_WIFI.values() for column in columns]
    units = {
        row.serial: row
        for row in await session.execute(select(*read).where(table.serial.in_(serials)))
    }
    if any(passphrase is not None for _ssid, passphrase in intents.values()):
        await repo.check_secret_key(session, box)
    changes: dict[int, dict[str, Any]] = {}
    for serial, key in pins.items():
        unit = units.get(serial)
        if unit is not None and unit.host_key_fingerprint is None:  # first use only: no re-pin
            changes.setdefault(unit.id, {})["host_key_fingerprint"] = key
    for (serial, network), (ssid, passphrase) in intents.items():
        unit = units.get(serial)
        if unit is None:
            continue  # the unit left the inventory while the operation ran
        values = repo.intended_wifi_changes(
            dict(unit._mapping), box, network, ssid=ssid, passphrase=passphrase
        )
        if values:
            changes.setdefault(unit.id, {}).update(values)
    for serial, state in accounts.items():
        unit = units.get(serial)
        if unit is not None and unit.intended_account_state != AccountState(state).value:
            changes.setdefault(unit.id, {})["intended_account_state"] = AccountState(state).value
    # one UPDATE per set of columns changed, each run for all its units
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for unit_id, values in changes.items():
        names = tuple(sorted(values))
        by_columns.setdefault(names, []).append(
            {"b_id": unit_id, **{f"b_{name}": values[name] for name in names}}
        )
    for names, rows in by_columns.items():
        await session.execute(_unit_update(names), rows)
    await _write_readings(session, {s: r for s, r in readings.items() if s in units}, units)


@functools.lru_cache(maxsize=32)
def _unit_update(names: tuple[str, ...]) -> Any:
    table = cast(Table, Unit.__table__)
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}", type_=table.c[name].type) for name in names})
    )


async def _write_readings(
    session: AsyncSession,
    readings: Mapping[str, tuple[bool, dict[str, Any] | None, str | None, datetime]],
    units: Mapping[str, Any],
) -> None:
    """The units' observations: a good read stores its values; a failed one keeps the last
    good values and says why."""
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for serial, (reachable, values, error, at) in readings.items():
        row: dict[str, Any] = {"unit_id": units[serial].id, "reachable": reachable}
        if values is not None:
            row |= {
                "observed_at": at,
                "read_values": dict(values),
                "wan_mode": values.get("wan_mode"),
                "tunnel_state": values.get("tunnel_state"),
                "account_state": values.get("account_state"),
            }
        if error is not None:
            row |= {"last_error": error, "last_error_at": at}
        rows.append(row | {"updated_at": now})
    # one upsert per set of columns (a good read, a failed one), each run for all its rows
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(row), []).append(row)
    dialect = session.get_bind().dialect.name
    for names, group in by_columns.items():
        await session.execute(_observation_upsert(dialect, names), group)


@functools.lru_cache(maxsize=16)
def _observation_upsert(dialect: str, names: tuple[str, ...]) -> Any:
    """INSERT … ON CONFLICT (unit_id) DO UPDATE of the columns `names`; the others keep
    what they hold (a failed read keeps the last good values)."""
    table = cast(Table, UnitObservation.__table__)
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert_(table)
    updates = {name: stmt.excluded[name] for name in names if name != "unit_id"}
    return stmt.on_conflict_do_update(index_elements=[table.c.unit_id], set_=updates)


class StepWriter:
    """Writes what many runs flush at about the same time in one transaction: with hundreds
    of operations running, a transaction per run and flush cost more daemon CPU than their
    SSH sessions. `write` returns once its record is written, as a flush of its own would."""

    def __init__(
        self,
        store: Store,
        redactor: Redactor,
        box: SecretBox,
        *,
        linger: float = 0.05,
        limit: int = 200,
    ) -> None:
        self._store = store
        self._redactor = redactor
        self._box = box
        self._linger = linger
        self._limit = limit
        self._waiting: list[tuple[Claimed, Record, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, op: Claimed, record: Record) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((op, record, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_soon(), name="engine-steps")
        await future

    async def _write_soon(self) -> None:
        await asyncio.sleep(self._linger)  # let the other runs' flushes join this one
        while self._waiting:
            group, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                await self._write([(op, record) for op, record, _ in group])
            except Exception:
                # one record that cannot be written must not fail the others' flushes
                for op, record, future in group:
                    try:
                        await self._write([(op, record)])
                    except Exception as exc:
                        _settle(future, exc)
                    else:
                        _settle(future, None)
            else:
                for _op, _record, future in group:
                    _settle(future, None)

    async def _write(self, runs: list[tuple[Claimed, Record]]) -> None:
        async with self._store.transaction() as session:
            await write_records(session, runs, self._redactor, self._box)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the run was cancelled meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def unit_target(
    unit: Unit | Row[Any], box: SecretBox, redactor: Redactor, timeouts: Timeouts
) -> UnitTarget:
    """How a run reaches `unit` (or a row of its access columns): its credential (password
    registered with the redactor)."""
    credential = repo.unit_credential(unit, box)
    if credential.password:
        redactor.add_secret(credential.password)
    return UnitTarget(
        serial=credential.serial,
        address=credential.host,
        ssh_port=credential.ssh_port,
        snmp_port=credential.snmp_port or 161,
        username=credential.username,
        password=credential.password,
        private_key=Path(credential.private_key_path) if credential.private_key_path else None,
        platform=credential.platform,
        host_key=credential.host_key_fingerprint,
        timeouts=timeouts,
    )


async def unit_targets(
    session: AsyncSession,
    serials: Sequence[str],
    box: SecretBox,
    redactor: Redactor,
    timeouts: Timeouts,
) -> dict[str, UnitTarget]:
    """The targets of many units in one query; a unit that cannot be reached as stored (no
    management address, say) is left out, for its run to say why."""
    if not serials:
        return {}
    out: dict[str, UnitTarget] = {}
    table = cast(Table, Unit.__table__).c
    columns = [table[name] for name in repo.ACCESS_COLUMNS]  # plain rows, no objects
    for unit in await session.execute(select(*columns).where(table.serial.in_(set(serials)))):
        try:
            out[unit.serial] = unit_target(unit, box, redactor, timeouts)
        except FleetError:
            continue
    return out


class RunContext:
    """`fleetd.workflows.base.OpContext` for one run of one operation."""

    def __init__(
        self,
        op: Claimed,
        *,
        store: Store,
        box: SecretBox,
        redactor: Redactor,
        clock: Clock,
        calendar: BusinessCalendar,
        load_driver: DriverLoader,
        transport: str,
        timeouts: Timeouts,
        flush_seconds: float = 1.0,
        step_writer: StepWriter | None = None,
        targets: Mapping[str, UnitTarget] | None = None,
    ) -> None:
        self.op = op
        self.op_id = op.id
        self.kind = op.kind
        self.unit_serial = op.unit_serial
        self.customer_code = op.customer_code
        self.params = op.params
        self.attempt = op.attempts
        self.requested_by = op.requested_by
        self.batch_id = op.batch_id
        self.deadline = op.deadline
        self.clock = clock
        self.calendar = calendar
        self.box = box
        self.redactor = redactor
        # a first attempt has no history yet: its steps are numbered from 1 without a query
        self.record = Record(after=0 if op.attempts == 1 else None)
        self._store = store
        self._load_driver = load_driver
        self._transport = transport
        self._timeouts = timeouts
        self._flush_seconds = flush_seconds
        self._step_writer = step_writer
        self._last_flush = clock.now()
        self._flushing: asyncio.Future[None] | None = None  # the run's flush under way
        # read once per run, not once per session; the engine reads them for a whole claim
        self._targets: dict[str, UnitTarget] = dict(targets or {})
        self.secrets: Mapping[str, str] = open_secrets(box, op.secret_params)
        for value in self.secrets.values():
            redactor.add_secret(value)

    # ----- inventory -------------------------------------------------------------------
    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        # a workflow reads, then writes: on SQLite it takes the write lock up front, or a
        # concurrent writer would make its write fail with "database is locked"
        return self._store.transaction(write_lock=True)

    async def step(self, name: str, ok: bool = True, detail: str = "") -> None:
        at = self.clock.now()
        self.record.steps.append((name, ok, detail, at))
        level = logging.INFO if ok else logging.WARNING
        if log.isEnabledFor(level):
            log.log(
                level,
                "op %s %s %s: %s %s",
                self.op_id,
                self.kind,
                self.unit_serial or self.customer_code,
                name,
                self.redactor.redact(detail),
            )
        if (at - self._last_flush).total_seconds() >= self._flush_seconds:
            await self.flush()

    async def flush(self) -> None:
        """Write what the run has recorded so far (its own transaction). With the engine's
        step writer the run does not wait for it: the write joins other runs' and the run
        goes on with its unit; `flushed()` waits for it before the outcome is written."""
        self._last_flush = self.clock.now()
        if not self.record:
            return
        record = self.record.take()
        if self._step_writer is not None:
            self._flushing = asyncio.ensure_future(self._write_after(self._flushing, record))
            return
        async with self._store.transaction() as session:
            await write_records(session, [(self.op, record)], self.redactor, self.box)

    async def _write_after(self, previous: asyncio.Future[None] | None, record: Record) -> None:
        if previous is not None:  # the run's flushes are written in their order
            with contextlib.suppress(Exception):
                await previous
        assert self._step_writer is not None
        await self._step_writer.write(self.op, record)

    async def flushed(self) -> None:
        """Wait until what the run has flushed is written; a write that failed is logged
        (the outcome and what was recorded after it are still written)."""
        if self._flushing is None:
            return
        try:
            await self._flushing
        except Exception:
            log.warning(
                "op %s: steps recorded during the run could not be written", self.op_id,
                exc_info=True,
            )  # fmt: skip

    async def audit(
        self,
        action: str,
        target: str,
        *,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        detail: str = "",
    ) -> None:
        self.record.audits.append(
            {
                "actor": self.requested_by,
                "action": action,
                "target": target,
                # the push is audited under the request that asked for it
                "request_id": self.op.request_id or f"op-{self.op_id}",
                "before": before,
                "after": after,
                "detail": detail,
                "at": self.clock.now(),
            }
        )

    async def observed(self, state: UnitState) -> None:
        self.record.readings[state.serial] = (
            True,
            observation_values(state),
            None,
            self.clock.now(),
        )

    def intend_wifi(
        self, serial: str, network: str, *, ssid: str | None = None, passphrase: str | None = None
    ) -> None:
        """Store what the unit's `network` should have from now on, with the operation's
        outcome (one transaction for it and the values)."""
        repo.check_intended_wifi(network, ssid=ssid, passphrase=passphrase)
        self.record.intents[(serial, network)] = (ssid, passphrase)

    def intend_account(self, serial: str, state: str) -> None:
        """Store the unit's intended account state, with the operation's outcome."""
        self.record.accounts[serial] = AccountState(state).value

    def unreachable(self, serial: str, error: str) -> None:
        self.record.readings[serial] = (False, None, error, self.clock.now())

    async def follow_up(
        self,
        kind: str,
        *,
        idempotency_key: str,
        unit_serial: str | None = None,
        customer_code: str | None = None,
        params: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        not_before: datetime | None = None,
        deadline: datetime | None = None,
    ) -> Operation:
        async with self._store.transaction() as session:
            enqueued = await ops.enqueue(
                session,
                kind=kind,
                idempotency_key=idempotency_key,
                requested_by=self.requested_by,
                unit_serial=unit_serial,
                customer_code=customer_code,
                params=params,
                secret_params=seal_secrets(self.box, secrets or {}),
                not_before=not_before or self.clock.now(),
                deadline=deadline,
            )
            return enqueued.op

    # ----- units -----------------------------------------------------------------------
    async def target(self, serial: str) -> UnitTarget:
        known = self._targets.get(serial)
        if known is not None:
            return known
        async with self._store.sessions() as session:
            unit = await repo.get_unit(session, serial)
            target = unit_target(unit, self.box, self.redactor, self._timeouts)
        self._targets[serial] = target
        return target

    @asynccontextmanager
    async def _connect(self, serial: str) -> AsyncIterator[UnitDriver]:
        target = await self.target(serial)
        driver = self._load_driver(target, self._transport)
        try:
            async with driver:
                if target.host_key is None and driver.seen_host_key:
                    self.record.pins[serial] = driver.seen_host_key
                    # the run's next session checks the key its first one saw
                    self._targets[serial] = dataclasses.replace(
                        target, host_key=driver.seen_host_key
                    )
                yield _Observed(driver, self)
        except (Unreachable, Timeout) as exc:
            self.unreachable(serial, exc.detail)
            raise

    def connect(self, serial: str) -> AbstractAsyncContextManager[UnitDriver]:
        return self._connect(serial)


class _Observed:
    """A driver whose readings land in the run's record (the unit's observation)."""

    def __init__(self, driver: UnitDriver, ctx: RunContext) -> None:
        self._driver = driver
        self._ctx = ctx
        self.target = driver.target

    @property
    def seen_host_key(self) -> str | None:
        return self._driver.seen_host_key

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def read_state(self) -> UnitState:
        state = await self._driver.read_state()
        await self._ctx.observed(state)
        return state

    async def stage(self, change: Change) -> None:
        await self._driver.stage(change)

    async def diff(self) -> list[DiffLine]:
        return await self._driver.diff()

    async def commit_confirmed(self, minutes: int) -> None:
        await self._driver.commit_confirmed(minutes)

    async def commit(self) -> None:
        await self._driver.commit()

    async def confirm(self) -> None:
        await self._driver.confirm()

    async def rollback(self) -> None:
        await self._driver.rollback()

    async def discard(self) -> None:
        await self._driver.discard()

    async def history(self) -> list[CommitEntry]:
        return await self._driver.history()

    async def open_shell(
        self, *, term_type: str = "xterm", columns: int = 80, rows: int = 24
    ) -> Shell:
        return await self._driver.open_shell(term_type=term_type, columns=columns, rows=rows)
