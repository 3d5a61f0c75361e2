"""BUSINESS_WIFI, GUEST_ROTATE and ORIGINAL_SSID on every unit of a customer, over real SSH."""

from __future__ import annotations

import pytest

from drivers.base import passphrase_fingerprint
from fleetd.workflows.base import BUSINESS_WIFI, GUEST_ROTATE, ORIGINAL_SSID, open_secrets
from fleetd.workflows.common import PASSPHRASE_ALPHABET
from fleetd.workflows.wifi import DEFAULT_GUEST_SSID
from inventory import repo
from inventory.errors import RuleViolation
from inventory.operations import Operation
from inventory.records import ContractItemData
from tests.fleetd.workflows.conftest import C0, C1, CUST0, CUST1, P0, P1, Harness

BASE = "127.82.0.1"


def _secret(h: Harness, op: Operation) -> str:
    return open_secrets(h.box, op.secret_params)["passphrase"]


async def test_a_business_wifi_change_reaches_every_unit_with_one_passphrase(
    pg_harness: Harness,
) -> None:
    h = pg_harness
    ops = await h.request(BUSINESS_WIFI, CUST0, {"ssid": "Kimura Staff"})

    assert [(op.unit_serial, op.customer_code) for op in ops] == [(P0, CUST0), (C0, CUST0)]
    assert [op.params["lead"] for op in ops] == [True, False]
    assert all("passphrase" not in str(op.params) for op in ops)
    passphrase = _secret(h, ops[0])
    assert _secret(h, ops[1]) == passphrase
    assert len(passphrase) >= 16 and set(passphrase) <= set(PASSPHRASE_ALPHABET)

    summaries = await h.run_all(ops)

    assert all("business SSID and passphrase set" in s for s in summaries)
    for serial in (P0, C0):
        sim = h.unit(serial)
        assert sim.running["wlan business ssid"] == "Kimura Staff"
        assert sim.passphrase_fingerprint("business") == passphrase_fingerprint(serial, passphrase)
        assert h.kinds(serial) == ["commit-confirmed", "confirm"]
        async with h.store.sessions() as session:
            unit = await repo.get_unit(session, serial)
        assert unit.intended_business_ssid == "Kimura Staff"
        assert repo.intended_passphrase(unit, h.box, "business") == passphrase
        assert passphrase not in (unit.intended_business_passphrase_enc or "")
    [notice] = await h.audits("registration_notice_due")
    assert notice.target == CUST0 and "registered address" in notice.detail
    assert "registration_notice_due" in await h.step_names(ops[0])
    assert "registration_notice_due" not in await h.step_names(ops[1])
    pushed = await h.audits(BUSINESS_WIFI)
    assert [e.target for e in pushed] == [P0, C0]
    # each push is audited under the staff request that asked for it (the harness's "req-1")
    assert {e.request_id for e in pushed} == {"req-1"}
    assert {e.actor for e in pushed} == {"staff:kimura"}
    assert pushed[0].after == {
        "wlan business ssid": "Kimura Staff",
        "wlan business passphrase": "********",
    }


async def test_a_business_wifi_change_already_made_sends_nothing(harness: Harness) -> None:
    ops = await harness.request(BUSINESS_WIFI, CUST0, {"passphrase": "Given-Pass-2026"})
    await harness.run_all(ops)
    commits = {s: harness.commits(s) for s in (P0, C0)}

    summaries = await harness.run_all(ops)  # taken up again, e.g. after a crash

    assert all("already set" in s for s in summaries)
    assert {s: harness.commits(s) for s in (P0, C0)} == commits
    assert "already applied" in await harness.step_names(ops[0])


async def test_keep_passphrase_changes_the_ssid_only(harness: Harness) -> None:
    before = harness.unit(P0).passphrase_fingerprint("business")
    ops = await harness.request(BUSINESS_WIFI, P0, {"ssid": "Biz 2", "keep_passphrase": True})
    assert all(op.secret_params is None for op in ops)
    await harness.run_all(ops)
    assert harness.unit(P0).running["wlan business ssid"] == "Biz 2"
    assert harness.unit(P0).passphrase_fingerprint("business") == before


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"ssid": "x" * 33}, "ssid", "1 to 32 bytes"),
        ({"passphrase": "short"}, "passphrase", "8 to 63"),
        ({"passphrase": "Long-Enough-1", "keep_passphrase": True}, "keep_passphrase", "not both"),
        ({"keep_passphrase": True}, "ssid", "nothing to change"),
        ({"colour": "red"}, "params", "not a parameter of business_wifi"),
    ],
)
async def test_a_business_wifi_request_that_breaks_a_rule_is_refused(
    harness: Harness, params: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(RuleViolation) as refused:
        await harness.request(BUSINESS_WIFI, CUST0, params)
    assert refused.value.field == field and words in str(refused.value)
    assert "short" not in str(refused.value)  # a passphrase is never repeated
    assert await harness.operations() == []


async def test_a_repeated_request_keeps_its_operations_and_passphrase(harness: Harness) -> None:
    first = await harness.request(BUSINESS_WIFI, CUST0, request_id="req-9")
    again = await harness.request(BUSINESS_WIFI, CUST0, request_id="req-9")
    assert [op.id for op in again] == [op.id for op in first]
    assert _secret(harness, again[0]) == _secret(harness, first[0])
    assert first[0].idempotency_key == f"business_wifi:{CUST0}:req-9:{P0}"
    keyed = await harness.request(BUSINESS_WIFI, CUST0, {"idempotency_key": "cs-1234"})
    assert [op.idempotency_key for op in keyed] == [f"cs-1234:{P0}", f"cs-1234:{C0}"]


async def test_a_guest_rotation_gives_every_unit_of_the_customer_one_new_passphrase(
    harness: Harness,
) -> None:
    ops = await harness.request(GUEST_ROTATE, C1)  # a unit names its customer
    assert [op.unit_serial for op in ops] == [P1, C1]
    passphrase = _secret(harness, ops[0])
    assert _secret(harness, ops[1]) == passphrase

    summaries = await harness.run_all(ops)

    assert all("guest passphrase rotated" in s for s in summaries)
    for serial in (P1, C1):
        sim = harness.unit(serial)
        assert sim.passphrase_fingerprint("guest") == passphrase_fingerprint(serial, passphrase)
        async with harness.store.sessions() as session:
            unit = await repo.get_unit(session, serial)
        assert repo.intended_passphrase(unit, harness.box, "guest") == passphrase
    commits = harness.commits(P1)
    assert "already rotated" in await harness.run(ops[0])
    assert harness.commits(P1) == commits
    other = await harness.request(GUEST_ROTATE, CUST1, request_id="req-2")
    assert _secret(harness, other[0]) != passphrase  # a new request, a new passphrase


async def test_an_original_ssid_over_15_characters_is_set_with_a_warning(
    harness: Harness,
) -> None:
    ops = await harness.request(ORIGINAL_SSID, CUST0, {"ssid": "Cafe Kimura Shibuya"})
    await harness.run_all(ops)
    for serial in (P0, C0):
        assert harness.unit(serial).running["wlan guest ssid"] == "Cafe Kimura Shibuya"
        async with harness.store.sessions() as session:
            assert (await repo.get_unit(session, serial)).intended_guest_ssid == (
                "Cafe Kimura Shibuya"
            )
    check = next(s for s in await harness.steps(ops[0]) if s.step == "check")
    assert "19 characters" in check.detail and "15 or fewer are recommended" in check.detail
    [billing] = await harness.audits("original_ssid_billing_due")
    assert billing.target == CUST0
    assert billing.after == {"item_code": "Z201000", "item_no": None, "ssid": "Cafe Kimura Shibuya"}
    assert "register the order with SSID'Cafe Kimura Shibuya'" in billing.detail


async def test_an_original_ssid_names_the_billed_item_and_clears_back_to_the_default(
    harness: Harness,
) -> None:
    async with harness.store.transaction() as session:
        await repo.upsert_contract_item(
            session,
            ContractItemData(
                item_no="Z-7",
                customer_code=CUST0,
                item_code="Z201000",
                status="confirmed",
                order_note="SSID'Kimura'",
                original_ssid="Kimura",
            ),
        )
    await harness.run_all(await harness.request(ORIGINAL_SSID, CUST0, {"ssid": "Kimura"}))
    [billing] = await harness.audits("original_ssid_billing_due")
    assert billing.after is not None and billing.after["item_no"] == "Z-7"

    cleared = await harness.request(ORIGINAL_SSID, CUST0, {"clear": True}, request_id="req-2")
    await harness.run_all(cleared)

    assert harness.unit(P0).running["wlan guest ssid"] == DEFAULT_GUEST_SSID
    [end] = await harness.audits("original_ssid_billing_end")
    assert "end the Original SSID item Z-7" in end.detail


async def test_clearing_an_original_ssid_never_set_sends_nothing(harness: Harness) -> None:
    ops = await harness.request(ORIGINAL_SSID, CUST0, {"clear": True})
    await harness.run_all(ops)
    assert harness.commits(P0) == [] and harness.commits(C0) == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"ssid": "カフェ・ゲスト・ワイファイ"}, "39 bytes"),
        ({}, "give the Original SSID, or clear"),
        ({"ssid": "Kimura", "clear": True}, "give the Original SSID, or clear"),
    ],
)
async def test_an_original_ssid_request_that_breaks_a_rule_is_refused(
    harness: Harness, params: dict[str, object], words: str
) -> None:
    with pytest.raises(RuleViolation, match=words) as refused:
        await harness.request(ORIGINAL_SSID, CUST0, params)
    assert refused.value.field == "ssid"


async def test_a_target_that_is_neither_customer_code_nor_serial_is_refused(
    harness: Harness,
) -> None:
    with pytest.raises(RuleViolation, match="9 digits"):
        await harness.request(GUEST_ROTATE, "13830")
    with pytest.raises(RuleViolation, match="US01 and 8"):
        await harness.request(GUEST_ROTATE, "US01X")
