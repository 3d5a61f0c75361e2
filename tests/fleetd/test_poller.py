"""The SNMP status sweep against a simulated fleet on loopback, on both stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from drivers.base import UnitState, UnitTarget, WanState, WlanState, passphrase_fingerprint
from drivers.snmp import SweepResult
from fleetd.poller import StatusSweep, _read_in_chunks, drift, sweep_units
from inventory import repo
from inventory.errors import Timeout
from inventory.imports import importer_for, run_import
from inventory.models import Customer, Unit, UnitObservation
from inventory.records import UnitData
from inventory.secrets import SecretBox
from inventory.store import Store
from simulators.clock import ManualClock as SimClock
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet
from tests.drivers.conftest import set_fault

BASE = "127.93.0.1"
T1 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=5)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[ServedFleet]:
    """Two parents with one child each, and one access point; every V6 line ready."""
    spec = FleetSpec(
        units=2, children_per_parent=1, aps=1, base_address=BASE, v6_ready_share=1.0,
        moved_share=0.0,
    )  # fmt: skip
    async with serve_fleet(spec, state_dir=tmp_path / "sim", clock=SimClock()) as fleet:
        yield fleet


@pytest.fixture
async def fleet_store(
    store: Store, served: ServedFleet, box: SecretBox, tmp_path: Path
) -> AsyncIterator[Store]:
    """The simulated fleet imported into the store, as `fleetd import fleet` does it."""
    path = tmp_path / "fleet.csv"
    served.write_inventory(path)
    report = await run_import(store, importer_for("fleet"), path, box=box)
    assert not report.refused
    yield store


def serials(served: ServedFleet, role: str) -> list[str]:
    return sorted(u.serial for u in served.fleet if u.role == role)


def sweeper(store: Store, box: SecretBox | None = None) -> StatusSweep:
    return StatusSweep(store, community="public", timeout=0.3, retries=0, box=box)


async def observation(store: Store, serial: str) -> UnitObservation:
    async with store.sessions() as session:
        seen = await repo.get_observation(session, serial)
    assert seen is not None
    return seen


async def test_a_sweep_reads_every_unit_and_flags_drift_in_words(
    fleet_store: Store, served: ServedFleet, box: SecretBox
) -> None:
    store = fleet_store
    parents, children, (ap,) = (
        serials(served, "parent"),
        serials(served, "child"),
        serials(served, "ap"),
    )
    async with store.transaction() as session:
        await repo.set_intended_wifi(session, parents[0], box, "guest", ssid="Cafe U")
        await repo.set_intended_wan(session, parents[1], "ipoe")  # the unit still runs V4
        await repo.set_intended_account_state(session, children[0], "stopped")
        await repo.set_intended_wifi(session, children[1], box, "guest", ssid="USPOT_FREE_Wi-Fi")
        # registered from the contract export only: no management address, nothing to read
        await repo.upsert_unit(session, UnitData("US01ZZ000001", "138300000", "parent"))
    await set_fault(served, served.fleet.units[ap], snmp_timeout=True)

    summary = await sweeper(store)(T1)
    assert (summary.units, summary.read, summary.unreachable, summary.drifted) == (5, 4, 1, 3)
    assert str(summary).startswith("5 units: 4 read, 1 unreachable, 3 drifted, in ")

    first = await observation(store, parents[0])
    assert first.drift == ["guest ssid: intended 'Cafe U', observed 'USPOT_FREE_Wi-Fi'"]
    assert (first.reachable, first.observed_at, first.wan_mode) == (True, T1, "pppoe")
    assert first.read_values is not None and first.read_values["source"] == "snmp"
    assert first.read_values["guest_ssid"] == "USPOT_FREE_Wi-Fi"
    assert (await observation(store, parents[1])).drift == [
        "wan mode: intended ipoe (V6), observed pppoe (V4)"
    ]
    assert (await observation(store, children[0])).drift == [
        "account: intended stopped, observed active"
    ]
    clean = await observation(store, children[1])
    assert clean.drift is None and clean.account_state == "active"
    silent = await observation(store, ap)
    assert (silent.reachable, silent.observed_at, silent.read_values) == (False, None, None)
    assert silent.last_error == f"{ap}: no SNMP answer in 0.3 s (1 tries)"
    assert silent.last_error_at == T1
    async with store.sessions() as session:
        assert await repo.get_observation(session, "US01ZZ000001") is None
        # "no drift" is SQL NULL, so a query for drifted units finds exactly those
        drifted = await session.scalar(
            select(func.count()).where(UnitObservation.drift.is_not(None))
        )
    assert drifted == 3


async def test_a_failed_read_keeps_the_last_good_values(
    fleet_store: Store, served: ServedFleet, box: SecretBox
) -> None:
    store = fleet_store
    parent = serials(served, "parent")[0]
    async with store.transaction() as session:
        await repo.set_intended_wifi(session, parent, box, "guest", ssid="Cafe U")
    assert (await sweeper(store)(T1)).unreachable == 0
    await set_fault(served, served.fleet.units[parent], snmp_timeout=True)
    later = await sweeper(store)(T2)
    assert (later.read, later.unreachable) == (4, 1)
    seen = await observation(store, parent)
    assert (seen.reachable, seen.observed_at, seen.last_error_at) == (False, T1, T2)
    assert seen.read_values is not None and seen.wan_mode == "pppoe"
    assert seen.drift == ["guest ssid: intended 'Cafe U', observed 'USPOT_FREE_Wi-Fi'"]

    # back, and put right: the drift is gone, the last error stays as history
    await set_fault(served, served.fleet.units[parent], snmp_timeout=False)
    async with store.transaction() as session:
        await repo.set_intended_wifi(session, parent, box, "guest", ssid="USPOT_FREE_Wi-Fi")
    await sweeper(store)(T2 + timedelta(minutes=5))
    seen = await observation(store, parent)
    assert (seen.reachable, seen.observed_at, seen.drift) == (True, T2 + timedelta(minutes=5), None)
    assert seen.last_error_at == T2


async def test_passphrases_are_compared_by_fingerprint_and_never_shown(
    fleet_store: Store, served: ServedFleet, box: SecretBox
) -> None:
    store = fleet_store
    parent = served.fleet.units[serials(served, "parent")[0]]
    actual = parent.running["wlan guest passphrase"]
    async with store.transaction() as session:
        await repo.set_intended_wifi(session, parent.serial, box, "guest", passphrase=actual)
    await sweeper(store, box)(T1)
    assert (await observation(store, parent.serial)).drift is None
    wanted = "a-new-guest-pass"
    async with store.transaction() as session:
        await repo.set_intended_wifi(session, parent.serial, box, "guest", passphrase=wanted)
    summary = await sweeper(store, box)(T2)
    assert summary.drifted == 1
    words = (await observation(store, parent.serial)).drift
    assert words == ["guest passphrase: the unit's is not the intended one"]
    assert actual not in str(words) and wanted not in str(words)
    # without the key the passphrases are not compared
    assert (await sweeper(store)(T2 + timedelta(minutes=5))).drifted == 0


async def test_a_newer_reading_by_a_workflow_is_not_overwritten(
    fleet_store: Store, served: ServedFleet
) -> None:
    store = fleet_store
    parent = serials(served, "parent")[0]
    async with store.transaction() as session:  # a cutover verified the unit meanwhile
        await repo.record_observation(
            session, parent, reachable=True, at=T2, values={"wan_mode": "ipoe"}
        )
    await sweeper(store)(T1)  # a sweep that started before
    seen = await observation(store, parent)
    assert (seen.observed_at, seen.wan_mode) == (T2, "ipoe")


# ----- drift in words ---------------------------------------------------------------------
def unit_state(serial: str, **changes: Any) -> UnitState:
    state = UnitState(
        serial=serial,
        role="parent",
        firmware="1.0",
        account="active",
        internet=True,
        wan=WanState("ipoe", "ds-lite", "up", None, "192.0.2.1", "2001:db8::1"),
        lamps={"POWER": "on", "WAN": "on", "U": "on"},
        business=WlanState("USPOT-301482", "up", passphrase_fingerprint(serial, "biz-pass-1")),
        guest=WlanState("Old", "up", None),
        commit_pending=False,
        rollback_in=None,
        commits=3,
        running=None,
        read_at=T1,
        source="snmp",
    )
    return replace(state, **changes)


def intended(serial: str, **values: Any) -> SimpleNamespace:
    row: dict[str, Any] = {
        "serial": serial,
        "role": "parent",
        "intended_wan_mode": None,
        "intended_tunnel": None,
        "intended_business_ssid": None,
        "intended_guest_ssid": None,
        "intended_business_passphrase_enc": None,
        "intended_guest_passphrase_enc": None,
        "intended_account_state": "active",
    }
    row.update(values)
    return SimpleNamespace(**row)


def test_drift_words(box: SecretBox) -> None:
    serial = "US01BJH00022"
    state = unit_state(serial)
    assert drift(intended(serial), state) == []
    assert drift(intended(serial, intended_guest_ssid="Cafe U"), state) == [
        "guest ssid: intended 'Cafe U', observed 'Old'"
    ]
    assert drift(intended(serial, intended_wan_mode="pppoe"), state) == [
        "wan mode: intended pppoe (V4), observed ipoe (V6)"
    ]
    map_e = intended(serial, intended_wan_mode="ipoe", intended_tunnel={"type": "map-e"})
    assert drift(map_e, state) == ["tunnel: intended map-e, observed ds-lite"]
    no_ssid = replace(state, guest=WlanState(None, "down", None))
    assert drift(intended(serial, intended_guest_ssid="Cafe U"), no_ssid) == [
        "guest ssid: intended 'Cafe U', observed none"
    ]
    token = box.encrypt("biz-pass-1", purpose="unit.business_passphrase")
    same = intended(serial, intended_business_passphrase_enc=token)
    assert drift(same, state, box) == []
    guest = intended(
        serial, intended_guest_passphrase_enc=box.encrypt("x" * 12, purpose="unit.guest_passphrase")
    )
    assert drift(guest, state, box) == ["guest passphrase: intended set, observed none"]
    # another unit answers at the address: nothing else it says is this unit's
    assert drift(intended(serial, intended_guest_ssid="Cafe U"), unit_state("US01BJH00099")) == [
        "serial: intended 'US01BJH00022', observed 'US01BJH00099'"
    ]
    # a child has no WAN: its intended WAN mode is not compared
    child = intended(serial, role="child", intended_wan_mode="ipoe")
    assert drift(child, replace(state, role="child", wan=None, internet=None)) == []


# ----- ten thousand units -----------------------------------------------------------------
class FakeSnmp:
    """Answers for every unit at once: a reading, or a timeout for every tenth."""

    def __init__(self) -> None:
        self.asked = 0

    async def sweep(self, targets: Iterable[UnitTarget]) -> SweepResult:
        result = SweepResult()
        base = unit_state("US01SP000000", wan=WanState("pppoe", None, None, None, None, None))
        for number, target in enumerate(targets):
            self.asked += 1
            if number % 10 == 9:
                result.errors[target.serial] = Timeout(target.serial, "no SNMP answer in 2 s")
            else:
                result.states[target.serial] = replace(base, serial=target.serial)
        return result


async def test_ten_thousand_units_cost_a_few_statements(store: Store) -> None:
    count = 10_000
    async with store.transaction() as session:
        customer = await session.scalar(
            insert(Customer).values(code="138300000", name="", kana="", kana_key="",
                                    phone="", phone_digits="", branch="").returning(Customer.id)
        )  # fmt: skip
        rows = [
            {
                "serial": f"US01SP{n:06d}",
                "customer_id": customer,
                "role": "parent",
                "platform": "uspot",
                "link_item": False,
                "mgmt_address": f"127.93.{n // 250}.{n % 250 + 1}",
                "snmp_port": 1161,
                "intended_guest_ssid": "Cafe U" if n % 4 == 0 else None,
                "intended_account_state": "active",
            }
            for n in range(count)
        ]
        await session.execute(insert(Unit), rows)

    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    snmp = FakeSnmp()
    started = time.perf_counter()
    try:
        summary = await sweep_units(store, snmp, T1)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    elapsed = time.perf_counter() - started
    assert snmp.asked == count
    assert (summary.units, summary.read, summary.unreachable) == (count, 9000, 1000)
    # every fourth unit wants 'Cafe U'; those that answered all show 'Old'
    assert summary.drifted == len([n for n in range(count) if n % 4 == 0 and n % 10 != 9])
    assert statements.count("SELECT") == 1  # the units, once
    assert len([s for s in statements if s == "INSERT"]) <= 3 * 5  # 3 upserts per chunk
    assert len(statements) < 40, statements
    assert elapsed < 30, elapsed  # about a second here
    async with store.sessions() as session:
        written = await session.scalar(select(func.count()).select_from(UnitObservation))
        unreachable = await session.scalar(
            select(func.count()).where(UnitObservation.reachable.is_(False))
        )
    assert (written, unreachable) == (count, 1000)


class ChunkedSnmp:
    """Reads each chunk after a pause that makes the later chunks finish first; fails the
    chunk holding `failing` when given."""

    def __init__(self, failing: str | None = None) -> None:
        self.failing = failing
        self.calls = 0

    async def sweep(self, targets: Iterable[UnitTarget]) -> SweepResult:
        part = list(targets)
        self.calls += 1
        await asyncio.sleep(0.05 / self.calls)
        if self.failing in {t.serial for t in part}:
            raise RuntimeError("the poller broke")
        result = SweepResult()
        for target in part:
            result.errors[target.serial] = Timeout(target.serial, "no SNMP answer")
        return result


def _rows(count: int) -> list[Any]:
    return [
        SimpleNamespace(serial=f"US01SP{n:06d}", mgmt_address="127.0.0.1", snmp_port=None)
        for n in range(count)
    ]


async def test_the_chunks_are_handed_over_as_they_finish_each_unit_once() -> None:
    units = _rows(25)
    seen: list[str] = []
    async for part, result in _read_in_chunks(ChunkedSnmp(), units, 10):
        assert set(result.errors) == {u.serial for u in part}
        seen.extend(u.serial for u in part)
    assert seen[:5] == [u.serial for u in units[20:]]  # the last chunk finished first
    assert sorted(seen) == [u.serial for u in units]


async def test_a_chunk_that_fails_fails_the_sweep_and_drops_the_others() -> None:
    snmp = ChunkedSnmp(failing="US01SP000012")
    with pytest.raises(RuntimeError, match="the poller broke"):
        async for _part, _result in _read_in_chunks(snmp, _rows(30), 10):
            pass
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.sleep(0)
    assert all(t.done() for t in pending)
