"""LINK_SWAP: a faulty parent out, a link item (a spare unit of the simulated fleet) in."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from fleetd.workflows.base import CUTOVER, LINK_SWAP, open_secrets
from inventory import repo
from inventory.errors import HostKeyMismatch, RuleViolation
from inventory.operations import Operation
from inventory.records import ContractItemData
from tests.fleetd.workflows.conftest import C0, C2, CUST0, P0, P1, P2, Harness

BASE = "127.84.0.1"
LINK = P2  # a spare: the simulator serves it, the inventory does not know it yet


@pytest.fixture
def spares() -> tuple[str, ...]:
    return (P2, C2)


def _link_params(h: Harness, **changes: Any) -> dict[str, Any]:
    fleet = h.served.fleet
    params = {
        "new_serial": LINK,
        "address": fleet.address_of[LINK],
        "ssh_port": h.served.ssh_port,
        "snmp_port": h.served.snmp_port,
        "username": "admin",
        "password": fleet.password_of(LINK),
        "host_key": fleet.host_public_key(fleet.units[LINK]) + " engineer@site",
    }
    params.update(changes)
    return params


async def _follow_ups(h: Harness) -> list[Operation]:
    async with h.store.sessions() as session:
        query = select(Operation).where(Operation.kind == CUTOVER)
        return list(await session.scalars(query))


async def test_a_faulty_v6_parent_is_swapped_and_its_cutover_follows(
    pg_harness: Harness,
) -> None:
    h = pg_harness
    async with h.store.transaction() as session:
        await repo.set_intended_wan(session, P0, "ipoe")
        await repo.set_intended_wifi(
            session, P0, h.box, "business", ssid="Kimura Staff", passphrase="Kept-Pass-2026"
        )
        await repo.upsert_contract_item(
            session,
            ContractItemData(
                item_no="K-1",
                customer_code=CUST0,
                item_code="9604076",
                status="confirmed",
                serial=P0,
                billing_start_month=date(2025, 4, 1),
            ),
        )
    [op] = await h.request(LINK_SWAP, P0, _link_params(h))
    assert "password" not in op.params
    assert open_secrets(h.box, op.secret_params) == {"password": _link_params(h)["password"]}

    summary = await h.run(op)

    # Friday 15:00 JST; Monday the 23rd is a public holiday: Tuesday, then Wednesday
    assert summary == (
        f"{P0} replaced by link item {LINK} (V4); its V6 cutover is due 2026-11-25 10:00 JST"
    )
    async with h.store.sessions() as session:
        assert await repo.find_unit(session, P0) is None
        link = await repo.get_unit(session, LINK)
        children = await repo.list_children(session, LINK)
        [item] = await repo.list_contract_items(session, CUST0)
    fleet = h.served.fleet
    assert (link.role, link.link_item, link.intended_wan_mode) == ("parent", True, "pppoe")
    assert link.host_key_fingerprint == fleet.host_public_key(fleet.units[LINK])
    assert link.intended_business_ssid == "Kimura Staff"
    assert repo.intended_passphrase(link, h.box, "business") == "Kept-Pass-2026"
    assert [c.serial for c in children] == [C0]
    assert item.unit_id == link.id and item.billing_start_month == date(2025, 4, 1)
    [cutover] = await _follow_ups(h)
    assert (cutover.unit_serial, cutover.customer_code) == (LINK, CUST0)
    assert cutover.not_before == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert cutover.deadline == datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert h.commits(LINK) == []  # nothing is sent to the link item
    [entry] = await h.audits("link_item_swapped")
    assert entry.target == P0 and entry.after is not None and entry.after["serial"] == LINK

    assert "already replaced" in await h.run(op)  # taken up again after a crash
    assert len(await _follow_ups(h)) == 1


async def test_a_parent_observed_on_v6_gets_its_cutover_too(harness: Harness) -> None:
    async with harness.store.transaction() as session:
        await repo.record_observation(session, P0, reachable=True, values={"wan_mode": "ipoe"})
    [op] = await harness.request(LINK_SWAP, P0, _link_params(harness))
    await harness.run(op)
    assert len(await _follow_ups(harness)) == 1


async def test_a_faulty_v4_parent_is_swapped_with_no_cutover(harness: Harness) -> None:
    [op] = await harness.request(LINK_SWAP, P0, _link_params(harness))
    summary = await harness.run(op)
    assert summary == f"{P0} replaced by link item {LINK} (V4)"
    assert await _follow_ups(harness) == []


async def test_a_child_is_never_replaced_by_a_link_item(harness: Harness) -> None:
    with pytest.raises(RuleViolation) as refused:
        await harness.request(LINK_SWAP, C0, _link_params(harness))
    assert refused.value.field == "link_item"
    assert "a child is never replaced by a link item" in str(refused.value)
    assert "ordered as equipment" in str(refused.value)
    assert await harness.operations() == []


async def test_a_link_item_with_another_host_key_is_refused_before_login(
    harness: Harness,
) -> None:
    fleet = harness.served.fleet
    other = fleet.host_public_key(fleet.units[P1])
    [op] = await harness.request(LINK_SWAP, P0, _link_params(harness, host_key=other))
    with pytest.raises(HostKeyMismatch):
        await harness.run(op)
    async with harness.store.sessions() as session:
        assert await repo.find_unit(session, P0) is not None  # nothing moved
        assert [c.serial for c in await repo.list_children(session, P0)] == [C0]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"new_serial": P1}, "new_serial", "registered already"),
        ({"new_serial": "US01-1"}, "new_serial", "US01 and 8"),
        ({"host_key": "not a key"}, "host_key", "OpenSSH form"),
        ({"password": ""}, "password", "password is needed"),
        ({"address": "10.0.0.300"}, "address", "not an IP address"),
        ({"ssh_port": "70000"}, "ssh_port", "1 to 65535"),
    ],
)
async def test_a_swap_request_that_breaks_a_rule_is_refused(
    harness: Harness, changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RuleViolation, match=words) as refused:
        await harness.request(LINK_SWAP, P0, _link_params(harness, **changes))
    assert refused.value.field == field
    assert harness.served.fleet.password_of(LINK) not in str(refused.value)
