"""Customer support's side: look-up, V6 status on the phone, the registration notice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleetd.v6status import SnmpReader
from inventory import audit, repo
from inventory.imports import importer_for, run_import
from inventory.secrets import SecretBox
from inventory.store import Store
from simulators.control import request as control
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet
from tests.api.conftest import CANARY, CODE, PARENT, UNIT_PASSWORD, Api

BASE = "127.61.0.1"


async def test_customers_are_found_by_code_phone_or_kana(api: Api) -> None:
    cs = api.as_("cs")
    for query in ({"code": CODE}, {"phone": "0312345678"}, {"kana": "ｶﾌｪｷ"}):
        found = await api.client.get("/customers", params=query, headers=cs)
        assert [c["code"] for c in found.json()] == [CODE], query
    assert (await api.client.get("/customers", params={"kana": "ﾗｰﾒﾝ"}, headers=cs)).json() == []
    neither = await api.client.get("/customers", headers=cs)
    assert neither.status_code == 422
    assert neither.json()["field"] == "query"
    assert neither.json()["rule"] == "give exactly one of code, phone or kana"


async def test_a_customer_with_its_units_line_and_items(api: Api) -> None:
    cs = api.as_("cs")
    shown = (await api.client.get(f"/customers/{CODE}", headers=cs)).json()
    assert shown["name"] == "カフェ木村"
    assert {a["kind"] for a in shown["addresses"]} == {"installation", "billing"}
    units = await api.client.get(f"/customers/{CODE}/units", headers=cs)
    assert [(u["serial"], u["role"], u["parent_serial"]) for u in units.json()] == [
        (PARENT, "parent", None),
        ("US01AP000002", "child", PARENT),
    ]
    assert units.json()[0]["business_passphrase_on_record"] is True
    for secret in (CANARY, UNIT_PASSWORD):
        assert secret not in units.text
    line = (await api.client.get(f"/customers/{CODE}/line", headers=cs)).json()
    assert line["v6_order_state"] == "complete"
    assert line["tunnel"] == {"type": "ds-lite", "aftr": "2001:db8::1"}
    items = (await api.client.get(f"/customers/{CODE}/items", headers=cs)).json()
    assert [(i["item_no"], i["serial"]) for i in items] == [("C0001", PARENT)]
    missing = await api.client.get("/customers/999999999", headers=cs)
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no customer 999999999"}


async def test_v6_status_reads_out_what_happens_next(api: Api) -> None:
    cs = api.as_("cs")
    before = (await api.client.get(f"/customers/{CODE}/v6", headers=cs)).json()
    assert before["verdict"] == "line ready, router still on V4: no cutover requested yet"
    assert before["order_state"] == "complete" and before["order_date"] == "2026-11-02"
    (parent,) = before["parents"]
    assert parent["serial"] == PARENT and parent["wan_mode"] == "pppoe"
    assert parent["u_lamp"] == "off" and parent["reading_age_seconds"] == 300
    asked = await api.client.post(
        f"/customers/{CODE}/cutover",
        json={"not_before": "2026-11-25T10:00:00+09:00"},
        headers=api.as_("tech"),
    )
    assert asked.status_code == 202, asked.text
    after = (await api.client.get(f"/customers/{CODE}/v6", headers=cs)).json()
    assert after["verdict_code"] == "cutover_queued"
    assert after["verdict"] == (
        "line ready, router still on V4: cutover queued for 2026-11-25 10:00 JST"
    )
    assert [o["kind"] for o in after["pending_operations"]] == ["cutover"]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[ServedFleet]:
    spec = FleetSpec(units=2, base_address=BASE, v6_ready_share=1.0, moved_share=0.0)
    async with serve_fleet(spec, state_dir=tmp_path / "sim") as fleet:
        yield fleet


async def test_a_live_v6_status_reads_the_router_now_over_snmp(
    api: Api, served: ServedFleet, store: Store, box: SecretBox, tmp_path: Path
) -> None:
    fleet_csv = tmp_path / "fleet.csv"
    served.write_inventory(fleet_csv)
    report = await run_import(store, importer_for("fleet"), fleet_csv, box=box)
    assert report.written, report.lines()
    up, down = sorted(served.fleet.units)
    codes = {serial: served.fleet.customer_of[serial] for serial in (up, down)}
    answer = await control(
        served.control_port, {"op": "fault", "serial": down, "set": {"refuse": True}}
    )
    assert answer["ok"], answer
    api.services.live_reader = SnmpReader(timeout=0.3, retries=0)

    live = await api.client.get(
        f"/customers/{codes[up]}/v6", params={"live": "true"}, headers=api.as_("cs")
    )
    assert live.status_code == 200, live.text
    body = live.json()
    assert body["live"] == {up: None}
    (parent,) = body["parents"]
    assert parent["reachable"] is True and parent["wan_mode"] == "pppoe"
    assert parent["reading_age_seconds"] == 0  # read just now (the API's clock)
    assert body["verdict"] == "line ready, router still on V4: no cutover requested yet"

    gone = await api.client.get(
        f"/customers/{codes[down]}/v6", params={"live": "true"}, headers=api.as_("cs")
    )
    body = gone.json()
    assert body["live"][down] and body["verdict_code"] == "unreachable"
    assert body["verdict"] == f"unit {down} unreachable (never read successfully)"
    async with store.sessions() as session:
        seen = await repo.get_observation(session, down)
        assert seen is not None and seen.reachable is False and seen.last_error


NOTICE = {"requester": {"kind": "shop_staff", "name": "佐藤"}, "destination": {"kind": "billing"}}


async def test_a_registration_notice_goes_to_a_registered_address_and_is_audited(
    api: Api, store: Store
) -> None:
    answer = await api.client.post(
        f"/customers/{CODE}/registration-notice",
        json=NOTICE,
        headers={**api.as_("cs"), "X-Request-ID": "call-4711"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF")
    assert answer.headers["x-request-id"] == "call-4711"
    async with store.sessions() as session:
        (entry,) = await audit.entries(session, target=CODE, actor="cs-user")
    assert entry.action == "registration_notice" and entry.request_id == "call-4711"
    assert entry.after == {
        "requester": "shop_staff",
        "requester_name": "佐藤",
        "destination": "billing",
        "postal_code": "100-0005",
        "ssid": "Kimura-Biz",
    }


async def test_a_notice_to_anything_but_a_registered_address_is_refused(api: Api) -> None:
    url, cs = f"/customers/{CODE}/registration-notice", api.as_("cs")
    unregistered = {**NOTICE, "destination": {"kind": "contract_holder"}}
    refused = await api.client.post(url, json=unregistered, headers=cs)
    assert refused.status_code == 422
    body = refused.json()
    assert (body["field"], body["value"]) == ("destination.kind", "contract_holder")
    assert "posted only to one of the customer's registered addresses" in body["rule"]
    assert body["hint"] == "registered: billing, installation"

    elsewhere = {**NOTICE, "destination": {"kind": "billing", "address": "大阪府大阪市北区1-1"}}
    refused = await api.client.post(url, json=elsewhere, headers=cs)
    assert refused.status_code == 422 and refused.json()["field"] == "destination.address"

    free_form = {**NOTICE, "destination": {"kind": "home", "address": "大阪府大阪市北区1-1"}}
    refused = await api.client.post(url, json=free_form, headers=cs)
    assert refused.status_code == 422
    assert refused.json()["error"] == "invalid_request"
    assert refused.json()["field"] == "destination.kind"
    assert refused.json()["value"] == "home"

    nobody = {**NOTICE, "requester": {"kind": "neighbour", "name": "x"}}
    refused = await api.client.post(url, json=nobody, headers=cs)
    assert refused.status_code == 422 and refused.json()["field"] == "requester.kind"
