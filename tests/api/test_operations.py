"""Operations through the API: change requests, listing, cancel and retry, following one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from inventory import audit
from inventory import operations as ops
from inventory.store import Store, open_store
from tests.api.conftest import CANARY, CHILD, CODE, PARENT, Api


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_a_change_request_queues_operations_audits_and_wakes_the_engine(
    api: Api, store: Store
) -> None:
    answer = await api.client.post(
        f"/customers/{CODE}/business-wifi",
        json={"ssid": "Kimura-Office", "passphrase": "Brand-New-Pass-2026"},
        headers={**api.as_("cs"), "X-Request-ID": "ticket-991"},
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["request_id"] == "ticket-991" == answer.headers["x-request-id"]
    assert sorted(op["unit_serial"] for op in body["operations"]) == [PARENT, CHILD]
    assert {op["kind"] for op in body["operations"]} == {"business_wifi"}
    assert "Brand-New-Pass-2026" not in answer.text
    assert api.woken == [1]
    async with store.sessions() as session:
        (entry,) = await audit.entries(session, target=CODE, actor="cs-user")
    assert entry.action == "request_business_wifi" and entry.request_id == "ticket-991"
    assert entry.after is not None
    assert entry.after["passphrase"] == "********" and entry.after["ssid"] == "Kimura-Office"
    assert sorted(entry.after["operations"]) == sorted(op["id"] for op in body["operations"])

    again = await api.client.post(
        f"/customers/{CODE}/business-wifi",
        json={"ssid": "Kimura-Office", "passphrase": "Brand-New-Pass-2026"},
        headers={**api.as_("cs"), "X-Request-ID": "ticket-991"},
    )
    same = sorted(op["id"] for op in again.json()["operations"])
    assert same == sorted(op["id"] for op in body["operations"])  # a repeat queues nothing new


async def test_a_request_the_rules_refuse_names_the_field_the_value_and_the_rule(
    api: Api,
) -> None:
    weak = await api.client.post(
        f"/customers/{CODE}/business-wifi", json={"passphrase": "short"}, headers=api.as_("cs")
    )
    assert weak.status_code == 422
    assert weak.json()["field"] == "passphrase" and "value" not in weak.json()
    assert "8 to 63" in weak.json()["rule"] and "short" not in weak.text
    child = await api.client.post(
        f"/units/{CHILD}/swap",
        json={"new_serial": "US01LK000001", "address": "127.0.0.1", "ssh_port": 22,
              "password": "Link-Item-Pass-1", "host_key": "ssh-ed25519 AAAA"},
        headers=api.as_("tech"),
    )  # fmt: skip
    assert child.status_code == 422 and child.json()["field"] == "link_item"
    assert "child" in child.json()["rule"]
    assert "Link-Item-Pass-1" not in child.text
    typed = await api.client.post(
        f"/units/{PARENT}/swap",
        json={"new_serial": "US01LK000001", "address": "127.0.0.1", "ssh_port": 22,
              "password": ["Secret-In-A-List"], "host_key": "x"},
        headers=api.as_("tech"),
    )  # fmt: skip
    assert typed.status_code == 422 and typed.json()["field"] == "password"
    assert "Secret-In-A-List" not in typed.text
    unknown = await api.client.post(
        f"/customers/{CODE}/cutover", json={"minutes": 5}, headers=api.as_("tech")
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "minutes"
    assert api.woken == []


async def test_operations_are_listed_shown_cancelled_and_retried(api: Api, store: Store) -> None:
    tech = api.as_("tech")
    queued = await api.client.post(f"/customers/{CODE}/guest-rotate", headers=tech)
    ids = sorted(op["id"] for op in queued.json()["operations"])
    listed = await api.client.get(
        "/operations", params={"kind": "guest_rotate", "state": "queued"}, headers=tech
    )
    assert sorted(op["id"] for op in listed.json()) == ids
    paged = await api.client.get("/operations", params={"limit": 1}, headers=tech)
    assert [op["id"] for op in paged.json()] == [max(ids)]

    done = (await api.client.get(f"/operations/{api.seeded.done_op}", headers=tech)).json()
    assert done["state"] == "succeeded"
    assert [(s["seq"], s["step"]) for s in done["steps"]] == [(1, "read")]

    cancelled = await api.client.post(f"/operations/{ids[0]}/cancel", headers=tech)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["reason"] == "cancelled by tech-user"
    twice = await api.client.post(f"/operations/{ids[0]}/cancel", headers=tech)
    assert twice.status_code == 409 and "only a waiting one" in twice.json()["message"]
    retried = await api.client.post(f"/operations/{ids[0]}/retry", headers=tech)
    assert retried.json()["state"] == "queued"
    finished = await api.client.post(f"/operations/{api.seeded.done_op}/retry", headers=tech)
    assert finished.status_code == 409
    assert (await api.client.get("/operations/999999", headers=tech)).status_code == 404
    async with store.sessions() as session:
        actions = [e.action for e in await audit.entries(session, actor="tech-user")]
    assert actions == ["operation_retry", "operation_cancel", "request_guest_rotate"]


async def test_following_an_operation_streams_each_change_made_by_another_daemon(
    api: Api, store: Store
) -> None:
    queued = await api.client.post(f"/customers/{CODE}/guest-rotate", headers=api.as_("tech"))
    op_id = queued.json()["operations"][0]["id"]
    other = open_store(store.url)  # a second daemon on the same database runs it
    moves: list[Callable[[ops.Operation], None]] = [
        lambda op: setattr(op, "state", "running"),
        lambda op: None,  # nothing changed: nothing sent
        lambda op: (setattr(op, "state", "succeeded"), setattr(op, "reason", "rotated")),
    ]

    async def step_instead_of_sleeping(_seconds: float) -> None:
        async with other.transaction() as session:
            op = await ops.get(session, op_id)
            move = moves.pop(0)
            move(op)
            if op.state == "running" and not (await ops.steps(session, op_id)):
                await ops.add_step(session, op, "read", True, f"passphrase={CANARY}")

    api.services.sleep = step_instead_of_sleeping
    try:
        stream = await api.client.get(f"/operations/{op_id}/events", headers=api.as_("cs"))
    finally:
        await other.close()
    assert stream.headers["content-type"].startswith("text/event-stream")
    seen = events(stream.text)
    assert [(name, data["state"]) for name, data in seen] == [
        ("operation", "queued"),
        ("operation", "running"),
        ("operation", "succeeded"),
        ("end", "succeeded"),
    ]
    assert seen[1][1]["steps"] == [
        {**seen[1][1]["steps"][0], "step": "read", "detail": "passphrase=********"}
    ]
    assert moves == [] and CANARY not in stream.text


async def test_a_batch_is_created_followed_and_cancelled(api: Api) -> None:
    admin = api.as_("admin")
    created = await api.client.post(
        "/batches",
        json={
            "kind": "guest_rotate",
            "selection": {"customers": [CODE, "999999999"]},
            "canary": 1,
            "max_failure_rate": 0.5,
        },
        headers=admin,
    )
    assert created.status_code == 202, created.text
    batch = created.json()
    assert batch["state"] == "canary" and batch["total"] == 2
    assert batch["counts"] == {"queued": 2}
    assert [r["target"] for r in batch["refused"]] == ["999999999"]
    shown = (await api.client.get(f"/batches/{batch['id']}", headers=api.as_("cs"))).json()
    assert shown["counts"] == {"queued": 2} and shown["finished"] is False
    cancelled = await api.client.post(f"/batches/{batch['id']}/cancel", headers=admin)
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["counts"] == {"cancelled": 2}
    followed = await api.client.get(f"/batches/{batch['id']}/events", headers=admin)
    assert [name for name, _ in events(followed.text)] == ["batch", "end"]
    bad = await api.client.post(
        "/batches", json={"kind": "guest_rotate", "selection": {}}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["field"] == "selection"
