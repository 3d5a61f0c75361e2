"""CUTOVER and REVERT_V4 against simulated parents over real SSH."""

from __future__ import annotations

from datetime import date

import pytest

from drivers.base import Change, UnitTarget
from drivers.registry import load_driver
from fleetd.workflows.base import CUTOVER, REVERT_V4
from inventory import repo
from inventory.errors import Conflict, RuleViolation, VerificationFailed
from inventory.records import ContractItemData, LineData
from tests.fleetd.workflows.conftest import C0, CUST0, P0, TIMEOUTS, Harness

BASE = "127.81.0.1"
AFTR = "2001:db8:1a::1"  # P0's line


async def _set_line(h: Harness, **facts: object) -> None:
    async with h.store.transaction() as session:
        await repo.upsert_line(session, CUST0, LineData(**facts))  # type: ignore[arg-type]


def _target(h: Harness, serial: str) -> UnitTarget:
    fleet = h.served.fleet
    return UnitTarget(
        serial=serial,
        address=fleet.address_of[serial],
        ssh_port=h.served.ssh_port,
        password=fleet.password_of(serial),
        host_key=fleet.host_public_key(fleet.units[serial]),
        timeouts=TIMEOUTS,
    )


async def _commit_pending(h: Harness, serial: str, aftr: str) -> None:
    """What an earlier attempt that died between commit and confirm leaves on the unit."""
    change = {"wan mode": "ipoe", "wan tunnel type": "ds-lite", "wan tunnel aftr": aftr}
    async with load_driver(_target(h, serial)) as unit:
        await unit.stage(Change(change))
        await unit.commit_confirmed(10)


async def test_a_cutover_switches_the_parent_to_v6_and_records_it(pg_harness: Harness) -> None:
    h = pg_harness
    [op] = await h.request(CUTOVER, P0)
    assert (op.unit_serial, op.customer_code, op.params) == (P0, CUST0, {"confirm_minutes": 10})

    summary = await h.run(op)

    assert "switched to V6" in summary and "U lamp on" in summary
    sim = h.unit(P0)
    assert sim.wan()["mode"] == "ipoe" and sim.wan()["tunnel-state"] == "up"
    assert sim.internet and sim.lamps()["U"] == "on"
    assert sim.running["wan tunnel aftr"] == AFTR
    assert h.kinds(P0) == ["commit-confirmed", "confirm"]
    steps = await h.steps(op)
    names = [s.step for s in steps]
    assert names[:6] == ["preconditions", "read", "snapshot", "stage", "commit confirmed", "verify"]
    assert "pppoe_account_cancellation_due" in names
    snapshot = next(s.detail for s in steps if s.step == "snapshot")
    assert "set wan mode pppoe" in snapshot and "set wan pppoe password ********" in snapshot
    assert sim.running["wan pppoe password"] not in snapshot
    async with h.store.sessions() as session:
        unit = await repo.get_unit(session, P0)
        seen = await repo.get_observation(session, P0)
    assert unit.intended_wan_mode == "ipoe"
    assert unit.intended_tunnel == {"type": "ds-lite", "aftr": AFTR}
    assert seen is not None and seen.wan_mode == "ipoe" and seen.tunnel_state == "up"
    [pushed] = await h.audits(CUTOVER)
    assert pushed.target == P0
    assert pushed.after == {
        "wan mode": "ipoe",
        "wan tunnel type": "ds-lite",
        "wan tunnel aftr": AFTR,
    }
    assert pushed.before == {"wan mode": "pppoe", "wan tunnel type": None, "wan tunnel aftr": None}
    [due] = await h.audits("pppoe_account_cancellation_due")
    assert due.after == {"customer_code": CUST0, "pppoe_username": f"u{CUST0}@uspot.example"}


async def test_a_cutover_that_is_already_done_sends_nothing(harness: Harness) -> None:
    [first] = await harness.request(CUTOVER, P0)
    await harness.run(first)
    commits = harness.commits(P0)

    [again] = await harness.request(CUTOVER, P0, request_id="req-2")
    summary = await harness.run(again)

    assert again.id != first.id
    assert "already on V6" in summary
    assert harness.commits(P0) == commits  # the unit's commit log shows nothing new
    assert "already applied" in await harness.step_names(again)
    assert "stage" not in await harness.step_names(again)


async def test_a_repeated_request_returns_the_operation_it_wrote(harness: Harness) -> None:
    [first] = await harness.request(CUTOVER, P0, request_id="req-7")
    [again] = await harness.request(CUTOVER, P0, request_id="req-7")
    [keyed] = await harness.request(CUTOVER, P0, {"idempotency_key": "ticket-4411"})
    assert again.id == first.id
    assert first.idempotency_key == f"cutover:{P0}:req-7"
    assert keyed.idempotency_key == "ticket-4411" and keyed.id != first.id
    with pytest.raises(Conflict, match="belongs to a cutover request"):
        await harness.request(REVERT_V4, P0, {"idempotency_key": "ticket-4411"})


async def test_a_legacy_v4_parent_item_is_registered_again_as_a_parent(
    harness: Harness,
) -> None:
    async with harness.store.transaction() as session:
        await repo.upsert_contract_item(
            session,
            ContractItemData(
                item_no="K-100",
                customer_code=CUST0,
                item_code="9604074",
                status="confirmed",
                serial=P0,
                billing_start_month=date(2019, 9, 1),
            ),
        )
    [op] = await harness.request(CUTOVER, P0)
    await harness.run(op)
    async with harness.store.sessions() as session:
        [item] = await repo.list_contract_items(session, CUST0)
    assert (item.item_code, item.status, item.billing_start_month) == (
        "9604076",
        "confirmed",
        date(2019, 9, 1),
    )
    [entry] = await harness.audits("contract_item_reregistered")
    assert entry.after == {"item_no": "K-100", "item_code": "9604076"}


@pytest.mark.parametrize(
    ("facts", "field", "words"),
    [
        ({"v6_order_state": "requested"}, "v6_order_state", "4over6 order is not complete"),
        ({"moved_by_customer": True}, "moved_by_customer", "never on V6"),
        ({"tunnel": None}, "tunnel", "tunnel parameters are not known"),
    ],
)
async def test_the_request_refuses_a_line_that_cannot_carry_v6(
    harness: Harness, facts: dict[str, object], field: str, words: str
) -> None:
    await _set_line(harness, **facts)
    with pytest.raises(RuleViolation) as refused:
        await harness.request(CUTOVER, P0)
    assert refused.value.field == field and words in str(refused.value)
    assert await harness.operations() == []


async def test_the_request_refuses_a_child(harness: Harness) -> None:
    with pytest.raises(RuleViolation) as refused:
        await harness.request(CUTOVER, C0)
    assert refused.value.field == "role" and "only a parent" in str(refused.value)


async def test_the_workflow_checks_the_line_again_and_sends_nothing(harness: Harness) -> None:
    [op] = await harness.request(CUTOVER, P0)
    await _set_line(harness, v6_order_state="ng")  # sent back by the ISP since the request
    with pytest.raises(RuleViolation, match="4over6 order is not complete"):
        await harness.run(op)
    assert harness.commits(P0) == []


async def test_wrong_tunnel_parameters_end_back_on_v4_with_internet(harness: Harness) -> None:
    # the line's AFTR is not the one the inventory has
    await harness.line(P0, tunnel={"type": "ds-lite", "aftr": "2001:db8:99::1"})
    [op] = await harness.request(CUTOVER, P0)

    with pytest.raises(VerificationFailed) as failed:
        await harness.run(op)

    assert str(failed.value) == (
        f"{P0}: tunnel did not come up: AFTR unreachable; "
        "rolled back to V4, which works (internet up)"
    )
    sim = harness.unit(P0)
    assert sim.wan()["mode"] == "pppoe" and sim.internet
    assert "wan tunnel aftr" not in sim.running
    assert harness.kinds(P0) == ["commit-confirmed", "rollback"]
    steps = await harness.steps(op)
    verify = next(s for s in steps if s.step == "verify")
    assert not verify.ok and "AFTR unreachable" in verify.detail
    assert steps[-1].step == "rollback" and steps[-1].ok and "WAN V4" in steps[-1].detail
    async with harness.store.sessions() as session:
        unit = await repo.get_unit(session, P0)
        seen = await repo.get_observation(session, P0)
    assert unit.intended_wan_mode is None  # nothing recorded as V6
    assert seen is not None and seen.wan_mode == "pppoe"


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        ({"v6_ready": False}, "the line's 4over6 order is not complete"),
        ({"moved_by_customer": True}, "not on its original line"),
    ],
)
async def test_a_line_the_unit_finds_unready_rolls_back_with_words_for_cs(
    harness: Harness, facts: dict[str, object], words: str
) -> None:
    await harness.line(P0, **facts)  # the inventory still says the line is ready
    [op] = await harness.request(CUTOVER, P0)
    with pytest.raises(VerificationFailed, match=words):
        await harness.run(op)
    assert harness.unit(P0).wan()["mode"] == "pppoe" and harness.unit(P0).internet


async def test_a_commit_left_pending_that_works_is_confirmed(harness: Harness) -> None:
    await _commit_pending(harness, P0, AFTR)
    [op] = await harness.request(CUTOVER, P0)
    summary = await harness.run(op)
    assert "already on V6" in summary
    assert harness.kinds(P0) == ["commit-confirmed", "confirm"]
    assert harness.unit(P0).pending is None


async def test_a_commit_left_pending_that_fails_is_undone_first(harness: Harness) -> None:
    await _commit_pending(harness, P0, "2001:db8:77::1")
    [op] = await harness.request(CUTOVER, P0)
    await harness.run(op)
    assert harness.kinds(P0) == ["commit-confirmed", "rollback", "commit-confirmed", "confirm"]
    assert harness.unit(P0).wan()["tunnel-state"] == "up"


async def test_revert_brings_back_v4_with_internet(harness: Harness) -> None:
    [cut] = await harness.request(CUTOVER, P0)
    await harness.run(cut)
    [op] = await harness.request(REVERT_V4, P0)

    summary = await harness.run(op)

    assert "switched back to V4" in summary
    sim = harness.unit(P0)
    assert sim.wan()["mode"] == "pppoe" and sim.internet and sim.lamps()["U"] == "off"
    assert not [p for p in sim.running if p.startswith("wan tunnel")]
    assert harness.kinds(P0)[-2:] == ["commit-confirmed", "confirm"]
    async with harness.store.sessions() as session:
        assert (await repo.get_unit(session, P0)).intended_wan_mode == "pppoe"


async def test_revert_of_a_unit_on_v4_sends_nothing(harness: Harness) -> None:
    [op] = await harness.request(REVERT_V4, P0)
    assert "already on V4" in await harness.run(op)
    assert harness.commits(P0) == []


async def test_revert_without_a_pppoe_account_goes_back_to_v6(harness: Harness) -> None:
    [cut] = await harness.request(CUTOVER, P0)
    await harness.run(cut)
    await harness.line(P0, pppoe_active=False)  # the ISP has cancelled the V4 account
    [op] = await harness.request(REVERT_V4, P0)

    with pytest.raises(VerificationFailed, match="PPPoE account") as failed:
        await harness.run(op)

    assert "rolled back to V6, which works" in str(failed.value)
    sim = harness.unit(P0)
    assert sim.wan()["mode"] == "ipoe" and sim.internet and sim.lamps()["U"] == "on"


async def test_revert_refuses_a_child(harness: Harness) -> None:
    with pytest.raises(RuleViolation, match="only a parent"):
        await harness.request(REVERT_V4, C0)


async def test_confirm_minutes_are_checked(harness: Harness) -> None:
    with pytest.raises(RuleViolation) as refused:
        await harness.request(CUTOVER, P0, {"confirm_minutes": 0})
    assert refused.value.field == "confirm_minutes" and "1 to 60" in str(refused.value)
    with pytest.raises(RuleViolation, match="not a parameter of cutover"):
        await harness.request(CUTOVER, P0, {"minutes": 5})
