"""The month-end account stop on both stores: who stops, the operations, the commands."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner, Result

from fleetd import monthend
from fleetd.cli import CliState, create_app
from fleetd.clock import JST
from fleetd.settings import Settings
from fleetd.workflows.base import ACCOUNT_RESUME, ACCOUNT_STOP
from inventory import audit, repo
from inventory import operations as ops
from inventory.domain import AccountState, TunnelType
from inventory.models import Unit
from inventory.operations import Operation, OpState
from inventory.records import ContractItemData, CustomerData, LineData, UnitData
from inventory.redact import Redactor
from inventory.rules import Tunnel
from inventory.store import Store, open_store
from tests.conftest import run_aside

NOV_STOP = datetime(2026, 11, 30, 23, 59, tzinfo=JST)
BEFORE = datetime(2026, 11, 20, 10, 0, tzinfo=JST)

V4_SHOP, V6_SHOP, OTHER_SHOP = "138301482", "138301483", "138301484"
V4_PARENT = "US01BJH00022"
V4_CHILD = "US01BJH00023"
V6_PARENT = "US01BJH00030"
AP = "US01BJH00040"
DECEMBER_PARENT = "US01BJH00050"
ALREADY_STOPPED = "US01BJH00060"
NEVER_INSTALLED = "US01BJH00070"


async def shops(store: Store) -> None:
    """Cancellations in November 2026 (a V4 parent with its child, a V6 parent, a scheduled
    cancellation of an AP), one in December, one whose unit is already stopped, an Original
    SSID add-on (no unit), and a cancel before installation (キャンセル)."""
    v6_line = LineData(
        line_type="flets-east",
        v6_order_state="complete",
        tunnel=Tunnel(TunnelType.DS_LITE, {"aftr": "2001:db8:a::1"}),
    )
    async with store.transaction() as session:
        await repo.upsert_customer(session, CustomerData(V4_SHOP, "カフェ木村"))
        await repo.upsert_customer(session, CustomerData(V6_SHOP, "美容室さくら"))
        await repo.upsert_customer(session, CustomerData(OTHER_SHOP, "事務所たなか"))
        await repo.upsert_line(session, V4_SHOP, LineData(line_type="flets-west"))
        await repo.upsert_line(session, V6_SHOP, v6_line)
        await repo.upsert_unit(session, UnitData(V4_PARENT, V4_SHOP, "parent"))
        await repo.upsert_unit(session, UnitData(V4_CHILD, V4_SHOP, "child", V4_PARENT))
        await repo.upsert_unit(session, UnitData(V6_PARENT, V6_SHOP, "parent"))
        await repo.set_intended_wan(session, V6_PARENT, "ipoe")
        for serial in (AP, DECEMBER_PARENT, ALREADY_STOPPED, NEVER_INSTALLED):
            role = "ap" if serial == AP else "parent"
            await repo.upsert_unit(session, UnitData(serial, OTHER_SHOP, role))
        await repo.set_intended_account_state(session, ALREADY_STOPPED, "stopped")
        items = [
            ContractItemData("K-1001", V4_SHOP, "9604076", "terminated", V4_PARENT,
                             cancellation_date=date(2026, 11, 15)),
            ContractItemData("K-1002", V4_SHOP, "9604072", "terminated", V4_CHILD,
                             cancellation_date=date(2026, 11, 15)),
            ContractItemData("K-1003", V4_SHOP, "Z201000", "terminated",
                             cancellation_date=date(2026, 11, 15), order_note="SSID'Cafe U'",
                             original_ssid="Cafe U"),
            ContractItemData("K-2001", V6_SHOP, "9604076", "terminated", V6_PARENT,
                             cancellation_date=date(2026, 11, 30)),
            ContractItemData("K-3001", OTHER_SHOP, "9604073", "confirmed", AP,
                             cancellation_date=date(2026, 11, 1)),
            ContractItemData("K-3002", OTHER_SHOP, "9604076", "terminated", DECEMBER_PARENT,
                             cancellation_date=date(2026, 12, 1)),
            ContractItemData("K-3003", OTHER_SHOP, "9604076", "terminated", ALREADY_STOPPED,
                             cancellation_date=date(2026, 11, 10)),
            ContractItemData("K-3004", OTHER_SHOP, "9604076", "cancelled", NEVER_INSTALLED),
        ]  # fmt: skip
        for item in items:
            await repo.upsert_contract_item(session, item)


async def preview(store: Store, year: int = 2026, month: int = 11) -> list[monthend.DueStop]:
    async with store.sessions() as session:
        return await monthend.preview(session, year, month)


async def reconcile(
    store: Store, now: datetime, year: int = 2026, month: int = 11
) -> monthend.ReconcileResult:
    async with store.transaction(write_lock=True) as session:
        return await monthend.reconcile(session, year, month, now=now)


async def test_the_preview_lists_v4_and_v6_units_cancelled_in_the_month(store: Store) -> None:
    await shops(store)
    due = await preview(store)
    assert [(d.item_no, d.serial, d.role) for d in due] == [
        ("K-3001", AP, "ap"),  # a cancellation still ahead is due all the same
        ("K-1001", V4_PARENT, "parent"),
        ("K-1002", V4_CHILD, "child"),
        ("K-2001", V6_PARENT, "parent"),  # V6: the line is not cut, fleetd must stop it
    ]
    v6 = due[-1]
    assert (v6.customer_code, v6.customer_name, v6.item_code) == (
        V6_SHOP,
        "美容室さくら",
        "9604076",
    )
    assert v6.cancellation_date == date(2026, 11, 30)
    assert v6.stop_at == NOV_STOP
    assert (v6.operation_id, v6.operation_state) == (None, None)
    assert [d.item_no for d in await preview(store, 2026, 12)] == ["K-3002"]
    assert await preview(store, 2026, 10) == []


async def test_reconcile_writes_one_stop_per_item_and_a_repeat_writes_nothing(
    store: Store,
) -> None:
    await shops(store)
    first = await reconcile(store, BEFORE)
    assert (first.created, first.already) == (4, 0)
    assert first.summary() == (
        "2026-11: 4 account stops created, 0 already there (stop at 2026-11-30 23:59 JST)"
    )
    op = next(r.op for r in first.items if r.stop.serial == V6_PARENT)
    assert op.kind == ACCOUNT_STOP
    assert op.idempotency_key == "account-stop:K-2001:2026-11"
    assert (op.unit_serial, op.customer_code, op.requested_by) == (V6_PARENT, V6_SHOP, "scheduler")
    assert op.not_before == NOV_STOP
    assert op.deadline == NOV_STOP + timedelta(hours=2)
    assert op.params["item_no"] == "K-2001" and op.params["month"] == "2026-11"

    # the scheduler firing twice, late, and staff running it by hand: nothing new
    for now in (NOV_STOP, NOV_STOP + timedelta(minutes=11), NOV_STOP + timedelta(days=2)):
        again = await reconcile(store, now)
        assert (again.created, again.already) == (0, 4)
        assert {r.op.id for r in again.items} == {r.op.id for r in first.items}
    async with store.sessions() as session:
        stops = (await session.scalars(select(Operation))).all()
        entries = await audit.entries(session, actor="scheduler")
    assert len(stops) == 4
    assert sorted(e.target for e in entries) == sorted([AP, V4_PARENT, V4_CHILD, V6_PARENT])
    assert all(e.action == "account_stop.request" for e in entries)
    due = {d.item_no: d for d in await preview(store)}
    assert due["K-2001"].operation_id == op.id
    assert due["K-2001"].operation_state == "queued"


async def test_a_late_run_is_due_at_once_with_its_deadline_from_then(store: Store) -> None:
    await shops(store)
    late = NOV_STOP + timedelta(hours=9)  # the daemon was down over the month-end
    result = await reconcile(store, late)
    assert result.created == 4
    assert all(r.op.not_before == late for r in result.items)
    assert all(r.op.deadline == late + monthend.STOP_DEADLINE for r in result.items)


async def test_units_already_stopped_are_left_out(store: Store) -> None:
    await shops(store)
    first = await reconcile(store, BEFORE)
    by_serial = {r.stop.serial: r.op for r in first.items}
    owner = "test-engine"
    async with store.sessions() as session:
        claimed = await ops.claim_due(session, owner, NOV_STOP, 60, 10)
        await session.commit()
    assert {op.unit_serial for op in claimed} == set(by_serial)
    async with store.transaction() as session:
        for op in claimed:
            if op.unit_serial == V4_PARENT:
                await ops.finish(session, op, OpState.SUCCEEDED, "account stopped")
            elif op.unit_serial == V4_CHILD:
                await ops.finish(session, op, OpState.FAILED, "US01BJH00023: refused")
            else:
                await ops.retry_later(session, op, NOV_STOP + timedelta(minutes=5), "timed out")
    due = {d.serial: d for d in await preview(store)}
    assert V4_PARENT not in due  # its stop succeeded
    assert due[V4_CHILD].operation_state == "failed"  # shown, for staff to look at
    assert due[V6_PARENT].operation_state == "retry_wait"
    again = await reconcile(store, NOV_STOP + timedelta(minutes=1))
    assert (again.created, again.already) == (0, 3)  # a failed stop is not queued again

    # a stop staff asked for that succeeded counts too, until the account is resumed
    for kind, key in ((ACCOUNT_STOP, "staff-stop"), (ACCOUNT_RESUME, "staff-resume")):
        async with store.transaction() as session:
            queued = await ops.enqueue(
                session, kind=kind, idempotency_key=key, requested_by="staff:kimura",
                unit_serial=DECEMBER_PARENT, not_before=BEFORE,
            )  # fmt: skip
            queued.op.state = OpState.SUCCEEDED.value
        december = [d.serial for d in await preview(store, 2026, 12)]
        assert december == ([] if kind == ACCOUNT_STOP else [DECEMBER_PARENT])

    # what the stop workflow records when it is done: the intended state
    async with store.transaction() as session:
        await repo.set_intended_account_state(session, V6_PARENT, AccountState.STOPPED.value)
    assert V6_PARENT not in {d.serial for d in await preview(store)}


async def test_a_cancel_before_installation_is_not_a_cancellation(store: Store) -> None:
    await shops(store)
    async with store.sessions() as session:
        unit = await session.scalar(select(Unit).where(Unit.serial == NEVER_INSTALLED))
        assert unit is not None
    for month in range(1, 13):
        assert NEVER_INSTALLED not in {d.serial for d in await preview(store, 2026, month)}
    # nor is an add-on without a unit: K-1003 (Original SSID) never shows
    assert "K-1003" not in {d.item_no for d in await preview(store)}


# ----- the commands -----------------------------------------------------------------------
KEY = base64.b64encode(b"\x05" * 32).decode()


def fleetd(args: list[str], url: str) -> Result:
    settings = Settings(database_url=url, secret_key=KEY)
    return CliRunner().invoke(create_app(), args, obj=CliState(settings, Redactor()))


async def _migrated_shops(url: str) -> None:
    async with open_store(url) as store:
        await store.migrate()
        await shops(store)


async def _requesters(url: str) -> set[str]:
    async with open_store(url) as store, store.sessions() as session:
        return set((await session.scalars(select(Operation.requested_by))).all())


def test_month_end_preview_and_run_commands(database_url: str) -> None:
    run_aside(lambda: _migrated_shops(database_url))
    shown = fleetd(["month-end", "preview", "--month", "2026-11"], database_url)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == "2026-11: 4 accounts to stop at 2026-11-30 23:59 JST"
    assert lines[1].split() == ["customer", "item", "serial", "role", "cancelled", "operation",
                                "name"]  # fmt: skip
    assert lines[-1].split() == [V6_SHOP, "K-2001", V6_PARENT, "parent", "2026-11-30",
                                 "not", "yet", "美容室さくら"]  # fmt: skip

    done = fleetd(["month-end", "run", "--month", "2026-11"], database_url)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[0].startswith("2026-11: 4 account stops created, 0 already")
    assert f"{V6_PARENT} item K-2001 of customer {V6_SHOP} (created)" in done.stdout
    again = fleetd(["month-end", "run", "--month", "2026-11", "--json"], database_url)
    doc = json.loads(again.stdout)
    assert (doc["created"], doc["already"]) == (0, 4)
    assert {o["serial"] for o in doc["operations"]} == {AP, V4_PARENT, V4_CHILD, V6_PARENT}
    requesters = run_aside(lambda: _requesters(database_url))
    assert len(requesters) == 1 and requesters.pop().startswith("cli")

    as_json = fleetd(["month-end", "preview", "--month", "2026-11", "--json"], database_url)
    doc = json.loads(as_json.stdout)
    assert doc["stop_at"] == "2026-11-30T23:59:00+09:00"
    stop: dict[str, Any] = next(s for s in doc["stops"] if s["serial"] == V6_PARENT)
    assert stop["operation_state"] == "queued" and stop["cancellation_date"] == "2026-11-30"


def test_a_bad_month_is_one_line_and_exit_2(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/none.db"
    for args in (["month-end", "preview", "--month", "2026-13"],
                 ["month-end", "run", "--month", "November"]):  # fmt: skip
        result = fleetd(args, url)
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1
        assert result.stderr == f'fleetd: --month "{args[-1]}": expected YYYY-MM, e.g. 2026-11\n'


def test_the_stop_time_is_the_months_last_minute_in_japan() -> None:
    assert monthend.stop_key("K-1", 2027, 2) == "account-stop:K-1:2027-02"
    assert monthend.format_jst(datetime(2027, 2, 28, 14, 59, tzinfo=UTC)) == "2027-02-28 23:59 JST"
