"""The V6 verdict a CS agent reads out: one sentence from the order and the router's reading."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from fleetd.v6status import OpBrief, ParentReading, V6Facts, Verdict, verdict

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
