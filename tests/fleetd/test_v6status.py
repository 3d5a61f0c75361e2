"""The V6 verdict a CS agent reads out: one sentence from the order and the router's reading."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from fleetd.v6status import OpBrief, ParentReading, V6Facts, Verdict, status, verdict
from inventory import repo
from inventory.errors import NotFound
from inventory.operations import Operation
from inventory.records import CustomerData, LineData, UnitData
from inventory.store import Store

T = datetime(2026, 11, 20, 5, 3, tzinfo=UTC)  # 14:03 JST
SERIAL = "US01BJH00022"
ON_V4 = ParentReading(SERIAL, reachable=True, observed_at=T, wan_mode="pppoe", u_lamp="off")
ON_V6 = ParentReading(
    SERIAL, reachable=True, observed_at=T, wan_mode="ipoe", tunnel_state="up", u_lamp="on"
)
READY = V6Facts(
    customer_code="138301482",
    has_line=True,
    order_state="complete",
    order_date=date(2026, 11, 2),
    moved_by_customer=False,
    parents=[ON_V4],
)


def _cutover(state: str, *, at: datetime = T, reason: str | None = None) -> OpBrief:
    return OpBrief(7, "cutover", SERIAL, state, not_before=at, updated_at=at, reason=reason)


def said(facts: V6Facts) -> Verdict:
    return verdict(facts)[0]


def test_a_router_on_v6_is_on_v6_since_its_cutover() -> None:
    done = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)
    facts = replace(READY, parents=[replace(ON_V6, cutover_done_at=done)])
    assert said(facts) == Verdict("on_v6", "on V6 since 2026-11-18")
    # switched some other way: the reading is the evidence
    assert said(replace(READY, parents=[ON_V6])).words == (
        "on V6 (router read 2026-11-20 14:03 JST)"
    )
    dark = replace(ON_V6, u_lamp="off")
    assert said(replace(READY, parents=[dark])).words.endswith("; U lamp off")


def test_a_ready_line_with_the_router_on_v4_says_what_happens_next() -> None:
    assert said(READY) == Verdict(
        "line_ready", "line ready, router still on V4: no cutover requested yet"
    )
    queued = replace(
        READY, operations=[_cutover("queued", at=datetime(2026, 11, 21, 1, 0, tzinfo=UTC))]
    )
    assert said(queued) == Verdict(
        "cutover_queued", "line ready, router still on V4: cutover queued for 2026-11-21 10:00 JST"
    )
    running = replace(READY, operations=[_cutover("running")])
    assert said(running).words == "line ready, router still on V4: cutover running now"
    failed = replace(
        READY, operations=[_cutover("failed", reason="tunnel did not come up: AFTR unreachable")]
    )
    assert said(failed) == Verdict(
        "cutover_failed",
        "line ready, router still on V4: the last cutover failed (tunnel did not come up: "
        "AFTR unreachable); tech support can retry it",
    )


def test_an_order_not_complete_says_where_it_stands() -> None:
    requested = replace(READY, order_state="requested")
    assert said(requested).code == "order_not_complete"
    assert said(requested).words.startswith(
        "order not complete: the 4over6 order was requested on 2026-11-02"
    )
    ng = said(replace(READY, order_state="ng"))
    assert "sent back (NG) on 2026-11-02; it must be filed again from the start" in ng.words
    none = said(replace(READY, order_state="none", order_date=None))
    assert none.words == "order not complete: no 4over6 order has been filed for this line"


def test_an_unreachable_unit_says_since_when_it_was_last_seen() -> None:
    gone = replace(ON_V6, reachable=False, last_error="no answer")
    assert said(replace(READY, parents=[gone])) == Verdict(
        "unreachable", f"unit {SERIAL} unreachable since 2026-11-20 14:03 JST"
    )
    never = ParentReading(SERIAL, reachable=False, last_error="connection refused")
    assert said(replace(READY, parents=[never])).words == (
        f"unit {SERIAL} unreachable (never read successfully)"
    )


def test_a_self_moved_unit_can_never_be_on_v6() -> None:
    moved = replace(READY, moved_by_customer=True, parents=[ON_V6])
    assert said(moved).code == "self_moved"
    assert said(moved).words.startswith("self-moved unit: V6 impossible")


def test_a_tunnel_that_is_down_is_told_apart_from_v4() -> None:
    down = replace(ON_V6, tunnel_state="down", tunnel_reason="AFTR unreachable")
    result = said(replace(READY, parents=[down]))
    assert result.code == "v6_tunnel_down" and "(AFTR unreachable)" in result.words


def test_no_reading_yet_or_no_unit_at_all() -> None:
    unread = replace(READY, parents=[ParentReading(SERIAL)])
    assert said(unread) == Verdict(
        "not_read",
        "line ready, the router has not been read yet (ask for a live reading): "
        "no cutover requested yet",
    )
    assert said(replace(READY, parents=[])).code == "no_parent"
    assert said(replace(READY, has_line=False)).code == "no_line"


def test_two_parents_are_each_named() -> None:
    other = replace(ON_V6, serial="US01BJH00023", cutover_done_at=T)
    overall, per_unit = verdict(replace(READY, parents=[ON_V4, other]))
    assert overall.code == "mixed"
    assert overall.words == (
        f"{SERIAL}: line ready, router still on V4: no cutover requested yet; "
        "US01BJH00023: on V6 since 2026-11-20"
    )
    assert set(per_unit) == {SERIAL, "US01BJH00023"}


# ----- gathered from the store ---------------------------------------------------------------
SHOP = "138301483"
P1, P2, KID, AP = "US01GA000001", "US01GA000002", "US01GA000003", "US01GA000004"


async def _shop(store: Store, *, moved: bool = False) -> None:
    """A shop with two parents (one on V6 with its tunnel down), a child and an access point,
    and operations of its own and of another shop."""
    async with store.transaction() as session:
        for code in (SHOP, "138301484", "138301485"):
            await repo.upsert_customer(session, CustomerData(code))
        await repo.upsert_line(
            session,
            SHOP,
            LineData(
                line_type="flets-east",
                moved_by_customer=moved,
                v6_order_state="complete",
                v6_order_date=date(2026, 11, 2),
            ),
        )
        for serial, role, parent in ((P1, "parent", ""), (P2, "parent", ""), (AP, "ap", "")):
            await repo.upsert_unit(session, UnitData(serial, SHOP, role, parent_serial=parent))
        await session.flush()
        await repo.upsert_unit(session, UnitData(KID, SHOP, "child", parent_serial=P1))
        await repo.upsert_unit(session, UnitData("US01GA000009", "138301484", "parent"))
        await session.flush()
        await repo.record_observation(
            session, P1, reachable=True, at=T,
            values={"wan_mode": "ipoe", "tunnel_state": "down",
                    "tunnel_reason": "AFTR unreachable", "u_lamp": "off"},
        )  # fmt: skip
        await repo.record_observation(
            session, P1, reachable=False, at=T + timedelta(minutes=5), error="no answer"
        )
        # P2 was never read; the child's reading is not a parent's
        await repo.record_observation(session, KID, reachable=True, at=T, values={"u_lamp": "on"})

        def op(key: str, kind: str, state: str, serial: str | None, code: str | None,
               at: datetime, reason: str | None = None) -> None:  # fmt: skip
            session.add(
                Operation(
                    kind=kind, unit_serial=serial, customer_code=code, state=state,
                    not_before=at, idempotency_key=key, requested_by="alice", reason=reason,
                    created_at=at, updated_at=at,
                )
            )  # fmt: skip

        op("done-old", "cutover", "succeeded", P1, SHOP, T - timedelta(days=9))
        op("done", "cutover", "succeeded", P1, SHOP, T - timedelta(days=2))
        for i in range(12):  # only the newest failures are shown
            op(f"fail-{i}", "cutover", "failed", P2, SHOP, T - timedelta(hours=12 - i), f"no {i}")
        op("wifi", "business_wifi", "queued", None, SHOP, T + timedelta(hours=1))
        op("kid", "guest_rotate", "retry_wait", KID, None, T + timedelta(hours=2), "busy")
        op("ap-done", "guest_rotate", "succeeded", AP, SHOP, T)
        op("other", "cutover", "queued", "US01GA000009", "138301484", T)
        op("other-failed", "cutover", "escalated", "US01GA000009", "138301484", T)


async def test_the_status_is_gathered_from_the_shops_own_units_and_operations(
    store: Store,
) -> None:
    await _shop(store)
    async with store.sessions() as session:
        found = await status(session, SHOP)
    facts = found.facts
    assert (facts.customer_code, facts.has_line, facts.order_state, facts.order_date) == (
        SHOP, True, "complete", date(2026, 11, 2)
    )  # fmt: skip
    assert facts.moved_by_customer is False
    first, second = facts.parents
    assert first == ParentReading(
        P1,
        reachable=False,
        observed_at=T,
        wan_mode="ipoe",
        tunnel_state="down",
        tunnel_reason="AFTR unreachable",
        u_lamp="off",
        last_error="no answer",
        last_error_at=T + timedelta(minutes=5),
        cutover_done_at=T - timedelta(days=2),
    )
    assert second == ParentReading(P2)
    assert [(o.kind, o.unit_serial, o.state, o.reason) for o in facts.operations] == [
        ("guest_rotate", KID, "retry_wait", "busy"),
        ("business_wifi", None, "queued", None),
        *[("cutover", P2, "failed", f"no {i}") for i in range(11, 1, -1)],
    ]
    assert facts.operations[0].not_before == T + timedelta(hours=2)
    assert facts.operations[-1].updated_at == T - timedelta(hours=10)
    assert found.verdict.code == "mixed"
    assert found.per_unit[P1] == Verdict(
        "unreachable", f"unit {P1} unreachable since 2026-11-20 14:03 JST"
    )
    assert found.per_unit[P2].code == "cutover_failed"
    assert found.per_unit[P2].words.endswith(
        "the last cutover failed (no 11); tech support can retry it"
    )


async def test_a_self_moved_shop_or_an_unknown_code(store: Store) -> None:
    await _shop(store, moved=True)
    async with store.sessions() as session:
        moved = await status(session, SHOP)
        assert moved.verdict.code == "self_moved" and moved.facts.moved_by_customer is True
        bare = await status(session, "138301484")
        assert (bare.facts.has_line, bare.facts.order_state, bare.verdict.code) == (
            False, None, "no_line"
        )  # fmt: skip
        assert [o.state for o in bare.facts.operations] == ["queued", "escalated"]
        nothing = await status(session, "138301485")  # no line, no unit, no operation
        assert (nothing.facts.parents, nothing.facts.operations) == ([], [])
        assert nothing.verdict.code == "no_parent"
        with pytest.raises(NotFound, match="no customer 999999999"):
            await status(session, "999999999")
